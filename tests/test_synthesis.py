"""The synthesis loop against a real chat-completions server on 127.0.0.1 (tests/fake_llm.py):
faults, counts, acceptance in gradient space, review, resume after SIGKILL, no key stored."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from core import synthesis
from core.config import FeatureConfig, ProxySpec
from core.demo import ensure_demo
from core.errors import UserError
from core.features import compute_features
from core.llm import LLMSettings
from core.maps import clusters_for
from core.regions import default_k, sparse_clusters
from core.workspace import Workspace
from tests.conftest import HANG_SECONDS, REPO, assert_user_error
from tests.fake_llm import FakeLLM

TINY = ProxySpec("tiny-random")
CONFIG = FeatureConfig(dim=256)
KINDS = {
    "parse failure",
    "request failed",
    "no answer",
    "no majority",
    "duplicate",
    "landed in a dense cluster",
    "cluster full",
}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> Path:
    """A workspace with the demo and its features, copied for each test."""
    root = tmp_path_factory.mktemp("seed") / "ws"
    ws = Workspace(root)
    ensure_demo(ws)
    compute_features(ws, "demo", proxy=TINY, config=CONFIG)
    return root


@pytest.fixture
def ws(seeded, tmp_path) -> Workspace:
    shutil.copytree(seeded, tmp_path / "ws")
    return Workspace(tmp_path / "ws")


def run(ws, llm, *, api_key: str | None = None, **settings) -> tuple[str, dict]:
    run_id = create(ws, llm.url, **settings)
    return run_id, synthesis.run_synthesis(ws, run_id, api_key=api_key)


def create(ws, url: str, *, timeout: float = 3.0, max_retries: int = 8, **settings) -> str:
    llm_settings = LLMSettings(
        base_url=url,
        model="fake",
        concurrency=4,
        backoff=0.01,
        max_backoff=0.05,
        timeout=timeout,
        max_retries=max_retries,
    )
    return synthesis.create_run(
        ws,
        "demo",
        llm=llm_settings,
        settings=synthesis.SynthesisSettings(**settings),
        proxy=TINY,
        config=CONFIG,
    )


def check_counts(ws, run_id, summary) -> list[dict]:
    items = synthesis.review(ws, run_id)
    accepted = [i for i in items if i["status"] == "accepted"]
    rejected = [i for i in items if i["status"] == "rejected"]
    assert len(accepted) + len(rejected) == len(items)  # nothing left pending
    assert summary["accepted"] == len(accepted)
    assert sum(summary["rejected"].values()) == len(rejected)
    assert all(i["reason"] and i["reason_kind"] in KINDS for i in rejected)
    assert len({i["item_id"] for i in items}) == len(items)  # no duplicates
    return items


def test_a_run_s_settings_come_back_as_created_and_round_1_uses_the_map(ws):
    run_id = create(ws, "http://127.0.0.1:9/v1", clusters=(1, 3), target=4, k=9)
    request = synthesis.run_request(synthesis.run_info(ws, run_id))
    assert request.proxy == TINY and request.config == CONFIG
    assert request.settings == synthesis.SynthesisSettings(clusters=(1, 3), target=4, k=9)
    fs = compute_features(ws, "demo", proxy=TINY, config=CONFIG)
    first = request.round1_clusters(fs)
    assert first.k == 9
    assert np.array_equal(first.labels, clusters_for(fs, k=9, seed=CONFIG.seed).labels)


def test_auto_run_survives_faults_and_accepts_only_thin_regions(ws):
    with FakeLLM(slow_seconds=5.0) as llm:
        llm.faults = ["ok"]  # the connection check; then the faults hit the run's requests
        llm.faults += ["429", "500", "slow", "malformed", "drop", "garbage", "429", "500"]
        llm.faults += ["message-string", "mixed-index", "usage-string", "tokens-abc"]
        run_id, summary = run(ws, llm, target=10, rounds=2)
    assert summary["state"] == "done" and summary["accepted"] >= 1
    items = check_counts(ws, run_id, summary)
    assert summary["g_vendi_after"] >= summary["g_vendi_before"]
    # round 1 clusters are the map's: accepted samples landed in its sparse clusters
    fs = compute_features(ws, "demo", proxy=TINY, config=CONFIG)
    first = clusters_for(fs, k=default_k(fs.rows), seed=CONFIG.seed)
    sparse = set(np.flatnonzero(sparse_clusters(first.sizes())).tolist())
    round1 = [i for i in items if i["round"] == 1 and i["status"] == "accepted"]
    assert round1 and all(i["landed_cluster"] in sparse for i in round1)
    dense = [i for i in items if i["reason_kind"] == "landed in a dense cluster"]
    assert all(f"cluster {i['landed_cluster']}" in i["reason"] for i in dense)
    assert synthesis.list_runs(ws)[0]["state"] == "done"


def test_targeted_run_fills_a_small_cluster(ws):
    fs = compute_features(ws, "demo", proxy=TINY, config=CONFIG)
    first = clusters_for(fs, k=default_k(fs.rows), seed=CONFIG.seed)
    smallest = int(np.argmin(first.sizes()))
    with FakeLLM() as llm:
        run_id, summary = run(ws, llm, clusters=(smallest,), target=6, rounds=2)
    items = check_counts(ws, run_id, summary)
    assert summary["accepted"] >= 1 and summary["g_vendi_after"] >= summary["g_vendi_before"]
    assert all(i["target_cluster"] == smallest for i in items if i["round"] == 1)
    round1 = [i for i in items if i["round"] == 1 and i["status"] == "accepted"]
    assert all(i["landed_cluster"] == smallest for i in round1)
    # the review table shows a reason for every rejection, and the reasons seen here
    reasons = {i["reason_kind"] for i in items if i["status"] == "rejected"}
    assert reasons <= KINDS and reasons
    runs = len(synthesis.list_runs(ws))
    with FakeLLM() as llm, pytest.raises(UserError, match="999 is not a cluster of the map"):
        run(ws, llm, clusters=(999,))
    assert len(synthesis.list_runs(ws)) == runs  # refused before any record


def test_parse_failures_refused_n_and_budgets(ws, monkeypatch):
    with FakeLLM(supports_n="refuse") as llm:
        monkeypatch.setattr(
            "tests.fake_llm.new_problems", lambda _prompt, _n, _salt: "no problems here, sorry"
        )
        run_id, summary = run(ws, llm, target=4, rounds=1)
    assert summary["accepted"] == 0 and summary["rejected"] == {
        "parse failure": summary["counts"]["items"]
    }
    monkeypatch.undo()
    with FakeLLM(supports_n="refuse") as llm:
        llm_settings = LLMSettings(base_url=llm.url, model="fake", max_requests=3)
        run_id = synthesis.create_run(
            ws,
            "demo",
            llm=llm_settings,
            settings=synthesis.SynthesisSettings(target=20),
            proxy=TINY,
            config=CONFIG,
        )
        summary = synthesis.run_synthesis(ws, run_id)
    assert summary["state"] == "budget" and "request budget of 3" in summary["note"]


def test_review_overrides_and_synthetic_records(ws):
    with FakeLLM() as llm:
        run_id, _ = run(ws, llm, target=6, rounds=1)
    items = synthesis.review(ws, run_id)
    accepted = [i for i in items if i["status"] == "accepted"]
    solved_rejected = [i for i in items if i["status"] == "rejected" and i["response"]]
    records = synthesis.synthetic_records(ws, "demo")
    assert len(records) == len(accepted)
    r = records[0]
    assert r.source == "synthetic" and r.id.startswith(f"syn-{run_id}-")
    assert {"run", "round", "cluster", "exemplar_ids", "generator", "votes"} <= set(r.meta)
    assert (
        r.meta["generator"] == "fake"
        and len(r.meta["exemplar_ids"]) >= 1
        and r.meta["votes"]["agreeing"] >= 2
    )
    synthesis.set_decision(ws, run_id, accepted[0]["item_id"], "rejected")
    if solved_rejected:
        synthesis.set_decision(ws, run_id, solved_rejected[0]["item_id"], "accepted")
    after = {x.id for x in synthesis.synthetic_records(ws, "demo")}
    assert f"syn-{run_id}-{accepted[0]['item_id']}" not in after
    assert len(after) == len(accepted) - 1 + bool(solved_rejected)
    synthesis.set_decision(
        ws, run_id, accepted[0]["item_id"], None
    )  # back to the automatic decision
    assert f"syn-{run_id}-{accepted[0]['item_id']}" in {
        x.id for x in synthesis.synthetic_records(ws, "demo")
    }
    unusable = next((i for i in items if not i["response"]), None)
    if unusable:
        with pytest.raises(UserError, match="no usable solution"):
            synthesis.set_decision(ws, run_id, unusable["item_id"], "accepted")


def test_sigkill_then_resume_sends_no_finished_request_twice(ws):
    """The CLI run is killed mid-way; --resume finishes it; requests logged before the kill
    reach the server once only; the API key is in no file of the workspace."""
    secret = "sk-test-7f3a9c-NEVER-STORE"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "OPENAI_API_KEY": secret,
        "PRISM_WORKSPACE": str(ws.root),
    }
    with FakeLLM() as llm:
        command = [
            sys.executable,
            "-m",
            "core",
            "synthesize",
            "demo",
            "--base-url",
            llm.url,
            "--model",
            "fake",
            "--proxy",
            "tiny-random",
            "--dim",
            "256",
            "--target",
            "16",
            "--rounds",
            "2",
            "--concurrency",
            "2",
            "--json",
        ]
        proc = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.time() + HANG_SECONDS
        while time.time() < deadline and len(llm.requests) < 8:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        err = proc.stderr.read()
        assert "run " in err and "started" in err
        run_id = err.split("run ", 1)[1].split(":", 1)[0]
        assert synthesis.run_info(ws, run_id)["state"] == "interrupted"
        log = next(ws.root.glob(f"datasets/*/runs/{run_id}/requests.jsonl"))
        before = {
            json.dumps(json.loads(line)["request"], sort_keys=True)
            for line in log.read_text().splitlines()
            if line.strip().endswith("}") and json.loads(line)["ok"]
        }
        assert before, "the kill came before any request finished"
        resumed = subprocess.run(
            [*command[:-1], "--resume", run_id, "--json"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
        )
        assert resumed.returncode == 0, resumed.stderr
        summary = json.loads(resumed.stdout)
        sent = [
            json.dumps({k: v for k, v in r.items() if k != "_ok"}, sort_keys=True)
            for r in llm.requests
        ]
    assert summary["run"] == run_id and summary["state"] == "done"
    assert summary["counts"]["requests_from_log"] >= len(before)
    for body in before:
        assert sent.count(body) == 1, "a finished request was sent again"
    for path in ws.root.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), f"the API key leaked into {path}"
    assert any(a == f"Bearer {secret}" for a in llm.auth)


def test_cli_errors_and_runs(cli, seeded, tmp_path):
    shutil.copytree(seeded, tmp_path / "ws", dirs_exist_ok=True)
    env = {"PRISM_WORKSPACE": str(tmp_path / "ws")}
    assert_user_error(cli("synthesize", "demo", "--proxy", "tiny-random", env=env), "--base-url")
    assert_user_error(
        cli(
            "synthesize",
            "demo",
            "--base-url",
            "localhost:1",
            "--model",
            "m",
            "--proxy",
            "tiny-random",
            "--dim",
            "256",
            env=env,
        ),
        "base URL",
    )
    assert_user_error(
        cli("synthesize", "demo", "--resume", "nope", env=env), "no synthesis run 'nope'"
    )
    assert_user_error(
        cli(
            "synthesize",
            "demo",
            "--clusters",
            "a,b",
            "--base-url",
            "http://x",
            "--model",
            "m",
            env=env,
        ),
        "--clusters",
    )
    r = cli("runs", "--json", env=env)
    assert r.code == 0 and r.json["runs"] == []  # bad settings start no run
    with FakeLLM() as llm:
        r = cli(
            "synthesize",
            "demo",
            "--base-url",
            llm.url,
            "--model",
            "fake",
            "--proxy",
            "tiny-random",
            "--dim",
            "256",
            "--target",
            "4",
            "--rounds",
            "1",
            "--json",
            env=env,
        )
    assert r.code == 0, r.err
    assert {"run", "accepted", "rejected", "g_vendi_before", "g_vendi_after"} <= set(r.json)
    runs = cli("runs", "demo", "--json", env=env).json["runs"]
    assert runs[0]["run"] == r.json["run"] and runs[0]["state"] == "done"


# --- runs that cannot work: failed, early, with the reason; nothing leaks --------------------


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("unreachable", "cannot connect"),
        ("401", "refused the API key"),
        ("404", "model `fake` does not exist"),
        ("silent", "no complete reply within 2 s"),
        ("https to http", "TLS failed"),
        ("no such host", "cannot resolve the host name 'no-such-host.invalid'"),
    ],
)
def test_a_run_that_cannot_work_fails_early_and_says_why(ws, case, says):
    secret = "sk-run-5e4d3c2b"
    with FakeLLM() as gone:
        pass  # a port where nothing listens any more
    with FakeLLM() as llm:
        llm.always = case if case in ("401", "404", "silent") else None
        url = {
            "unreachable": gone.url,
            "https to http": llm.url.replace("http:", "https:"),
            "no such host": "http://no-such-host.invalid/v1",
        }.get(case, llm.url)
        run_id = create(ws, url, timeout=2, max_retries=2)
        started = time.monotonic()
        with pytest.raises(synthesis.RunFailed, match=says) as caught:
            synthesis.run_synthesis(ws, run_id, api_key=secret)
        assert time.monotonic() - started < 60
    info = synthesis.run_info(ws, run_id)
    assert info["state"] == "failed" and says in info["error"]
    assert "connection check" in info["error"] and run_id in str(caught.value)
    assert secret not in info["error"] and secret not in str(caught.value)
    assert not synthesis.review(ws, run_id)  # it stopped before round 1


def test_a_run_whose_requests_all_fail_ends_failed_and_resumes_clean(ws):
    with FakeLLM() as llm:
        llm.faults = ["ok"] + ["500"] * 500  # the check passes; every request then fails
        run_id = create(ws, llm.url, max_retries=1, target=6, rounds=1)
        with pytest.raises(synthesis.RunFailed, match=r"all \d+ requests of round 1's problem"):
            synthesis.run_synthesis(ws, run_id)
        info = synthesis.run_info(ws, run_id)
        assert info["state"] == "failed" and "HTTP 500" in info["error"]
        items = synthesis.review(ws, run_id)
        assert items and all(i["reason_kind"] == "request failed" for i in items)
        assert info["counts"]["rejected"] == {"request failed": len(items)}
        llm.faults = []
        summary = synthesis.run_synthesis(ws, run_id)  # resumed once the server works
    assert summary["state"] == "done"
    items = check_counts(ws, run_id, summary)
    assert not [i for i in items if i["reason_kind"] == "request failed"]  # no stale failures


def test_the_key_echoed_by_a_server_is_stored_nowhere(ws):
    secret = "sk-echoed-1a2b3c4d"
    with FakeLLM() as llm:
        llm.faults = ["ok", "400", "400"]  # two requests fail with the header in the body
        run_id, summary = run(ws, llm, api_key=secret, target=6, rounds=1)
        assert summary["state"] == "done"
        failed = [i for i in synthesis.review(ws, run_id) if i["reason_kind"] == "request failed"]
        assert len(failed) == 2 and all("Bearer [redacted]" in i["reason"] for i in failed)
        llm.always = "401"
        run_id = create(ws, llm.url)
        with pytest.raises(synthesis.RunFailed, match="refused the API key") as caught:
            synthesis.run_synthesis(ws, run_id, api_key=secret)
        assert secret not in str(caught.value)
        assert llm.auth.count(f"Bearer {secret}") >= 3
    for path in ws.root.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), f"the API key leaked into {path}"


def test_settings_out_of_range_are_refused_before_a_run(ws):
    for settings, says in [
        ({"k": 1}, "k must be a fraction of the rows between 0 and 1 or a whole count"),
        ({"k": float("inf")}, "not inf"),
        ({"sparse_below": 0}, "sparse below must be more than 0 and at most 100, not 0"),
        ({"cap": 0}, "cap must be at least 1, not 0"),
        ({"target": 0}, "target must be at least 1, not 0"),
        ({"clusters": (-1,)}, "clusters -1 is not a cluster of the map: it has clusters 0 to"),
    ]:
        with pytest.raises(UserError, match=re.escape(says)):
            create(ws, "http://127.0.0.1:1/v1", **settings)
    assert synthesis.list_runs(ws) == []


def test_cli_range_checks_name_the_flag(cli, seeded, tmp_path):
    shutil.copytree(seeded, tmp_path / "ws", dirs_exist_ok=True)
    env = {"PRISM_WORKSPACE": str(tmp_path / "ws")}
    base = ["synthesize", "demo", "--base-url", "http://127.0.0.1:1/v1", "--model", "m"]
    base += ["--proxy", "tiny-random", "--dim", "256"]
    for flags, says in [
        (["--timeout", "0"], "--timeout must be more than 0 seconds, not 0"),
        (["--price-in", "-5"], "--price-in must be at least 0, not -5"),
        (["--cap", "-1"], "--cap must be at least 1, not -1"),
        (["--concurrency", "0"], "--concurrency must be at least 1, not 0"),
        (["--max-requests", "0"], "--max-requests must be at least 1, not 0"),
        (["--max-tokens", "0"], "--max-tokens must be at least 1, not 0"),
        (["--problems", "0"], "--problems must be at least 1, not 0"),
        (["--sparse-below", "101"], "--sparse-below must be more than 0 and at most 100"),
        (["--k", "nan"], "--k must be a fraction of the rows"),
        (["--clusters", "999"], "--clusters 999 is not a cluster of the map: it has clusters 0"),
    ]:
        assert_user_error(cli(*base, *flags, env=env), says)
    assert cli("runs", "--json", env=env).json["runs"] == []  # no run was recorded


def test_cli_a_failed_run_exits_2_with_the_reason(cli, seeded, tmp_path):
    shutil.copytree(seeded, tmp_path / "ws", dirs_exist_ok=True)
    env = {"PRISM_WORKSPACE": str(tmp_path / "ws"), "OPENAI_API_KEY": "sk-cli-0f9e8d7c"}
    with FakeLLM() as llm:
        llm.always = "401"
        r = cli(
            *["synthesize", "demo", "--base-url", llm.url, "--model", "fake"],
            *["--proxy", "tiny-random", "--dim", "256", "--json"],
            env=env,
        )
    assert r.code == 2 and r.out == "" and "Traceback" not in r.err
    errors = [line for line in r.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and r.err.splitlines()[-1] == errors[0]
    run_id = r.err.split("run ", 1)[1].split(":", 1)[0]
    assert f"run {run_id} failed: the connection check failed:" in errors[0]
    assert "HTTP 401" in errors[0] and f"--resume {run_id}" in errors[0]
    assert "sk-cli-0f9e8d7c" not in r.err and "Bearer [redacted]" in errors[0]
    runs = cli("runs", "--json", env=env).json["runs"]
    assert runs[0]["state"] == "failed" and "HTTP 401" in runs[0]["error"]
