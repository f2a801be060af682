"""Map: the dataset in gradient space, clusters with the sparse ones marked, selection."""

import json

import numpy as np
import pandas as pd
import streamlit as st

import charts
import ui
from core import filled, maps, synthesis
from core.diversity import field_labels
from core.features import FeatureSet
from core.records import read_columns
from core.regions import default_k
from core.workspace import DatasetInfo

page = ui.feature_page(
    "Map",
    "Each point is a sample placed by UMAP from its gradient features; clusters are spherical k-means "
    "in the full feature space. Sparse clusters (red ★ labels, ringed points) are the thin regions "
    "worth filling. Draw a lasso or a box, click points, or pick clusters in the table.",
)
ws, info, config, fs = page.ws, page.info, page.config, page.features
root = str(ws.root)

colour_options = [
    "cluster",
    "sparse",
    "density",
    "source",
    "visual group (HDBSCAN)",
    *ui.meta_fields(info),
]
# the controls are kept per dataset in the workspace, so a refresh or a visit elsewhere keeps them
K, SPARSE, COLOUR = (f"map_{name}/{info.name}" for name in ("k", "sparse", "colour"))
save = ui.remembered(
    ws, f"map_settings/{info.name}", {K: default_k(info.rows), SPARSE: 50, COLOUR: "cluster"}
)
if st.session_state[COLOUR] not in colour_options:  # a field the dataset no longer has
    st.session_state[COLOUR] = "cluster"
st.session_state[K] = min(max(int(st.session_state[K]), 2), max(2, info.rows))

cols = st.columns([1, 2, 2, 1])
k = int(cols[0].number_input("Clusters (k)", 2, max(2, info.rows), key=K, on_change=save))
sparse_below = cols[1].slider(
    "Sparse below percentile of cluster sizes",
    5,
    95,
    step=5,
    key=SPARSE,
    on_change=save,
    help="50: clusters smaller than the median cluster (the paper's acceptance set).",
)
colour_by = cols[2].selectbox("Colour by", colour_options, key=COLOUR, on_change=save)


def layout() -> maps.Layout | None:
    """The 2-D layout and density: stored beside the features, or computed now with progress
    and a Cancel (a cancelled layout is not started again until asked)."""
    return maps.layout_for(fs, compute=False) or ui.computed(
        "Laying out the map (PCA, then UMAP)",
        ("layout", root, info.name, info.fingerprint, fs.key),
        lambda bar: maps.layout_for(fs, on_progress=bar),
        cancel="No layout was stored.",
        again="Lay out the map again",
    )


@st.cache_resource(show_spinner="Reading the samples...", max_entries=2)
def samples(info: DatasetInfo) -> dict[str, list[str]]:
    """The records' ids, prompts, responses and sources, once per dataset contents (a
    resource: every rerun shares the lists, where a data cache would copy a million rows
    each time). Read only."""
    return read_columns(info.path, ["id", "prompt", "response", "source"])


def colours(
    info: DatasetInfo,
    fs: FeatureSet,
    labels: np.ndarray,
    sparse: np.ndarray,
    layout: maps.Layout,
    colour_by: str,
) -> tuple[np.ndarray, str]:
    """A colour value per row for the "Colour by" choice, and its kind for the figure."""
    if colour_by == "cluster":
        return labels, "cluster"
    if colour_by == "sparse":
        return np.where(sparse[labels], "sparse", "dense"), "sparse"
    if colour_by == "density":
        return layout.density, "continuous"
    if colour_by == "source":
        return np.asarray(samples(info)["source"]), "source"
    if colour_by.startswith("visual group"):
        groups = maps.groups_for(fs, layout)
        return np.where(groups < 0, "none", groups.astype(str)), "group"
    return np.asarray(field_labels(info.path, colour_by)), colour_by


@st.cache_resource(show_spinner="Drawing the map...", max_entries=8, hash_funcs=ui.HASH_FUNCS)
def figure_for(
    info: DatasetInfo,
    fs: FeatureSet,
    k: int,
    seed: int,
    sparse: tuple[bool, ...],
    colour_by: str,
    highlight: tuple[int, ...],
):
    """The map's figure, built once per setting (a selection reruns with the same figure),
    from the clustering and layout the page has stored beside the features (`k`, `seed`),
    the clusters' sparse flags and the records of `info`."""
    labels = maps.clusters_for(fs, k=k, seed=seed).labels
    where = maps.layout_for(fs)
    flags = np.array(sparse, dtype=bool)
    colour, colour_kind = colours(info, fs, labels, flags, where, colour_by)
    return charts.map_figure(
        where.coords,
        colour=colour,
        colour_kind=colour_kind,
        labels=labels,
        sparse=flags,
        texts=samples(info)["prompt"],
        highlight=set(highlight) or None,
    )


labels, described = ui.map_clusters(page, k, float(sparse_below)) or (None, None)
placed = layout()  # stored beside the features, where figure_for reads it
if labels is None or placed is None:
    st.stop()
data = samples(info)
sparse = tuple(c["sparse"] for c in described)


def map_selection(selection: dict | None) -> list[int]:
    """The dataset rows of the map's selection (charts.selected_rows, over every point),
    worked out once per selection drawn: a rerun of the fragment (a click in the table or
    the sample browser) does not test a million points again."""
    drawn = (fs.key, json.dumps(selection, sort_keys=True, default=str))
    kept = st.session_state.get("map_selection")
    if kept is None or kept[0] != drawn:
        kept = (drawn, charts.selected_rows(selection, placed.coords))
        st.session_state["map_selection"] = kept
    return kept[1]


@st.cache_data(show_spinner=False, max_entries=8, hash_funcs=ui.HASH_FUNCS)
def runs_here(ws, dataset: str, fs: FeatureSet, runs: tuple[str, ...]) -> list[str]:  # noqa: ARG001 (runs: the key)
    """The dataset's runs made with this map's features (filled.placeable_runs)."""
    return filled.placeable_runs(ws, dataset, fs)


@st.cache_data(show_spinner="Placing the run's samples...", max_entries=8, hash_funcs=ui.HASH_FUNCS)
def run_points(ws, run_id: str, fs: FeatureSet, rejected: bool, decisions: tuple) -> dict:  # noqa: ARG001 (decisions: the key)
    """filled.run_points on this map's layout, once per state of the run's decisions."""
    return filled.run_points(ws, run_id, fs, placed.coords, rejected=rejected)


def run_overlay(figure):
    """The figure with the samples of a synthesis run chosen here drawn over it at their
    place (accepted; rejected too with the toggle), or the figure itself when none is."""
    runs = runs_here(ws, info.name, fs, tuple(r["id"] for r in synthesis.list_runs(ws, info.name)))
    if not runs:
        return figure
    cols = st.columns([3, 2], vertical_alignment="bottom")
    run_id = cols[0].selectbox(
        "Show the samples of a synthesis run",
        ["none", *runs],
        key=f"map_run/{info.name}",
        help="Runs made with these feature settings, newest first.",
    )
    rejected = cols[1].toggle("Its rejected samples too", key="map_run_rejected")
    if run_id == "none":
        return figure
    decisions = tuple((i["item_id"], i["decision"]) for i in synthesis.review(ws, run_id))
    shown = ui.attempt(lambda: run_points(ws, run_id, fs, rejected, decisions))
    if not shown:
        return figure
    kinds = "accepted (stars)" + (" and rejected (crosses)" if rejected else "")
    note = f" {shown['not_placed']} have no features, so no place." if shown["not_placed"] else ""
    st.caption(
        f"{len(shown['points'])} samples of run {run_id}, {kinds}, at the mean place of their "
        f"15 nearest samples in gradient space.{note}"
    )
    return charts.with_run_points(figure, shown["points"], run_id)


@st.fragment
def explore() -> None:
    """The map, the cluster table and the sample browser: a selection reruns only this."""
    picked_clusters = st.session_state.get("map_clusters_picked", [])
    figure = figure_for(info, fs, k, config.seed, sparse, colour_by, tuple(picked_clusters))
    figure = run_overlay(figure)
    event = st.plotly_chart(
        figure,
        key="map_plot",
        on_select="rerun",
        selection_mode=("points", "box", "lasso"),
        width="stretch",
    )
    if info.rows > charts.MAP_POINTS:
        st.caption(
            f"{charts.MAP_POINTS:,} of the {info.rows:,} samples are drawn (the sparse and the "
            "picked clusters first) over the grey density of all; a lasso or box selects every "
            "sample inside it."
        )
    from_map = map_selection(event.selection if event else None)
    in_selection = np.bincount(labels[from_map], minlength=len(described))

    st.subheader("Clusters")
    table = pd.DataFrame(
        [
            {
                "cluster": c["id"],
                "size": c["size"],
                "sparse": c["sparse"],
                "G-Vendi": round(c["g_vendi"], 2),
                "selected": int(in_selection[c["id"]]),
                "keywords": ", ".join(c["keywords"]),
                "nearest the centre": " | ".join(p[:60] for p in c["example_prompts"]),
            }
            for c in described
        ]
    ).sort_values(["sparse", "size"], ascending=[False, True])
    picked = st.dataframe(
        table,
        key="cluster_table",
        on_select="rerun",
        selection_mode="multi-row",
        hide_index=True,
        column_config={"sparse": st.column_config.CheckboxColumn("sparse")},
    )
    table_rows = picked.selection.rows if picked else []
    clusters_picked = sorted(int(table.iloc[i]["cluster"]) for i in table_rows)
    if clusters_picked != picked_clusters:  # keep the map's highlight in step with the table
        st.session_state["map_clusters_picked"] = clusters_picked
        st.rerun(scope="fragment")

    if from_map:
        rows, origin = from_map, f"{len(from_map):,} points selected on the map"
    elif clusters_picked:
        rows = np.flatnonzero(np.isin(labels, clusters_picked)).tolist()
        origin = f"{len(rows):,} samples in cluster(s) {', '.join(map(str, clusters_picked))}"
    else:
        rows, origin = [], ""

    st.subheader("Selection")
    if not rows:
        st.caption("Nothing selected yet.")
        return
    st.markdown(origin)
    shown = rows[:1000]
    browser = st.dataframe(
        pd.DataFrame(
            {
                "row": shown,
                "id": [data["id"][r] for r in shown],
                "cluster": labels[shown],
                "prompt": [data["prompt"][r][:150] for r in shown],
            }
        ),
        key="sample_browser",
        on_select="rerun",
        selection_mode="single-row",
        hide_index=True,
        height=240,
    )
    chosen = browser.selection.rows[0] if browser and browser.selection.rows else 0
    row = rows[chosen]
    left, right = st.columns(2)
    left.caption(f"Prompt · row {row} · id {ui.md(data['id'][row])}")
    left.text(data["prompt"][row])
    right.caption("Response")
    right.text(data["response"][row])

    cols = st.columns([3, 1], vertical_alignment="bottom")
    name = cols[0].text_input(
        "Save the selection as", key="selection_name", placeholder="thin-geometry"
    )
    if cols[1].button("Save selection", icon=":material/bookmark_add:", disabled=not name):
        saved = ui.attempt(lambda: ws.save_selection(info.name, name, rows, note=origin))
        if saved:
            st.success(
                f"Saved {len(saved['rows']):,} rows as selection **{ui.md(saved['name'])}**."
            )


explore()

saved = ws.selections(info.name)
if saved:
    st.subheader("Saved selections")
    st.dataframe(pd.DataFrame(saved), hide_index=True)
