"""A client for OpenAI-compatible chat-completions endpoints (vLLM, SGLang, Ollama,
llama.cpp server, OpenAI), built for long synthesis runs.

- Bounded concurrency: a thread pool of `concurrency` workers (run_all).
- The transport is httpx2, the ecosystem's HTTP client (the `openai` SDK's own): one pool
  of kept-alive connections per client, the proxy the environment names (HTTP_PROXY,
  HTTPS_PROXY, ALL_PROXY, NO_PROXY; a server on this machine is always reached directly),
  the system's trusted certificates (or SSL_CERT_FILE's). Each attempt runs as a coroutine on one event-loop
  thread (`_on_loop`) under `asyncio.wait_for(..., timeout)`: that deadline bounds the whole
  request (connect, TLS, sending, status line, headers, body) and cancels it cleanly.
  httpx's own timeouts bound each socket operation: by them alone, a server that drips its
  reply a byte a second would keep a request alive for ever.
- Not the `openai` SDK on top of it, measured against tests/fake_llm.py: its retry loop
  would put all attempts inside one deadline, does not retry a 200 reply that is not JSON,
  backs off 0.4 s or more on `Retry-After: 0` and has no backoff settings; its reply models
  accept what `_parse_reply` rejects (a message that is a string, usage "lots", no
  choices). Without those, it would add 0.7 s of import time, 0.5 ms per request, a
  placeholder key where there is none, and the OPENAI_* environment (organisation,
  project, extra headers) sent to any endpoint.
- Retries, by this client's loop for those reasons: exponential backoff with full jitter
  on what the SDK retries (408, 409, 429, every 5xx; and 425), timeouts, dropped
  connections and malformed bodies (a reply of the wrong shape included); a server's
  Retry-After (seconds or an HTTP date, at most 60 s) is honoured. Errors retrying cannot
  fix (401/403/404, a TLS mismatch, a redirect) are fatal: `run_all` stops at once.
- `check()`: one tiny request that shows whether the endpoint, key and model work.
- `n > 1` in one request, falling back to separate requests for servers that refuse it
  or return fewer choices (remembered for the rest of the run).
- Every completed request is appended to the run's JSONL log (flushed and synced) under
  a caller-chosen key; a key already in the log is answered from it and never sent again,
  so a run killed at any point resumes without repeating finished requests.
- Token usage is counted and priced with user-set prices; request and token budgets stop
  a run cleanly. The API key is sent in a header only: it is never logged or stored, and
  every error text is made in one place (`ChatClient._error`), which redacts it (and any
  bearer token a server echoes) before anything stores or shows the text.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import json
import math
import os
import random
import re
import socket
import ssl
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx2

from core.errors import UserError
from core.settings import check_bounds, setting

CHECK_ATTEMPTS = 3  # the connection check's attempts at most (a timeout ends it at once)
MAX_RETRY_AFTER = 60.0  # seconds: a longer Retry-After is waited this long


@dataclass(frozen=True)
class LLMSettings:
    """Where to send requests and how. `api_key` is never written anywhere. Each other
    field declares its default, help and range once (core/settings.py), for the CLI's
    flags and the page's widgets."""

    base_url: str = setting(help="the endpoint, e.g. http://127.0.0.1:8000/v1")
    model: str = setting(help="the model name the endpoint serves")
    api_key: str | None = field(default=None, repr=False)
    concurrency: int = setting(8, help="requests in flight", low=1)
    timeout: float = setting(
        120.0,
        help="seconds for a whole request: connect, send, reply",
        low=0.0,
        above=True,
        unit="seconds",
    )
    max_retries: int = setting(6, help="retries of a request that may succeed again", low=0)
    backoff: float = setting(
        0.5,
        help="seconds before the first retry; doubles each time, with jitter",
        low=0.0,
        unit="seconds",
    )
    max_backoff: float = setting(
        30.0, help="the longest wait before a retry, in seconds", low=0.0, unit="seconds"
    )
    price_in: float = setting(0.0, help="price per million prompt tokens", low=0.0)
    price_out: float = setting(0.0, help="price per million completion tokens", low=0.0)
    max_requests: int | None = setting(None, help="stop after this many requests", low=1)
    max_tokens_total: int | None = setting(
        None, flag="--max-tokens", help="stop after this many tokens in all", low=1
    )

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise LLMError(f"base URL {self.base_url!r}: give http://host:port/v1 or https://...")
        try:
            parts = urllib.parse.urlsplit(self.base_url)
            parts.port  # noqa: B018 (reading it checks it)
        except ValueError as e:
            raise LLMError(f"base URL {self.base_url!r}: {e}") from None
        if not parts.hostname:
            raise LLMError(f"base URL {self.base_url!r} names no host")
        if not self.model:
            raise LLMError("give the model name the endpoint serves")
        check_bounds(self)

    def public(self) -> dict[str, Any]:
        """The settings without the key, for the run record."""
        return {k: v for k, v in self.__dict__.items() if k != "api_key"}


class BudgetExhausted(Exception):
    """The run's request or token budget is spent."""


class LLMError(UserError):
    """A request failed for good (after retries, or with an error that retrying won't fix).
    `fatal`: no request to this endpoint can work as set (a refused key, an unknown model
    or URL, a TLS mismatch), so a run stops at once."""

    def __init__(self, message: str, *, fatal: bool = False):
        super().__init__(message)
        self.fatal = fatal


def redact(text: str, secret: str | None) -> str:
    """`text` without `secret` and without any bearer token: a server may echo the
    Authorization header in its error body."""
    if secret:
        text = text.replace(secret, "[redacted]")
    return re.sub(r"(?i)\bbearer\s+[^\s\"',;]+", "Bearer [redacted]", text)


class RequestLog:
    """Append-only JSONL of completed requests, keyed; the run's memory of what was sent.
    With no path it only remembers in memory (a connection check)."""

    def __init__(self, path: Path | None):
        self.path = path
        self._lock = threading.Lock()
        self.done: dict[str, dict[str, Any]] = {}
        if path is not None and path.exists():
            with open(path, encoding="utf-8") as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut short by a crash: that request is sent again
                    if isinstance(entry, dict) and entry.get("ok"):
                        self.done[entry["key"]] = entry

    def append(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self._lock:
            if self.path is not None:
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write(line)
                    f.flush()
                    os.fsync(f.fileno())
            if entry.get("ok"):
                self.done[entry["key"]] = entry


@dataclass
class Usage:
    requests: int = 0  # sent over the network (retries count)
    from_log: int = 0  # answered from the run's log
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failures: int = 0  # completions given up on

    def cost(self, settings: LLMSettings) -> float:
        return (
            self.prompt_tokens * settings.price_in + self.completion_tokens * settings.price_out
        ) / 1e6


class _Failure(Exception):
    """One attempt failed. `transient`: another attempt may work (after `retry_after`
    seconds when the server said so); `fatal`: no request can work as set."""

    def __init__(
        self,
        reason: str,
        *,
        transient: bool = True,
        fatal: bool = False,
        retry_after: float | None = None,
        timed_out: bool = False,
    ):
        super().__init__(reason)
        self.transient, self.fatal = transient, fatal
        self.retry_after, self.timed_out = retry_after, timed_out


class ChatClient:
    """Chat completions with retries, n > 1 fallback, a keyed log and a budget. Its
    connections are closed by `close()` (or a `with` block), else when it is collected."""

    def __init__(
        self,
        settings: LLMSettings,
        log: RequestLog | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.settings = settings
        self.log = log if log is not None else RequestLog(None)
        self.usage = Usage()
        self.n_supported: bool | None = None
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens_logged = sum(sum(_tokens(e.get("usage"))) for e in self.log.done.values())
        self._connections = _Connections(settings, self.url)
        weakref.finalize(self, self._connections.close)

    @property
    def url(self) -> str:
        return self.settings.base_url.rstrip("/") + "/chat/completions"

    def close(self) -> None:
        """Close the kept-alive connections (a later request opens new ones)."""
        self._connections.close()

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- one completion, possibly n choices -------------------------------------------

    def complete(
        self, key: str, messages: list[dict[str, str]], *, n: int = 1, **params: Any
    ) -> list[str]:
        """`n` completions of `messages`; from the log when `key` is there already."""
        if n == 1:
            return [self._one(key, messages, 1, params)[0]]
        if key not in self.log.done and f"{key}#0" in self.log.done:
            self.n_supported = False  # an earlier run of this client fell back already
        if self.n_supported is not False:
            try:
                choices = self._one(key, messages, n, params)
            except LLMError as e:
                if not _refuses_n(str(e)):
                    raise
                self.n_supported = False
                choices = []
            else:
                if len(choices) >= n:
                    self.n_supported = True
                    return choices[:n]
                self.n_supported = False  # the server ignored n: ask for the rest one by one
        else:
            choices = []
        for i in range(len(choices), n):
            choices.append(self._one(f"{key}#{i}", messages, 1, params)[0])
        return choices

    def check(self) -> str:
        """One tiny request (max_tokens 1) to see that the endpoint, the key and the model
        work; returns the model's reply (maybe empty). Transient faults are tried up to
        CHECK_ATTEMPTS times, a timeout once. Not logged, not budgeted; counted in usage.
        Raises LLMError with the reason."""
        body = {
            "model": self.settings.model,
            "messages": [{"role": "user", "content": "Reply with OK."}],
            "max_tokens": 1,
        }
        attempts = min(self.settings.max_retries + 1, CHECK_ATTEMPTS)
        for attempt in range(1, attempts + 1):
            try:
                reply = self._post(body)
                choices, usage = _parse_reply(reply, allow_empty=True)
                break
            except _Failure as e:
                if not e.transient or e.timed_out or attempt == attempts:
                    raise self._error(e, attempt) from None
                self._sleep(e.retry_after if e.retry_after is not None else self._backoff(attempt))
        self._count_tokens(usage)
        return choices[0]

    def _one(
        self, key: str, messages: list[dict[str, str]], n: int, params: dict[str, Any]
    ) -> list[str]:
        if key in self.log.done:
            with self._lock:
                self.usage.from_log += 1
            return self.log.done[key]["choices"]
        self._check_budget()
        body = {"model": self.settings.model, "messages": messages, **params}
        if n > 1:
            body["n"] = n
        started = time.time()
        attempt = 0
        while True:
            attempt += 1
            try:
                choices, usage = _parse_reply(self._post(body))
                break
            except _Failure as e:
                if e.transient and attempt <= self.settings.max_retries:
                    delay = e.retry_after if e.retry_after is not None else self._backoff(attempt)
                    self._sleep(delay)
                    continue
                error = self._error(e, attempt)
                self._record_failure(key, body, str(error), started)
                raise error from None
        self._count_tokens(usage)
        self.log.append(
            {
                "key": key,
                "ok": True,
                "request": body,
                "choices": choices,
                "usage": usage,
                "attempts": attempt,
                "seconds": round(time.time() - started, 3),
            }
        )
        return choices

    def _error(self, failure: _Failure, attempts: int) -> LLMError:
        """The one place error texts are made: what failed, where, after how many attempts,
        with the API key and any bearer token redacted (before anything stores or shows it)."""
        text = f"{self.url}: {failure}"
        if failure.transient:
            text += f"; gave up after {attempts} attempt{'s' * (attempts != 1)}"
        return LLMError(redact(text, self.settings.api_key), fatal=failure.fatal)

    def _count_tokens(self, usage: dict[str, int]) -> None:
        prompt, completion = _tokens(usage)
        with self._lock:
            self.usage.prompt_tokens += prompt
            self.usage.completion_tokens += completion
            self._tokens_logged += prompt + completion

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.settings.max_backoff, self.settings.backoff * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)  # full jitter

    def _check_budget(self) -> None:
        s = self.settings
        with self._lock:
            if s.max_requests is not None and self.usage.requests >= s.max_requests:
                raise BudgetExhausted(f"request budget of {s.max_requests} spent")
            if s.max_tokens_total is not None and self._tokens_logged >= s.max_tokens_total:
                raise BudgetExhausted(f"token budget of {s.max_tokens_total} spent")

    def _record_failure(self, key: str, body: dict[str, Any], reason: str, started: float) -> None:
        with self._lock:
            self.usage.failures += 1
        self.log.append(
            {
                "key": key,
                "ok": False,
                "request": body,
                "error": reason,
                "seconds": round(time.time() - started, 3),
            }
        )

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        """One attempt: POST `body`, return the reply's JSON object; raises _Failure."""
        with self._lock:
            self.usage.requests += 1
        timeout = self.settings.timeout
        try:
            response = self._connections.post(json.dumps(body).encode())
        except (asyncio.TimeoutError, httpx2.TimeoutException):
            raise _Failure(f"no complete reply within {timeout:g} s", timed_out=True) from None
        except (httpx2.TransportError, OSError) as e:
            raise _connection_failure(e, urllib.parse.urlsplit(self.url).hostname) from None
        status, reply_headers, raw = response.status_code, response.headers, response.content
        if status >= 400:
            detail = _error_detail(raw)
            if _should_retry(status):
                retry_after = _retry_after(reply_headers.get("Retry-After"))
                raise _Failure(f"HTTP {status} ({detail})", retry_after=retry_after)
            if status in (401, 403):
                raise _Failure(
                    f"HTTP {status}, the server refused the API key ({detail}); "
                    "set OPENAI_API_KEY or enter the key",
                    transient=False,
                    fatal=True,
                )
            if status == 404:
                raise _Failure(
                    f"HTTP 404 ({detail}); check the base URL (it usually ends in /v1) "
                    "and the model name",
                    transient=False,
                    fatal=True,
                )
            raise _Failure(f"HTTP {status} ({detail})", transient=False)
        if status >= 300:
            raise _Failure(
                f"HTTP {status}: the server redirects to {reply_headers.get('Location')!r}; "
                "use that as the base URL",
                transient=False,
                fatal=True,
            )
        try:
            reply = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _Failure("malformed response body (not JSON)") from None
        if not isinstance(reply, dict):
            raise _Failure("malformed response body (not an object)")
        return reply

    # --- many requests at once ---------------------------------------------------------

    def run_all(
        self,
        jobs: Iterable[tuple[str, list[dict[str, str]], int, dict[str, Any]]],
        on_done: Callable[[str, list[str] | None, Exception | None], None],
    ) -> None:
        """Send (key, messages, n, params) jobs with bounded concurrency; `on_done(key,
        choices, error)` is called for each, in the calling thread. A spent budget stops
        the remaining jobs and is raised at the end; a fatal LLMError (or anything raised
        by `on_done`) stops them and is raised at once."""
        jobs = list(jobs)
        budget: BudgetExhausted | None = None
        with ThreadPoolExecutor(max_workers=max(1, self.settings.concurrency)) as pool:
            futures = [
                (key, pool.submit(self.complete, key, messages, n=n, **params))
                for key, messages, n, params in jobs
            ]
            try:
                for key, future in futures:
                    try:
                        on_done(key, future.result(), None)
                    except BudgetExhausted as e:
                        budget = e
                    except LLMError as e:
                        if e.fatal:
                            raise
                        on_done(key, None, e)
            except BaseException:
                for _, future in futures:
                    future.cancel()  # the ones not started; those in flight end by timeout
                raise
        if budget:
            raise budget


def check_connection(settings: LLMSettings) -> str:
    """The model's reply to one tiny request (ChatClient.check); raises LLMError."""
    with ChatClient(settings) as client:
        return client.check()


# --- the transport: one POST within a deadline, on a kept-alive connection ------------------

_T = TypeVar("_T")
_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _on_loop(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run `coroutine` on the process's request loop (its own daemon thread, started on first
    use) and return its result; the calling thread waits. Never call it from that loop."""
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="llm-requests", daemon=True).start()
        loop = _loop
    return asyncio.run_coroutine_threadsafe(coroutine, loop).result()


def _forget_loop() -> None:
    global _loop
    _loop = None  # a forked child has the loop object but not its thread


os.register_at_fork(after_in_child=_forget_loop)


class _Connections:
    """The client's pool of kept-alive connections to `url` (an httpx2.AsyncClient, made on
    first use on the request loop, where all of its work runs). Any thread may `post`."""

    def __init__(self, settings: LLMSettings, url: str):
        self._settings = settings
        self._url = url
        self._client: httpx2.AsyncClient | None = None

    def post(self, data: bytes) -> httpx2.Response:
        """POST `data` (JSON) to the URL and read the whole reply within the settings'
        timeout (connect, TLS, send, status line, headers, body). Raises asyncio.TimeoutError
        past it, httpx2.TransportError when the connection fails; any status is returned."""
        return _on_loop(asyncio.wait_for(self._post(data), self._settings.timeout))

    async def _post(self, data: bytes) -> httpx2.Response:
        if self._client is None:
            self._client = self._open()
        return await self._client.post(self._url, content=data)

    def _open(self) -> httpx2.AsyncClient:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._settings.api_key:
            headers["Authorization"] = f"Bearer {self._settings.api_key}"
        keep = self._settings.concurrency  # run_all's workers; the pool itself has no limit
        return httpx2.AsyncClient(
            headers=headers,
            timeout=self._settings.timeout,  # per operation; the deadline above is the whole
            limits=httpx2.Limits(max_connections=None, max_keepalive_connections=keep),
            follow_redirects=False,  # a redirect is an error that names the right URL
            trust_env=not _is_local(urllib.parse.urlsplit(self._url).hostname or ""),
        )

    def close(self) -> None:
        """Close the connections (scheduled on the loop, not waited for: this may run in
        any thread, that one included, when the client is collected)."""
        client, self._client = self._client, None
        if client is not None and _loop is not None:
            asyncio.run_coroutine_threadsafe(client.aclose(), _loop)


def _is_local(host: str) -> bool:
    """Whether `host` is this machine (reached directly, whatever proxy the environment sets)."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _connection_failure(error: BaseException, host: str | None) -> _Failure:
    """What a failed connection means, read from the OS or TLS error under httpx's."""
    cause: BaseException | None = error
    for _ in range(16):  # down the chain of causes (bounded: a chain can loop)
        if cause is None:
            break
        if isinstance(cause, socket.gaierror):
            return _Failure(f"cannot resolve the host name {host!r} ({cause.strerror})")
        if isinstance(cause, ConnectionRefusedError):
            return _Failure("cannot connect (connection refused)")
        if isinstance(cause, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            return _Failure("connection dropped during TLS")
        if isinstance(cause, ssl.SSLError):
            return _Failure(
                f"TLS failed ({cause.reason or cause}); check the URL's scheme (is the server "
                "plain http?) and that its certificate is trusted",
                transient=False,
                fatal=True,
            )
        cause = cause.__cause__ or cause.__context__
    detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return _Failure(f"connection failed ({detail[:200]})")


def _should_retry(status: int) -> bool:
    """Whether an error status may go away: 408, 409, 429 and every 5xx (as the `openai` SDK
    decides it), and 425."""
    return status in (408, 409, 425, 429) or status >= 500


def _retry_after(value: str | None) -> float | None:
    """The seconds a Retry-After header asks to wait (a number, or an HTTP date), between 0
    and MAX_RETRY_AFTER; None when there is none or it is unreadable."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return None if math.isnan(seconds) else min(MAX_RETRY_AFTER, max(0.0, seconds))


# --- replies ---------------------------------------------------------------------------------


def _parse_reply(
    reply: dict[str, Any], *, allow_empty: bool = False
) -> tuple[list[str], dict[str, int]]:
    """(the choices' texts in index order, the token usage) of a 200 reply; raises a
    transient _Failure for a reply of the wrong shape. `allow_empty`: a choice may have no
    text (a one-token check)."""
    if "error" in reply and "choices" not in reply:
        raise _Failure(
            f"the server answered with an error: {json.dumps(reply['error'])[:300]}",
            transient=False,
        )
    choices = reply.get("choices")
    if not isinstance(choices, list) or not choices:
        raise _Failure("malformed response body (no choices)")
    if not all(isinstance(c, dict) for c in choices):
        raise _Failure("malformed response body (a choice that is not an object)")
    indexes = [c.get("index", i) for i, c in enumerate(choices)]
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in indexes):
        raise _Failure("malformed response body (a choice index that is not a number)")
    texts = []
    for _, choice in sorted(zip(indexes, choices, strict=True), key=lambda pair: pair[0]):
        message = choice.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if content is None and allow_empty and isinstance(message, dict):
            content = ""
        if not isinstance(content, str):
            raise _Failure("malformed response body (a choice without text)")
        texts.append(content)
    usage = reply.get("usage")
    if usage is None:
        usage = {}
    if not isinstance(usage, dict):
        raise _Failure("malformed response body (usage is not an object)")
    counts = {}
    for name in ("prompt_tokens", "completion_tokens"):
        value = usage.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _Failure(f"malformed response body ({name} is not a count: {value!r:.40})")
        counts[name] = value
    return texts, counts


def _tokens(usage: Any) -> tuple[int, int]:
    """(prompt, completion) tokens of a checked usage dict (0 where missing or unreadable,
    for log lines written before usage was checked)."""
    if not isinstance(usage, dict):
        return 0, 0
    values = [usage.get(name) for name in ("prompt_tokens", "completion_tokens")]
    prompt, completion = (
        v if isinstance(v, int) and not isinstance(v, bool) else 0 for v in values
    )
    return prompt, completion


def _refuses_n(message: str) -> bool:
    text = message.lower()
    return "http 400" in text and (
        "'n'" in text
        or '"n"' in text
        or " n " in text
        or "n must" in text
        or "n>1" in text
        or "n > 1" in text
        or "multiple choices" in text
    )


def _error_detail(raw: bytes) -> str:
    """The message of an error reply's body (its error.message when it is JSON), at most
    300 characters."""
    body = raw.decode("utf-8", "replace")
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        return body.strip()[:300]
    error = data.get("error") if isinstance(data, dict) else None
    message = error.get("message") if isinstance(error, dict) else error
    return str(message or body.strip())[:300]
