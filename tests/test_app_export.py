"""The Export page through AppTest: summary, trimming, near-duplicates, writing to a path."""

from __future__ import annotations

import json

from core import curation
from core.workspace import Workspace
from tests.app_driver import App
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
