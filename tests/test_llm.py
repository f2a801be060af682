"""The chat-completions client against a real HTTP server on 127.0.0.1 with injected faults."""

from __future__ import annotations

import email.utils
import json
import re
import time

import pytest

from core.errors import OutOfRange
from core.llm import (
    BudgetExhausted,
    ChatClient,
    LLMError,
    LLMSettings,
    RequestLog,
    check_connection,
    redact,
)
from tests.fake_llm import FakeLLM

HELLO = [{"role": "user", "content": "Solve the following problem.\n\nWhat is 2 + 2?"}]


@pytest.fixture
def llm():
    with FakeLLM(slow_seconds=4) as server:
        yield server


def client(llm, tmp_path, sleep=time.sleep, **settings) -> ChatClient:
    defaults = dict(base_url=llm.url, model="fake", backoff=0.01, max_backoff=0.05, timeout=5)
    return ChatClient(
        LLMSettings(**{**defaults, **settings}),
        RequestLog(tmp_path / "requests.jsonl"),
        sleep=sleep,
    )


def problem(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Solve the following problem.\n\nWhat is {i} + 1?"}]


def test_completion_is_logged_and_never_sent_twice(llm, tmp_path):
    c = client(llm, tmp_path, api_key="sk-secret-123")
    first = c.complete("solve/1", HELLO, temperature=0.7)
    assert "\\boxed{" in first[0] and len(llm.requests) == 1
    assert llm.auth == ["Bearer sk-secret-123"]
    again = client(llm, tmp_path).complete(
        "solve/1", HELLO, temperature=0.7
    )  # a new client: a resumed run
    assert again == first and len(llm.requests) == 1
    log = (tmp_path / "requests.jsonl").read_text()
    assert "sk-secret-123" not in log
    entry = json.loads(log.splitlines()[0])
    assert entry["key"] == "solve/1" and entry["ok"] and entry["usage"]["completion_tokens"] > 0
    assert c.usage.prompt_tokens > 0 and c.usage.requests == 1


def test_retries_every_transient_fault(llm, tmp_path):
    llm.faults = ["429", "500", "malformed", "garbage", "drop", "slow"]
    c = client(llm, tmp_path, timeout=2, max_retries=8)
    assert "\\boxed{" in c.complete("k", HELLO)[0]
    assert c.usage.requests == 7  # six failures, then the answer
    lines = (tmp_path / "requests.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["attempts"] == 7


def test_gives_up_after_the_retries_and_says_why(llm, tmp_path):
    llm.faults = ["500"] * 5
    c = client(llm, tmp_path, max_retries=2)
    with pytest.raises(LLMError, match=r"HTTP 500.*gave up after 3 attempts"):
        c.complete("k", HELLO)
    entry = json.loads((tmp_path / "requests.jsonl").read_text().splitlines()[0])
    assert entry["ok"] is False and "HTTP 500" in entry["error"]
    assert "k" not in c.log.done  # a failed request is tried again next time
    llm.faults = []
    assert c.complete("k", HELLO)


@pytest.mark.parametrize(("mode", "sent"), [("yes", 1), ("ignore", 3), ("refuse", 4)])
def test_n_choices_with_fallback(tmp_path, mode, sent):
    with FakeLLM(supports_n=mode) as llm:
        c = client(llm, tmp_path)
        choices = c.complete("solve/7", HELLO, n=3)
        assert len(choices) == 3 and all("\\boxed{" in ch for ch in choices)
        assert c.usage.requests == sent
        assert c.n_supported is (mode == "yes")
        c.complete("solve/8", HELLO, n=3)  # the fallback is remembered: no second refusal
        assert c.usage.requests == sent + (1 if mode == "yes" else 3)
        # a resumed run finds every choice in the log
        again = client(llm, tmp_path)
        assert again.complete("solve/7", HELLO, n=3) == choices and again.usage.requests == 0


def test_budgets(llm, tmp_path):
    c = client(llm, tmp_path, max_requests=2)
    c.complete("a", HELLO)
    c.complete("b", HELLO)
    with pytest.raises(BudgetExhausted, match="request budget of 2"):
        c.complete("c", HELLO)
    assert c.complete("a", HELLO)  # answered from the log: no budget needed
    t = client(llm, tmp_path, max_tokens_total=1)  # the log already holds more tokens than that
    with pytest.raises(BudgetExhausted, match="token budget"):
        t.complete("d", HELLO)


def test_errors_that_retrying_cannot_fix(tmp_path):
    with FakeLLM() as llm:
        llm.faults = []
        c = client(llm, tmp_path)
        bad = ChatClient(
            LLMSettings(base_url=llm.url.replace("/v1", "/nope"), model="x", max_retries=0),
            RequestLog(tmp_path / "r.jsonl"),
        )
        with pytest.raises(LLMError):
            bad.complete("x", HELLO)
    with pytest.raises(LLMError, match="cannot connect"):  # the server is gone
        ChatClient(
            LLMSettings(base_url=llm.url, model="x", max_retries=1, backoff=0.01),
            RequestLog(tmp_path / "q.jsonl"),
        ).complete("y", HELLO)
    with pytest.raises(LLMError, match="base URL"):
        ChatClient(
            LLMSettings(base_url="localhost:8000", model="x"), RequestLog(tmp_path / "z.jsonl")
        )
    assert c.usage.requests == 0


def test_many_requests_at_once(llm, tmp_path):
    llm.faults = ["429", "drop", "500"]
    c = client(llm, tmp_path, concurrency=4)
    done = {}
    jobs = [(f"job/{i}", problem(i), 1, {}) for i in range(20)]
    c.run_all(jobs, lambda key, choices, error: done.__setitem__(key, (choices, error)))
    assert sorted(done) == sorted(k for k, *_ in jobs) and all(
        err is None for _, err in done.values()
    )
    assert len(c.log.done) == 20 and c.usage.requests == 23
    # at most one connection per worker, and one more for the one the drop closed
    assert llm.connections <= 4 + 1


def test_connections_are_kept_between_requests(llm, tmp_path):
    """One connection carries request after request (not one connection per request); a
    closed client's next request opens a new one."""
    c = client(llm, tmp_path)
    for i in range(10):
        c.complete(f"k{i}", problem(i))
    assert c.check()
    assert c.usage.requests == 11 and llm.connections == 1
    c.close()
    c.complete("k10", problem(10))
    assert llm.connections == 2


@pytest.mark.parametrize("fault", ["408", "409", "429", "503"])
def test_retry_after_is_honoured(llm, tmp_path, fault):
    """What the openai SDK retries is retried, after the wait the server asks for: seconds,
    or an HTTP date; at most 60 s. Without a readable one (or with a 500 that sends none)
    the client backs off: at most 0.05 s here."""
    waits = []
    c = client(llm, tmp_path, sleep=waits.append)
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    for after in ("2", "0.5", when, "3600", "soon"):
        llm.retry_after = after
        llm.faults = [fault]
        assert c.complete(f"k{after}", HELLO)
    llm.faults = ["500"]
    assert c.complete("backoff", HELLO)
    assert waits[:2] == [2.0, 0.5] and 20 < waits[2] <= 30 and waits[3] == 60.0
    assert 0 <= waits[4] <= 0.05 and 0 <= waits[5] <= 0.05
    assert c.usage.requests == 12 and len(waits) == 6


def test_proxy_from_the_environment(llm, tmp_path, monkeypatch):
    """HTTP_PROXY is used (here the fake server answers as the proxy for a host that does
    not exist); a server on this machine is reached directly whatever it says."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTP_PROXY", llm.url.removesuffix("/v1"))
    far = client(llm, tmp_path, base_url="http://llm.invalid/v1")
    assert "\\boxed{" in far.complete("far", HELLO)[0] and llm.proxied == 1
    monkeypatch.setenv("NO_PROXY", "llm.invalid")
    with pytest.raises(LLMError, match=r"cannot resolve the host name 'llm\.invalid'"):
        client(llm, tmp_path, base_url="http://llm.invalid/v1", max_retries=0).check()
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    assert client(llm, tmp_path).complete("near", HELLO) and llm.proxied == 1


def test_a_crash_mid_line_loses_only_that_request(llm, tmp_path):
    c = client(llm, tmp_path)
    c.complete("a", HELLO)
    with open(tmp_path / "requests.jsonl", "a") as f:
        f.write('{"key": "b", "ok": true, "choi')  # the process died while writing
    again = client(llm, tmp_path)
    assert set(again.log.done) == {"a"}


# --- failures that must be visible: whole-request timeouts, bad replies, fatal errors ---------


@pytest.mark.parametrize("fault", ["drip", "silent"])
def test_the_timeout_bounds_the_whole_request(tmp_path, fault):
    """A server that drips its reply (status line, headers, body) one byte per second, or
    never answers, is given up on at the timeout, not kept alive read by read."""
    with FakeLLM() as llm:
        c = client(llm, tmp_path, timeout=2, max_retries=1)
        c.complete("first", HELLO)  # the next ones go on this kept-alive connection
        llm.always = fault
        started = time.monotonic()
        with pytest.raises(LLMError, match=r"no complete reply within 2 s.*gave up after 2"):
            c.complete("k", HELLO)
        assert time.monotonic() - started < 60  # two attempts of 2 s (it used to run minutes)
    assert c.usage.requests == 3 and c.usage.failures == 1


@pytest.mark.parametrize("shape", ["message-string", "mixed-index", "usage-string", "tokens-abc"])
def test_a_reply_of_the_wrong_shape_is_a_bad_reply(llm, tmp_path, shape):
    """Retried like any bad reply, then a failed request with its reason; never a crash."""
    llm.faults = [shape]
    c = client(llm, tmp_path, max_retries=2)
    assert "\\boxed{" in c.complete("a", HELLO)[0] and c.usage.requests == 2
    llm.faults = [shape] * 3
    with pytest.raises(LLMError, match=r"malformed response body .*gave up after 3 attempts"):
        c.complete("b", HELLO)
    entry = json.loads((tmp_path / "requests.jsonl").read_text().splitlines()[-1])
    assert entry["key"] == "b" and entry["ok"] is False and "malformed" in entry["error"]
    assert c.usage.failures == 1 and c.usage.prompt_tokens > 0  # from the good reply only


@pytest.mark.parametrize(("fault", "says"), [("401", "refused the API key"), ("404", "model")])
def test_errors_that_retrying_cannot_fix_are_not_retried(tmp_path, fault, says):
    with FakeLLM() as llm:
        llm.always = fault
        c = client(llm, tmp_path, max_retries=5)
        with pytest.raises(LLMError, match=says) as caught:
            c.complete("k", HELLO)
        assert caught.value.fatal and c.usage.requests == 1
        jobs = [(f"job/{i}", HELLO, 1, {}) for i in range(40)]
        c2 = client(llm, tmp_path, concurrency=2)
        with pytest.raises(LLMError, match=says):  # a run stops at once: no 40 refusals
            c2.run_all(jobs, lambda *_: None)
        assert c2.usage.requests < 10


def test_the_key_is_redacted_from_every_error_text(tmp_path):
    """A server that echoes the Authorization header in its error body: the key is in no
    error message and no log line."""
    secret = "sk-echo-9d8c7b6a"
    with FakeLLM() as llm:
        for fault in ("400", "401"):
            llm.always = fault
            c = client(llm, tmp_path, api_key=secret)
            with pytest.raises(LLMError) as caught:
                c.complete(f"k{fault}", HELLO)
            assert secret not in str(caught.value) and "Bearer [redacted]" in str(caught.value)
            with pytest.raises(LLMError) as caught:
                c.check()
            assert secret not in str(caught.value)
        assert llm.auth[-1] == f"Bearer {secret}"
    log = (tmp_path / "requests.jsonl").read_text()
    assert secret not in log and "Bearer [redacted]" in log
    assert redact(f"x Bearer abc.def-1 and {secret}", secret) == (
        "x Bearer [redacted] and [redacted]"
    )


def test_connection_check(tmp_path):
    with FakeLLM() as llm:
        c = client(llm, tmp_path)
        assert "boxed" in c.check()  # the model's reply
        sent = llm.requests[-1]
        assert sent["max_tokens"] == 1 and sent["model"] == "fake"
        assert c.usage.requests == 1 and not c.log.done  # not logged: never replayed
        assert "boxed" in check_connection(LLMSettings(base_url=llm.url, model="fake"))
        llm.faults = ["429", "500"]  # transient faults are tried again, three times in all
        assert c.check()
        llm.faults = []
        llm.always = "404"
        with pytest.raises(LLMError, match=r"HTTP 404.*fake.*does not exist"):
            c.check()
        llm.always = "silent"
        started = time.monotonic()
        with pytest.raises(LLMError, match="no complete reply within 2 s"):
            client(llm, tmp_path, timeout=2).check()
        assert time.monotonic() - started < 60  # one timeout, not one per retry
    with pytest.raises(LLMError, match=r"cannot connect.*3 attempts"):  # the server is gone
        client(llm, tmp_path).check()
    with FakeLLM() as plain, pytest.raises(LLMError, match="TLS") as caught:  # https to http
        client(plain, tmp_path, base_url=plain.url.replace("http:", "https:")).check()
    assert caught.value.fatal
    with pytest.raises(LLMError, match="cannot resolve"):
        client(llm, tmp_path, base_url="http://no-such-host.invalid/v1").check()


@pytest.mark.parametrize(
    ("setting", "value", "says"),
    [
        ("timeout", 0, "timeout must be more than 0 seconds, not 0"),
        ("timeout", -1, "timeout must be more than 0 seconds, not -1"),
        ("timeout", float("nan"), "timeout must be a finite number (more than 0 seconds), not nan"),
        ("price_in", -5, "price in must be at least 0, not -5"),
        ("price_out", float("inf"), "price out must be a finite number (at least 0), not inf"),
        ("concurrency", 0, "concurrency must be at least 1, not 0"),
        ("max_requests", 0, "max requests must be at least 1, not 0"),
        ("max_tokens_total", -3, "max tokens total must be at least 1, not -3"),
        ("max_retries", -1, "max retries must be at least 0, not -1"),
    ],
)
def test_settings_out_of_range(setting, value, says):
    with pytest.raises(OutOfRange, match=re.escape(says)) as caught:
        LLMSettings(base_url="http://127.0.0.1:1/v1", model="m", **{setting: value})
    assert caught.value.field == setting
