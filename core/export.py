"""Export the curated set for training: JSONL (chat `messages`, or prompt/response),
Parquet, or a Hugging Face `save_to_disk` folder.

Rows are written as they are read (memory stays flat whatever the size) to a temporary
file beside the target, which is renamed over the target only once complete and synced:
a crash, a kill or a full disk leaves the target as it was, never half written (see
core/files.py). Nothing the user owns is replaced without `overwrite`, and a folder is
only ever replaced when it is empty or an export of this module.

Each row carries its provenance unless asked not to: id, source (seed / synthetic),
cluster, run, round, generator, exemplar_ids, votes (JSON text).
"""

from __future__ import annotations

import itertools
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core.curation import SOURCES, answer_format, answer_format_note, curated_records
from core.errors import UserError
from core.files import atomic_target, check_target, replace_folder, scratch_folder
from core.progress import ProgressFn, no_progress
from core.records import Record
from core.workspace import Workspace

FORMATS = ("messages", "prompt-response", "parquet", "hf")
PROVENANCE = ("id", "source", "cluster", "run", "round", "generator", "exemplar_ids", "votes")
_BATCH = 4096
MARKER = ".prism-export.json"  # in an hf export folder: the files it wrote

_ARROW = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("cluster", pa.int64()),
        ("run", pa.string()),
        ("round", pa.int64()),
        ("generator", pa.string()),
        ("exemplar_ids", pa.list_(pa.string())),
        ("votes", pa.string()),
    ]
)


def row_of(record: Record, provenance: dict[str, Any] | None, form: str) -> dict[str, Any]:
    """One exported row: `messages` (the record's own conversation, else user = prompt,
    assistant = response) or prompt and response, then the provenance fields."""
    if form == "messages":
        messages = record.messages or [
            {"role": "user", "content": record.prompt},
            {"role": "assistant", "content": record.response},
        ]
        row: dict[str, Any] = {"messages": messages}
    else:
        row = {"prompt": record.prompt, "response": record.response}
    if provenance is None:
        return {"id": record.id, **row}
    return {**row, **{k: provenance.get(k) for k in PROVENANCE}}


def export(
    rows: Iterable[tuple[Record, dict[str, Any]]],
    out: str | os.PathLike,
    *,
    format: str = "messages",
    provenance: bool = True,
    overwrite: bool = False,
    on_progress: ProgressFn = no_progress,
) -> dict[str, Any]:
    """Write (record, provenance) pairs to `out`; returns {"rows", "path", "format"}.
    Parquet and hf rows use the prompt/response form with messages as JSON text.

    An existing target is replaced only with `overwrite` (TargetExists otherwise), and for
    hf only when it is empty or a folder this function wrote (nothing else in it): a
    folder of other files is never touched."""
    if format not in FORMATS:
        raise UserError(f"format {format!r}: use one of {', '.join(FORMATS)}")
    target = Path(out).expanduser()
    _check_target(target, format, overwrite)
    # JSONL in either row form, else the writer of the format
    writer = {"parquet": _parquet, "hf": _hf}.get(format) or partial(_jsonl, format=format)
    rows = iter(rows)
    first = next(rows, None)
    if first is None:
        raise UserError(
            f"nothing to export to {target}: the curated set is empty; the target was not touched"
        )
    try:
        count = writer(itertools.chain([first], rows), target, provenance, on_progress)
    except OSError as e:
        raise UserError(
            f"{target}: cannot write the export ({e.strerror or e}); nothing was changed"
        ) from e
    return {"rows": count, "path": str(target), "format": format}


def export_curated(
    ws: Workspace,
    dataset: str,
    out: str | os.PathLike,
    *,
    format: str = "messages",
    include: tuple[str, ...] = SOURCES,
    provenance: bool = True,
    overwrite: bool = False,
    clusters: np.ndarray | None = None,
    on_progress: ProgressFn = no_progress,
) -> dict[str, Any]:
    """Export a dataset's curated set (see `export`); the workspace's own files are never
    a target. The result carries "warnings" when the seed and synthetic answers are in
    different formats."""
    target = Path(out).expanduser()
    if ws.owns(target):
        raise UserError(
            f"{target} is part of the workspace's own storage; write the export elsewhere"
        )
    formats: dict[str, Counter] = {source: Counter() for source in SOURCES}

    def counted() -> Iterator[tuple[Record, dict[str, Any]]]:
        for record, prov in curated_records(ws, dataset, include=include, clusters=clusters):
            formats[prov["source"]][answer_format(record.response)] += 1
            yield record, prov

    result = export(
        counted(),
        target,
        format=format,
        provenance=provenance,
        overwrite=overwrite,
        on_progress=on_progress,
    )
    if note := answer_format_note(formats):
        result["warnings"] = [note]
    return result


def _check_target(target: Path, format: str, overwrite: bool) -> None:
    """Refuse, before any work, a target that cannot or may not be written; a non-empty
    folder is replaced only when it holds an earlier hf export and nothing else."""
    hf = format == "hf"
    if hf and target.is_dir() and any(target.iterdir()) and not _our_folder(target):
        raise UserError(
            f"{target} is a folder with other files in it, not a dataset exported by Prism "
            "Studio; nothing was written: give a new or empty folder"
        )
    check_target(target, overwrite=overwrite, folder=hf)


def _our_folder(folder: Path) -> bool:
    """Whether `folder` holds only what an hf export wrote (as its marker lists)."""
    try:
        written = set(json.loads((folder / MARKER).read_text(encoding="utf-8"))["files"])
        present = {p.name for p in folder.iterdir()}
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return present <= written | {MARKER}


def _jsonl(rows, target: Path, provenance: bool, on_progress: ProgressFn, *, format: str) -> int:
    count = 0
    with atomic_target(target) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for record, prov in rows:
            row = row_of(record, prov if provenance else None, format)
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
            if count % 10_000 == 0:
                on_progress(count, None)
    on_progress(count, count)
    return count


def _arrow_schema(provenance: bool) -> pa.Schema:
    text = pa.schema(
        [("prompt", pa.string()), ("response", pa.string()), ("messages", pa.string())]
    )
    if not provenance:
        return pa.schema([("id", pa.string()), *text])
    return pa.schema([*text, *_ARROW])


def _parquet(rows, target: Path, provenance: bool, on_progress: ProgressFn) -> int:
    schema = _arrow_schema(provenance)
    count, batch = 0, []

    def flush(writer: pq.ParquetWriter) -> None:
        writer.write_table(pa.Table.from_pylist(batch, schema=schema))
        batch.clear()

    with atomic_target(target) as tmp, pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        for record, prov in rows:
            row = row_of(record, prov if provenance else None, "prompt-response")
            row["messages"] = (
                json.dumps(record.messages, ensure_ascii=False) if record.messages else None
            )
            batch.append(row)
            count += 1
            if len(batch) >= _BATCH:
                flush(writer)
                on_progress(count, None)
        if batch:
            flush(writer)
    on_progress(count, count)
    return count


def _hf(rows, target: Path, provenance: bool, on_progress: ProgressFn) -> int:
    """A `datasets` save_to_disk folder, built beside the target and renamed into place; an
    old export there is moved aside first and removed once the new one is in place."""
    import datasets

    from core import hub

    hub.quiet()
    with scratch_folder(target) as work:
        parquet = work / "rows.parquet"
        count = _parquet(rows, parquet, provenance, on_progress)
        folder = work / "dataset"
        ds = datasets.Dataset.from_parquet(str(parquet), cache_dir=str(work / "cache"))
        ds.save_to_disk(str(folder))
        del ds
        files = sorted(p.name for p in folder.iterdir())
        (folder / MARKER).write_text(
            json.dumps({"tool": "prism-studio", "rows": count, "files": files}), encoding="utf-8"
        )
        replace_folder(folder, target)
    return count
