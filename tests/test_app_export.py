"""The Export page through AppTest: summary, trimming, near-duplicates, writing to a path."""

from __future__ import annotations

import json

import numpy as np

from core import curation
from core.maps import clusters_for
from core.regions import default_k
from core.workspace import Workspace
from tests.app_driver import App, open_page
from tests.conftest import write_jsonl


def test_export_page(tmp_path):
    ws = Workspace(tmp_path / "ws")
    rows = [{"question": f"Q{i}: what is {i} + 1?", "answer": f"{i + 1}"} for i in range(20)]
    rows += [dict(rows[2]), dict(rows[2])]
    ws.import_dataset(write_jsonl(tmp_path / "d.jsonl", rows), name="d")
    ws.set_meta("active_dataset", "d")
    ws.save_selection("d", "first-three", [0, 1, 2])
    app = App(tmp_path / "ws")
    app.at.switch_page("app_pages/export.py")
    app.run()
    metrics = {m.label: m.value for m in app.at.metric}
    assert metrics["Samples"] == "22" and metrics["Seed removed"] == "0"

    next(b for b in app.at.button if b.label == "Find them").click()
    app.run()
    next(b for b in app.at.button if b.label.startswith("Resolve all 1 groups")).click()
    app.run()
    assert curation.removed(ws, "d") == {
        20: "exact duplicate of row 2",
        21: "exact duplicate of row 2",
    }

    app.at.selectbox(key="exp_selection").set_value("first-three")
    app.run()
    next(b for b in app.at.button if b.label == "Remove its rows").click()
    app.run()
    metrics = {m.label: m.value for m in app.at.metric}
    assert metrics["Samples"] == "17" and metrics["Seed removed"] == "5"

    out = tmp_path / "curated.jsonl"
    app.at.text_input(key="exp_path_messages").set_value(str(out))
    app.run()
    next(b for b in app.at.button if b.label == "Write").click()
    app.run()
    assert not app.errors()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 17 and lines[0]["messages"][0]["content"].startswith("Q3:")
    assert any("Wrote 17 rows" in s.value for s in app.at.success)


def test_writing_over_an_existing_file_asks_first(tmp_path):
    ws = Workspace(tmp_path / "ws")
    rows = [{"question": f"Q{i}: what is {i} + 1?", "answer": f"{i + 1}"} for i in range(5)]
    ws.import_dataset(write_jsonl(tmp_path / "d.jsonl", rows), name="d")
    ws.set_meta("active_dataset", "d")
    out = tmp_path / "mine.jsonl"
    out.write_text("the user's own file\n")
    app = App(tmp_path / "ws", page="app_pages/export.py")
    app.at.text_input(key="exp_path_messages").set_value(str(out))
    app.run()
    assert app.button("Write").disabled  # not before the user says so
    confirm = app.at.checkbox(key="exp_overwrite_messages")
    assert "exists: replace it" in confirm.label
    confirm.check()
    app.run()
    app.button("Write").click()
    app.run()
    assert not app.errors() and len(out.read_text().splitlines()) == 5
    assert any("Wrote 5 rows" in s.value for s in app.at.success)


def test_a_replaced_dataset_is_summarised_anew(tmp_path):
    """The summary's per-row answer formats are kept per dataset contents: the same name
    imported again with more rows is counted anew (a stale cache would miss rows)."""
    ws = Workspace(tmp_path / "ws")
    rows = [{"question": f"Q{i}: what is {i} + 1?", "answer": f"#### {i + 1}"} for i in range(7)]
    ws.import_dataset(write_jsonl(tmp_path / "d.jsonl", rows), name="d")
    ws.set_meta("active_dataset", "d")
    app = App(tmp_path / "ws", page="app_pages/export.py")
    assert {m.label: m.value for m in app.at.metric}["Samples"] == "7"
    more = [{"question": f"Q{i}: what is {i} + 2?", "answer": f"{i + 2}"} for i in range(22)]
    ws.import_dataset(write_jsonl(tmp_path / "e.jsonl", more), name="d", replace=True)
    app.run()
    assert {m.label: m.value for m in app.at.metric}["Samples"] == "22"


def test_the_sizes_by_cluster_follow_the_feature_settings(tmp_path):
    """The clusters of the summary are the map's for the sidebar's feature settings."""
    app = open_page(tmp_path / "ws", "app_pages/export.py", proxy="tiny-random", dim=64)
    shown = []
    for dim in (64, 128):
        fs = app.use_features(proxy="tiny-random", dim=dim)
        sizes = np.bincount(clusters_for(fs, k=default_k(360), seed=0).labels)
        bars = json.loads(app.at.get("plotly_chart")[0].proto.spec)["data"][0]
        shown.append(bars["y"])
        assert [int(x) for x in bars["x"]] == list(range(len(sizes)))
        assert bars["y"] == sizes.tolist()
    assert shown[0] != shown[1]  # the two feature sets cluster the demo differently


def test_keep_the_n_most_diverse(tmp_path):
    """Choose N rows on the page: the table compares them in both spaces, the selection is
    saved, and keeping only them leaves exactly those seed rows in the curated set."""
    from core.selection import select_curated

    app = open_page(tmp_path / "ws", "app_pages/export.py", proxy="tiny-random", dim=64)
    fs = app.use_features(proxy="tiny-random", dim=64)
    app.at.number_input(key="exp_diverse_size").set_value(30)
    app.run()
    app.button("Choose them").click()
    app.run()
    assert not app.errors()
    table = app.at.dataframe[0].value
    assert list(table["subset"]) == [
        "greedy in gradient space",
        "greedy in sentence space",
        "random subsets (5 draws)",
    ]
    assert list(table["chosen"]) == ["✓", "", ""]
    ws = Workspace(tmp_path / "ws")
    saved = ws.selection("demo", "most diverse 30 (greedy)")["rows"]
    expected = select_curated(ws, "demo", fs, 30)  # the same rows, deterministic for a seed
    assert saved == sorted(expected["rows"])
    gradient = float(table["G-Vendi, gradient space"][0])
    assert gradient == round(expected["g_vendi"], 2)
    assert gradient > float(table["G-Vendi, gradient space"][2].split(" ± ")[0])

    app.button("Keep only these 30 rows").click()
    app.run()
    assert np.flatnonzero(curation.kept_mask(ws, "demo")).tolist() == saved
    assert {m.label: m.value for m in app.at.metric}["Seed kept"] == "30"
