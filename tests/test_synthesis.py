"""The synthesis loop against a real chat-completions server on 127.0.0.1 (tests/fake_llm.py):
faults, counts, acceptance in gradient space, review, resume after SIGKILL, no key stored."""

from __future__ import annotations

import json
import os
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
from tests.conftest import REPO, assert_user_error
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


def run(ws, llm, **settings) -> tuple[str, dict]:
    llm_settings = LLMSettings(
        base_url=llm.url,
        model="fake",
        concurrency=4,
        backoff=0.01,
        max_backoff=0.05,
        timeout=1.0,
        max_retries=8,
    )
    run_id = synthesis.create_run(
        ws,
        "demo",
        llm=llm_settings,
        settings=synthesis.SynthesisSettings(**settings),
        proxy=TINY,
        config=CONFIG,
    )
    return run_id, synthesis.run_synthesis(ws, run_id)


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


def test_auto_run_survives_faults_and_accepts_only_thin_regions(ws):
    with FakeLLM(slow_seconds=2.0) as llm:
        llm.faults = ["429", "500", "slow", "malformed", "drop", "garbage", "429", "500"]
        run_id, summary = run(ws, llm, target=10, rounds=2)
    assert summary["state"] == "done" and summary["accepted"] >= 1
    items = check_counts(ws, run_id, summary)
    assert summary["g_vendi_after"] >= summary["g_vendi_before"]
    # round 1 clusters are the map's: accepted samples landed in its sparse clusters
    fs = compute_features(ws, "demo", proxy=TINY, config=CONFIG)
    first = clusters_for(ws, fs, k=default_k(fs.rows), seed=CONFIG.seed)
    sparse = set(np.flatnonzero(sparse_clusters(first.sizes())).tolist())
    round1 = [i for i in items if i["round"] == 1 and i["status"] == "accepted"]
    assert round1 and all(i["landed_cluster"] in sparse for i in round1)
    dense = [i for i in items if i["reason_kind"] == "landed in a dense cluster"]
    assert all(f"cluster {i['landed_cluster']}" in i["reason"] for i in dense)
    assert synthesis.list_runs(ws)[0]["state"] == "done"


def test_targeted_run_fills_a_small_cluster(ws):
    fs = compute_features(ws, "demo", proxy=TINY, config=CONFIG)
    first = clusters_for(ws, fs, k=default_k(fs.rows), seed=CONFIG.seed)
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
    with FakeLLM() as llm, pytest.raises(UserError, match="no cluster 999"):
        run(ws, llm, clusters=(999,))


def test_parse_failures_refused_n_and_budgets(ws, monkeypatch):
    with FakeLLM(supports_n="refuse") as llm:
        monkeypatch.setattr(
            "tests.fake_llm.new_problems", lambda prompt, n, salt: "no problems here, sorry"
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


def test_sigkill_then_resume_sends_no_finished_request_twice(ws, tmp_path):
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
        deadline = time.time() + 120
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
