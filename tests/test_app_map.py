"""The Map page through AppTest: the plot's points carry their rows, the cluster table, colouring."""

from __future__ import annotations

import html
import json

import numpy as np

import charts
from core import synthesis
from core.config import FeatureConfig, ProxySpec, SynthesisSettings
from core.diversity import MISSING
from core.llm import LLMSettings
from core.maps import clusters_for
from core.workspace import Workspace
from tests.app_driver import App, open_page
from tests.conftest import write_jsonl
from tests.fake_llm import FakeLLM


def map_page(tmp_path) -> App:
    app = open_page(tmp_path / "ws", "app_pages/map.py", proxy="tiny-random", dim=64)
    app.button("Compute features").click()
    return app.run()


def plotted_rows(app: App) -> list[int]:
    chart = app.at.get("plotly_chart")[0]
    spec = json.loads(chart.proto.spec)
    rows = []
    for trace in spec["data"]:
        if "customdata" in trace:
            rows += [int(point[0]) for point in trace["customdata"]]
    return rows


def test_map_page(tmp_path):
    app = map_page(tmp_path)
    assert not app.errors()
    assert sorted(plotted_rows(app)) == list(range(360))  # every sample once, carrying its row
    table = next(d.value for d in app.at.dataframe if "keywords" in d.value.columns)
    assert len(table) == app.at.number_input(key="map_k/demo").value == 13
    assert table["size"].sum() == 360
    assert table["sparse"].sum() == (table["size"] < table["size"].median()).sum()
    assert "Nothing selected yet." in [c.value for c in app.at.caption]

    app.at.selectbox(key="map_colour/demo").set_value("family")
    app.run()
    spec = json.loads(app.at.get("plotly_chart")[0].proto.spec)
    names = {t.get("name") for t in spec["data"] if "customdata" in t}
    assert {"geometry", "probability", "sequences"} <= names  # one trace per problem family
    assert sorted(plotted_rows(app)) == list(range(360))

    app.at.number_input(key="map_k/demo").set_value(6)
    app.run()
    table = next(d.value for d in app.at.dataframe if "keywords" in d.value.columns)
    assert len(table) == 6

    again = App(tmp_path / "ws", page="app_pages/map.py").run()  # a browser refresh
    assert again.at.number_input(key="map_k/demo").value == 6
    assert again.at.selectbox(key="map_colour/demo").value == "family"


def test_text_from_the_data_stays_text(tmp_path):
    """A field's values are shown as typed: in the legend (plotly renders HTML) and in any
    Markdown element; a missing value has one label, whether absent or null."""
    value = '<a href="http://127.0.0.1:9/">x</a> ![x](http://127.0.0.1:9/p.png)'
    rows = [
        {"question": f"What is {i} + 1?", "answer": str(i + 1)}
        | ({"topic": value} if i % 3 == 0 else {"topic": None} if i % 3 == 1 else {})
        for i in range(30)
    ]
    ws = Workspace(tmp_path / "ws")
    ws.import_dataset(write_jsonl(tmp_path / "md.jsonl", rows), name="md")
    ws.set_meta("active_dataset", "md")
    app = open_page(tmp_path / "ws", "app_pages/map.py", proxy="tiny-random", dim=64)
    app.button("Compute features").click()
    app.run()
    app.at.selectbox(key="map_colour/md").set_value("topic")
    app.run()
    spec = json.loads(app.at.get("plotly_chart")[0].proto.spec)
    names = sorted(t["name"] for t in spec["data"] if "customdata" in t)
    assert names == sorted([html.escape(value), MISSING])
    assert "<" not in json.dumps(spec["layout"]["legend"])
    shown = [
        e.value
        for kind in ("markdown", "caption", "info", "warning", "error", "success")
        for e in app.at.get(kind)
    ]
    assert not any("](http" in s or "<a " in s for s in shown), shown


def plotted(app: App) -> tuple[dict[int, int], dict[int, str]]:
    """The map's points: {row: cluster} and {row: hover text}, from each point's customdata."""
    spec = json.loads(app.at.get("plotly_chart")[0].proto.spec)
    clusters, hover = {}, {}
    for trace in spec["data"]:
        for (row, cluster), text in zip(
            trace.get("customdata", []), trace.get("text", []), strict=False
        ):
            clusters[int(row)], hover[int(row)] = int(cluster), text
    return clusters, hover


def cluster_table(app: App):
    return next(d.value for d in app.at.dataframe if "keywords" in d.value.columns)


def test_new_feature_settings_draw_a_new_map(tmp_path):
    """The clusters, their table and the figure follow the sidebar's feature settings (a
    cache keyed on less would keep drawing the first feature set's map)."""
    app = map_page(tmp_path)
    first, _ = plotted(app)
    for dim in (64, 128):
        fs = app.use_features(proxy="tiny-random", dim=dim)
        labels = clusters_for(fs, k=13, seed=0).labels
        shown, _ = plotted(app)
        assert [shown[row] for row in range(360)] == labels.tolist()
        sizes = cluster_table(app).set_index("cluster")["size"]
        assert [sizes[c] for c in range(13)] == np.bincount(labels, minlength=13).tolist()
    assert shown != first  # the two feature sets cluster the demo differently


def test_a_replaced_dataset_is_drawn_anew(tmp_path):
    """The same name imported again with other rows and fields: the colour choices, the
    points and their hover texts are the new dataset's."""
    ws = Workspace(tmp_path / "ws")
    old = [
        {"question": f"What is {i} + 1?", "answer": str(i + 1), "topic": "sums"} for i in range(30)
    ]
    new = [
        {"question": f"What is {i} times 3?", "answer": str(3 * i), "level": f"L{i % 2}"}
        for i in range(24)
    ]
    ws.import_dataset(write_jsonl(tmp_path / "old.jsonl", old), name="md")
    ws.set_meta("active_dataset", "md")
    app = open_page(tmp_path / "ws", "app_pages/map.py", proxy="tiny-random", dim=64)
    app.button("Compute features").click()
    app.run()
    assert "topic" in app.at.selectbox(key="map_colour/md").options
    _, hover = plotted(app)
    assert sorted(hover) == list(range(30)) and "+ 1?" in hover[0]

    ws.import_dataset(write_jsonl(tmp_path / "new.jsonl", new), name="md", replace=True)
    app.run()
    app.button("Compute features").click()
    app.run()
    options = app.at.selectbox(key="map_colour/md").options
    assert "level" in options and "topic" not in options
    _, hover = plotted(app)
    assert sorted(hover) == list(range(24))
    assert all(html.escape(new[row]["question"]) in text for row, text in hover.items())
    app.at.selectbox(key="map_colour/md").set_value("level")
    app.run()
    spec = json.loads(app.at.get("plotly_chart")[0].proto.spec)
    assert sorted(t["name"] for t in spec["data"] if "customdata" in t) == ["L0", "L1"]


def test_a_lasso_on_a_sampled_map_selects_every_row_inside_it(tmp_path, monkeypatch):
    """Above charts.MAP_POINTS the map draws a sample over a density layer; a lasso drawn on
    it (the polygon the browser reports) selects the exact rows inside it among ALL points,
    drawn or not, and a box likewise; the saved selection holds those rows."""
    import charts
    from core.geometry import inside_box, inside_polygon
    from core.maps import layout_for

    monkeypatch.setattr(charts, "MAP_POINTS", 100)
    app = map_page(tmp_path)
    drawn = plotted_rows(app)
    assert len(drawn) == len(set(drawn)) == 100
    spec = json.loads(app.at.get("plotly_chart")[0].proto.spec)
    assert spec["data"][0]["type"] == "heatmap"  # the density of all 360 under the sample
    assert any("100 of the 360 samples are drawn" in c for c in app.texts("caption"))

    fs = app.use_features(proxy="tiny-random", dim=64)
    coords = layout_for(fs).coords
    (x0, y0), (x1, y1) = coords.min(0), coords.max(0)
    cx, cy = coords.mean(0)
    xs = [float(v) for v in (x0 - 1, x1 + 1, cx)]
    ys = [float(v) for v in (y0 - 1, y0 - 1, cy)]  # a triangle from below up to the middle
    inside = np.flatnonzero(inside_polygon(coords, xs, ys))
    assert 0 < len(inside) < 360 and set(inside) - set(drawn)  # some of them not drawn

    app.select_on_chart(0, {"lasso": [{"xref": "x", "yref": "y", "x": xs, "y": ys}]})
    assert f"{len(inside):,} points selected on the map" in [m.value for m in app.at.markdown]
    browser = next(d.value for d in app.at.dataframe if "prompt" in d.value.columns)
    assert browser["row"].tolist() == inside.tolist()
    table = cluster_table(app).set_index("cluster")
    labels = clusters_for(fs, k=13, seed=0).labels
    assert (
        table["selected"].sort_index().tolist()
        == np.bincount(labels[inside], minlength=13).tolist()
    )
    app.at.text_input(key="selection_name").set_value("lassoed")
    app.run()
    app.button("Save selection").click()
    app.run()
    assert Workspace(tmp_path / "ws").selection("demo", "lassoed")["rows"] == inside.tolist()

    box = {"x": [float(cx), float(x1)], "y": [float(cy), float(y1)]}
    app.select_on_chart(0, {"box": [{"xref": "x", "yref": "y", **box}]})
    expected = np.flatnonzero(inside_box(coords, box["x"], box["y"]))
    browser = next(d.value for d in app.at.dataframe if "prompt" in d.value.columns)
    assert browser["row"].tolist() == expected.tolist()


def lit_rows(app: App, index: int) -> set[int]:
    """The rows drawn at full strength on the `index`-th map (the rest dimmed)."""
    import base64

    spec = json.loads(app.at.get("plotly_chart")[index].proto.spec)
    lit = set()
    for trace in spec["data"]:
        opacity = trace.get("marker", {}).get("opacity")
        if isinstance(opacity, dict):  # a typed array, as plotly sends numpy arrays
            opacity = np.frombuffer(base64.b64decode(opacity["bdata"]), opacity["dtype"])
        for i, point in enumerate(trace.get("customdata", [])):
            if (opacity if np.isscalar(opacity) else opacity[i]) == 0.95:
                lit.add(int(point[0]))
    return lit


def test_gradient_beside_meaning(tmp_path):
    """Beside meaning: the sentence embeddings computed on demand, both maps drawn with their
    own clusters, a lasso on one lights the same rows on the other, a click on the other
    lights its rows back, and the disagreement table ranks both spaces' clusters as
    core/disagreement.py does."""
    from core.config import SENTENCE, FeatureConfig, ProxySpec
    from core.disagreement import Space, disagreement
    from core.features import find_features
    from core.geometry import inside_polygon
    from core.maps import layout_for
    from core.sentence import SENTENCE_MODEL

    app = map_page(tmp_path)
    app.at.toggle(key="map_both/demo").set_value(True)
    app.run()
    app.button("Compute sentence embeddings").click()
    app.run()
    assert not app.errors()
    charts_drawn = app.at.get("plotly_chart")
    assert len(charts_drawn) == 2
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in charts_drawn]
    assert titles == ["Gradient features", "Sentence embeddings (meaning)"]
    ws = Workspace(tmp_path / "ws")
    gradient = app.use_features(proxy="tiny-random", dim=64)
    sentence = find_features(
        ws, "demo", proxy=ProxySpec(SENTENCE_MODEL), config=FeatureConfig(method=SENTENCE)
    )
    shown = {}
    for index, fs in enumerate((gradient, sentence)):
        rows = {}
        for trace in json.loads(charts_drawn[index].proto.spec)["data"]:
            rows |= {int(row): int(c) for row, c in trace.get("customdata", [])}
        shown[index] = rows
        assert [rows[r] for r in range(360)] == clusters_for(fs, k=13, seed=0).labels.tolist()
    assert lit_rows(app, 0) == lit_rows(app, 1) == set()  # nothing selected: nothing dimmed

    # a lasso on the gradient map: the same rows lit on the sentence map, and listed
    coords = layout_for(gradient).coords
    (x0, y0), (x1, _) = coords.min(0), coords.max(0)
    cx, cy = coords.mean(0)
    xs = [float(v) for v in (x0 - 1, x1 + 1, cx)]
    ys = [float(v) for v in (y0 - 1, y0 - 1, cy)]
    inside = np.flatnonzero(inside_polygon(coords, xs, ys))
    assert 0 < len(inside) < 360
    app.select_on_chart(0, {"lasso": [{"xref": "x", "yref": "y", "x": xs, "y": ys}]})
    assert lit_rows(app, 1) == set(inside.tolist())
    assert f"{len(inside):,} points selected on the gradient map" in app.texts("markdown")
    browser = next(d.value for d in app.at.dataframe if "prompt" in d.value.columns)
    assert browser["row"].tolist() == inside.tolist()
    sentence_labels = clusters_for(sentence, k=13, seed=0).labels
    assert browser["sentence cluster"].tolist() == sentence_labels[inside].tolist()

    # two points clicked on the sentence map: those rows lit on the gradient map
    clicked = [int(inside[0]), int(inside[-1])]
    points = [{"customdata": [r, int(sentence_labels[r])]} for r in clicked]
    app.select_on_chart(1, {"points": points})
    assert lit_rows(app, 0) == set(clicked)
    assert "2 points selected on the sentence map" in app.texts("markdown")

    table = next(d.value for d in app.at.dataframe if "cluster of" in d.value.columns)
    expected = disagreement(
        Space("gradient", gradient, clusters_for(gradient, k=13, seed=0).labels),
        Space("sentence", sentence, sentence_labels),
    )["clusters"]
    assert len(table) == len(expected) == 26
    assert table["score"].tolist() == [round(r["score"], 2) for r in expected]
    assert list(zip(table["cluster of"], table["cluster"], strict=True)) == [
        (r["space"], r["cluster"]) for r in expected
    ]
    assert "Where the spaces disagree" in [s.value for s in app.at.subheader]

    # a pick in the disagreement table lights that cluster's rows; new clusters start unpicked
    app.pick_in_table("disagreement_table", [25])
    last = expected[25]
    rows = np.flatnonzero(
        (clusters_for(gradient, k=13, seed=0).labels if last["space"] == "gradient"
         else sentence_labels) == last["cluster"]
    )  # fmt: skip
    assert f"{len(rows)} samples in cluster(s) {last['space']} {last['cluster']}" in app.texts(
        "markdown"
    )
    assert lit_rows(app, 0) == lit_rows(app, 1) == set(rows.tolist())
    app.at.number_input(key="map_k/demo").set_value(3)  # 6 rows in the table now, not 26
    app.run()
    assert not app.errors() and "Nothing selected yet." in app.texts("caption")

    app.at.toggle(key="map_both/demo").set_value(False)  # back to the one map
    app.run()
    assert len(app.at.get("plotly_chart")) == 1 and not app.errors()


def test_a_run_s_samples_are_drawn_at_their_place(tmp_path):
    """A run made with the map's features: its accepted samples as stars over the map, its
    rejected ones as crosses with the toggle; neither is a dataset row."""
    app = map_page(tmp_path)
    ws = Workspace(tmp_path / "ws")
    assert not [s for s in app.at.selectbox if s.key == "map_run/demo"]  # no run yet
    with FakeLLM() as llm:
        run_id = synthesis.create_run(
            ws,
            "demo",
            llm=LLMSettings(base_url=llm.url, model="fake", concurrency=4),
            settings=SynthesisSettings(target=6, rounds=1),
            proxy=ProxySpec("tiny-random"),
            config=FeatureConfig(dim=64),
        )
        synthesis.run_synthesis(ws, run_id)
    app.run()
    chooser = app.at.selectbox(key="map_run/demo")
    assert chooser.options == ["none", run_id] and chooser.value == "none"
    chooser.set_value(run_id)
    app.run()
    items = synthesis.review(ws, run_id)
    accepted = sum(i["decision"] == "accepted" for i in items)

    def overlay(decision: str) -> list[dict]:
        spec = json.loads(app.at.get("plotly_chart")[0].proto.spec)
        return [t for t in spec["data"] if t.get("name", "").startswith(f"{decision} by run")]

    stars = overlay("accepted")
    assert len(stars) == 1 and len(stars[0]["x"]) == accepted > 0
    assert stars[0]["marker"]["symbol"] == "star" and "customdata" not in stars[0]
    assert not overlay("rejected")
    assert sorted(plotted_rows(app)) == list(range(360))  # the data's points as before
    app.at.toggle(key="map_run_rejected").set_value(True)
    app.run()
    vectors = synthesis.run_features(ws, synthesis.run_info(ws, run_id))
    crosses = overlay("rejected")
    placed = sum(i["decision"] == "rejected" and i["item_id"] in vectors for i in items)
    assert len(crosses) == 1 and len(crosses[0]["x"]) == placed > 0
    assert any(f"samples of run {run_id}" in c for c in app.texts("caption"))


def test_a_run_s_problems_show_as_text_in_the_hovers():
    figure = charts.with_run_points(
        charts.go.Figure(),
        [
            {
                "item_id": "a",
                "decision": "rejected",
                "reason_kind": "<b>dup</b>",
                "cluster": 2,
                "map_k": 13,
                "x": 0.5,
                "y": 1.5,
                "problem": "<script>alert(1)</script> <img src=x onerror=alert(2)>",
            }
        ],
        "run<1>",
    )
    trace = figure.data[0]
    assert "<script>" not in trace.text[0] and "&lt;script&gt;" in trace.text[0]
    assert "<b>" not in trace.text[0] and "<img" not in trace.text[0]
    # the run's own clusters, not the page's at its k
    assert "cluster 2 of the run's map (k = 13)" in trace.text[0]
    assert trace.name == "rejected by run run&lt;1&gt; (1)"
