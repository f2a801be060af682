"""Data: bring a dataset in (upload, server path or Hugging Face), map its fields, check, import."""

from pathlib import Path

import pandas as pd
import streamlit as st

import ui
from core.errors import UserError
from core.records import Mapping, preview, stage
from core.sources import open_source
from core.workspace import suggest_name

ws = ui.workspace()
st.title("Data")


@st.cache_resource(show_spinner="Reading the first rows...", max_entries=32)
def first_rows(
    spec: str,
    split: str | None,
    subset: str | None,
    enc: str | None,
    mapping: Mapping,
    version: tuple[int, int],  # noqa: ARG001 - the file's version: Streamlit keys the cache on it
):
    """Records and report of the first rows; cached per source, mapping and file version
    (`version`: see file_version), so a file changed on disk is read again."""
    source = open_source(spec, split=split, subset=subset, encoding=enc, limit=5)  # a hub streams
    return preview(source, mapping, rows=5)


def file_version(spec: str) -> tuple[int, int]:
    """A local file's (modification time in ns, size): another value once it is rewritten;
    (0, 0) for what is not a local path (a hub name)."""
    try:  # a path that cannot be looked at is open_source's to report
        stat = Path(spec).expanduser().stat()
    except (OSError, ValueError):
        return 0, 0
    return stat.st_mtime_ns, stat.st_size


# --- 1. where the data comes from ------------------------------------------------------------
st.subheader("1. Source")
kind = st.segmented_control(
    "Source",
    ["Upload a file", "Path on the server", "Hugging Face dataset"],
    default="Upload a file",
    key="source_kind",
    label_visibility="collapsed",
)
spec, split, subset, suggested_name, label, encoding = "", None, None, "", None, None
if kind == "Upload a file":
    cap = st.get_option("server.maxUploadSize")
    upload = st.file_uploader(
        f"JSONL, JSON, CSV/TSV or Parquet (optionally .gz), up to {cap} MB",
        type=["jsonl", "ndjson", "json", "csv", "tsv", "txt", "parquet", "gz"],
    )
    st.caption(
        f"A file over {cap} MB is refused by the uploader (it shows a red mark and nothing is "
        "read): copy it to the server and use **Path on the server**, which has no size limit."
    )
    if upload is not None:
        spec = str(ui.save_upload(ws, upload.name, upload.getvalue()))
        suggested_name = label = upload.name
elif kind == "Path on the server":
    cols = st.columns([3, 1])
    spec = cols[0].text_input(
        "File or save_to_disk folder", key="source_path", placeholder="data/train.jsonl"
    )
    split = cols[1].text_input("Split (for a DatasetDict folder)", key="source_split") or None
    suggested_name = spec
elif kind == "Hugging Face dataset":
    cols = st.columns(3)
    spec = cols[0].text_input("Hub name", key="hub_name", placeholder="openai/gsm8k")
    subset = cols[1].text_input("Subset", key="hub_subset", placeholder="main") or None
    split = cols[2].text_input("Split", key="hub_split", value="train") or None
    suggested_name = spec.split("/")[-1]
    st.caption("Loading from the hub needs network access; offline, import a save_to_disk folder.")
if kind != "Hugging Face dataset":
    encoding = (
        st.text_input("Text encoding", key="source_encoding", placeholder="utf-8 (default)") or None
    )

if not spec:
    st.info("Choose a source to see a preview.")
else:
    # --- 2. field mapping with a live preview ---------------------------------------------
    st.subheader("2. Fields")
    try:  # what the file holds, with the mapping detected from common field names
        detected, detect_error = (
            first_rows(spec, split, subset, encoding, Mapping(), file_version(spec)),
            None,
        )
    except UserError as e:
        detected, detect_error = None, str(e)
    guess = detected[1].mapping if detected else {}
    if detected:
        st.caption("Fields in the file: " + ", ".join(ui.md(f) for f in detected[1].fields))
    chat = st.toggle(
        "Chat messages field instead of prompt and response",
        value=bool(guess.get("messages")),
        key=f"map_chat_{spec}",
    )
    cols = st.columns(3)
    typed = {}
    if chat:
        typed["messages"] = cols[0].text_input(
            "Messages field", placeholder=guess.get("messages") or "messages", key="map_messages"
        )
    else:
        typed["prompt"] = cols[0].text_input(
            "Prompt",
            placeholder=guess.get("prompt") or "question",
            key="map_prompt",
            help="A field, a dotted path (a.b), or a template like {Body} {Question}. Empty: the detected one.",
        )
        typed["response"] = cols[1].text_input(
            "Response", placeholder=guess.get("response") or "answer", key="map_response"
        )
    typed["id"] = cols[2].text_input(
        "Id field (optional)", placeholder=guess.get("id") or "row numbers", key="map_id"
    )
    mapping = ui.attempt(lambda: Mapping(**{k: v or guess.get(k) for k, v in typed.items()}))
    result = None
    if mapping and not mapping.complete:  # nothing detected and nothing typed yet
        st.error(ui.md(detect_error), icon=":material/error:")
    elif mapping:
        result = ui.attempt(
            lambda: first_rows(spec, split, subset, encoding, mapping, file_version(spec))
        )
    if result:
        records, report = result
        st.caption(f"Mapping: {ui.md(Mapping(**report.mapping).describe())}")
        hint = detected[1].prompt_hint if detected and not chat else None
        if hint and not typed.get("prompt"):  # the detected prompt leaves a field out
            st.info(ui.md(hint), icon=":material/lightbulb:")
        st.dataframe(
            pd.DataFrame(
                [{"id": r.id, "prompt": r.prompt, "response": r.response} for r in records]
            ),
            hide_index=True,
        )
        with st.expander("The first record in full"):
            st.caption("Prompt")
            st.text(records[0].prompt)
            st.caption("Response")
            st.text(records[0].response)
        if report.skips:
            st.warning(
                "In the first rows: "
                + "; ".join(f"{s['where']}: {ui.md(s['reason'])}" for s in report.skips)
            )

        # --- 3. validate and import -------------------------------------------------------
        st.subheader("3. Check and import")
        if st.button("Validate the whole file", icon=":material/fact_check:"):
            with (
                ui.progress("Validating...", cancel="Nothing was imported.") as bar,
                ws.staging() as tmp,
            ):
                source = ui.attempt(
                    lambda: open_source(spec, split=split, subset=subset, encoding=encoding)
                )
                full = source and ui.attempt(
                    lambda: stage(source, mapping, tmp / "r.parquet", on_progress=bar)
                )
            if full:
                st.session_state["last_report"] = (spec, full.to_dict())
        last = st.session_state.get("last_report")
        if last and last[0] == spec:
            ui.show_report(last[1])

        cols = st.columns([3, 1, 1], vertical_alignment="bottom")
        stem = suggest_name(suggested_name)
        name = cols[0].text_input("Dataset name", value=stem, key=f"name_{spec}")
        replace = cols[1].checkbox("Replace if it exists", key="import_replace")
        if cols[2].button("Import", type="primary", icon=":material/download:"):
            with ui.progress(
                f"Importing {name}...", cancel="Nothing was imported; the workspace is as it was."
            ) as bar:
                done = ui.attempt(
                    lambda: ws.import_dataset(
                        spec,
                        name=name,
                        mapping=mapping,
                        split=split,
                        subset=subset,
                        encoding=encoding,
                        replace=replace,
                        label=label,
                        on_progress=bar,
                    )
                )
            if done:
                info, full = done
                ui.set_active(ws, info.name)
                st.session_state["last_report"] = (spec, full.to_dict())
                st.session_state["imported"] = (
                    f"Imported {info.rows:,} rows as **{ui.md(info.name)}** ({full.skipped:,} skipped)."
                )
                st.rerun()
if message := st.session_state.pop("imported", None):
    st.success(message)

# --- the datasets in the workspace --------------------------------------------------------------
st.subheader("Datasets in this workspace")
items = ws.datasets()
if not items:
    st.info("None yet.")
else:
    st.dataframe(
        pd.DataFrame(
            [
                {"name": d.name, "rows": d.rows, "source": d.source, "imported": d.created_at}
                for d in items
            ]
        ),
        hide_index=True,
    )
    with st.expander("Rename or delete"):
        target = st.selectbox("Dataset", [d.name for d in items], key="manage_target")
        cols = st.columns([3, 1], vertical_alignment="bottom")
        new_name = cols[0].text_input("New name", key="manage_new_name")
        if cols[1].button("Rename", disabled=not new_name) and ui.attempt(
            lambda: ws.rename_dataset(target, new_name)
        ):
            st.rerun()
        confirm = st.checkbox(
            f"Yes, delete {ui.md(target)} and everything computed from it", key="manage_confirm"
        )
        if st.button("Delete", disabled=not confirm) and ui.attempt(
            lambda: ws.delete_dataset(target)
        ):
            st.rerun()
