"""Drive the app's pages through streamlit's AppTest, as a user would click them."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd
from streamlit.testing.v1 import AppTest

from core.config import FeatureConfig, ProxySpec
from core.features import FeatureSet, find_features
from core.workspace import Workspace
from tests.conftest import HANG_SECONDS, REPO


def visible(markdown: str) -> str:
    """What a Markdown string escaped by ui.md shows: no escapes, no word joiners."""
    return re.sub(r"\\(.)", r"\1", markdown).replace("\u2060", "").replace("  \n", "\n")


class App:
    """The whole app (app.py with its navigation) on a given workspace."""

    def __init__(self, workspace: Path, page: str | None = None):
        self.workspace = workspace
        os.environ["PRISM_WORKSPACE"] = str(workspace)
        self.at = AppTest.from_file(str(REPO / "app.py"), default_timeout=HANG_SECONDS)
        self.at.run()
        if page:
            self.at.switch_page(page).run()
        self.check()

    def check(self) -> None:
        assert not self.at.exception, [e.message for e in self.at.exception]

    def run(self) -> App:
        self.at.run()
        self.check()
        return self

    def errors(self) -> list[str]:
        return self.texts("error")

    def texts(self, kind: str) -> list[str]:
        """The visible text of every element of a kind: "caption", "success", "error", ..."""
        return [visible(e.value) for e in getattr(self.at, kind)]

    def button(self, label: str):
        return next(b for b in self.at.button if b.label == label)

    def use_features(self, dataset: str = "demo", **feature_settings) -> FeatureSet:
        """The sidebar's feature settings (proxy, dim, ...) changed, as it saves them; the page
        rerun, its features computed when it asks; returns those features."""
        ws = Workspace(self.workspace)
        ws.set_meta("feature_settings", json.dumps(feature_settings))
        self.run()
        if any(b.label == "Compute features" for b in self.at.button):
            self.button("Compute features").click()
            self.run()
        proxy = ProxySpec(feature_settings.pop("proxy"))
        return find_features(ws, dataset, proxy=proxy, config=FeatureConfig(**feature_settings))

    def select_on_chart(self, index: int, selection: dict) -> App:
        """What the browser sends when a box or lasso is drawn on (or points are clicked in)
        the `index`-th plotly chart: its selection state ({"points", "box", "lasso"}, as
        Streamlit reports them), with every other widget as it is; then the rerun.
        (AppTest cannot drive a chart, so the widget state is written as the browser would.)"""
        chart = self.at.get("plotly_chart")[index]
        states = self.at._tree.get_widget_states()
        state = states.widgets.add()
        state.id = chart.proto.id
        empty = {"points": [], "point_indices": [], "box": [], "lasso": []}
        state.string_value = json.dumps({"selection": empty | selection})
        self.at._run(states)
        self.check()
        return self

    def pick_in_table(self, key: str, rows: list[int]) -> App:
        """What the browser sends when `rows` are picked in the dataframe whose widget key
        starts with `key`, with every other widget as it is; then the rerun. (AppTest cannot
        drive a dataframe's selection, so the widget state is written as the browser would.)"""
        table = next(d for d in self.at.dataframe if f"-{key}" in d.proto.id)
        states = self.at._tree.get_widget_states()
        state = states.widgets.add()
        state.id = table.proto.id
        state.string_value = json.dumps({"selection": {"rows": rows, "columns": [], "cells": []}})
        self.at._run(states)
        self.check()
        return self


def open_page(workspace: Path, page: str, **feature_settings) -> App:
    """The app on `page`, with the sidebar's feature settings (proxy, dim, ...) stored in the
    workspace before the first start (which imports the demo)."""
    Workspace(workspace).set_meta("feature_settings", json.dumps(feature_settings))
    return App(workspace, page=page)


class DataPage(App):
    def __init__(self, workspace: Path):
        super().__init__(workspace)  # the default page

    def use_path(self, path: Path | str, split: str | None = None) -> None:
        self.at.segmented_control(key="source_kind").set_value("Path on the server")
        self.run()
        self.at.text_input(key="source_path").set_value(str(path))
        if split:
            self.at.text_input(key="source_split").set_value(split)
        self.run()

    def upload(self, name: str, data: bytes) -> None:
        self.at.segmented_control(key="source_kind").set_value("Upload a file")
        self.run()
        self.at.file_uploader[0].set_value((name, data, "application/octet-stream"))
        self.run()

    def map(self, **fields: str) -> None:
        for key, value in fields.items():
            self.at.text_input(key=f"map_{key}").set_value(value)
        self.run()

    def preview(self) -> pd.DataFrame:
        frames = [d.value for d in self.at.dataframe if "prompt" in d.value.columns]
        assert frames, f"no preview; errors: {self.errors()}"
        return frames[0]

    def import_as(self, name: str, replace: bool = False) -> None:
        self.at.text_input(key=next(k for k in self._keys() if k.startswith("name_"))).set_value(
            name
        )
        if replace:
            self.at.checkbox(key="import_replace").check()
        self.button("Import").click()
        self.run()

    def datasets(self) -> dict[str, int]:
        frames = [d.value for d in self.at.dataframe if "imported" in d.value.columns]
        return dict(zip(frames[0]["name"], frames[0]["rows"], strict=True)) if frames else {}

    def _keys(self) -> list[str]:
        return [w.key for w in self.at.text_input if w.key]
