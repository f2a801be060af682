"""A client for OpenAI-compatible chat-completions endpoints (vLLM, SGLang, Ollama,
llama.cpp server, OpenAI), built for long synthesis runs.

- Bounded concurrency (a thread pool of `concurrency` workers), per-request timeouts.
- Retries with exponential backoff and full jitter on 429, 5xx, timeouts, dropped
  connections and malformed bodies; a server's Retry-After is honoured.
- `n > 1` in one request, falling back to separate requests for servers that refuse it
  or return fewer choices (remembered for the rest of the run).
- Every completed request is appended to the run's JSONL log (flushed and synced) under
  a caller-chosen key; a key already in the log is answered from it and never sent again,
  so a run killed at any point resumes without repeating finished requests.
- Token usage is counted and priced with user-set prices; request and token budgets stop
  a run cleanly. The API key is sent in a header only: it is never logged or stored.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import UserError

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class LLMSettings:
    """Where to send requests and how. `api_key` is never written anywhere."""

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    concurrency: int = 8
    timeout: float = 120.0
    max_retries: int = 6
    backoff: float = 0.5  # seconds before the first retry; doubles each time, with jitter
    max_backoff: float = 30.0
    price_in: float = 0.0  # per million prompt tokens
    price_out: float = 0.0  # per million completion tokens
    max_requests: int | None = None
    max_tokens_total: int | None = None

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise LLMError(f"base URL {self.base_url!r}: give http://host:port/v1 or https://...")
        if not self.model:
            raise LLMError("give the model name the endpoint serves")
        if self.concurrency < 1:
            raise LLMError("concurrency must be at least 1")

    def public(self) -> dict[str, Any]:
        """The settings without the key, for the run record."""
        return {k: v for k, v in self.__dict__.items() if k != "api_key"}


class BudgetExhausted(Exception):
    """The run's request or token budget is spent."""


class LLMError(UserError):
    """A request failed for good (after retries, or with an error that retrying won't fix)."""


class RequestLog:
    """Append-only JSONL of completed requests, keyed; the run's memory of what was sent."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self.done: dict[str, dict[str, Any]] = {}
        if path.exists():
            with open(path, encoding="utf-8") as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut short by a crash: that request is sent again
                    if entry.get("ok"):
                        self.done[entry["key"]] = entry

    def append(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self._lock:
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
    failures: int = 0

    def cost(self, settings: LLMSettings) -> float:
        return (
            self.prompt_tokens * settings.price_in + self.completion_tokens * settings.price_out
        ) / 1e6


class _Transient(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


class ChatClient:
    """Chat completions with retries, n > 1 fallback, a keyed log and a budget."""

    def __init__(
        self, settings: LLMSettings, log: RequestLog, *, sleep: Callable[[float], None] = time.sleep
    ):
        self.settings = settings
        self.log = log
        self.usage = Usage()
        self.n_supported: bool | None = None
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens_logged = sum(
            e.get("usage", {}).get("prompt_tokens", 0)
            + e.get("usage", {}).get("completion_tokens", 0)
            for e in log.done.values()
        )

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
                reply = self._post(body)
                choices = _choices(reply)
                break
            except _Transient as e:
                if attempt > self.settings.max_retries:
                    self._record_failure(key, body, f"{e} (after {attempt} attempts)", started)
                    raise LLMError(
                        f"{self.settings.base_url}: {e}; gave up after {attempt} attempts"
                    ) from e
                delay = e.retry_after if e.retry_after is not None else self._backoff(attempt)
                self._sleep(delay)
            except LLMError as e:
                self._record_failure(key, body, str(e), started)
                raise
        usage = reply.get("usage") or {}
        with self._lock:
            self.usage.prompt_tokens += int(usage.get("prompt_tokens") or 0)
            self.usage.completion_tokens += int(usage.get("completion_tokens") or 0)
            self._tokens_logged += int(usage.get("prompt_tokens") or 0) + int(
                usage.get("completion_tokens") or 0
            )
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
        url = self.settings.base_url.rstrip("/") + "/chat/completions"
        headers = {"Content-Type": "application/json"}
        if self.settings.api_key:
            headers["Authorization"] = f"Bearer {self.settings.api_key}"
        request = urllib.request.Request(
            url, data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        with self._lock:
            self.usage.requests += 1
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as e:
            detail = _error_detail(e)
            if e.code in RETRY_STATUS:
                raise _Transient(
                    f"HTTP {e.code} {detail}", _retry_after(e.headers.get("Retry-After"))
                ) from e
            if e.code in (401, 403):
                raise LLMError(
                    f"{url}: HTTP {e.code}, the server refused the API key ({detail}); "
                    "set OPENAI_API_KEY or enter the key"
                ) from e
            if e.code == 404:
                raise LLMError(
                    f"{url}: HTTP 404 ({detail}); check the base URL (it usually ends in /v1) "
                    "and the model name"
                ) from e
            raise LLMError(f"{url}: HTTP {e.code} ({detail})") from e
        except urllib.error.URLError as e:
            if isinstance(e.reason, TimeoutError):
                raise _Transient(f"no reply within {self.settings.timeout:g} s") from e
            reason = e.reason if isinstance(e.reason, str) else type(e.reason).__name__
            if isinstance(e.reason, (ConnectionRefusedError, socket.gaierror)):
                raise _Transient(f"cannot connect ({reason})") from e
            raise _Transient(f"connection failed ({reason})") from e
        except TimeoutError as e:
            raise _Transient(f"no reply within {self.settings.timeout:g} s") from e
        except (http.client.HTTPException, ConnectionError, OSError) as e:
            raise _Transient(f"connection dropped ({type(e).__name__})") from e
        try:
            reply = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise _Transient("malformed response body (not JSON)") from e
        if not isinstance(reply, dict):
            raise _Transient("malformed response body (not an object)")
        return reply

    # --- many requests at once ---------------------------------------------------------

    def run_all(
        self,
        jobs: Iterable[tuple[str, list[dict[str, str]], int, dict[str, Any]]],
        on_done: Callable[[str, list[str] | None, Exception | None], None],
    ) -> None:
        """Send (key, messages, n, params) jobs with bounded concurrency; `on_done(key,
        choices, error)` is called for each, in the calling thread. A spent budget stops
        the remaining jobs and is raised at the end."""
        jobs = list(jobs)
        budget: BudgetExhausted | None = None
        with ThreadPoolExecutor(max_workers=max(1, self.settings.concurrency)) as pool:
            futures = [
                (key, pool.submit(self.complete, key, messages, n=n, **params))
                for key, messages, n, params in jobs
            ]
            for key, future in futures:
                try:
                    on_done(key, future.result(), None)
                except BudgetExhausted as e:
                    budget = e
                except LLMError as e:
                    on_done(key, None, e)
        if budget:
            raise budget


def _choices(reply: dict[str, Any]) -> list[str]:
    if "error" in reply and "choices" not in reply:
        raise LLMError(f"the server answered with an error: {json.dumps(reply['error'])[:300]}")
    choices = reply.get("choices")
    if not isinstance(choices, list) or not choices:
        raise _Transient("malformed response body (no choices)")
    texts = []
    for choice in sorted(choices, key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0):
        content = (choice.get("message") or {}).get("content") if isinstance(choice, dict) else None
        if not isinstance(content, str):
            raise _Transient("malformed response body (a choice without text)")
        texts.append(content)
    return texts


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


def _error_detail(e: urllib.error.HTTPError) -> str:
    try:
        body = e.read().decode("utf-8", "replace")
    except OSError:
        return e.reason or ""
    try:
        data = json.loads(body)
        message = (
            data.get("error", {}).get("message")
            if isinstance(data.get("error"), dict)
            else data.get("error")
        )
        return str(message or body)[:300]
    except (json.JSONDecodeError, AttributeError):
        return body.strip()[:300]


def _retry_after(value: str | None) -> float | None:
    try:
        return min(60.0, max(0.0, float(value))) if value is not None else None
    except ValueError:
        return None
