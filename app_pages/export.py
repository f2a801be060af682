"""Export: the curated set (kept seed samples + accepted synthetic ones) for training."""

from pathlib import Path

import streamlit as st

import charts
import ui
from core import curation, diversity
from core.config import SELECTION_METHODS
from core.export import export_curated
from core.progress import no_progress
from core.regions import default_k
from core.selection import most_diverse

page = ui.feature_page(
    "Export",
    "The curated set is the seed samples you keep plus the synthetic samples accepted (with your "
    "overrides). Trim it here, check its size and diversity, and write it out for training.",
    need_features=False,
)
ws, info, fs = page.ws, page.info, page.features
labels = ui.clusters(page, default_k(info.rows)) if fs else None  # the map's, by default


# --- the summary -------------------------------------------------------------------------------
st.subheader("The curated set")
with st.spinner("Counting the curated set..."):  # the first time, its answers are read
    summary = curation.summary(ws, info.name, clusters=labels)
cols = st.columns(4)
cols[0].metric("Samples", f"{summary['rows']:,}")
cols[1].metric("Seed kept", f"{summary['by_source'].get('seed', 0):,}")
cols[2].metric("Synthetic", f"{summary['by_source'].get('synthetic', 0):,}")
cols[3].metric("Seed removed", f"{summary['removed']:,}")
if fs is not None:
    key = (fs.key, summary["rows"], summary["removed"])
    if st.session_state.get("curated_gv", (None,))[0] != key and st.button(
        "G-Vendi of the curated set"
    ):
        with st.spinner("Scoring the curated set..."):
            score = ui.attempt(
                lambda: curation.curated_g_vendi(ws, info.name, fs, runtime=page.runtime)
            )
        if score is not None:
            st.session_state["curated_gv"] = (key, score)
    if st.session_state.get("curated_gv", (None,))[0] == key:
        st.metric("G-Vendi of the curated set", f"{st.session_state['curated_gv'][1]:.2f}")
if summary["by_cluster"]:
    with st.expander("Size by cluster (the map's clusters)"):
        st.plotly_chart(charts.cluster_sizes(summary["by_cluster"]), width="stretch")
for note in summary["notes"]:
    st.info(ui.md(note[0].upper() + note[1:] + "."), icon=":material/info:")
if summary["removed_by_reason"]:
    st.caption(
        "Removed: "
        + ", ".join(f"{ui.md(k)} ({v})" for k, v in summary["removed_by_reason"].items())
    )

# --- trimming ----------------------------------------------------------------------------------
st.subheader("Trim the seed")
cols = st.columns(2)
with cols[0]:
    saved = [s["name"] for s in ws.selections(info.name)]
    selection = st.selectbox(
        "Remove a saved selection",
        saved,
        key="exp_selection",
        index=None,
        placeholder="Choose a selection from the Map page",
    )
    if st.button("Remove its rows", disabled=not selection):
        rows = ws.selection(info.name, selection)["rows"]
        curation.remove_rows(ws, info.name, rows, f"selection {selection}")
        st.rerun()
with cols[1]:
    n = st.number_input(
        "Remove the most redundant samples",
        0,
        max(0, info.rows - 1),
        0,
        key="exp_redundant",
        disabled=fs is None,
        help="Lowest marginal value first (see the Diversity page).",
    )
    if st.button("Remove them", disabled=fs is None or not n):
        rows = [r["row"] for r in diversity.redundant(ws, info.name, fs, limit=int(n))]
        curation.remove_rows(ws, info.name, rows, "redundant (lowest marginal value)")
        st.rerun()

st.markdown(
    "**Keep the N most diverse**: the seed rows that together have the highest G-Vendi, "
    "chosen greedily in gradient space (each pick adds the most to the log-determinant of the "
    "chosen rows' second moment), compared with random rows and with the same greedy choice "
    "in sentence-embedding space, each measured in both spaces."
)
cols = st.columns([1, 2, 1], vertical_alignment="bottom")
curated_seed = summary["by_source"].get("seed", 0)
size = cols[0].number_input(
    "Rows to keep",
    1,
    max(1, curated_seed),
    max(1, curated_seed // 10),
    key="exp_diverse_size",
    disabled=fs is None or not curated_seed,
)
how = cols[1].radio(
    "Chosen by",
    SELECTION_METHODS,
    key="exp_diverse_how",
    horizontal=True,
    format_func={
        "greedy": "G-Vendi (gradient)",
        "sentence": "sentence embeddings",
        "random": "random",
    }.get,
    disabled=fs is None,
)
in_sentence_space = cols[2].toggle(
    "Compare in sentence space",
    value=True,
    key="exp_diverse_sentence",
    disabled=fs is None,
    help="Computes the sentence embeddings (all-MiniLM-L6-v2) once, then reads them from the "
    "cache.",
)
# the choice is shown for the curated set it was made of: the data, the features, the removals
diverse_key = f"diverse/{info.name}/{info.fingerprint}/{fs and fs.key}/{summary['removed']}"
if st.button("Choose them", disabled=fs is None or not curated_seed):
    name = f"most diverse {int(size)} ({how})"
    with ui.progress("Choosing the rows...", cancel="Nothing was changed.") as bar:
        st.session_state[diverse_key] = ui.attempt(
            lambda: most_diverse(
                ws,
                info.name,
                fs,
                int(size),
                method=how,
                sentence_space=in_sentence_space,
                runtime=page.runtime,
                save=name,
                on_progress=bar,
            )
        )
chosen = st.session_state.get(diverse_key)
if chosen and chosen["saved"] in [s["name"] for s in ws.selections(info.name)]:
    st.dataframe(ui.subsets_table(chosen["subsets"]), hide_index=True)
    if chosen["sentence_error"]:
        st.caption("Sentence space unavailable: " + ui.md(chosen["sentence_error"]))
    st.caption(
        f"The rows chosen (marked ✓) are saved as the selection “{ui.md(chosen['saved'])}”: "
        "see them on the Map page, or keep only them here."
    )
    if st.button(f"Keep only these {chosen['size']:,} rows"):
        rows = ws.selection(info.name, chosen["saved"])["rows"]  # as saved, not as remembered
        curation.keep_only(ws, info.name, rows, f"outside selection {chosen['saved']}")
        st.session_state.pop(diverse_key)
        st.rerun()

st.markdown(
    "**Near-duplicates**: the same text, or gradient features closer than a cosine threshold."
)
cols = st.columns([2, 1, 3], vertical_alignment="bottom")
threshold = cols[0].slider(
    "Gradient cosine above", 0.80, 1.0, 0.98, 0.005, key="exp_threshold", disabled=fs is None
)
if cols[1].button("Find them"):
    with ui.progress("Comparing samples...", unit="rows", cancel="Nothing was removed.") as bar:
        st.session_state["dup_groups"] = ui.attempt(
            lambda: curation.duplicate_groups(
                ws, info.name, fs, threshold=threshold, on_progress=bar
            )
        )
groups = st.session_state.get("dup_groups")
if groups is not None:
    if not groups:
        st.caption("No near-duplicates.")
    else:
        if st.button(f"Resolve all {len(groups)} groups: keep the first row of each"):
            curation.resolve_groups(ws, info.name, groups)
            st.session_state.pop("dup_groups")
            st.rerun()
        for group in groups[:50]:
            cols = st.columns([6, 1], vertical_alignment="center")
            cols[0].text(
                f"group {group['group']} ({group['kind']}): rows {group['rows']} · {group['prompt'][:100]}"
            )
            if cols[1].button("Keep first", key=f"keep_{group['group']}"):
                curation.resolve_group(ws, info.name, group)
                st.session_state["dup_groups"] = [g for g in groups if g["group"] != group["group"]]
                st.rerun()
        if len(groups) > 50:
            st.caption(f"... and {len(groups) - 50} more (resolve them all above).")
if summary["removed"] and st.button("Restore every removed row"):
    curation.restore_rows(ws, info.name)
    st.rerun()

# --- writing -------------------------------------------------------------------------------------
st.subheader("Write it out")
cols = st.columns(3)
form = cols[0].selectbox(
    "Format",
    ["messages", "prompt-response", "parquet", "hf"],
    key="exp_format",
    format_func={
        "messages": "JSONL, chat messages (TRL SFTTrainer)",
        "prompt-response": "JSONL, prompt / response",
        "parquet": "Parquet",
        "hf": "Hugging Face save_to_disk folder",
    }.get,
)
include = cols[1].multiselect(
    "Include", ["seed", "synthetic"], default=["seed", "synthetic"], key="exp_include"
)
provenance = cols[2].toggle(
    "Provenance fields",
    value=True,
    key="exp_prov",
    help="source, cluster, run, round, generator, exemplar_ids, votes. Each row keeps its id "
    "either way.",
)
suffix = {"messages": ".jsonl", "prompt-response": ".jsonl", "parquet": ".parquet", "hf": ""}[form]


def write(target, *, overwrite: bool = False, on_progress=no_progress) -> dict | None:
    return ui.attempt(
        lambda: export_curated(
            ws,
            info.name,
            target,
            format=form,
            include=tuple(include),
            provenance=provenance,
            overwrite=overwrite,
            clusters=labels,
            on_progress=on_progress,
        )
    )


cols = st.columns([3, 1], vertical_alignment="bottom")
path = cols[0].text_input(
    "Write to a path on the server",
    value=str(ws.root / f"{info.name}-curated{suffix}"),
    key=f"exp_path_{form}",
)
exists = bool(path) and Path(path).expanduser().exists()
overwrite = exists and st.checkbox(
    f"{ui.md(path)} exists: replace it",
    key=f"exp_overwrite_{form}",
    help="Unticked, an existing file or folder is never replaced. A folder is replaced only "
    "when it is empty or an earlier export of this kind.",
)
if cols[1].button(
    "Write", type="primary", icon=":material/save:", disabled=exists and not overwrite
):
    with ui.progress("Writing...", cancel="The target was not touched.") as bar:
        done = write(path, overwrite=overwrite, on_progress=bar)
    if done:
        st.success(f"Wrote {done['rows']:,} rows to {ui.md(done['path'])}.")
if form != "hf":
    if st.button("Prepare a download", icon=":material/download:"):
        with (
            ws.staging() as tmp,
            ui.progress("Preparing...", cancel="No download was made.") as bar,
        ):
            target = tmp / f"{info.name}-curated{suffix}"
            done = write(target, on_progress=bar)
            if done:
                st.session_state["download"] = (target.name, target.read_bytes(), done["rows"])
    if st.session_state.get("download"):
        name, data, count = st.session_state["download"]
        st.download_button(
            f"Download {name} ({count:,} rows)",
            data,
            file_name=name,
            key="exp_download",
            mime="application/jsonl" if name.endswith(".jsonl") else "application/octet-stream",
        )
else:
    st.caption("A save_to_disk folder is written to a path on the server.")
