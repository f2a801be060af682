"""The LLM client's transport: a pool of kept-alive connections (core.llm, httpx2) against
a new connection for every request (the transport before it, in short: http.client, closed
after each reply, a watchdog timer for the deadline). The same ChatClient sends the same
chat-completions requests to the test suite's local server (tests/fake_llm.py) through
each, one at a time and `--concurrency` at once; the figures are the time per request (the
best of `--repeat` runs) and the connections a run opened. The server runs in a process of
its own, as a real one would (in this one, it would take turns with the client for the
interpreter). It sets a connection up in microseconds, so the run is repeated with
`--connect-ms` of set-up per new connection: the round trips a TCP and TLS handshake with a
remote https endpoint take.

    python bench/llm_transport.py [--requests 200] [--concurrency 8] [--connect-ms 20]
                                  [--repeat 3] [--quick]
"""

from __future__ import annotations

import argparse
import http.client
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import REPO, parse_args

# The server's process: prints its URL, serves until its input closes, prints the connections.
SERVER = """
import sys
from tests.fake_llm import FakeLLM
with FakeLLM(connect_seconds=float(sys.argv[1])) as llm:
    print(llm.url, flush=True)
    sys.stdin.read()
print(llm.connections, flush=True)
"""


class NewConnectionEach:
    """The transport before the pool, in short: a new TCP connection per request, closed
    after the reply, and a watchdog timer thread that closes it at the deadline."""

    def __init__(self, url: str, timeout: float):
        self.parts = urllib.parse.urlsplit(url)
        self.timeout = timeout

    def post(self, data: bytes) -> SimpleNamespace:
        connection = http.client.HTTPConnection(self.parts.hostname, self.parts.port)
        watchdog = threading.Timer(self.timeout, connection.close)
        watchdog.start()
        try:
            connection.request("POST", self.parts.path, data, {"Content-Type": "application/json"})
            response = connection.getresponse()
            raw = response.read()
        finally:
            watchdog.cancel()
            connection.close()
        return SimpleNamespace(status_code=response.status, headers=response.headers, content=raw)

    def close(self) -> None:
        pass


def run(transport: str, requests: int, concurrency: int, connect_ms: float) -> dict[str, float]:
    """Seconds per request (one at a time, then `concurrency` at once) and connections opened
    by `requests` requests of each kind through the `transport` ("pool" or "new")."""
    from core.llm import ChatClient, LLMSettings, RequestLog

    result = {}
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(connect_ms / 1000)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = server.stdout.readline().strip()
        settings = LLMSettings(base_url=url, model="fake", concurrency=concurrency)
        with ChatClient(settings, RequestLog(None)) as client:
            if transport == "new":
                client._connections = NewConnectionEach(client.url, settings.timeout)
            jobs = [
                (f"{i}", [{"role": "user", "content": f"Solve this.\n\nWhat is {i} + 1?"}], 1, {})
                for i in range(2 * requests + 1)
            ]
            client.complete(*jobs.pop()[:2])  # not timed: the first one starts the machinery
            started = time.perf_counter()
            for key, messages, _, _ in jobs[:requests]:
                client.complete(key, messages)
            result["one"] = (time.perf_counter() - started) / requests
            started = time.perf_counter()
            client.run_all(jobs[requests:], lambda *_: None)
            result["many"] = (time.perf_counter() - started) / requests
        assert client.usage.requests == 2 * requests + 1 and client.usage.failures == 0
        result["connections"] = int(server.communicate("", timeout=60)[0])
    finally:
        server.kill()  # (it has ended already, unless something failed)
        server.wait()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="requests of each kind")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--connect-ms", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best time is shown")
    args = parse_args(parser, {"requests": 40, "connect_ms": 5, "repeat": 1}, argv)
    n, at_once = args.requests, args.concurrency
    print(f"{n} requests one at a time, then {n} {at_once} at once; best of {args.repeat} runs")
    for connect_ms in (0.0, args.connect_ms):
        best = {}
        for transport in ("new", "pool"):
            runs = [run(transport, n, at_once, connect_ms) for _ in range(args.repeat)]
            best[transport] = {k: min(r[k] for r in runs) for k in runs[0]}
        print(f"set-up per new connection: {connect_ms:g} ms")
        for transport, name in (("new", "new connection each"), ("pool", "kept-alive pool")):
            r = best[transport]
            print(
                f"  {name:20} {1000 * r['one']:7.2f} ms/request one at a time, "
                f"{1000 * r['many']:7.2f} ms/request {at_once} at once, "
                f"{r['connections']:5d} connections"
            )
        new, pool = best["new"], best["pool"]
        print(
            f"  new each / pool, time per request: {new['one'] / pool['one']:.2f}x one at a "
            f"time, {new['many'] / pool['many']:.2f}x {at_once} at once"
        )


if __name__ == "__main__":
    main()
