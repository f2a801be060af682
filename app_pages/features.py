"""Features: the gradient features of the active dataset, from the cache or computed now
(how long that takes is said first), and vectors computed elsewhere, attached from a file."""

import pandas as pd
import streamlit as st

import ui
from core.config import FILE
from core.features import feature_sets, import_features

page = ui.feature_page(
    "Features",
    "Each sample becomes the gradient of its response loss in a small proxy model, projected to a "
    "few hundred numbers: the space where diversity is measured and thin regions are found.",
    need_features=False,
    estimate=True,
    engine=True,
)
ws, info, config, ready = page.ws, page.info, page.config, page.features
if ready:
    facts = ready.facts
    timing = (
        f", computed in {facts['seconds']} s ({facts['samples_per_second']} samples/s)"
        if facts.get("seconds")
        else ""
    )
    source = (
        f", attached from {ui.md(facts['imported_from'])}" if facts.get("imported_from") else ""
    )
    st.success(f"Features ready: {ready.rows:,} x {ready.dim}{timing}{source}")
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
                    "attached from": s["facts"].get("imported_from"),
                    "updated": s["updated_at"],
                }
                for s in sets
            ]
        ),
        hide_index=True,
    )
else:
    st.caption("None yet.")

# --- vectors computed elsewhere ----------------------------------------------------------------
st.subheader("Attach vectors computed elsewhere")
st.caption(
    "An N x d matrix, one row per sample of this dataset: .npy, .parquet (one list column, or "
    "one numeric column per dimension) or .safetensors, its rows in the dataset's order or "
    "matched by an id column. A file that `embed --out` wrote for the same dataset (on a GPU "
    "machine, say) becomes the very features that computing them here gives, synthesis "
    "included; vectors from another tool can be scored, mapped, curated and exported."
)
where = st.segmented_control(
    "Vectors from",
    ["Path on the server", "Upload a file"],
    default="Path on the server",
    key="vec_source",
    label_visibility="collapsed",
)
path = ""
if where == "Upload a file":
    cap = st.get_option("server.maxUploadSize")
    upload = st.file_uploader(
        f".npy, .parquet or .safetensors, up to {cap} MB",
        type=["npy", "parquet", "safetensors"],
        key="vec_upload",
    )
    st.caption(
        "For small files; a large one (1M x 1024 float32 is 4 GB) is read from a path on the "
        "server, in blocks."
    )
    if upload is not None:
        path = str(ui.save_upload(ws, upload.name, upload.getvalue()))
else:
    path = st.text_input(
        "File on the server", key="vec_path", placeholder="features.safetensors"
    ).strip()
id_column = st.text_input(
    "Id column (optional)",
    key="vec_id_column",
    help="Match the file's rows to the dataset's record ids by this column (Parquet) or tensor "
    "(safetensors; a tensor named ids is used without asking) instead of in dataset order.",
).strip()
if st.button("Attach", icon=":material/attach_file:", disabled=not path, key="vec_attach"):
    with ui.progress("Attaching the vectors", cancel="Nothing was attached.") as bar:
        attached = ui.attempt(
            lambda: import_features(
                ws, info.name, path, id_column=id_column or None, on_progress=bar
            )
        )
    if attached:
        ui.use_features(ws, attached)
        kind = (
            f"vectors of their own ({ui.md(attached.proxy)}): synthesis needs the proxy that "
            "made them, which the file does not name"
            if attached.config.method == FILE
            else f"the {attached.config.method} features of proxy {ui.md(attached.proxy)}, as "
            "computing them here gives"
        )
        st.session_state["vec_attached"] = (
            f"Attached {attached.rows:,} x {attached.dim} as {kind}. The pages use them now "
            "(the sidebar shows them)."
        )
        st.session_state["vec_notes"] = attached.facts.get("notes", [])
        st.rerun()
if said := st.session_state.pop("vec_attached", None):
    st.success(said)
    for note in st.session_state.pop("vec_notes", []):
        st.warning(ui.md(note[0].upper() + note[1:] + "."))
