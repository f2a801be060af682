"""The Diversity page through AppTest: score cards, comparison, groups, redundancy, baselines."""

from __future__ import annotations

import json
from contextlib import contextmanager

import pytest
import streamlit as st
from streamlit.runtime.scriptrunner_utils.exceptions import StopException

import ui
from core.workspace import Workspace
from tests.app_driver import App, open_page
from tests.conftest import write_jsonl
from tests.test_features import demo_file


@pytest.fixture
def progress_shown(monkeypatch) -> list[dict]:
    """Every ui.progress the pages open: its label, what its Cancel keeps, its updates."""
    shown: list[dict] = []
    real = ui.progress

    @contextmanager
    def recording(label: str, unit: str = "", *, cancel: str | None = None):
        entry = {"label": label, "cancel": cancel, "updates": []}
        shown.append(entry)
        with real(label, unit, cancel=cancel) as bar:

            def update(done: int, total: int | None) -> None:
                entry["updates"].append((done, total))
                bar(done, total)

            yield update

    monkeypatch.setattr(ui, "progress", recording)
    return shown


def diversity_page(tmp_path) -> App:
    app = open_page(tmp_path / "ws", "app_pages/diversity.py", proxy="tiny-random", dim=64)
    Workspace(tmp_path / "ws").import_dataset(demo_file(tmp_path / "small.jsonl", 40), name="small")
    return app.run()


def compare(app: App, others: list[str], equal: bool | None = None):
    """Pick the datasets (and the equal-size toggle), click Compare: the table and chart."""
    app.at.multiselect(key="compare_with").set_value(others)
    app.run()
    if equal is not None:
        app.at.toggle(key="compare_equal").set_value(equal)
        app.run()
    app.button("Compare").click()
    app.run()
    assert not app.errors()
    table = next(d.value for d in app.at.dataframe if "g_vendi" in d.value.columns)
    chart = json.loads(app.at.get("plotly_chart")[0].proto.spec)
    return table, chart["data"][0]


def moved(entry: dict) -> bool:
    fractions = [d / t for d, t in entry["updates"] if t]
    return fractions == sorted(fractions) and fractions[-1] == 1 and len(set(fractions)) > 2


def test_the_page_walks_through(tmp_path, progress_shown):
    app = diversity_page(tmp_path)
    assert [b.label for b in app.at.button][:1] == ["Compute features"]
    app.at.button[0].click()
    app.run()
    metrics = {m.label: m.value for m in app.at.metric}
    assert metrics["Samples"] == "360" and float(metrics["G-Vendi"]) > 1
    assert "bootstrap interval" in " ".join(c.value for c in app.at.caption)
    # the score, the default groups (clusters) and the redundancy list: each once, with a
    # bar that moved and a Cancel that says what it keeps
    opened = {e["label"]: e for e in progress_shown}
    for label in ("Scoring", "Scoring by cluster", "Finding redundant samples"):
        assert moved(opened[label]) and opened[label]["cancel"], label
    clusters = next(d.value for d in app.at.dataframe if "cluster" in d.value.columns)
    assert len(clusters) == app.at.number_input(key="group_k").value == 13
    assert clusters["rows"].sum() == 360

    app.at.number_input(key="group_k").set_value(4)
    app.run()
    clusters = next(d.value for d in app.at.dataframe if "cluster" in d.value.columns)
    assert len(clusters) == 4 and clusters["rows"].sum() == 360

    # groups: the demo's problem families are a field of the data; the source is "seed"
    app.at.selectbox(key="group_by").set_value("family")
    app.run()
    groups = next(d.value for d in app.at.dataframe if "family" in d.value.columns)
    assert len(groups) >= 10 and groups["rows"].sum() == 360
    app.at.selectbox(key="group_by").set_value("source")
    app.run()
    groups = next(d.value for d in app.at.dataframe if "source" in d.value.columns)
    assert groups.to_dict("records")[0] | {"G-Vendi": 0} == {
        "source": "seed",
        "rows": 360,
        "G-Vendi": 0,
    }
    assert groups["G-Vendi"][0] == pytest.approx(float(metrics["G-Vendi"]), abs=0.01)

    # redundancy: sorted, lowest first
    redundant = next(d.value for d in app.at.dataframe if "marginal_value" in d.value.columns)
    assert list(redundant["marginal_value"]) == sorted(redundant["marginal_value"])

    # a rerun computes nothing again: no progress is opened
    before = len(progress_shown)
    app.run()
    assert len(progress_shown) == before

    # comparison with a smaller dataset: equal size is on by default, and says so
    table, bars = compare(app, ["small"])
    assert app.at.toggle(key="compare_equal").value is True
    assert list(table["name"]) == ["demo", "small"] and set(table["rows_used"]) == {40}
    assert bars["error_y"]["array"] == pytest.approx(list(table["std"]))
    assert moved(next(e for e in progress_shown if e["label"] == "Comparing"))

    next(b for b in app.at.button if b.label == "Compute baselines").click()
    app.run()
    metrics = {m.label: m.value for m in app.at.metric}
    assert float(metrics["Sentence Vendi"]) > 1 and "distinct-2" in metrics
    assert moved(next(e for e in progress_shown if e["label"] == "Computing the baselines"))


def test_compare_in_every_mode(tmp_path):
    ws = Workspace(tmp_path / "ws")
    for name, n in (("small", 40), ("twin", 40), ("half", 20)):
        ws.import_dataset(demo_file(tmp_path / f"{name}.jsonl", n), name=name)
    ws.set_meta("active_dataset", "small")
    app = open_page(tmp_path / "ws", "app_pages/diversity.py", proxy="tiny-random", dim=64)
    app.button("Compute features").click()
    app.run()

    # the same size: equal-size subsamples are off by default; bootstrap intervals instead
    table, bars = compare(app, ["twin"])
    assert app.at.toggle(key="compare_equal").value is False
    assert list(table["name"]) == ["small", "twin"] and "std" not in table.columns
    assert all(table["low"] < table["g_vendi"]) and all(table["g_vendi"] < table["high"])
    assert bars["error_y"]["array"] == pytest.approx(list(table["high"] - table["g_vendi"]))
    assert bars["error_y"]["arrayminus"] == pytest.approx(list(table["g_vendi"] - table["low"]))
    assert not app.at.warning or "differ in size" not in app.at.warning[0].value
    # ... and on: every row is used, so each subsample is the dataset (sd 0)
    table, bars = compare(app, ["twin"], equal=True)
    assert set(table["rows_used"]) == {40} and max(table["std"]) < 1e-6
    assert list(table["g_vendi"]) == pytest.approx(list(table["g_vendi_full"]), rel=1e-5)

    # different sizes: on by default (sd of the subsamples); off: a warning and intervals
    table, bars = compare(app, ["half"])
    assert app.at.toggle(key="compare_equal").value is True
    assert set(table["rows_used"]) == {20} and bars["error_y"]["array"] == pytest.approx(
        list(table["std"])
    )
    table, bars = compare(app, ["half"], equal=False)
    assert any("differ in size" in w.value for w in app.at.warning)
    assert list(table["rows"]) == [40, 20] and all(table["low"] < table["high"])
    assert "rows_used" not in table.columns
    three, _ = compare(app, ["twin", "half"], equal=False)
    assert list(three["name"]) == ["small", "twin", "half"]
    assert three.set_index("name").loc["half", "g_vendi"] == pytest.approx(
        table.set_index("name").loc["half", "g_vendi"]
    )


def test_a_cancelled_score_waits_to_be_asked_again(tmp_path, monkeypatch):
    """Cancel as Streamlit does it: the click stops the run at the next progress update,
    and the next run has the click. (The stand-in keeps the button, which ui.progress
    removes at the end of a run, so that AppTest can click it.)"""
    ws = Workspace(tmp_path / "ws")
    ws.import_dataset(demo_file(tmp_path / "small.jsonl", 40), name="small")
    ws.set_meta("active_dataset", "small")
    real = ui.progress

    @contextmanager
    def clicked_at_once(label: str, unit: str = "", *, cancel: str | None = None):
        if label != "Scoring":
            with real(label, unit, cancel=cancel) as bar:
                yield bar
            return
        st.button(
            "Cancel",
            key=f"cancel-{label}",
            on_click=lambda: st.session_state.update(cancelled_note=f"Cancelled. {cancel}"),
        )

        def update(_done: int, _total: int | None) -> None:
            raise StopException()  # Streamlit stopping the run for the click

        yield update

    monkeypatch.setattr(ui, "progress", clicked_at_once)
    app = open_page(tmp_path / "ws", "app_pages/diversity.py", proxy="tiny-random", dim=64)
    app.button("Compute features").click()
    app.run()  # the features, then the score, which is stopped at its first update
    assert not app.at.metric
    app.button("Cancel").click()
    app.run()
    assert "Cancelled. Nothing was scored." in [i.value for i in app.at.info]
    assert not app.at.metric and app.button("Scoring again")
    app.run()  # it does not start again by itself
    assert not app.at.metric and app.button("Scoring again")
    monkeypatch.setattr(ui, "progress", real)
    app.button("Scoring again").click()
    app.run()
    assert {m.label: m.value for m in app.at.metric}["Samples"] == "40"


def test_the_group_fields_follow_a_replaced_dataset(tmp_path):
    """The fields offered for grouping are read once per dataset contents: the same name
    imported again with other fields offers the new ones."""
    ws = Workspace(tmp_path / "ws")
    old = [
        {"question": f"What is {i} + 1?", "answer": str(i + 1), "topic": "sums"} for i in range(30)
    ]
    new = [
        {"question": f"What is {i} x 3?", "answer": str(3 * i), "level": i % 2} for i in range(30)
    ]
    ws.import_dataset(write_jsonl(tmp_path / "old.jsonl", old), name="md")
    ws.set_meta("active_dataset", "md")
    app = open_page(tmp_path / "ws", "app_pages/diversity.py", proxy="tiny-random", dim=64)
    app.button("Compute features").click()
    app.run()
    assert app.at.selectbox(key="group_by").options == ["cluster", "source", "topic"]
    ws.import_dataset(write_jsonl(tmp_path / "new.jsonl", new), name="md", replace=True)
    app.run()
    app.button("Compute features").click()
    app.run()
    assert app.at.selectbox(key="group_by").options == ["cluster", "source", "level"]
