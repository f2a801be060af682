"""The Features page through AppTest: settings from the sidebar, the time estimated before
computing, compute, cached, listed; vectors attached from a path or an upload, picked in the
sidebar, bad files refused."""

from __future__ import annotations

import json

import numpy as np
from safetensors.numpy import save

from core.config import FeatureConfig, FeatureRequest, ProxySpec
from core.features import feature_sets, find_features
from core.workspace import Workspace
from tests.app_driver import App, open_page
from tests.conftest import HANG_SECONDS


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
    at = AppTest.from_function(_sidebar_only, default_timeout=HANG_SECONDS).run()
    assert at.sidebar.selectbox(key="sb_proxy").value == "Qwen/Qwen2.5-0.5B-Instruct"
    at.sidebar.selectbox(key="sb_proxy").set_value("tiny-random")
    at.sidebar.radio(key="sb_method").set_value("exact")
    at.run()
    saved = json.loads(Workspace(tmp_path / "ws").get_meta("feature_settings"))
    assert saved["proxy"] == "tiny-random" and saved["method"] == "exact"
    again = AppTest.from_function(
        _sidebar_only, default_timeout=HANG_SECONDS
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


def test_the_time_is_estimated_before_computing(tmp_path):
    app = features_page(tmp_path / "ws")
    said = app.texts("info")
    assert any(s.startswith("Computing the features takes about") for s in said), said
    assert any("on cpu for 360 samples" in s and "tokens/s" in s for s in said)
    assert any(c.startswith("Tokens per sample: mean") for c in app.texts("caption"))
    assert any(b.label == "Compute features" for b in app.at.button)  # not pressed
    assert feature_sets(Workspace(tmp_path / "ws"), "demo") == []


def foreign(path, rows: int = 360, dim: int = 16, bad_row: int | None = None):
    x = np.random.default_rng(0).standard_normal((rows, dim)).astype(np.float32)
    if bad_row is not None:
        x[bad_row, 1] = np.nan
    np.save(path, x)
    return x


def attach(app: App, path) -> App:
    app.at.text_input(key="vec_path").set_value(str(path))
    app.run()
    app.button("Attach").click()
    return app.run()


def test_vectors_attached_from_a_path_become_the_active_features(tmp_path, monkeypatch):
    x = foreign(tmp_path / "x.npy")
    app = attach(features_page(tmp_path / "ws"), tmp_path / "x.npy")
    assert not app.errors()
    assert any(
        s.startswith("Attached 360 x 16 as vectors of their own (file:")
        for s in app.texts("success")
    )
    ws = Workspace(tmp_path / "ws")
    proxy, config, _ = FeatureRequest.from_saved(json.loads(ws.get_meta("feature_settings")))
    assert proxy.name.startswith("file:") and config.method == "file"
    fs = find_features(ws, "demo", proxy=proxy, config=config)
    assert np.array_equal(fs.matrix(), x)
    assert any("Features ready: 360 x 16, attached from x.npy" in s for s in app.texts("success"))
    assert any("vectors imported from a file" in m for m in app.texts("markdown"))
    # the sidebar lists them by their file, and going back to a proxy brings its method back
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("PRISM_WORKSPACE", str(tmp_path / "ws"))
    side = AppTest.from_function(_sidebar_only, default_timeout=HANG_SECONDS).run()
    picked = side.sidebar.selectbox(key="sb_proxy")
    assert picked.value == proxy.name and "Imported: x.npy (16 dims)" in picked.options
    assert not side.sidebar.radio  # the method is the file's
    picked.set_value("tiny-random")
    side.run()
    back = FeatureRequest.from_saved(json.loads(ws.get_meta("feature_settings")))
    assert back.proxy.name == "tiny-random" and back.config.method == "factorized"


def test_a_bad_file_on_the_page_is_refused_and_changes_nothing(tmp_path):
    foreign(tmp_path / "x.npy", bad_row=5)
    app = attach(features_page(tmp_path / "ws"), tmp_path / "x.npy")
    assert any("row 5 holds NaN" in e for e in app.errors())
    assert not app.texts("success")
    ws = Workspace(tmp_path / "ws")
    assert feature_sets(ws, "demo") == []
    assert json.loads(ws.get_meta("feature_settings"))["proxy"] == "tiny-random"
    foreign(tmp_path / "short.npy", rows=359)
    app = attach(app, tmp_path / "short.npy")
    assert any("359 rows, but dataset 'demo' has 360" in e for e in app.errors())


def test_a_small_file_is_uploaded(tmp_path):
    x = np.random.default_rng(1).standard_normal((360, 8)).astype(np.float32)
    app = features_page(tmp_path / "ws")
    app.at.segmented_control(key="vec_source").set_value("Upload a file")
    app.run()
    app.at.file_uploader(key="vec_upload").set_value(
        ("v.safetensors", save({"emb": x}), "application/octet-stream")
    )
    app.run()
    app.button("Attach").click()
    app.run()
    assert any(s.startswith("Attached 360 x 8 as vectors") for s in app.texts("success"))
    sets = feature_sets(Workspace(tmp_path / "ws"), "demo")
    assert [(s["dim"], s["facts"]["imported_from"]) for s in sets] == [(8, "v.safetensors")]


def test_synthesis_says_imported_vectors_need_their_proxy(tmp_path):
    root = tmp_path / "ws"
    foreign(tmp_path / "x.npy")
    app = attach(features_page(root), tmp_path / "x.npy")
    app.at.switch_page("app_pages/synthesize.py").run()
    app.check()
    warned = [w for w in app.texts("warning") if "proxy that made the imported vectors" in w]
    assert warned and "is unknown" in warned[0]
    app.at.text_input(key="syn_model").set_value("m")
    app.run()
    assert app.button("Start a run").disabled


def _saved_runtime(workspace):
    saved = json.loads(Workspace(workspace).get_meta("feature_settings"))
    return FeatureRequest.from_saved(saved).runtime


def test_the_engine_choice_is_saved_and_a_bad_address_is_one_error(tmp_path):
    from tests.conftest import free_port

    app = features_page(tmp_path / "ws")
    assert any(
        "Computing the features takes" in w for w in app.texts("info") + app.texts("warning")
    )
    app.at.radio(key="eng_kind").set_value("ray")
    app.run()
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    app.at.text_input(key="eng_address").set_value(address)
    app.at.number_input(key="eng_workers").set_value(2)
    app.run()
    runtime = _saved_runtime(tmp_path / "ws")
    assert (runtime.engine, runtime.address, runtime.workers) == ("ray", address, 2)
    # the estimate is this machine's: not shown for a cluster
    assert not any("Computing the features takes" in w for w in app.texts("info"))
    app.button("Compute features").click()
    app.run()
    assert any(f"no Ray cluster answers at {address}" in e for e in app.errors())
    app.at.radio(key="eng_kind").set_value("local")  # back to this machine
    app.run()
    assert _saved_runtime(tmp_path / "ws").engine == "local"


def test_computed_on_a_ray_cluster_from_the_page(tmp_path, ray_cluster):
    settings = {"proxy": "tiny-random", "dim": 64, "chunk_rows": 90}
    app = open_page(
        tmp_path / "ws", "app_pages/features.py", engine="ray", address=ray_cluster["address"],
        workers=2, **settings,
    )  # fmt: skip
    assert app.at.radio(key="eng_kind").value == "ray"
    assert app.at.text_input(key="eng_address").value == ray_cluster["address"]
    app.button("Compute features").click()
    app.run()
    assert "Features ready: 360 x 64" in app.at.success[0].value, app.errors()
    ws = Workspace(tmp_path / "ws")
    fs = find_features(ws, "demo", proxy=ProxySpec("tiny-random"), config=FeatureConfig(dim=64))
    assert fs.facts["engine"] == "ray" and fs.facts["workers"] == 2
    from core.config import Runtime
    from core.demo import ensure_demo
    from core.features import compute_features

    local = Workspace(tmp_path / "local")
    ensure_demo(local)  # the same rows, computed here
    expected = compute_features(
        local, "demo", proxy=ProxySpec("tiny-random"), config=FeatureConfig(dim=64),
        runtime=Runtime(chunk_rows=90),
    ).matrix()  # fmt: skip
    np.testing.assert_allclose(fs.matrix(), expected, atol=1e-6, rtol=0)
