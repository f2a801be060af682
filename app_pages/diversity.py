"""Diversity: G-Vendi of the active dataset, comparisons, groups, redundancy, baselines."""

import pandas as pd
import streamlit as st

import charts
import ui
from core import diversity
from core.regions import default_k
from core.sentence import SENTENCE_MODEL

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
BOOTSTRAP_ROWS = 20_000  # bootstrap intervals up to this many rows (each replicate is a pass)


def scored(by: str | None = None, k: int | None = None, replicates: int = 0):
    """The active dataset's score (per group with `by`), computed once per feature set and
    settings, with progress and a Cancel."""
    what = f"Scoring by {ui.md(by)}" if by else "Scoring"
    return ui.computed(
        what,
        ("score", root, info.name, info.fingerprint, fs.key, proxy, config, by, k, replicates),
        lambda bar: diversity.score(
            ws,
            info.name,
            proxy=proxy,
            config=config,
            runtime=runtime,
            by=by,
            k=k,
            replicates=replicates,
            on_progress=bar,
        ),
        cancel="Nothing was scored.",
        again=f"{what} again",
    )


# --- score cards ---------------------------------------------------------------------------
replicates = 50 if fs.rows <= BOOTSTRAP_ROWS else 0
result = scored(replicates=replicates)
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
    # bootstrap intervals without equal sizes, when every dataset is small enough
    compare_replicates = 30 if not equal and max(sizes.values()) <= BOOTSTRAP_ROWS else 0
    # the datasets' contents and the feature settings: new data or settings, new results
    compare_key = (
        "compare",
        root,
        names,
        tuple(chosen[n].fingerprint for n in names),
        proxy,
        config,
        equal,
        compare_replicates,
    )
    asked = st.button("Compare", icon=":material/bar_chart:")
    if asked or st.session_state.get("comparison") == compare_key:
        comparison = ui.computed(
            "Comparing",
            compare_key,
            lambda bar: diversity.compare(
                ws,
                list(names),
                proxy=proxy,
                config=config,
                runtime=runtime,
                equal=equal,
                replicates=compare_replicates,
                on_progress=bar,
            ),
            cancel="The features computed so far are kept; nothing was compared.",
            again="Compare again",
            asked=asked,
        )
        if comparison:
            st.session_state["comparison"] = compare_key
            rows = comparison["datasets"]
            if equal:
                title = (
                    f"G-Vendi on random subsamples of {comparison['equal_size']:,} rows (mean ± sd)"
                )
            elif comparison["replicates"]:
                title = "G-Vendi with 95% bootstrap intervals"
            else:
                title = f"G-Vendi (no intervals above {BOOTSTRAP_ROWS:,} rows)"
            st.plotly_chart(charts.comparison_figure(rows, title), width="stretch")
            number = st.column_config.NumberColumn(format="%.2f")
            st.dataframe(
                pd.DataFrame(rows),
                hide_index=True,
                column_config={
                    c: number for c in ("g_vendi", "g_vendi_full", "std", "low", "high")
                },
            )

# --- groups ----------------------------------------------------------------------------------
st.subheader("By group")
fields = ["cluster", "source", *ui.meta_fields(info)]
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
grouped = scored(by=by, k=int(k) if by == "cluster" else None)
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
rows = ui.computed(
    "Finding redundant samples",
    ("redundant", root, info.name, info.fingerprint, fs.key, 500),
    lambda bar: diversity.redundant(ws, info.name, fs, limit=500, on_progress=bar),
    cancel="Nothing was stored.",
    again="Find redundant samples again",
)
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
asked = st.button("Compute baselines", icon=":material/calculate:")
if asked or st.session_state.get("baselines_for") == info.fingerprint:
    base = ui.computed(
        "Computing the baselines",
        ("baselines", root, info.name, info.fingerprint, SENTENCE_MODEL),
        lambda bar: diversity.baselines(ws, info.name, runtime=runtime, on_progress=bar),
        cancel="The finished sentence-embedding chunks are kept; no baselines were shown.",
        again="Compute the baselines again",
        asked=asked,
    )
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
            st.info(ui.md(base["sentence_error"]))
