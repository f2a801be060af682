"""The diversity report and the comparison, through the core API and the CLI verbs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core import diversity
from core.config import FeatureConfig, ProxySpec
from core.errors import UserError
from core.features import compute_features, feature_sets
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


def test_score_and_compare_cli(cli, tmp_path, workspace_dir):
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
    # compare: test_compare_cli_with_and_without_equal_size
    # bad options are refused before features are computed (hours, on a large dataset)
    before = [s["key"] for s in feature_sets(Workspace(workspace_dir), "a")]
    assert_user_error(cli("score", "a", "--proxy", "tiny-random", "--q", "x"), "--q")
    assert_user_error(cli("compare", "a", "b", "--proxy", "tiny-random", "--q", "-1"), "--q")
    assert_user_error(
        cli("score", "a", "--proxy", "tiny-random", "--dim", "48", "--by", "nope"),
        "no field 'nope'",
    )
    assert [s["key"] for s in feature_sets(Workspace(workspace_dir), "a")] == before
    assert_user_error(
        cli("compare", "a", "zzz", "--proxy", "tiny-random"), "no dataset named 'zzz'"
    )
    r = cli("score", "b", "--proxy", "tiny-random", "--dim", "64", "--baselines", "--json")
    assert r.json["baselines"]["sentence_vendi"] > 1
    assert json.dumps(r.json)  # plain JSON all the way down
    assert np.isfinite(r.json["orders"]["inf"])


def steps_of(job) -> list[tuple[int, int | None]]:
    """Run job(on_progress) and return what it reported."""
    seen: list[tuple[int, int | None]] = []
    job(lambda done, total: seen.append((done, total)))
    return seen


def assert_moves(seen: list[tuple[int, int | None]], at_least: int = 3) -> None:
    """Progress that goes forward through several values to the end, never back."""
    fractions = [done / total for done, total in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert len({f for f in fractions if 0 < f < 1}) >= at_least, fractions


def test_compare_without_equal_sizes_gives_bootstrap_intervals(ws):
    plain = diversity.compare(ws, ["demo", "small"], proxy=TINY, config=SMALL, replicates=20)
    assert plain["replicates"] == 20
    for entry in plain["datasets"]:
        assert entry["low"] < entry["g_vendi"] < entry["high"] and entry["level"] == 0.95
        alone = diversity.score(
            ws, entry["name"], proxy=TINY, config=SMALL, replicates=20
        )  # the same interval as the dataset's own score
        assert entry["g_vendi"] == pytest.approx(alone["g_vendi"])
        assert (entry["low"], entry["high"]) == pytest.approx(
            (alone["interval"]["low"], alone["interval"]["high"])
        )
    # equal sizes: each dataset has the subsamples' sd, not an interval of the full data
    equal = diversity.compare(
        ws, ["demo", "small"], proxy=TINY, config=SMALL, equal=True, replicates=20
    )
    assert all("std" in d and "low" not in d for d in equal["datasets"])
    assert equal["replicates"] == 0
    bare = diversity.compare(ws, ["demo", "small"], proxy=TINY, config=SMALL)
    assert all("low" not in d for d in bare["datasets"]) and bare["replicates"] == 0


def test_long_work_reports_progress_to_the_end(ws):
    fs = compute_features(ws, "demo", proxy=TINY, config=SMALL)
    assert_moves(
        steps_of(
            lambda bar: diversity.score(
                ws, "demo", proxy=TINY, config=SMALL, replicates=10, on_progress=bar
            )
        ),
        at_least=10,  # every bootstrap replicate moves the bar
    )
    assert_moves(
        steps_of(
            lambda bar: diversity.score(
                ws, "demo", proxy=TINY, config=SMALL, by="cluster", k=5, seed=1, on_progress=bar
            )
        )
    )
    assert_moves(steps_of(lambda bar: diversity.redundant(ws, "demo", fs, on_progress=bar)))
    assert_moves(
        steps_of(
            lambda bar: diversity.compare(
                ws,
                ["demo", "small", "same"],
                proxy=TINY,
                config=SMALL,
                replicates=5,
                on_progress=bar,
            )
        ),
        at_least=10,
    )
    assert_moves(
        steps_of(
            lambda bar: diversity.compare(
                ws, ["demo", "small"], proxy=TINY, config=SMALL, equal=True, on_progress=bar
            )
        ),
        at_least=5,
    )
    # features not computed yet: their rows move the bar first
    fresh = FeatureConfig(dim=32)
    seen = steps_of(
        lambda bar: diversity.compare(
            ws, ["small", "same"], proxy=TINY, config=fresh, on_progress=bar
        )
    )
    assert_moves(seen)
    assert_moves(steps_of(lambda bar: diversity.baselines(ws, "small", on_progress=bar)), 1)


def test_a_cancel_from_the_progress_stops_the_work(ws):
    from core.errors import Cancelled

    def cancel_midway(done: int, total: int | None) -> None:
        if total and 0.2 < done / total < 1:
            raise Cancelled

    with pytest.raises(Cancelled):
        diversity.score(
            ws, "demo", proxy=TINY, config=SMALL, replicates=50, on_progress=cancel_midway
        )
    with pytest.raises(Cancelled):
        diversity.compare(
            ws,
            ["demo", "small"],
            proxy=TINY,
            config=SMALL,
            replicates=50,
            on_progress=cancel_midway,
        )


def test_a_missing_value_has_one_label(ws, tmp_path):
    rows = [
        {"question": "What is 1 + 1?", "answer": "2", "topic": "sums"},
        {"question": "What is 2 + 3?", "answer": "5", "topic": None},
        {"question": "What is 7 - 4?", "answer": "3"},
    ]
    ws.import_dataset(write_jsonl(tmp_path / "gaps.jsonl", rows), name="gaps")
    labels = diversity.group_labels(ws, "gaps", "topic")
    assert labels.tolist() == ["sums", diversity.MISSING, diversity.MISSING]
    assert diversity.MISSING == "(missing)"
    assert diversity.meta_label({"topic": None}, "topic") == diversity.meta_label({}, "topic")
    ws.delete_dataset("gaps")


def test_compare_cli_with_and_without_equal_size(cli, tmp_path):
    """Without --equal-size each dataset's own score; with it, subsamples of the smallest."""
    assert cli("import", str(demo_file(tmp_path / "a.jsonl", 40)), "--name", "a").code == 0
    assert cli("import", str(demo_file(tmp_path / "b.jsonl", 20)), "--name", "b").code == 0
    flags = ("--proxy", "tiny-random", "--dim", "64")
    alone = {n: cli("score", n, *flags, "--json").json["g_vendi"] for n in ("a", "b")}
    r = cli("compare", "a", "b", *flags, "--json")
    assert r.code == 0, r.err
    assert r.json["sizes_differ"] and r.json["equal_size"] is None
    assert {d["name"]: d["g_vendi"] for d in r.json["datasets"]} == pytest.approx(alone)
    human = cli("compare", "a", "b", *flags)
    assert human.code == 0 and f"{alone['a']:.2f}" in human.out and "add --equal-size" in human.out
    r = cli("compare", "a", "b", *flags, "--equal-size", "--repeats", "3", "--json")
    assert r.code == 0, r.err
    assert r.json["equal_size"] == 20
    entries = {d["name"]: d for d in r.json["datasets"]}
    assert entries["a"]["g_vendi_full"] == pytest.approx(alone["a"])
    assert entries["a"]["g_vendi"] < alone["a"] and entries["a"]["std"] > 0  # 20 of 40 rows
    # all of b's 20 rows, in another order: the same score up to rounding
    assert entries["b"]["g_vendi"] == pytest.approx(alone["b"], rel=1e-5)
    assert entries["b"]["std"] < 1e-5
    human = cli("compare", "a", "b", *flags, "--equal-size", "--repeats", "3")
    assert "random subsamples of 20 rows (3 draws each)" in human.out
    assert "add --equal-size" not in human.out
