"""Streamlit glue shared by the pages: the workspace, the sidebar, progress and errors.

Pages stay thin: widgets and calls into core/. Everything here is about the UI; no
computation lives in this module.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import streamlit as st

from core import demo
from core.errors import UserError
from core.progress import ProgressFn
from core.records import Report
from core.workspace import DatasetInfo, Workspace, resolve_root

ACTIVE_KEY = "active_dataset"


@st.cache_resource(show_spinner="Opening the workspace...")
def _open_workspace(root: str) -> Workspace:
    ws = Workspace(root)
    demo.ensure_demo(ws)
    return ws


def workspace() -> Workspace:
    """The workspace of this session (the sidebar can switch it); the demo is there on first start."""
    root = st.session_state.get("workspace_root") or str(resolve_root())
    return _open_workspace(root)


def sidebar(ws: Workspace) -> DatasetInfo | None:
    """The workspace folder and the active dataset picker; returns the active dataset."""
    with st.sidebar:
        st.caption(f"Workspace: `{ws.root.resolve()}`")
        names = [d.name for d in ws.datasets()]
        if not names:
            st.info("No datasets yet: import one on the Data page.")
            return None
        current = ws.get_meta(ACTIVE_KEY)
        index = names.index(current) if current in names else 0
        choice = st.selectbox("Active dataset", names, index=index, key="sidebar_active")
        if choice != current:
            ws.set_meta(ACTIVE_KEY, choice)
        info = ws.dataset(choice)
        st.caption(f"{info.rows:,} rows · from {info.source}")
        with st.expander("Switch workspace"):
            new_root = st.text_input("Folder", value=str(ws.root), key="workspace_input")
            if st.button("Open", key="workspace_open") and new_root != str(ws.root):
                try:
                    _open_workspace(new_root)
                except UserError as e:
                    st.error(str(e))
                else:
                    st.session_state["workspace_root"] = new_root
                    st.rerun()
        return info


def set_active(ws: Workspace, name: str) -> None:
    ws.set_meta(ACTIVE_KEY, name)
    st.session_state.pop("sidebar_active", None)


@contextmanager
def progress(label: str) -> Iterator[ProgressFn]:
    """An st.progress bar driven by a core progress callback; removed when done."""
    bar = st.progress(0.0, text=label)

    def update(done: int, total: int | None) -> None:
        fraction = min(done / total, 1.0) if total else 0.0
        bar.progress(fraction, text=f"{label} {fraction:.0%}" if total else label)

    try:
        yield update
    finally:
        bar.empty()


def attempt(action: Callable[[], Any]) -> Any:
    """Run `action`; show a UserError as st.error and return None instead of raising."""
    try:
        return action()
    except UserError as e:
        st.error(str(e), icon=":material/error:")
        return None


def show_report(report: Report | dict[str, Any]) -> None:
    """The validation report: counts, lengths, duplicates, skipped rows with reasons."""
    r = report if isinstance(report, dict) else report.to_dict()
    cols = st.columns(4)
    cols[0].metric("Rows read", f"{r['rows_read']:,}")
    cols[1].metric("Kept", f"{r['kept']:,}")
    cols[2].metric("Skipped", f"{r['skipped']:,}")
    cols[3].metric("Exact duplicates", f"{r['duplicates']:,}")
    for note in r["notes"]:
        st.caption(f"Note: {note}")
    stats = {k: r[k] for k in ("prompt_chars", "response_chars") if r[k]}
    if stats:
        st.caption("Lengths in characters")
        st.dataframe(
            {"": ["prompt", "response"][: len(stats)], **_transpose(stats)},
            hide_index=True,
            width="content",
        )
    if r["skipped"]:
        reasons = ", ".join(f"{k}: {v}" for k, v in r["skip_reasons"].items())
        st.warning(f"{r['skipped']:,} rows skipped ({reasons}). The first {len(r['skips'])}:")
        st.dataframe(r["skips"], hide_index=True)
    if r["duplicates"]:
        st.caption("Repeated rows (first listed):")
        st.dataframe(r["duplicate_examples"], hide_index=True)


def _transpose(stats: dict[str, dict[str, float]]) -> dict[str, list[float]]:
    keys = ("min", "median", "mean", "p95", "max")
    return {k: [round(s[k], 1) for s in stats.values()] for k in keys}


def save_upload(ws: Workspace, name: str, data: bytes) -> Path:
    """Keep an uploaded file under the workspace's tmp/, named by content, for this server process."""
    digest = hashlib.blake2b(data, digest_size=8).hexdigest()
    folder = ws.root / "tmp" / f"upload-{digest}"
    path = folder / Path(name).name
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "owner").write_text(str(os.getpid()))
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path
