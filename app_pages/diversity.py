"""Diversity: G-Vendi of the active dataset, comparisons, groups, redundancy, baselines."""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import ui
from core import diversity
from core.regions import default_k
from core.workspace import Workspace

page = ui.feature_page(
    "Diversity",
    "G-Vendi is the effective number of distinct gradient directions in the data (docs/method.md): "
    "1 when every sample pulls the proxy the same way, up to the number of samples or dimensions.",
)
ws, info, proxy, config, runtime, fs = (
    page.ws,
    page.info,
    page.proxy,
    page.config,
    page.runtime,
    page.features,
)
root = str(ws.root)


# results are cached by the feature set's key: recomputing features gives new results
@st.cache_data(show_spinner="Scoring...", max_entries=64)
def scored(
    root: str,
    dataset: str,
    key: str,
    by: str | None = None,
    k: int | None = None,
    replicates: int = 0,
):
    return diversity.score(
        Workspace(root),
        dataset,
        proxy=proxy,
        config=config,
        runtime=runtime,
        by=by,
        k=k,
        replicates=replicates,
    )


@st.cache_data(show_spinner="Finding redundant samples...", max_entries=16)
def redundancy(root: str, dataset: str, key: str):
    return diversity.redundant(Workspace(root), dataset, fs, limit=500)


@st.cache_data(show_spinner="Comparing...", max_entries=16)
def compared(
    root: str, names: tuple[str, ...], fingerprints: tuple[str, ...], key: str, equal: bool
):
    """Cached by the datasets' contents and the active feature set's key (proxy, settings)."""
    return diversity.compare(
        Workspace(root),
        list(names),
        proxy=proxy,
        config=config,
        runtime=runtime,
        equal=equal,
        replicates=30,
    )


@st.cache_data(show_spinner="Computing the baselines...", max_entries=16)
def baseline_scores(root: str, dataset: str, fingerprint: str):
    return diversity.baselines(Workspace(root), dataset, runtime=runtime)


# --- score cards ---------------------------------------------------------------------------
replicates = 50 if fs.rows <= 20_000 else 0
result = ui.attempt(lambda: scored(root, info.name, fs.key, replicates=replicates))
if result is None:
    st.stop()
cols = st.columns(5)
interval = result.get("interval")
cols[0].metric(
    "G-Vendi",
    f"{result['g_vendi']:.2f}",
    help=f"95% bootstrap interval {interval['low']:.2f} - {interval['high']:.2f}"
    if interval
    else None,
)
cols[1].metric("Samples", f"{result['rows']:,}")
for col, (q, label) in zip(
    cols[2:], [("0.5", "Vendi q=0.5"), ("2", "Vendi q=2"), ("inf", "Vendi q=∞")], strict=True
):
    col.metric(label, f"{result['orders'][q]:.2f}")
if interval:
    st.caption(
        f"95% bootstrap interval of G-Vendi: {interval['low']:.2f} - {interval['high']:.2f} ({replicates} replicates)."
    )

# --- comparison ------------------------------------------------------------------------------
st.subheader("Compare datasets")
others = [d.name for d in ws.datasets() if d.name != info.name]
picked = st.multiselect("Compare with", others, key="compare_with", placeholder="Choose datasets")
if picked:
    names = (info.name, *picked)
    chosen = {d.name: d for d in ws.datasets() if d.name in names}
    sizes = {name: d.rows for name, d in chosen.items()}
    differ = len(set(sizes.values())) > 1
    equal = st.toggle(
        "Equal-size random subsamples",
        value=differ,
        key="compare_equal",
        help="G-Vendi grows with the number of samples: compare on equal sizes (the paper's controlled setting).",
    )
    if differ and not equal:
        st.warning(
            "The datasets differ in size and G-Vendi grows with N: this comparison favours the larger ones."
        )
    if st.button("Compare", icon=":material/bar_chart:"):
        fingerprints = tuple(chosen[n].fingerprint for n in names)  # new data, new results
        comparison = ui.attempt(lambda: compared(root, names, fingerprints, fs.key, equal))
        if comparison:
            st.session_state["comparison"] = (names, equal, fs.key, comparison)
    stored = st.session_state.get("comparison")
    if stored and stored[:3] == (names, equal, fs.key):  # the same datasets and feature settings
        comparison = stored[3]
        frame = pd.DataFrame(comparison["datasets"])
        if equal:
            err = dict(type="data", array=frame["std"])
            title = f"G-Vendi on random subsamples of {comparison['equal_size']:,} rows (mean ± sd)"
        else:
            err = dict(
                type="data",
                symmetric=False,
                array=frame["high"] - frame["g_vendi"],
                arrayminus=frame["g_vendi"] - frame["low"],
            )
            title = "G-Vendi with 95% bootstrap intervals"
        figure = go.Figure(
            go.Bar(x=frame["name"], y=frame["g_vendi"], error_y=err, marker_color="#7b2cbf")
        )
        figure.update_layout(
            title=title, yaxis_title="G-Vendi", height=380, margin=dict(t=50, b=30)
        )
        st.plotly_chart(figure, width="stretch")
        number = st.column_config.NumberColumn(format="%.2f")
        st.dataframe(
            frame,
            hide_index=True,
            column_config={c: number for c in ("g_vendi", "g_vendi_full", "std", "low", "high")},
        )

# --- groups ----------------------------------------------------------------------------------
st.subheader("By group")
fields = ["cluster", "source", *diversity.meta_fields(ws, info.name)]
cols = st.columns([2, 1, 3])
by = cols[0].selectbox("Group by", fields, key="group_by")
k = cols[1].number_input(
    "Clusters",
    2,
    max(2, info.rows),
    default_k(info.rows),
    key="group_k",
    disabled=by != "cluster",
)
grouped = ui.attempt(
    lambda: scored(root, info.name, fs.key, by=by, k=int(k) if by == "cluster" else None)
)
if grouped:
    st.dataframe(
        pd.DataFrame(grouped["groups"]).rename(columns={"group": by, "g_vendi": "G-Vendi"}),
        hide_index=True,
        column_config={"G-Vendi": st.column_config.NumberColumn(format="%.2f")},
    )

# --- redundancy ------------------------------------------------------------------------------
st.subheader("Most redundant samples")
st.caption(
    "Marginal value: how much G-Vendi would drop without the sample. The lowest (often negative: "
    "the score would rise) are the most redundant. Sort by any column."
)
rows = ui.attempt(lambda: redundancy(root, info.name, fs.key))
if rows:
    st.dataframe(
        pd.DataFrame([{**r, "prompt": r["prompt"][:200]} for r in rows]),
        hide_index=True,
        column_config={
            "marginal_value": st.column_config.NumberColumn("marginal value", format="%.5f")
        },
    )

# --- baselines -------------------------------------------------------------------------------
st.subheader("Baselines")
st.caption(
    "Surface diversity beside G-Vendi: sentence-embedding Vendi (all-MiniLM-L6-v2, cosine kernel), "
    "distinct n-grams, mean response length."
)
if (
    st.button("Compute baselines", icon=":material/calculate:")
    or st.session_state.get("baselines_for") == info.fingerprint
):
    base = ui.attempt(lambda: baseline_scores(root, info.name, info.fingerprint))
    if base:
        st.session_state["baselines_for"] = info.fingerprint
        cols = st.columns(6)
        cols[0].metric(
            "Sentence Vendi", f"{base['sentence_vendi']:.2f}" if base["sentence_vendi"] else "n/a"
        )
        for col, n in zip(cols[1:5], "1234", strict=True):
            col.metric(f"distinct-{n}", f"{base['distinct_n'][n]:.3f}")
        cols[5].metric("Mean response", f"{base['mean_response']['words']:.0f} words")
        if base.get("sentence_error"):
            st.info(base["sentence_error"])
