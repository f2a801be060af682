"""The Synthesize page through AppTest, against the local chat-completions server."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
from streamlit.runtime.scriptrunner_utils.exceptions import StopException

from core import filled, synthesis
from core.config import VERIFIERS, SynthesisSettings
from core.llm import LLMSettings
from core.maps import clusters_for
from core.regions import default_k
from core.settings import bound_of, default_of, help_of
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
    # the generator widgets take default, range and help from the settings' fields
    for key, settings, name in [
        ("syn_target", SynthesisSettings, "target"),
        ("syn_solutions", SynthesisSettings, "solutions"),
        ("syn_conc", LLMSettings, "concurrency"),
        ("syn_pin", LLMSettings, "price_in"),
    ]:
        widget = app.at.number_input(key=key)
        assert widget.value == default_of(settings, name)
        assert widget.min == bound_of(settings, name).low
        assert widget.help == help_of(settings, name).capitalize() + "."
    cap = app.at.number_input(key="syn_cap")  # optional: 0 for none
    assert (cap.value, cap.min) == (0, 0) and default_of(SynthesisSettings, "cap") is None
    verifier = app.at.selectbox(key="syn_verifier")
    assert verifier.options == list(VERIFIERS) and verifier.value == "math"
    app.at.text_input(key="syn_url").set_value("localhost:9")
    app.at.text_input(key="syn_model").set_value("m")
    app.run()
    next(b for b in app.at.button if b.label == "Start a run").click()
    app.run()
    assert any("base URL 'localhost:9'" in e for e in app.errors())


def use_generator(app: App, llm: FakeLLM, key: str = "", target: int = 4) -> None:
    app.at.text_input(key="syn_url").set_value(llm.url)
    app.at.text_input(key="syn_model").set_value("fake")
    app.at.text_input(key="syn_key").set_value(key)
    app.at.number_input(key="syn_target").set_value(target)
    app.at.number_input(key="syn_rounds").set_value(1)
    app.run()


def review_rows(app: App) -> int:
    return next(len(d.value) for d in app.at.dataframe if "item" in d.value.columns)


def test_the_review_opens_on_the_run_just_finished(tmp_path):
    """With an earlier run on the page, a new run's review shows the new run, not the old."""
    ws = Workspace(tmp_path / "ws")
    app = synthesize_page(tmp_path)
    with FakeLLM() as llm:
        use_generator(app, llm)
        app.button("Start a run").click()
        app.run()
        first = synthesis.list_runs(ws, "demo")[0]["id"]
        assert app.at.selectbox(key="syn_review_run").value == first
        use_generator(app, llm, target=8)
        app.button("Start a run").click()
        app.run()
    second = synthesis.list_runs(ws, "demo")[0]["id"]
    assert second != first
    assert app.at.selectbox(key="syn_review_run").value == second
    assert review_rows(app) == len(synthesis.review(ws, second))
    app.run()  # and it stays there on the next rerun
    assert app.at.selectbox(key="syn_review_run").value == second


def test_a_run_that_fails_is_red_with_its_reason_and_can_be_resumed(tmp_path):
    ws = Workspace(tmp_path / "ws")
    app = synthesize_page(tmp_path)
    with FakeLLM() as llm:
        llm.always = "401"  # the server echoes the Authorization header in its error
        use_generator(app, llm, key="sk-page-echo-42")
        app.button("Start a run").click()
        app.run()
        run_id = synthesis.list_runs(ws, "demo")[0]["id"]
        errors = app.errors()
        assert any(f"run {run_id} failed" in e and "refused the API key" in e for e in errors)
        assert not any("sk-page-echo-42" in e for e in errors)
        assert not app.at.success
        assert synthesis.run_info(ws, run_id)["state"] == "failed"
        assert app.at.selectbox(key="syn_review_run").value == run_id
        llm.always = None
        app.button("Resume this run").click()
        app.run()
    assert synthesis.run_info(ws, run_id)["state"] == "done"
    assert any(f"Run {run_id} done" in s.value for s in app.at.success)


def test_test_connection_shows_the_reply_or_the_error(tmp_path):
    app = synthesize_page(tmp_path)
    with FakeLLM() as llm:
        use_generator(app, llm)
        app.button("Test connection").click()
        app.run()
        assert any("The model replied" in s.value and "boxed" in s.value for s in app.at.success)
        assert llm.requests[-1]["max_tokens"] == 1
        llm.always = "404"
        app.button("Test connection").click()
        app.run()
    assert any("HTTP 404" in e and "does not exist" in e for e in app.errors())
    assert synthesis.list_runs(Workspace(tmp_path / "ws"), "demo") == []  # no run was made


def test_the_runs_table_and_runs_agree_with_the_review_after_an_override(tmp_path, cli):
    """Counts are derived from the items with the curator's overrides applied: the Runs
    table, the review caption and `runs --json` all say what the review says."""
    ws = Workspace(tmp_path / "ws")
    app = synthesize_page(tmp_path)
    with FakeLLM() as llm:
        use_generator(app, llm, target=6)
        app.button("Start a run").click()
        app.run()
    run_id = synthesis.list_runs(ws, "demo")[0]["id"]
    items = synthesis.review(ws, run_id)
    accepted = [i for i in items if i["status"] == "accepted"]
    rejected_usable = [i for i in items if i["status"] == "rejected" and i["response"]]
    assert accepted and rejected_usable
    synthesis.set_decision(ws, run_id, accepted[0]["item_id"], "rejected")
    synthesis.set_decision(ws, run_id, rejected_usable[0]["item_id"], "accepted")
    synthesis.set_decision(ws, run_id, rejected_usable[1]["item_id"], "accepted")
    app.run()

    decisions = Counter(i["decision"] for i in synthesis.review(ws, run_id))
    assert decisions["accepted"] == len(accepted) + 1  # the review itself
    runs_table = next(d.value for d in app.at.dataframe if "accepted" in d.value.columns)
    assert list(runs_table["accepted"]) == [decisions["accepted"]]
    assert list(runs_table["rejected"]) == [decisions["rejected"]]
    shown = f"{decisions['accepted']} samples of this run go to the curated set"
    assert any(shown in c for c in app.texts("caption")), app.texts("caption")
    assert any("rejected by the curator: 1" in c for c in app.texts("caption"))

    listed = cli("runs", "--json").json["runs"][0]
    assert listed["run"] == run_id and listed["accepted"] == decisions["accepted"]
    assert sum(listed["rejected"].values()) == decisions["rejected"]
    assert listed["rejected"]["rejected by the curator"] == 1
    text = cli("runs").out
    assert f"accepted {decisions['accepted']:>5}" in text


def cluster_choices(app: App) -> dict[int, int]:
    """The targets offered in "Clusters of the map" mode: {cluster: size}."""
    app.at.segmented_control(key="syn_mode").set_value("Clusters of the map")
    app.run()
    options = app.at.multiselect(key="syn_clusters").options
    return {int(o.split()[0]): int(o.split(" · ")[1].split()[0]) for o in options}


def test_the_clusters_offered_follow_the_feature_settings(tmp_path):
    """The map's clusters offered as targets are those of the sidebar's feature settings
    (a cache keyed on less would keep offering the first feature set's clusters)."""
    app = synthesize_page(tmp_path)
    offered = []
    for dim in (128, 64):
        fs = app.use_features(proxy="tiny-random", dim=dim)
        sizes = np.bincount(clusters_for(fs, k=default_k(360), seed=0).labels)
        offered.append(cluster_choices(app))
        assert offered[-1] == dict(enumerate(sizes.tolist()))
    assert offered[0] != offered[1]  # the two feature sets cluster the demo differently


def test_a_cancelled_run_says_what_it_kept_and_can_be_resumed(tmp_path, monkeypatch):
    """Cancel as Streamlit does it: the click stops the script at the run's next update of
    the page, and the next run has the click; the run is left resumable."""
    ws = Workspace(tmp_path / "ws")
    app = synthesize_page(tmp_path)
    real = synthesis.run_synthesis

    def stopped_at_first_update(*args, on_update, **kwargs):
        def update(summary: dict) -> None:
            on_update(summary)
            raise StopException()  # Streamlit stopping the run for the click

        return real(*args, on_update=update, **kwargs)

    with FakeLLM() as llm:
        use_generator(app, llm)
        monkeypatch.setattr(synthesis, "run_synthesis", stopped_at_first_update)
        app.button("Start a run").click()
        app.run()
        run_id = synthesis.list_runs(ws, "demo")[0]["id"]
        assert synthesis.run_info(ws, run_id)["state"] == "cancelled"
        app.button("Cancel").click()
        app.run()
        assert app.texts("info")[0] == (
            "Cancelled. The run keeps everything finished so far; resume it from the list below."
        )
        assert not [b for b in app.at.button if b.label == "Cancel"]
        monkeypatch.setattr(synthesis, "run_synthesis", real)
        app.button("Resume this run").click()
        app.run()
    assert synthesis.run_info(ws, run_id)["state"] == "done"


def test_what_the_run_filled_is_shown_while_it_runs_and_after(tmp_path, monkeypatch):
    """The per-cluster table and the whole set's G-Vendi: drawn at each update of the run,
    then for the reviewed run, in step with the curator's overrides."""
    ws = Workspace(tmp_path / "ws")
    app = synthesize_page(tmp_path)
    real, drawn = filled.fill_table, []

    def recorded(*args, **kwargs):
        drawn.append(real(*args, **kwargs))
        return drawn[-1]

    monkeypatch.setattr(filled, "fill_table", recorded)
    with FakeLLM() as llm:
        use_generator(app, llm, target=6)
        app.button("Start a run").click()
        app.run()
    run_id = synthesis.list_runs(ws, "demo")[0]["id"]
    live = [t for t in drawn if t["state"] == "running"]
    assert live  # drawn as the run went
    # live: no equal-size draws at each stage's end (measured once the run is done)
    assert any(t["counts"]["accepted"] for t in live)
    assert all(t["whole"]["equal_size"] is None for t in live)

    def shown() -> pd.DataFrame:
        return next(d.value for d in app.at.dataframe if "made for it" in d.value.columns)

    table, frame = real(ws, run_id), shown()
    items = synthesis.review(ws, run_id)
    assert list(frame["cluster"]) == [str(r["cluster"]) for r in table["clusters"]]
    assert (frame["accepted into it"] + frame["rejected"] + frame["pending"]).sum() == len(items)
    assert frame["accepted into it"].sum() == table["counts"]["accepted"]
    metrics = {m.label: m.value for m in app.at.metric}
    whole = table["whole"]
    assert metrics["G-Vendi of the seed"] == f"{whole['g_vendi_before']:.2f}"
    assert metrics["With the accepted samples"] == f"{whole['g_vendi_after']:.2f}"
    equal = whole["equal_size"]
    assert metrics["At equal size"] == f"{equal['mean']:.2f} ± {equal['sd']:.2f}"

    accepted = next(i for i in items if i["decision"] == "accepted")
    synthesis.set_decision(ws, run_id, accepted["item_id"], "rejected")
    app.run()
    assert shown()["accepted into it"].sum() == table["counts"]["accepted"] - 1
    assert "rejected by the curator: 1" in " ".join(shown()["rejections"])
