"""Features: the gradient features of the active dataset, from the cache or computed now."""

import pandas as pd
import streamlit as st

import ui
from core.features import compute_features, feature_sets, find_features

ws = ui.workspace()
st.title("Features")
st.caption(
    "Each sample becomes the gradient of its response loss in a small proxy model, projected to a "
    "few hundred numbers: the space where diversity is measured and thin regions are found."
)
info = ui.active_dataset(ws)
if info is None:
    st.info("Import a dataset on the Data page first.")
    st.stop()

proxy, config, runtime = ui.feature_request(ws)
st.markdown(
    f"**{info.name}** ({info.rows:,} rows) · proxy `{proxy.name}` · {config.method} · {config.dim} dims"
    + (f" · rank {config.rank}" if config.method == "factorized" else "")
    + f" · seed {config.seed} · up to {config.max_length} tokens · device {runtime.device}"
)
if proxy.name.startswith("tiny-random"):
    st.warning(
        f"`{proxy.name}` is a tiny random model for trying the workflow: its scores are not meaningful."
    )

ready = ui.attempt(lambda: find_features(ws, info.name, proxy=proxy, config=config))
if ready:
    facts = ready.facts
    st.success(
        f"Features ready: {ready.rows:,} x {ready.dim}"
        + (
            f", computed in {facts['seconds']} s ({facts['samples_per_second']} samples/s)"
            if facts.get("seconds")
            else ""
        )
    )
    if facts.get("truncated"):
        st.caption(f"{facts['truncated']:,} samples were cut to {config.max_length} tokens.")
    if facts.get("uncovered_parameters"):
        st.caption("Parameters left out of the sketch: " + ", ".join(facts["uncovered_parameters"]))
else:
    if st.session_state.pop("features_cancelled", False):
        st.info("Cancelled. The finished chunks are kept: computing again resumes from them.")
    cols = st.columns([2, 1, 5])
    start = cols[0].button("Compute features", type="primary", icon=":material/play_arrow:")
    if start:
        cols[1].button("Cancel", on_click=lambda: st.session_state.update(features_cancelled=True))
        with ui.progress("Computing features", unit="samples") as bar:
            done = ui.attempt(
                lambda: compute_features(
                    ws, info.name, proxy=proxy, config=config, runtime=runtime, on_progress=bar
                )
            )
        if done:
            st.rerun()

st.subheader("Feature sets of this dataset")
sets = feature_sets(ws, info.name)
if sets:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "proxy": s["proxy"],
                    "method": s["config"]["method"],
                    "dims": s["dim"],
                    "rank": s["config"]["rank"] if s["config"]["method"] == "factorized" else None,
                    "seed": s["config"]["seed"],
                    "max tokens": s["config"]["max_length"],
                    "rows": s["rows"],
                    "complete": bool(s["complete"]),
                    "samples/s": s["facts"].get("samples_per_second"),
                    "updated": s["updated_at"],
                }
                for s in sets
            ]
        ),
        hide_index=True,
    )
else:
    st.caption("None yet.")
