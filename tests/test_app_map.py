"""The Map page through AppTest: the plot's points carry their rows, the cluster table, colouring."""

from __future__ import annotations

import json

from tests.app_driver import App, open_page


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
