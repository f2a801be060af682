"""The Features page through AppTest: settings from the sidebar, compute, cached, listed."""

from __future__ import annotations

import json

from core.config import FeatureConfig, FeatureRequest, ProxySpec
from core.features import find_features
from core.workspace import Workspace
from tests.app_driver import App, open_page


def features_page(workspace) -> App:
    return open_page(workspace, "app_pages/features.py", proxy="tiny-random", dim=64)


def test_compute_then_cached(tmp_path):
    app = features_page(tmp_path / "ws")
    assert "tiny random model" in app.at.warning[0].value
    assert [b.label for b in app.at.button][:1] == ["Compute features"]
    app.at.button[0].click()
    app.run()
    assert "Features ready: 360 x 64" in app.at.success[0].value
    fs = find_features(
        Workspace(tmp_path / "ws"),
        "demo",
        proxy=ProxySpec("tiny-random"),
        config=FeatureConfig(dim=64),
    )
    assert fs is not None and fs.matrix().shape == (360, 64)
    table = app.at.dataframe[0].value
    assert list(table["proxy"]) == ["tiny-random"] and bool(table["complete"][0])
    app.run()  # a rerun answers from the cache: no button, the same message
    assert not [b for b in app.at.button if b.label == "Compute features"]


def test_unloadable_proxy_shows_the_fix(tmp_path):
    app = open_page(tmp_path / "ws", "app_pages/features.py", proxy="no-such-org/no-model")
    app.at.button[0].click()
    app.run()
    assert any("tiny-random" in e and "cannot be loaded" in e for e in app.errors())


def test_the_summary_shows_the_settings_its_method_uses(tmp_path):
    settings = {"proxy": "tiny-random", "dim": 64, "rank": 16}
    line = "tiny-random · {} · seed 0 · up to 512 tokens · device auto"
    app = open_page(tmp_path / "ws", "app_pages/features.py", **settings)
    assert any(line.format("factorized · 64 dims · rank 16") in m for m in app.texts("markdown"))
    app = open_page(tmp_path / "ws", "app_pages/features.py", method="exact", **settings)
    assert any(line.format("exact · 64 dims") in m for m in app.texts("markdown"))


def _sidebar_only() -> None:
    import ui

    ui.sidebar(ui.workspace())


def test_sidebar_settings_are_saved_in_the_workspace(tmp_path, monkeypatch):
    # the sidebar alone: AppTest does not rerun app.py's sidebar after the first run
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("PRISM_WORKSPACE", str(tmp_path / "ws"))
    at = AppTest.from_function(_sidebar_only, default_timeout=60).run()
    assert at.sidebar.selectbox(key="sb_proxy").value == "Qwen/Qwen2.5-0.5B-Instruct"
    at.sidebar.selectbox(key="sb_proxy").set_value("tiny-random")
    at.sidebar.radio(key="sb_method").set_value("exact")
    at.run()
    saved = json.loads(Workspace(tmp_path / "ws").get_meta("feature_settings"))
    assert saved["proxy"] == "tiny-random" and saved["method"] == "exact"
    again = AppTest.from_function(
        _sidebar_only, default_timeout=60
    ).run()  # a new session, as after a refresh
    assert again.sidebar.selectbox(key="sb_proxy").value == "tiny-random"
    assert again.sidebar.radio(key="sb_method").value == "exact"
    assert again.sidebar.selectbox(key="sidebar_active").value == "demo"
    # the widgets' ranges and help come from the settings' fields; rank is unused by exact
    dim = again.sidebar.number_input(key="sb_dim")
    assert (dim.value, dim.min, dim.max) == (1024, 8, 65536)
    assert dim.help == "Feature dimensions."
    assert again.sidebar.number_input(key="sb_rank").disabled
    again.sidebar.radio(key="sb_method").set_value("factorized")
    again.sidebar.number_input(key="sb_dim").set_value(64)
    again.run()
    saved = FeatureRequest.from_saved(
        json.loads(Workspace(tmp_path / "ws").get_meta("feature_settings"))
    )
    assert saved == FeatureRequest(ProxySpec("tiny-random"), FeatureConfig(dim=64))
    assert not again.sidebar.number_input(key="sb_rank").disabled
