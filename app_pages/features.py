"""Features: the gradient features of the active dataset, from the cache or computed now."""

import pandas as pd
import streamlit as st

import ui
from core.features import feature_sets

page = ui.feature_page(
    "Features",
    "Each sample becomes the gradient of its response loss in a small proxy model, projected to a "
    "few hundred numbers: the space where diversity is measured and thin regions are found.",
    need_features=False,
)
ws, info, config, ready = page.ws, page.info, page.config, page.features
if ready:
    facts = ready.facts
    timing = (
        f", computed in {facts['seconds']} s ({facts['samples_per_second']} samples/s)"
        if facts.get("seconds")
        else ""
    )
    st.success(f"Features ready: {ready.rows:,} x {ready.dim}{timing}")
    if facts.get("truncated"):
        st.caption(f"{facts['truncated']:,} samples were cut to {config.max_length} tokens.")
    if facts.get("uncovered_parameters"):
        st.caption(
            "Parameters left out of the sketch: " + ui.md(", ".join(facts["uncovered_parameters"]))
        )

st.subheader("Feature sets of this dataset")
sets = feature_sets(ws, info.name)
if sets:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "proxy": s["proxy"],
                    "method": s["settings"]["method"],
                    "dims": s["dim"],
                    # the settings its method uses (core.encoders), others empty
                    "rank": s["settings"].get("rank"),
                    "seed": s["settings"].get("seed"),
                    "max tokens": s["settings"].get("max_length"),
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
