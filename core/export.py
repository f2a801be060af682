"""Export the curated set for training: JSONL (chat `messages`, or prompt/response),
Parquet, or a Hugging Face `save_to_disk` folder.

Rows are written as they are read (memory stays flat whatever the size) to a temporary
file beside the target, which is renamed over the target only once complete and synced:
a crash, a kill or a full disk leaves the target as it was, never half written.

Each row carries its provenance unless asked not to: id, source (seed / synthetic),
cluster, run, round, generator, exemplar_ids, votes (JSON text).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from core.errors import UserError
from core.progress import ProgressFn, no_progress
from core.records import Record

FORMATS = ("messages", "prompt-response", "parquet", "hf")
PROVENANCE = ("id", "source", "cluster", "run", "round", "generator", "exemplar_ids", "votes")
_BATCH = 4096

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
    on_progress: ProgressFn = no_progress,
) -> dict[str, Any]:
    """Write (record, provenance) pairs to `out`; returns {"rows", "path", "format"}.
    Parquet and hf rows use the prompt/response form with messages as JSON text."""
    if format not in FORMATS:
        raise UserError(f"format {format!r}: use one of {', '.join(FORMATS)}")
    target = Path(out).expanduser()
    if not target.parent.is_dir():
        raise UserError(f"{target}: no folder {target.parent}")
    if target.is_dir() and format != "hf":
        raise UserError(f"{target} is a folder; give a file name")
    writer = {"messages": _jsonl, "prompt-response": _jsonl, "parquet": _parquet, "hf": _hf}[format]
    rows = iter(rows)
    first = next(rows, None)
    if first is None:
        raise UserError(
            f"nothing to export to {target}: the curated set is empty; the target was not touched"
        )
    try:
        count = writer(itertools.chain([first], rows), target, format, provenance, on_progress)
    except OSError as e:
        raise UserError(
            f"{target}: cannot write the export ({e.strerror or e}); nothing was changed"
        ) from e
    return {"rows": count, "path": str(target), "format": format}


def _tmp_beside(target: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    return Path(name)


def _replace(tmp: Path, target: Path) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    tmp.replace(target)


def _jsonl(rows, target: Path, format: str, provenance: bool, on_progress: ProgressFn) -> int:
    tmp = _tmp_beside(target)
    count = 0
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            for record, prov in rows:
                f.write(
                    json.dumps(
                        row_of(record, prov if provenance else None, format), ensure_ascii=False
                    )
                    + "\n"
                )
                count += 1
                if count % 10_000 == 0:
                    on_progress(count, None)
        _replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    on_progress(count, count)
    return count


def _arrow_schema(provenance: bool) -> pa.Schema:
    text = pa.schema(
        [("prompt", pa.string()), ("response", pa.string()), ("messages", pa.string())]
    )
    if not provenance:
        return pa.schema([("id", pa.string()), *text])
    return pa.schema([*text, *_ARROW])


def _parquet(rows, target: Path, format: str, provenance: bool, on_progress: ProgressFn) -> int:
    tmp = _tmp_beside(target)
    schema = _arrow_schema(provenance)
    count, batch = 0, []

    def flush(writer: pq.ParquetWriter) -> None:
        writer.write_table(pa.Table.from_pylist(batch, schema=schema))
        batch.clear()

    try:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
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
        _replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    on_progress(count, count)
    return count


def _hf(rows, target: Path, format: str, provenance: bool, on_progress: ProgressFn) -> int:
    """A `datasets` save_to_disk folder, built beside the target and renamed into place."""
    import datasets

    from core import hub

    hub.quiet()
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    try:
        parquet = work / "rows.parquet"
        count = _parquet(rows, parquet, format, provenance, on_progress)
        folder = work / "dataset"
        ds = datasets.Dataset.from_parquet(str(parquet), cache_dir=str(work / "cache"))
        ds.save_to_disk(str(folder))
        del ds
        if target.exists():  # swap: move the old one aside, then drop it
            old = work / "old"
            target.replace(old)
        folder.replace(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return count
