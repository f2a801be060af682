"""A real HTTP server on 127.0.0.1 that speaks the OpenAI chat-completions API, for tests.

It writes math problems and solutions the synthesis loop can use (the same request
always gets the same reply, so runs are reproducible), and can inject the
faults real endpoints show: 408, 409, 429 and 503 with Retry-After, 500, replies slower
than the client's timeout, malformed bodies, dropped connections, refusing or ignoring
`n`, a rejected key (401, echoing the Authorization header in its body, as some servers
do), an unknown model (404), a reply dripped one byte per second, no reply at all, and 200
replies of the wrong shape. It speaks HTTP/1.1 and keeps connections open between
requests, as real servers do (`connections` counts the ones it accepted); leaving the
`with` block closes them all. It also answers as a forward proxy would (a request whose
target is a whole URL, counted in `proxied`), so tests can point HTTP_PROXY at it.
`connect_seconds` delays each new connection's first reply, as the round trips of a TCP
and TLS handshake with a server far away would (bench/llm_transport.py).

    with FakeLLM() as llm:               # llm.url is http://127.0.0.1:PORT/v1
        llm.faults = ["429", "500"]      # the next requests fail so, then all succeed
        llm.always = "401"               # or: every request fails so, until set to None
        ...
        llm.count(text) -> how many requests carried `text` in their last message

Faults: ok (a normal answer), 408 / 409 / 429 / 503 (with `Retry-After: llm.retry_after`,
"0" unless set; None sends no header), 500, slow, malformed (not JSON), garbage (no
choices), drop, 400 / 401 (error bodies echoing the Authorization header), 404 (unknown
model),
drip (the whole reply, status line first, one byte per second), silent (never answers),
message-string, mixed-index, usage-string, tokens-abc (200 replies of the wrong shape),
prose (a 200 reply of the right shape whose text has no problem and no answer).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import threading
import time
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

NO_MAJORITY_EVERY = 7  # one problem in 7 gets three different answers


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def answer_of(problem: str) -> int:
    """The fake solver's answer: a number fixed by the problem's text."""
    return _digest(problem) % 1000


def solution(problem: str, index: int) -> str:
    if _digest(problem) % NO_MAJORITY_EVERY == 0:
        answer = answer_of(problem) + index  # three different answers: no majority
    else:
        answer = answer_of(problem) + (1 if index == 2 else 0)  # two of three agree
    return f"We work through the problem step by step.\nCombining the quantities gives {answer}.\nThe answer is \\boxed{{{answer}}}."


def new_problems(prompt: str, n: int, salt: str) -> str:
    """Problems like the prompt's examples: an example with its numbers changed."""
    examples = re.findall(r"Example \d+:\n(.*?)(?=\n\nExample \d+:|\n\nWrite )", prompt, flags=re.S)
    if not examples:
        return "I could not find any examples."  # no marker: a parse failure for the client
    out = ["Here are the new problems."]
    for i in range(n):
        base = examples[(_digest(salt) + i) % len(examples)]
        shift = _digest(f"{salt}/{i}") % 90 + 7
        out += ["[[Problem]]", re.sub(r"\d+", lambda m, s=shift: str(int(m.group()) + s), base)]
    return "\n".join(out)


class FakeLLM:
    def __init__(
        self, *, supports_n: str = "yes", slow_seconds: float = 3.0, connect_seconds: float = 0.0
    ):
        self.supports_n = supports_n  # "yes", "ignore" (one choice only) or "refuse" (HTTP 400)
        self.slow_seconds = slow_seconds
        self.connect_seconds = connect_seconds  # the wait of a new connection's first request
        self.faults: list[str] = []  # consumed one per request (see the module's docstring)
        self.always: str | None = None  # a fault for every request while set
        self.retry_after: str | None = "0"  # the Retry-After header of 408/409/429/503 faults
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self.connections = 0  # TCP connections accepted
        self.proxied = 0  # requests sent to it as a forward proxy (the target a whole URL)
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeLLM:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()  # ends the handlers of silent and dripping replies
        self._server.shutdown()  # accepts no more connections
        with self._lock:
            still_open = list(self._open)
        for conn in still_open:  # kept-alive connections: the server is gone for clients too
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._server.server_close()  # waits for the handlers, which end on the closed sockets

    def count(self, text: str) -> int:
        with self._lock:
            return sum(text in r["messages"][-1]["content"] for r in self.requests)

    def resent(self) -> Counter:
        """How many times each distinct request body was answered with success."""
        with self._lock:
            return Counter(json.dumps(r, sort_keys=True) for r in self.requests if r.get("_ok"))

    def _next_fault(self) -> str | None:
        with self._lock:
            if self.always:
                return self.always
            return self.faults.pop(0) if self.faults else None

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # connections stay open between requests
            disable_nagle_algorithm = True  # as real servers do: no 40 ms wait on a kept connection

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def setup(self) -> None:
                super().setup()
                with fake._lock:
                    fake.connections += 1
                    fake._open.add(self.connection)
                    if fake._stop.is_set():  # accepted while the server was closing
                        self.connection.shutdown(socket.SHUT_RDWR)
                time.sleep(fake.connect_seconds)  # the handshakes of a server far away

            def finish(self) -> None:
                with fake._lock:
                    fake._open.discard(self.connection)
                with contextlib.suppress(OSError):  # the client may be gone already
                    super().finish()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)  # read first: the connection serves the next one
                target = urllib.parse.urlsplit(self.path)
                if target.scheme:
                    with fake._lock:
                        fake.proxied += 1
                if target.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                body = json.loads(raw)
                with fake._lock:
                    fake.auth.append(self.headers.get("Authorization"))
                fault = fake._next_fault()
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fault == "silent":
                    self.close_connection = True
                    fake._stop.wait(600)
                    return
                if fault in ("400", "401"):
                    echoed = self.headers.get("Authorization")
                    self._send(
                        int(fault),
                        {
                            "error": {
                                "message": f"rejected: the request had Authorization: {echoed}"
                            }
                        },
                    )
                    return
                if fault == "404":
                    self._send(
                        404,
                        {"error": {"message": f"The model `{body.get('model')}` does not exist."}},
                    )
                    return
                if fault in ("408", "409", "429", "500", "503"):
                    after = fake.retry_after if fault != "500" else None
                    self._send(
                        int(fault),
                        {"error": {"message": "try again"}},
                        {"Retry-After": after} if after is not None else {},
                    )
                    return
                if fault == "slow":
                    time.sleep(fake.slow_seconds)
                if fault == "malformed":
                    self._raw(200, b"{not json")
                    return
                if fault == "garbage":
                    self._send(200, {"id": "x", "choices": []})
                    return
                n = int(body.get("n", 1))
                if n > 1 and fake.supports_n == "refuse":
                    self._send(400, {"error": {"message": "n > 1 is not supported: 'n' must be 1"}})
                    return
                if n > 1 and fake.supports_n == "ignore":
                    n = 1
                prompt = body["messages"][-1]["content"]
                salt = json.dumps(body, sort_keys=True)  # the same request, the same reply
                with fake._lock:  # a reply of the wrong shape, or dripped, is no answer
                    fake.requests.append({**body, "_ok": fault in (None, "ok", "slow", "prose")})
                if fault == "prose":  # a polite reply without what was asked for
                    texts = ["Sorry, I cannot help with that."] * n
                elif "[[Problem]]" in prompt:
                    texts = [
                        new_problems(prompt, _wanted(prompt), f"{prompt}/{salt}/{i}")
                        for i in range(n)
                    ]
                else:
                    problem = prompt.split("\n\n", 1)[-1]
                    first = int(body.get("_index", 0))
                    texts = (
                        [solution(problem, first + i) for i in range(n)]
                        if n > 1
                        else [solution(problem, _digest(salt) % 3)]
                    )
                choices = [
                    {
                        "index": i,
                        "message": {"role": "assistant", "content": t},
                        "finish_reason": "stop",
                    }
                    for i, t in enumerate(texts)
                ]
                usage = {
                    "prompt_tokens": len(prompt.split()),
                    "completion_tokens": sum(len(t.split()) for t in texts),
                }
                if fault == "message-string":
                    choices[0]["message"] = texts[0]
                if fault == "mixed-index":
                    choices.append({**choices[0], "index": "1"})
                if fault == "usage-string":
                    usage = "lots"
                if fault == "tokens-abc":
                    usage["prompt_tokens"] = "abc"
                reply = {
                    "id": "cmpl",
                    "object": "chat.completion",
                    "choices": choices,
                    "usage": usage,
                }
                if fault == "drip":
                    self._drip(json.dumps(reply).encode())
                    return
                self._send(200, reply)

            def _drip(self, data: bytes) -> None:
                """The whole reply, status line and headers included, one byte per second."""
                self.close_connection = True
                head = (
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(data)}\r\n\r\n"
                ).encode()
                for i in range(len(head) + len(data)):
                    try:
                        self.wfile.write((head + data)[i : i + 1])
                        self.wfile.flush()
                    except OSError:
                        return  # the client gave up
                    if fake._stop.wait(1.0):
                        return

            def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
                self._raw(status, json.dumps(payload).encode(), headers)

            def _raw(self, status: int, data: bytes, headers: dict | None = None) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (a timeout), or the server is closing
                    self.close_connection = True

        return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # connections waiting to be accepted (socketserver's 5 drops some)


def _wanted(prompt: str) -> int:
    match = re.search(r"Write (\d+) new problems", prompt)
    return int(match.group(1)) if match else 2
