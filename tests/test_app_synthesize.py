"""The Synthesize page through AppTest, against the local chat-completions server."""

from __future__ import annotations

from core import synthesis
from core.workspace import Workspace
from tests.app_driver import App, open_page
from tests.fake_llm import FakeLLM


def synthesize_page(tmp_path) -> App:
    app = open_page(tmp_path / "ws", "app_pages/synthesize.py", proxy="tiny-random", dim=128)
    app.button("Compute features").click()
    return app.run()


def test_start_a_run_and_review_it(tmp_path):
    ws = Workspace(tmp_path / "ws")
    app = synthesize_page(tmp_path)
    start = next(b for b in app.at.button if b.label == "Start a run")
    assert start.disabled  # no model yet
    with FakeLLM() as llm:
        app.at.text_input(key="syn_url").set_value(llm.url)
        app.at.text_input(key="syn_model").set_value("fake-generator")
        app.at.text_input(key="syn_key").set_value("sk-page-secret")
        app.at.number_input(key="syn_target").set_value(6)
        app.at.number_input(key="syn_rounds").set_value(1)
        app.run()
        next(b for b in app.at.button if b.label == "Start a run").click()
        app.run()
        assert llm.auth and all(a == "Bearer sk-page-secret" for a in llm.auth)
    assert not app.errors(), app.errors()
    assert any("accepted. Review the decisions below." in s.value for s in app.at.success)
    runs = synthesis.list_runs(ws, "demo")
    assert len(runs) == 1 and runs[0]["state"] == "done"
    tables = {tuple(d.value.columns)[:3]: d.value for d in app.at.dataframe}
    runs_table = tables[("run", "state", "accepted")]
    assert list(runs_table["state"]) == ["done"]
    review = tables[("item", "decision", "status")]  # the review table, one row per item
    assert len(review) == len(synthesis.review(ws, runs[0]["id"]))
    assert set(review["decision"]) == {"auto"}
    for path in (tmp_path / "ws").rglob("*"):
        if path.is_file():
            assert b"sk-page-secret" not in path.read_bytes()


def test_bad_endpoint_is_an_error_on_the_page(tmp_path):
    app = synthesize_page(tmp_path)
    app.at.text_input(key="syn_url").set_value("localhost:9")
    app.at.text_input(key="syn_model").set_value("m")
    app.run()
    next(b for b in app.at.button if b.label == "Start a run").click()
    app.run()
    assert any("base URL 'localhost:9'" in e for e in app.errors())
