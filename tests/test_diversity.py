"""The diversity report and the comparison, through the core API and the CLI verbs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core import diversity
from core.config import FeatureConfig, ProxySpec
from core.errors import UserError
from core.features import compute_features
from core.vendi import g_vendi
from core.workspace import Workspace
from tests.conftest import assert_user_error, write_jsonl
from tests.test_features import demo_file

TINY = ProxySpec("tiny-random")
SMALL = FeatureConfig(dim=64)


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    tmp = tmp_path_factory.mktemp("div")
    ws = Workspace(tmp / "ws")
    from core.demo import demo_rows

    rows = demo_rows(120)
    write_jsonl(tmp / "demo.jsonl", rows)
    ws.import_dataset(tmp / "demo.jsonl", name="demo")
    ws.import_dataset(demo_file(tmp / "small.jsonl", 30), name="small")
    # the same problem over and over: as undiverse as data gets
    write_jsonl(
        tmp / "same.jsonl",
        [{"question": "What is 2 + 2?", "answer": f"It is 4. ({i})"} for i in range(30)],
    )
    ws.import_dataset(tmp / "same.jsonl", name="same")
    return ws


def test_score_matches_the_features(ws):
    result = diversity.score(ws, "demo", proxy=TINY, config=SMALL)
    matrix = compute_features(ws, "demo", proxy=TINY, config=SMALL).matrix()
    assert result["rows"] == 120
    assert result["g_vendi"] == pytest.approx(g_vendi(matrix), rel=1e-9)
    assert set(result["orders"]) == {"0.5", "1", "2", "inf"}
    assert (
        result["orders"]["0.5"]
        >= result["orders"]["1"]
        >= result["orders"]["2"]
        >= result["orders"]["inf"]
    )
    assert result["warnings"] and "not meaningful" in result["warnings"][0]


def test_groups_by_field_source_and_cluster(ws, monkeypatch):
    by_family = diversity.score(ws, "demo", proxy=TINY, config=SMALL, by="family")
    assert sum(g["rows"] for g in by_family["groups"]) == 120 and len(by_family["groups"]) >= 10
    by_source = diversity.score(ws, "demo", proxy=TINY, config=SMALL, by="source")
    assert by_source["groups"] == [
        {"group": "seed", "rows": 120, "g_vendi": pytest.approx(by_source["g_vendi"])}
    ]
    clusters = diversity.score(ws, "demo", proxy=TINY, config=SMALL, by="cluster", k=4)
    assert len(clusters["groups"]) == 4 and sum(g["rows"] for g in clusters["groups"]) == 120
    with pytest.raises(
        UserError, match=r"no field 'colour'.*cluster, source or one of: difficulty, family, final"
    ):
        diversity.score(ws, "demo", proxy=TINY, config=SMALL, by="colour")
    monkeypatch.setattr(diversity, "MAX_GROUPS", 20)  # 'final' (the answers) is not categorical
    with pytest.raises(
        UserError, match=r"field 'final' has \d+ distinct values; group by a categorical"
    ):
        diversity.score(ws, "demo", proxy=TINY, config=SMALL, by="final")


def test_redundant_samples_are_sorted(ws):
    fs = compute_features(ws, "demo", proxy=TINY, config=SMALL)
    rows = diversity.redundant(ws, "demo", fs, limit=5)
    values = [r["marginal_value"] for r in rows]
    assert values == sorted(values) and len(rows) == 5
    assert all(r["prompt"] and r["id"].startswith("demo-") for r in rows)


def test_compare_and_equal_size(ws):
    result = diversity.compare(ws, ["demo", "small", "same"], proxy=TINY, config=SMALL)
    names = [d["name"] for d in result["datasets"]]
    assert (
        names == ["demo", "small", "same"]
        and result["sizes_differ"]
        and result["equal_size"] is None
    )
    equal = diversity.compare(
        ws, ["demo", "small", "same"], proxy=TINY, config=SMALL, equal=True, repeats=3
    )
    assert equal["equal_size"] == 30
    scores = {d["name"]: d for d in equal["datasets"]}
    assert all(d["rows_used"] == 30 for d in equal["datasets"])
    assert scores["demo"]["g_vendi_full"] > scores["demo"]["g_vendi"]  # more rows, higher score
    assert (
        scores["same"]["g_vendi"] < scores["small"]["g_vendi"]
    )  # one problem repeated is least diverse
    with pytest.raises(UserError, match="once"):
        diversity.compare(ws, ["demo", "demo"], proxy=TINY, config=SMALL)


def test_baselines(ws):
    result = diversity.baselines(ws, "small")
    assert result["sentence_vendi"] is not None and 1 < result["sentence_vendi"] <= 30
    assert set(result["distinct_n"]) == {"1", "2", "3", "4"}
    assert result["distinct_n"]["1"] < result["distinct_n"]["4"] <= 1
    assert result["mean_response"]["chars"] > 0
    same = diversity.baselines(ws, "same")
    assert same["sentence_vendi"] < result["sentence_vendi"]
    assert same["distinct_n"]["2"] < result["distinct_n"]["2"]
    missing = diversity.baselines(ws, "small", sentence_model="no-such-org/no-such-model")
    assert missing["sentence_vendi"] is None and "unavailable" in missing["sentence_error"]
    assert missing["distinct_n"] == result["distinct_n"]  # the rest still comes back


def test_score_and_compare_cli(cli, tmp_path):
    assert cli("import", str(demo_file(tmp_path / "a.jsonl", 40)), "--name", "a").code == 0
    assert cli("import", str(demo_file(tmp_path / "b.jsonl", 20)), "--name", "b").code == 0
    r = cli(
        "score",
        "a",
        "--proxy",
        "tiny-random",
        "--dim",
        "64",
        "--json",
        "--bootstrap",
        "20",
        "--by",
        "cluster",
        "--k",
        "3",
        "--redundant",
        "4",
    )
    assert r.code == 0, r.err
    assert r.json["rows"] == 40 and r.json["g_vendi"] > 1
    assert r.json["interval"]["low"] < r.json["g_vendi"] < r.json["interval"]["high"]
    assert len(r.json["groups"]) == 3 and len(r.json["redundant"]) == 4
    r = cli("compare", "a", "b", "--proxy", "tiny-random", "--dim", "64", "--json")
    assert [(d["name"], d["rows"]) for d in r.json["datasets"]] == [("a", 40), ("b", 20)]
    human = cli("compare", "a", "b", "--proxy", "tiny-random", "--dim", "64")
    assert "add --equal-size" in human.out
    r = cli("compare", "a", "b", "--proxy", "tiny-random", "--dim", "64", "--equal-size", "--json")
    assert r.json["equal_size"] == 20 and all(d["rows_used"] == 20 for d in r.json["datasets"])
    assert_user_error(cli("score", "a", "--proxy", "tiny-random", "--q", "x"), "--q")
    assert_user_error(
        cli("score", "a", "--proxy", "tiny-random", "--dim", "64", "--by", "nope"),
        "no field 'nope'",
    )
    assert_user_error(
        cli("compare", "a", "zzz", "--proxy", "tiny-random"), "no dataset named 'zzz'"
    )
    r = cli("score", "b", "--proxy", "tiny-random", "--dim", "64", "--baselines", "--json")
    assert r.json["baselines"]["sentence_vendi"] > 1
    assert json.dumps(r.json)  # plain JSON all the way down
    assert np.isfinite(r.json["orders"]["inf"])
