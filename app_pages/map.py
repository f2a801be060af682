"""Map: the dataset in gradient space, clusters with the sparse ones marked, selection."""

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import streamlit as st

import charts
import ui
from core import maps
from core.diversity import meta_fields, meta_label
from core.progress import parts
from core.regions import default_k
from core.workspace import Workspace

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
    *meta_fields(ws, info.name),
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


def clusters(k: int, sparse_below: float):
    """(cluster per row, description per cluster), computed once per feature set and
    settings, with progress and a Cancel."""

    def compute(bar):
        clustering_part, describing = parts(bar, [3, 1])
        clustering = maps.clusters_for(ws, fs, k=k, seed=config.seed, on_progress=clustering_part)
        described = maps.describe(
            ws, info.name, fs, clustering, sparse_below=sparse_below, on_progress=describing
        )
        return clustering.labels, described

    return ui.computed(
        "Clustering",
        ("clusters", root, info.name, info.fingerprint, fs.key, config.seed, k, sparse_below),
        compute,
        cancel="A clustering that had finished is kept; its descriptions were not.",
        again="Cluster again",
    )


def layout():
    """(coordinates, density): stored beside the features, or computed now with progress and
    a Cancel (a cancelled layout is not started again until asked)."""
    found = maps.layout_for(ws, fs, compute=False) or ui.computed(
        "Laying out the map (PCA, then UMAP)",
        ("layout", root, info.name, info.fingerprint, fs.key),
        lambda bar: maps.layout_for(ws, fs, on_progress=bar),
        cancel="No layout was stored.",
        again="Lay out the map again",
    )
    return (found.coords, found.density) if found else None


@st.cache_data(show_spinner="Reading the samples...", max_entries=8)
def samples(root: str, dataset: str, fingerprint: str) -> pd.DataFrame:
    table = pq.read_table(
        Workspace(root).dataset(dataset).path,
        columns=["id", "prompt", "response", "source", "meta"],
    )
    return table.to_pandas()


labels, described = clusters(k, float(sparse_below)) or (None, None)
coords_density = layout()
if labels is None or coords_density is None:
    st.stop()
coords, density = coords_density
data = samples(root, info.name, info.fingerprint)
sparse = np.array([c["sparse"] for c in described])


def colours() -> tuple[np.ndarray, str]:
    if colour_by == "cluster":
        return labels, "cluster"
    if colour_by == "sparse":
        return np.where(sparse[labels], "sparse", "dense"), "sparse"
    if colour_by == "density":
        return density, "continuous"
    if colour_by == "source":
        return data["source"].to_numpy(), "source"
    if colour_by.startswith("visual group"):
        groups = maps.groups_for(ws, fs, maps.Layout(coords, density, True))
        return np.where(groups < 0, "none", groups.astype(str)), "group"
    field = colour_by
    return np.array([meta_label(json.loads(m) if m else {}, field) for m in data["meta"]]), field


@st.cache_resource(show_spinner="Drawing the map...", max_entries=8)
def figure_for(key: str, k: int, sparse_below: float, colour_by: str, highlight: tuple[int, ...]):
    """The map's figure, built once per setting (a selection reruns with the same figure)."""
    colour, colour_kind = colours()
    hover = [charts.excerpt(p, 80 if len(data) <= 20_000 else 30) for p in data["prompt"]]
    return charts.map_figure(
        coords,
        colour=colour,
        colour_kind=colour_kind,
        labels=labels,
        sparse=sparse,
        hover=hover,
        highlight=set(highlight) or None,
    )


@st.fragment
def explore() -> None:
    """The map, the cluster table and the sample browser: a selection reruns only this."""
    picked_clusters = st.session_state.get("map_clusters_picked", [])
    figure = figure_for(fs.key, k, float(sparse_below), colour_by, tuple(picked_clusters))
    event = st.plotly_chart(
        figure,
        key="map_plot",
        on_select="rerun",
        selection_mode=("points", "box", "lasso"),
        width="stretch",
    )
    from_map = charts.selected_rows(event.selection if event else None)

    st.subheader("Clusters")
    table = pd.DataFrame(
        [
            {
                "cluster": c["id"],
                "size": c["size"],
                "sparse": c["sparse"],
                "G-Vendi": round(c["g_vendi"], 2),
                "selected": int(np.sum(labels[from_map] == c["id"])) if from_map else 0,
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
    shown = data.iloc[rows[:1000]]
    browser = st.dataframe(
        pd.DataFrame(
            {
                "row": rows[:1000],
                "id": shown["id"].to_numpy(),
                "cluster": labels[rows[:1000]],
                "prompt": [p[:150] for p in shown["prompt"]],
            }
        ),
        key="sample_browser",
        on_select="rerun",
        selection_mode="single-row",
        hide_index=True,
        height=240,
    )
    chosen = browser.selection.rows[0] if browser and browser.selection.rows else 0
    record = data.iloc[rows[chosen]]
    left, right = st.columns(2)
    left.caption(f"Prompt · row {rows[chosen]} · id {ui.md(record['id'])}")
    left.text(record["prompt"])
    right.caption("Response")
    right.text(record["response"])

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
