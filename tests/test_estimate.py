"""How long computing features takes, said before starting: token counts (exact, or
sampled and extrapolated), a timed calibration batch, the CLI (`embed --estimate`, and on a
terminal before any computation) and what it says about GPU work."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from core.config import FeatureConfig, ProxySpec, Runtime
from core.demo import demo_rows
from core.estimate import Estimate, TokenCounts, duration, estimate_features
from core.features import feature_sets
from core.proxy import load_proxy
from core.workspace import Workspace
from tests.conftest import assert_user_error, write_jsonl

TINY = ProxySpec("tiny-random")
CONFIG = FeatureConfig(dim=64, max_length=128)


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    """Dataset `once` (60 demo rows) and `twice` (the same rows twice, other ids)."""
    folder = tmp_path_factory.mktemp("est")
    rows = [{"question": r["question"], "answer": r["answer"]} for r in demo_rows(60)]
    ws = Workspace(folder / "ws")
    ws.import_dataset(write_jsonl(folder / "once.jsonl", rows), name="once")
    doubled = [{**r, "id": f"{copy}-{i}"} for copy in "ab" for i, r in enumerate(rows)]
    ws.import_dataset(write_jsonl(folder / "twice.jsonl", doubled), name="twice")
    return ws


def exact_lengths(ws: Workspace, name: str) -> np.ndarray:
    """Each record's token count as the proxy encodes it for features, uncut."""
    import pyarrow.parquet as pq

    proxy = load_proxy("tiny-random", device="cpu")
    table = pq.read_table(ws.dataset(name).path, columns=["prompt", "response"]).to_pylist()
    encoded = [proxy.encode(r["prompt"], r["response"], max_length=10**9) for r in table]
    return np.array([len(e.ids) for e in encoded])


def test_token_counts_are_exact_and_double_with_the_data(ws):
    once = estimate_features(ws, "once", proxy=TINY, config=CONFIG)
    twice = estimate_features(ws, "twice", proxy=TINY, config=CONFIG)
    lengths = exact_lengths(ws, "once")
    t = once.tokens
    assert (t.rows, t.counted, t.sampled) == (60, 60, False)
    assert t.total == lengths.sum() and t.max == lengths.max()
    assert (
        t.computed == np.minimum(lengths, 128).sum() and t.over_max_length == (lengths > 128).sum()
    )
    assert t.mean == pytest.approx(lengths.mean(), abs=0.05)
    assert t.p95 == pytest.approx(np.percentile(lengths, 95), abs=0.05)
    assert 0 < t.over_max_length < 60  # the max length cuts some, not all
    # twice the rows: twice the tokens, the same per-sample figures
    u = twice.tokens
    assert (u.total, u.computed, u.over_max_length) == (
        2 * t.total,
        2 * t.computed,
        2 * t.over_max_length,
    )
    assert (u.mean, u.p95, u.max) == (t.mean, t.p95, t.max)
    for e in (once, twice):  # the time follows the tokens at the measured rate
        assert e.seconds > 0 and e.tokens_per_second > 0
        assert e.seconds == pytest.approx(e.tokens.computed / e.tokens_per_second, rel=0.01)
        assert e.calibration["samples"] >= 1 and e.calibration["tokens"] >= 256
        assert e.device == "cpu" and e.rows_left == e.tokens.rows
    assert feature_sets(ws, "once") == []  # nothing computed or stored


def test_a_large_dataset_is_counted_on_a_sample_and_says_so(ws):
    sampled = estimate_features(ws, "twice", proxy=TINY, config=CONFIG, sample_rows=30)
    t = sampled.tokens
    assert t.sampled and t.counted == 30 and t.rows == 120
    assert sampled.to_dict()["tokens"]["sampled"] is True
    assert "counted on a random 30 of the 120 rows, extrapolated" in sampled.lines()[1]
    exact = exact_lengths(ws, "twice").sum()
    assert 0.7 * exact < t.total < 1.3 * exact  # a seeded sample's extrapolation


def test_what_the_estimate_says():
    tokens = TokenCounts(
        1_000_000, 10_000, 412_000_000, 380_000_000, 412.0, 820.0, 2011, 31_000, 512
    )
    slow = Estimate(
        "big",
        "Qwen/Qwen2.5-0.5B-Instruct",
        "factorized",
        "cpu",
        tokens,
        {"batches": 1, "samples": 3, "tokens": 1200, "seconds": 12.0},
        100.0,
        3_800_000.0,
        1_000_000,
    )
    first, counts, advice = slow.lines()
    assert first.startswith("about 43 d 23 h on cpu for 1,000,000 samples: 380,000,000 tokens")
    assert "mean 412, p95 820, max 2,011; 412,000,000 in all; 31,000 samples (3.1%)" in counts
    assert "this is GPU work" in advice and "features-import" in advice
    assert slow.to_dict()["gpu_work"] is True
    resumed = replace(slow, device="cuda", seconds=600.0, rows_left=250_000)
    assert resumed.seconds_left == 150.0 and not resumed.gpu_work and len(resumed.lines()) == 2
    assert "(250,000 of 1,000,000 rows left)" in resumed.lines()[0]
    assert [duration(s) for s in (0.2, 42, 600, 3 * 3600 + 300, 3 * 86400 + 7200)] == [
        "1 s",
        "42 s",
        "10 min",
        "3 h 5 min",
        "3 d 2 h",
    ]


def test_embed_estimate_on_the_command_line(cli, ws):
    env = {"PRISM_WORKSPACE": str(ws.root)}
    got = cli(
        "embed",
        "once",
        "--proxy",
        "tiny-random",
        "--dim",
        "64",
        "--max-length",
        "64",
        "--estimate",
        "--json",
        env=env,
    )
    assert got.code == 0, got.err
    data = got.json
    assert data["tokens"]["rows"] == 60 and data["seconds"] > 0 and data["device"] == "cpu"
    assert data["cached"] is False and set(data["calibration"]) == {
        "batches",
        "samples",
        "tokens",
        "seconds",
    }
    assert feature_sets(ws, "once") == []
    plain = cli("embed", "once", "--proxy", "tiny-random", "--estimate", env=env)
    assert plain.out.startswith("estimate: about ") and "tokens per sample" in plain.out
    assert_user_error(
        cli("embed", "once", "--estimate", "--out", "x.npy", env=env), "--estimate computes nothing"
    )


def test_a_computation_on_a_terminal_says_its_estimate_first(cli, workspace_dir, tmp_path):
    ws = Workspace(workspace_dir)
    rows = [{"question": r["question"], "answer": r["answer"]} for r in demo_rows(30)]
    ws.import_dataset(write_jsonl(tmp_path / "d.jsonl", rows), name="d")
    r = cli("embed", "d", "--proxy", "tiny-random", "--dim", "32", terminal=True)
    assert r.code == 0, r.err
    assert r.out.startswith("30 x 32 factorized features")
    assert (
        "estimate: about " in r.err and "for 30 samples" in r.err and "tokens per sample" in r.err
    )


def test_the_calibration_batches_grow_to_the_token_budget(ws):
    """A token budget of 512: a batch of 256 tokens, then batches of 512 (each sample adds
    at most 128) timed until a second in all; or, on a very slow machine, the first batch
    alone once it lasts a second."""
    e = estimate_features(ws, "once", proxy=TINY, config=CONFIG, runtime=Runtime(token_budget=512))
    c = e.calibration
    assert 1 <= c["batches"] <= 8 and (c["seconds"] >= 1.0 or c["batches"] == 8)
    assert 512 <= c["tokens"] / c["batches"] < 512 + 128 or (
        c["batches"] == 1 and c["seconds"] >= 1
    )
    assert e.tokens_per_second == pytest.approx(c["tokens"] / c["seconds"])
