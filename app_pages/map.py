"""Map: the dataset in gradient space, clusters with the sparse ones marked, selection."""

import json
from dataclasses import dataclass

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
K, SPARSE, COLOUR, BOTH = (f"map_{name}/{info.name}" for name in ("k", "sparse", "colour", "both"))
save = ui.remembered(
    ws,
    f"map_settings/{info.name}",
    {K: default_k(info.rows), SPARSE: 50, COLOUR: "cluster", BOTH: False},
)
if st.session_state[COLOUR] not in colour_options:  # a field the dataset no longer has
    st.session_state[COLOUR] = "cluster"
st.session_state[K] = min(max(int(st.session_state[K]), 2), max(2, info.rows))

cols = st.columns([1, 2, 2, 1.3], vertical_alignment="bottom")
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
both = cols[3].toggle(
    "Beside meaning",
    key=BOTH,
    on_change=save,
    help="Draw the sentence embeddings (all-MiniLM-L6-v2: what each sample says) beside the "
    "gradient features, each with its own clusters and layout, linked: a selection in one "
    "lights the same samples in the other. A table ranks the clusters where they disagree.",
)


def layout(fs: FeatureSet, of: str = "the map") -> maps.Layout | None:
    """The 2-D layout and density of `fs` (`of` names it in the progress label): stored
    beside the features, or computed now with progress and a Cancel (a cancelled layout is
    not started again until asked)."""
    return maps.layout_for(fs, compute=False) or ui.computed(
        f"Laying out {of} (PCA, then UMAP)",
        ("layout", root, info.name, info.fingerprint, fs.key),
        lambda bar: maps.layout_for(fs, on_progress=bar),
        cancel="No layout was stored.",
        again=f"Lay out {of} again",
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
    lit_rows: np.ndarray | None = None,
    title: str = "",
):
    """The map's figure, built once per setting (a selection reruns with the same figure),
    from the clustering and layout the page has stored beside the features (`k`, `seed`),
    the clusters' sparse flags and the records of `info`; `highlight` (clusters),
    `lit_rows` (rows) and `title` as charts.map_figure takes them; a map with a title is
    one of two side by side (`half_width`)."""
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
        lit_rows=lit_rows,
        title=title,
        half_width=bool(title),
    )


labels, described = ui.map_clusters(page, k, float(sparse_below)) or (None, None)
placed = layout(fs)  # stored beside the features, where figure_for reads it
if labels is None or placed is None:
    st.stop()
data = samples(info)
sparse = tuple(c["sparse"] for c in described)


def map_selection(
    selection: dict | None,
    fs: FeatureSet = fs,
    coords: np.ndarray = placed.coords,
    key: str = "map_selection",
) -> list[int]:
    """The dataset rows of a map's selection (charts.selected_rows, over every point of the
    map of `fs` at `coords`), worked out once per selection drawn (kept under `key`): a
    rerun of the fragment (a click in the table or the sample browser) does not test a
    million points again."""
    drawn = (fs.key, json.dumps(selection, sort_keys=True, default=str))
    kept = st.session_state.get(key)
    if kept is None or kept[0] != drawn:
        kept = (drawn, charts.selected_rows(selection, coords))
        st.session_state[key] = kept
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


def cluster_frame(described: list[dict], in_selection: np.ndarray) -> pd.DataFrame:
    """The cluster table: a row per cluster (maps.describe) with the selected samples in
    it counted; the sparse and the small first."""
    return pd.DataFrame(
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


def show_selection(rows: list[int], origin: str, clusters: dict[str, np.ndarray]) -> None:
    """The selected samples (`rows`, chosen as `origin` says) with their clusters
    (`clusters`: a column name -> the cluster of each row), one's full prompt and response,
    and saving them as a named selection."""
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
                **{name: column[shown] for name, column in clusters.items()},
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


def plot_map(figure, key: str):
    """Draw a map whose points, box and lasso selections rerun the page (read under `key`)."""
    return st.plotly_chart(
        figure,
        key=key,
        on_select="rerun",
        selection_mode=("points", "box", "lasso"),
        width="stretch",
    )


@st.fragment
def explore() -> None:
    """The map, the cluster table and the sample browser: a selection reruns only this."""
    picked_clusters = st.session_state.get("map_clusters_picked", [])
    figure = figure_for(info, fs, k, config.seed, sparse, colour_by, tuple(picked_clusters))
    figure = run_overlay(figure)
    event = plot_map(figure, "map_plot")
    if info.rows > charts.MAP_POINTS:
        st.caption(
            f"{charts.MAP_POINTS:,} of the {info.rows:,} samples are drawn (the sparse and the "
            "picked clusters first) over the grey density of all; a lasso or box selects every "
            "sample inside it."
        )
    from_map = map_selection(event.selection if event else None)
    in_selection = np.bincount(labels[from_map], minlength=len(described))

    st.subheader("Clusters")
    table = cluster_frame(described, in_selection)
    picked = st.dataframe(
        table,
        key=table_key("cluster_table"),
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

    show_selection(rows, origin, {"cluster": labels})


# --- beside meaning: the gradient and sentence spaces side by side, linked ---------------

TITLES = {"gradient": "Gradient features", "sentence": "Sentence embeddings (meaning)"}
READS = {
    "gradient": "close in gradient space, spread in meaning",
    "sentence": "close in meaning, spread in gradient space",
}
LINKED = "map_linked"  # the selection both maps show: dataset rows, and where they came from


@dataclass
class SpaceMap:
    """One space drawn on the page: its name (core.config.SPACES), features, the cluster of
    each row, the clusters' descriptions (maps.describe) and the 2-D layout."""

    name: str
    fs: FeatureSet
    labels: np.ndarray
    described: list[dict]
    coords: np.ndarray

    @property
    def sparse(self) -> tuple[bool, ...]:
        return tuple(c["sparse"] for c in self.described)


def sentence_space() -> tuple[ui.FeaturePage, SpaceMap] | None:
    """The sentence space's page and map: its embeddings, clusters (the same k) and layout,
    each computed on demand with progress and a Cancel; None while one is missing."""
    other = ui.space_page(page, "sentence")
    if other is None:
        return None
    found = ui.map_clusters(other, k, float(sparse_below))
    where = layout(other.features, "the sentence embeddings")
    if found is None or where is None:
        return None
    return other, SpaceMap("sentence", other.features, *found, where.coords)


def table_key(name: str) -> str:
    """The widget key of a table of clusters: a dataframe's picks are kept by its key, so the
    key names what the rows are (the data, the features, k), and new clusters start unpicked."""
    return f"{name}/{info.fingerprint}/{fs.key}/{k}"


def picked_in(key: str, rows: int) -> list[int]:
    """The rows picked in the dataframe `key` of `rows` rows (its widget state, read before it
    is drawn)."""
    state = st.session_state.get(key)
    return [i for i in state["selection"]["rows"] if i < rows] if state else []


def cluster_rows(labels: np.ndarray, clusters: list[int]) -> list[int]:
    return np.flatnonzero(np.isin(labels, clusters)).tolist()


def selection_sources(
    views: list[SpaceMap], ranked: pd.DataFrame
) -> dict[str, tuple[list[int], str]]:
    """Every place a selection can come from, as (dataset rows, what they are), read from
    the widgets' state before they are drawn: each map's lasso, box or clicks (applied to all
    its points: map_selection), each cluster table's picks, the disagreement table's picks."""
    sources = {}
    for view in views:
        state = st.session_state.get(f"map_plot_{view.name}")
        rows = map_selection(
            state["selection"] if state else None,
            view.fs,
            view.coords,
            f"map_selection_{view.name}",
        )
        sources[f"{view.name} map"] = (
            rows,
            f"{len(rows):,} points selected on the {view.name} map",
        )
        table = cluster_frame(view.described, np.zeros(len(view.described), dtype=int))
        picks = picked_in(table_key(f"clusters_{view.name}"), len(table))
        clusters = sorted(int(table.iloc[i]["cluster"]) for i in picks)
        rows = cluster_rows(view.labels, clusters)
        named = ", ".join(map(str, clusters))
        sources[f"{view.name} clusters"] = (
            rows,
            f"{len(rows):,} samples in {view.name} cluster(s) {named}",
        )
    labels = {view.name: view.labels for view in views}
    picks = [ranked.iloc[i] for i in picked_in(table_key("disagreement_table"), len(ranked))]
    rows = sorted(
        {r for p in picks for r in cluster_rows(labels[p["cluster of"]], [int(p["cluster"])])}
    )
    named = ", ".join(f"{p['cluster of']} {p['cluster']}" for p in picks)
    sources["disagreement"] = (rows, f"{len(rows):,} samples in cluster(s) {named}")
    return sources


def linked_selection(sources: dict[str, tuple[list[int], str]], scope: tuple) -> dict:
    """The selection both maps show: that of the source whose selection changed last (a new
    lasso on either map, a new pick in a table); cleared when that source is cleared. Kept in
    the session for the maps of `scope` (the data, both feature sets and k): {"source",
    "rows" (dataset rows), "origin" (what they are)}. A source emptied while another leads
    is ignored (a map redrawn to light another's selection drops its own)."""
    state = st.session_state.get(LINKED)
    if state is None or state["scope"] != scope:
        state = {"scope": scope, "seen": {}, "source": None, "rows": [], "origin": ""}
    for name, (rows, origin) in sources.items():
        if state["seen"].get(name) == rows:
            continue
        state["seen"][name] = rows
        if rows:
            state.update(source=name, rows=rows, origin=origin)
        elif state["source"] == name:
            state.update(source=None, rows=[], origin="")
    st.session_state[LINKED] = state
    return state


def disagreement_frame(found: dict, views: list[SpaceMap]) -> pd.DataFrame:
    """The disagreement table: a row per cluster of either space, highest score first."""
    words = {v.name: [", ".join(c["keywords"]) for c in v.described] for v in views}
    return pd.DataFrame(
        [
            {
                "score": round(r["score"], 2),
                "cluster of": r["space"],
                "cluster": r["cluster"],
                "size": r["size"],
                "reads": READS[r["space"]],
                "spread over": f"{r['other_clusters']} {r['other_space']} clusters",
                "largest parts": " · ".join(
                    f"{p['cluster']}: {p['rows']}" for p in r["splits_into"]
                ),
                "keywords": words[r["space"]][r["cluster"]],
            }
            for r in found["clusters"]
        ]
    )


@st.fragment
def explore_both(views: list[SpaceMap], found: dict) -> None:
    """Both maps side by side with their cluster tables, the disagreement table and the
    sample browser, linked by one selection of dataset rows (`linked_selection`): a lasso,
    box or click on one map, or a pick in a table, lights the same rows on both maps (the map
    it was drawn on shows it as drawn). A selection reruns only this."""
    ranked = disagreement_frame(found, views)
    scope = (info.fingerprint, k, *(view.fs.key for view in views))
    linked = linked_selection(selection_sources(views, ranked), scope)
    rows, source = linked["rows"], linked["source"]
    lit = np.array(rows, dtype=np.int64) if rows else None
    for column, view in zip(st.columns(2), views, strict=True):
        with column:
            figure = figure_for(
                info,
                view.fs,
                k,
                config.seed,
                view.sparse,
                colour_by,
                (),
                None if source == f"{view.name} map" else lit,
                TITLES[view.name],
            )
            plot_map(figure, f"map_plot_{view.name}")
    if info.rows > charts.MAP_POINTS:
        st.caption(
            f"{charts.MAP_POINTS:,} of the {info.rows:,} samples are drawn on each map over "
            "the grey density of all; a lasso or box selects every sample inside it."
        )
    for column, view in zip(st.columns(2), views, strict=True):
        with column:
            st.subheader(f"{TITLES[view.name]}: clusters")
            in_selection = np.bincount(view.labels[rows], minlength=len(view.described))
            st.dataframe(
                cluster_frame(view.described, in_selection),
                key=table_key(f"clusters_{view.name}"),
                on_select="rerun",
                selection_mode="multi-row",
                hide_index=True,
                height=280,
                column_config={"sparse": st.column_config.CheckboxColumn("sparse")},
            )
    st.subheader("Where the spaces disagree")
    st.caption(
        "Score: how spread a cluster's samples are in the other space, from 0 (as tight as "
        "that space's own clusters: the spaces agree) to 1 (as spread as samples drawn at "
        "random; above 1, more spread still). High scores first; pick rows to light their "
        "samples on both maps."
    )
    st.dataframe(
        ranked,
        key=table_key("disagreement_table"),
        on_select="rerun",
        selection_mode="multi-row",
        hide_index=True,
        height=280,
    )
    show_selection(rows, linked["origin"], {f"{v.name} cluster": v.labels for v in views})


def both_spaces() -> bool:
    """The two spaces side by side (`explore_both`), once the sentence space's map and the
    disagreement table are ready; False while not (their buttons and progress shown)."""
    found = sentence_space()
    if found is None:
        return False
    other, sentence = found
    gradient = SpaceMap("gradient", fs, labels, described, placed.coords)
    table = ui.disagreement((page, other), (labels, sentence.labels), k)
    if table is None:
        return False
    explore_both([gradient, sentence], table)
    return True


if not (both and both_spaces()):
    explore()

saved = ws.selections(info.name)
if saved:
    st.subheader("Saved selections")
    st.dataframe(pd.DataFrame(saved), hide_index=True)
