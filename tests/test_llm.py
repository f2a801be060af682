"""The chat-completions client against a real HTTP server on 127.0.0.1 with injected faults."""

from __future__ import annotations

import json

import pytest

from core.llm import BudgetExhausted, ChatClient, LLMError, LLMSettings, RequestLog
from tests.fake_llm import FakeLLM

HELLO = [{"role": "user", "content": "Solve the following problem.\n\nWhat is 2 + 2?"}]


@pytest.fixture
def llm():
    with FakeLLM(slow_seconds=1.5) as server:
        yield server


def client(llm, tmp_path, **settings) -> ChatClient:
    defaults = dict(base_url=llm.url, model="fake", backoff=0.01, max_backoff=0.05, timeout=5)
    return ChatClient(
        LLMSettings(**{**defaults, **settings}), RequestLog(tmp_path / "requests.jsonl")
    )


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
    c = client(llm, tmp_path, timeout=0.5, max_retries=8)
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
    jobs = [
        (
            f"job/{i}",
            [{"role": "user", "content": f"Solve the following problem.\n\nWhat is {i} + 1?"}],
            1,
            {},
        )
        for i in range(20)
    ]
    c.run_all(jobs, lambda key, choices, error: done.__setitem__(key, (choices, error)))
    assert sorted(done) == sorted(k for k, *_ in jobs) and all(
        err is None for _, err in done.values()
    )
    assert len(c.log.done) == 20 and c.usage.requests == 23


def test_a_crash_mid_line_loses_only_that_request(llm, tmp_path):
    c = client(llm, tmp_path)
    c.complete("a", HELLO)
    with open(tmp_path / "requests.jsonl", "a") as f:
        f.write('{"key": "b", "ok": true, "choi')  # the process died while writing
    again = client(llm, tmp_path)
    assert set(again.log.done) == {"a"}
