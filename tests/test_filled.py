"""What a synthesis run filled (core/filled.py): the per-cluster table adds up to the run's
items, live and after overrides; the G-Vendi figures; the equal-size comparison; the run's
samples placed on the map; `runs RUN` on the command line."""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from core import filled, synthesis
from core.catalogue import CURATOR_REJECTED
from core.config import FeatureConfig
from core.demo import ensure_demo
from core.errors import UserError
from core.features import compute_features
from core.layout import place
from core.maps import clusters_for, describe
from core.regions import default_k
from core.vendi import g_vendi, kernel_eigenvalues, score_with, spectrum, swapped, vendi
from core.workspace import Workspace
from tests.conftest import assert_user_error
from tests.fake_llm import FakeLLM
from tests.test_synthesis import CONFIG, TINY, create


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, str, list[dict]]:
    """A workspace with the demo, its features and one finished two-round run whose items
    were rejected for several reasons (a failed request, a reply without problems, no
    answer, and the loop's own); the fill table taken at each update of the run."""
    root = tmp_path_factory.mktemp("filled") / "ws"
    ws = Workspace(root)
    ensure_demo(ws)
    compute_features(ws, "demo", proxy=TINY, config=CONFIG)
    seen: list[dict] = []
    with FakeLLM() as llm:
        # the check passes; then one generation request fails (400: not retried) and one is
        # answered with prose (a parse failure); a solution request later gets prose too
        llm.faults = ["ok", "400", "prose", "ok", "ok", "ok", "ok", "ok", "ok", "prose"]
        run_id = create(ws, llm.url, target=10, rounds=2)
        synthesis.run_synthesis(
            ws, run_id, on_update=lambda _: seen.append(filled.fill_table(ws, run_id))
        )
    return root, run_id, seen


@pytest.fixture
def ws(finished, tmp_path) -> Workspace:
    shutil.copytree(finished[0], tmp_path / "ws")
    return Workspace(tmp_path / "ws")


def check_adds_up(table: dict) -> None:
    """Every item in exactly one row: the rows add up to the run's counts."""
    rows, counts = table["clusters"], table["counts"]
    assert sum(r["items"] for r in rows) == counts["items"]
    assert sum(r["made_for"] for r in rows) == counts["items"]
    assert sum(r["accepted"] for r in rows) == counts["accepted"]
    assert sum(r["pending"] for r in rows) == counts["pending"]
    assert sum(r["rejected_total"] for r in rows) == counts["rejected_total"]
    by_reason: Counter = Counter()
    for r in rows:
        assert r["items"] == r["accepted"] + r["rejected_total"] + r["pending"]
        assert r["rejected_total"] == sum(r["rejected"].values())
        assert r["size_after"] == r["size_before"] + r["accepted"]
        by_reason.update(r["rejected"])
    assert dict(by_reason) == counts["rejected"]
    assert len({r["cluster"] for r in rows}) == len(rows)


def test_the_table_adds_up_to_the_run_s_items(finished, ws):
    _, run_id, _ = finished
    table = filled.fill_table(ws, run_id)
    items = synthesis.review(ws, run_id)
    assert table["counts"]["items"] == len(items) and table["state"] == "done"
    check_adds_up(table)
    kinds = set(table["counts"]["rejected"])
    assert {"request failed", "parse failure", "no answer"} <= kinds and len(kinds) >= 4
    # round 1: an accepted item is in the row of the map cluster it landed in; a rejected
    # one in the row of the cluster it was made for (round 1's clusters are the map's)
    landed = Counter(
        i["landed_cluster"] for i in items if i["round"] == 1 and i["status"] == "accepted"
    )
    rows = {r["cluster"]: r for r in table["clusters"]}
    for cluster, n in landed.items():
        assert rows[cluster]["accepted"] >= n
    for i in items:
        if i["round"] == 1 and i["status"] == "rejected":
            assert i["target_cluster"] in rows
    # the seed's sizes and G-Vendi are the map's
    fs = compute_features(ws, "demo", proxy=TINY, config=CONFIG)
    clustering = clusters_for(fs, k=default_k(fs.rows), seed=CONFIG.seed)
    described = {c["id"]: c for c in describe(ws, "demo", fs, clustering)}
    for r in table["clusters"]:
        assert r["size_before"] == described[r["cluster"]]["size"]
        assert r["sparse"] == described[r["cluster"]]["sparse"]
        assert r["g_vendi_before"] == pytest.approx(described[r["cluster"]]["g_vendi"], rel=1e-6)
        if r["accepted"]:
            assert r["g_vendi_after"] != r["g_vendi_before"]
        else:
            assert r["g_vendi_after"] == r["g_vendi_before"]
    # the whole set: as the loop measured it (no override yet: the same accepted samples)
    info = synthesis.run_info(ws, run_id)
    whole = table["whole"]
    assert whole["g_vendi_before"] == pytest.approx(info["g_vendi_before"], rel=1e-6)
    assert whole["g_vendi_after"] == pytest.approx(info["g_vendi_after"], rel=1e-6)
    assert (
        whole["rows_after"]
        == whole["rows_before"] + table["counts"]["accepted"]
        == 360 + table["counts"]["accepted"]
    )
    assert table["accepted_without_features"] == 0


def test_overrides_move_items_and_still_add_up(finished, ws):
    _, run_id, _ = finished
    items = synthesis.review(ws, run_id)
    accepted = [i for i in items if i["decision"] == "accepted"]
    usable = [i for i in items if i["decision"] == "rejected" and i["response"]]
    synthesis.set_decision(ws, run_id, accepted[0]["item_id"], "rejected")
    synthesis.set_decision(ws, run_id, usable[0]["item_id"], "accepted")
    table = filled.fill_table(ws, run_id)
    check_adds_up(table)
    assert table["counts"]["rejected"][CURATOR_REJECTED] == 1
    assert table["counts"]["accepted"] == len(accepted)
    # G-Vendi after is that of the seed with the samples accepted now
    fs = compute_features(ws, "demo", proxy=TINY, config=CONFIG)
    vectors = synthesis.run_features(ws, synthesis.run_info(ws, run_id))
    now = [
        vectors[i["item_id"]] for i in synthesis.review(ws, run_id) if i["decision"] == "accepted"
    ]
    expected = g_vendi(np.vstack([fs.matrix(), np.array(now)]).astype(np.float32))
    assert table["whole"]["g_vendi_after"] == pytest.approx(expected, rel=1e-6)


def test_the_table_adds_up_while_the_run_goes(finished):
    seen = finished[2]
    assert len(seen) >= 4
    assert [t["state"] for t in seen] == ["running"] * (len(seen) - 1) + ["done"]
    for table in seen:
        check_adds_up(table)
    assert any(t["counts"]["pending"] for t in seen)  # problems not yet solved, counted
    assert seen[0]["counts"]["items"] <= seen[-1]["counts"]["items"]


def test_the_equal_size_comparison_is_deterministic_for_a_seed(finished, ws):
    _, run_id, _ = finished
    first = filled.fill_table(ws, run_id, seed=3)["whole"]["equal_size"]
    again = filled.fill_table(ws, run_id, seed=3)["whole"]["equal_size"]
    other = filled.fill_table(ws, run_id, seed=4)["whole"]["equal_size"]
    assert first == again
    assert first["mean"] != other["mean"]
    assert (
        first["rows"] == 360
        and first["swapped"] == filled.fill_table(ws, run_id)["counts"]["accepted"]
    )
    assert first["sd"] > 0 and first["repeats"] == filled.REPEATS
    assert first["gain"] == pytest.approx(first["mean"] - first["seed_g_vendi"])
    unmeasured = filled.fill_table(ws, run_id, repeats=0)["whole"]
    assert unmeasured["equal_size"] is None
    assert unmeasured["equal_size_note"] == "repeats = 0: no draws asked for"


def test_swapped_is_the_score_of_the_set_with_the_rows_swapped(monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 16)).astype(np.float32)
    extra = rng.normal(size=(7, 16)).astype(np.float32)
    mean, sd = swapped(x, spectrum(x), extra, repeats=4, seed=11)
    draws = np.random.default_rng(11)
    scores = []
    for _ in range(4):
        out = np.sort(draws.choice(200, 7, replace=False))
        scores.append(vendi(kernel_eigenvalues(np.vstack([np.delete(x, out, 0), extra]))))
    assert mean == pytest.approx(np.mean(scores), rel=1e-5)
    assert sd == pytest.approx(np.std(scores), rel=1e-3, abs=1e-6)
    rows = np.array([3, 50, 120])
    assert score_with(x, rows, extra) == pytest.approx(
        vendi(kernel_eigenvalues(np.vstack([x[rows], extra]))), rel=1e-9
    )
    in_memory = score_with(x, np.arange(0, 200, 3), extra)
    monkeypatch.setattr("core.vendi.GROUP_ROWS", 10)  # a large cluster: its moment streamed
    assert score_with(x, np.arange(0, 200, 3), extra) == pytest.approx(in_memory, rel=1e-5)
    with pytest.raises(ValueError):
        swapped(x, spectrum(x), np.empty((0, 16)))


def test_nothing_accepted_has_no_equal_size_comparison(finished, ws):
    _, run_id, _ = finished
    for item in synthesis.review(ws, run_id):
        if item["decision"] == "accepted":
            synthesis.set_decision(ws, run_id, item["item_id"], "rejected")
    whole = filled.fill_table(ws, run_id)["whole"]
    assert whole["equal_size"] is None and whole["equal_size_note"] == "nothing accepted yet"
    assert whole["g_vendi_after"] == whole["g_vendi_before"] and whole["gain"] == 0


def test_place_puts_a_point_among_its_nearest_rows(monkeypatch):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    coords = rng.normal(size=(300, 2)).astype(np.float32)
    new = x[[5, 77]] * 3  # the same directions as rows 5 and 77
    assert np.allclose(place(x, coords, new, neighbours=1), coords[[5, 77]])
    monkeypatch.setattr("core.layout.PLACE_BLOCK", 64)  # the nearest rows found across blocks
    assert np.allclose(place(x, coords, new, neighbours=1), coords[[5, 77]])
    cos = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (new[0] / np.linalg.norm(new[0]))
    nearest = np.argsort(-cos)[:4]
    w = cos[nearest]
    assert np.allclose(
        place(x, coords, new[:1], neighbours=4)[0], w @ coords[nearest] / w.sum(), atol=1e-5
    )
    assert place(x, coords, np.empty((0, 8))).shape == (0, 2)


def test_run_points_places_the_accepted_and_optionally_the_rejected(finished, ws):
    _, run_id, _ = finished
    fs = compute_features(ws, "demo", proxy=TINY, config=CONFIG)
    coords = np.random.default_rng(0).normal(size=(fs.rows, 2)).astype(np.float32)
    items = synthesis.review(ws, run_id)
    vectors = synthesis.run_features(ws, synthesis.run_info(ws, run_id))
    shown = filled.run_points(ws, run_id, fs, coords)
    accepted = [i for i in items if i["decision"] == "accepted"]
    assert sorted(p["item_id"] for p in shown["points"]) == sorted(i["item_id"] for i in accepted)
    assert shown["not_placed"] == 0 and all(p["decision"] == "accepted" for p in shown["points"])
    landed = {i["item_id"]: i["landed_cluster"] for i in accepted if i["round"] == 1}
    assert landed and all(
        p["cluster"] == landed[p["item_id"]] for p in shown["points"] if p["item_id"] in landed
    )
    # the clusters named are the run's round-1 map's, whose k the points say
    assert {p["map_k"] for p in shown["points"]} == {default_k(fs.rows)}
    both = filled.run_points(ws, run_id, fs, coords, rejected=True)
    rejected = [i for i in items if i["decision"] == "rejected"]
    placed_rejected = [p for p in both["points"] if p["decision"] == "rejected"]
    assert len(placed_rejected) == sum(i["item_id"] in vectors for i in rejected) > 0
    assert both["not_placed"] == sum(i["item_id"] not in vectors for i in rejected) > 0
    lo, hi = coords.min(0), coords.max(0)
    for p in both["points"]:
        assert lo[0] <= p["x"] <= hi[0] and lo[1] <= p["y"] <= hi[1]
    assert filled.placeable_runs(ws, "demo", fs) == [run_id]
    other = compute_features(ws, "demo", proxy=TINY, config=FeatureConfig(dim=64))
    assert filled.placeable_runs(ws, "demo", other) == []
    with pytest.raises(UserError, match="other feature settings"):
        filled.run_points(ws, run_id, other, coords[:, :2])


def close(a, b) -> bool:
    """Equal JSON values, floats to 1e-9 (another process's eigendecomposition)."""
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(close, a, b))
    return a == b


def test_cli_runs_run_is_the_core_table(finished, ws, cli):
    _, run_id, _ = finished
    env = {"PRISM_WORKSPACE": str(ws.root)}
    r = cli("runs", run_id, "--json", env=env)
    assert r.code == 0, r.err
    assert close(r.json, json.loads(json.dumps(filled.fill_table(ws, run_id))))
    r = cli("runs", run_id, "--json", "--seed", "3", "--repeats", "2", env=env)
    assert close(r.json, json.loads(json.dumps(filled.fill_table(ws, run_id, seed=3, repeats=2))))
    text = cli("runs", run_id, env=env).out
    table = filled.fill_table(ws, run_id)
    assert f"{table['counts']['items']} items" in text and "equal size: 360 rows" in text
    unmeasured = cli("runs", run_id, "--repeats", "0", env=env).out
    assert "equal size: none (repeats = 0: no draws asked for)" in unmeasured
    assert sum(1 for line in text.splitlines() if line.split()[0].isdigit()) == len(
        table["clusters"]
    )
    listed = cli("runs", "demo", "--json", env=env)  # a dataset's name still lists its runs
    assert [x["run"] for x in listed.json["runs"]] == [run_id]
    assert_user_error(
        cli("runs", "20991231-000000-abcdef", env=env),
        "no dataset or synthesis run named '20991231-000000-abcdef'",
        run_id,
    )
    assert_user_error(cli("runs", run_id, "--repeats", "-1", env=env), "--repeats")
