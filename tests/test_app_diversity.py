"""The Diversity page through AppTest: score cards, comparison, groups, redundancy, baselines."""

from __future__ import annotations

from core.workspace import Workspace
from tests.app_driver import App, open_page
from tests.test_features import demo_file


def diversity_page(tmp_path) -> App:
    app = open_page(tmp_path / "ws", "app_pages/diversity.py", proxy="tiny-random", dim=64)
    Workspace(tmp_path / "ws").import_dataset(demo_file(tmp_path / "small.jsonl", 40), name="small")
    return app.run()


def test_the_page_walks_through(tmp_path):
    app = diversity_page(tmp_path)
    assert [b.label for b in app.at.button][:1] == ["Compute features"]
    app.at.button[0].click()
    app.run()
    metrics = {m.label: m.value for m in app.at.metric}
    assert metrics["Samples"] == "360" and float(metrics["G-Vendi"]) > 1
    assert "bootstrap interval" in " ".join(c.value for c in app.at.caption)

    # groups: the demo's problem families are a field of the data
    app.at.selectbox(key="group_by").set_value("family")
    app.run()
    groups = next(d.value for d in app.at.dataframe if "family" in d.value.columns)
    assert len(groups) >= 10 and groups["rows"].sum() == 360

    # redundancy: sorted, lowest first
    redundant = next(d.value for d in app.at.dataframe if "marginal_value" in d.value.columns)
    assert list(redundant["marginal_value"]) == sorted(redundant["marginal_value"])

    # comparison with a smaller dataset: equal size is on by default, and says so
    app.at.multiselect(key="compare_with").set_value(["small"])
    app.run()
    assert app.at.toggle(key="compare_equal").value is True
    next(b for b in app.at.button if b.label == "Compare").click()
    app.run()
    assert not app.errors()
    table = next(d.value for d in app.at.dataframe if "rows_used" in d.value.columns)
    assert list(table["name"]) == ["demo", "small"] and set(table["rows_used"]) == {40}

    next(b for b in app.at.button if b.label == "Compute baselines").click()
    app.run()
    metrics = {m.label: m.value for m in app.at.metric}
    assert float(metrics["Sentence Vendi"]) > 1 and "distinct-2" in metrics
