"""Raw rows from data files and Hugging Face datasets, streamed.

`open_source(spec)` looks at what `spec` is (a file, a `save_to_disk` folder or a hub
name) and returns a `Source` whose `rows()` yields `RawRow`s one at a time: a row's
number in the file (line, row or item, 1-based), its value (a dict) or the reason it
could not be read. A bad row never stops the others; a file that cannot be read at all
raises `UserError` naming the file and the problem.

Formats are recognised by content first (magic bytes, the first character), then by
extension, so a JSON array saved as `.jsonl` or a gzipped file without `.gz` still reads.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from core.errors import UserError

MAX_ROW_BYTES = 16 * 2**20
"""A row (a JSONL line, a CSV record, a JSON array item) larger than this is skipped."""

_SNIFF_BYTES = 64 * 1024
_CHUNK_CHARS = 1 << 20
_BAD_BYTES = re.compile("[\udc80-\udcff]")  # undecodable bytes under errors="surrogateescape"
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_DATA_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".txt", ".parquet", ".gz")


@dataclass
class RawRow:
    """One row as read: `value` is the row's fields, or `error` says why there are none."""

    number: int
    value: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class Source:
    """An opened dataset. `unit` names what `RawRow.number` counts ("line", "row", "item")."""

    name: str
    format: str
    unit: str
    notes: list[str] = field(default_factory=list)
    total: int | None = None  # progress total (bytes for files, rows otherwise)
    _rows: Any = None  # () -> Iterator[RawRow]
    _done: Any = None  # () -> progress so far, in the unit of `total`

    def rows(self) -> Iterator[RawRow]:
        return self._rows()

    def done(self) -> int:
        return self._done() if self._done else 0

    def where(self, number: int) -> str:
        return f"{self.unit} {number}"


def open_source(
    spec: str | os.PathLike,
    *,
    split: str | None = None,
    subset: str | None = None,
    encoding: str | None = None,
) -> Source:
    """Open a file, a `save_to_disk` folder, or a Hugging Face hub dataset name.

    `split` picks a split of a hub dataset or a DatasetDict folder; `subset` is the hub
    configuration; `encoding` overrides UTF-8 for text files.
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        return _open_hf_disk(path, split)
    if path.exists():
        return _open_file(path, encoding)
    text = str(spec)
    if _HUB_NAME.match(text) and not text.lower().endswith(_DATA_SUFFIXES):
        return _open_hf_hub(text, split, subset)
    raise UserError(f"{spec}: no such file or folder")


# --- files -------------------------------------------------------------------------------


def _open_file(path: Path, encoding: str | None) -> Source:
    name = str(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(_SNIFF_BYTES)
    except OSError as e:
        raise UserError(f"{name}: cannot read the file ({e.strerror})") from e
    if size == 0:
        raise UserError(f"{name}: the file is empty")
    if head.startswith(b"PAR1"):
        return _open_parquet(path)
    gz = head.startswith(b"\x1f\x8b")
    if gz:
        head = _gunzip_head(path)
    if not head.strip():
        raise UserError(f"{name}: the file holds no data, only white space")
    encoding = encoding or _sniff_encoding(name, head)
    text_head = head.decode(encoding, errors="replace").lstrip("\ufeff \t\r\n")
    suffix = path.suffix.lower() if not gz else Path(path.stem).suffix.lower()
    notes = []
    if text_head.startswith("["):
        fmt = "json"
        if suffix not in (".json", ""):
            notes.append("the file holds a JSON array (not one object per line); read as JSON")
    elif text_head.startswith("{") or suffix in (".jsonl", ".ndjson", ".json"):
        fmt = "jsonl"
    else:
        fmt = "csv"
    if gz:
        notes.append("gzip-compressed")

    def open_text(newline: str | None) -> tuple[IO[bytes], io.TextIOWrapper]:
        binary = open(path, "rb")  # noqa: SIM115
        stream: IO[bytes] = gzip.GzipFile(fileobj=binary) if gz else binary
        text = io.TextIOWrapper(
            stream, encoding=encoding, errors="surrogateescape", newline=newline
        )
        return binary, text

    state: dict[str, IO[bytes] | None] = {"binary": None}

    def done() -> int:
        binary = state["binary"]
        try:
            return binary.tell() if binary and not binary.closed else 0
        except (OSError, ValueError):
            return 0

    def rows() -> Iterator[RawRow]:
        binary, text = open_text("" if fmt == "csv" else None)
        state["binary"] = binary
        try:
            if fmt == "jsonl":
                yield from _jsonl_rows(text, name, suffix == ".json")
            elif fmt == "json":
                yield from _json_array_rows(text, name)
            else:
                yield from _csv_rows(text, name, "\t" if suffix == ".tsv" else None)
        except EOFError as e:
            raise UserError(f"{name}: the gzip data ends early; the file is truncated") from e
        except (zlib.error, gzip.BadGzipFile) as e:
            raise UserError(f"{name}: corrupt gzip data ({e})") from e
        finally:
            text.close()
            binary.close()

    unit = {"jsonl": "line", "json": "item", "csv": "line"}[fmt]
    return Source(name, fmt, unit, notes, total=size, _rows=rows, _done=done)


def _gunzip_head(path: Path) -> bytes:
    try:
        with gzip.open(path, "rb") as f:
            return f.read(_SNIFF_BYTES)
    except EOFError:
        with gzip.open(path, "rb") as f:  # shorter than the sniff window: take what there is
            out = b""
            try:
                while chunk := f.read(4096):
                    out += chunk
            except EOFError:
                pass
            return out
    except (OSError, zlib.error) as e:
        raise UserError(f"{path}: corrupt gzip data ({e})") from e


def _sniff_encoding(name: str, head: bytes) -> str:
    """UTF-8 (BOM tolerated) unless a UTF-16 BOM says otherwise; reject binary files."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    nul = head.find(b"\x00")
    if nul >= 0:
        raise UserError(
            f"{name}: looks like a binary file, not text (a NUL byte at offset {nul}); "
            "expected JSONL, JSON, CSV/TSV or Parquet"
        )
    return "utf-8-sig"


def _undecodable(text: str, name: str) -> str | None:
    """The row-level reason for bytes that are not valid in the file's encoding, if any."""
    m = _BAD_BYTES.search(text)
    if not m:
        return None
    byte = ord(m.group()) - 0xDC00
    return (
        f"bytes that are not valid UTF-8 (0x{byte:02x} at character {m.start() + 1}); "
        "save the file as UTF-8 or pass --encoding"
    )


def _jsonl_rows(text: io.TextIOWrapper, name: str, may_be_document: bool) -> Iterator[RawRow]:
    number = 0
    while True:
        line = text.readline(MAX_ROW_BYTES + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_ROW_BYTES and not line.endswith("\n"):
            size = len(line)
            while True:  # skip the rest of the oversized line without holding it
                more = text.readline(_CHUNK_CHARS)
                size += len(more)
                if not more or more.endswith("\n"):
                    break
            yield RawRow(
                number,
                error=f"is {size / 2**20:.1f} MB, over the {_mb(MAX_ROW_BYTES)} limit per row",
            )
            continue
        if number == 1:
            line = line.lstrip("\ufeff")
        if not line.strip():
            continue
        if bad := _undecodable(line, name):
            yield RawRow(number, error=bad)
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            if number == 1 and may_be_document:
                yield from _json_document_rows(text, line, name)
                return
            yield RawRow(number, error=f"invalid JSON ({e.msg} at column {e.colno})")
            continue
        yield _as_row(number, value, "line")


def _json_document_rows(text: io.TextIOWrapper, first: str, name: str) -> Iterator[RawRow]:
    """A `.json` file holding one object, e.g. {"data": [...]}: take its one list of rows."""
    doc_text = first + text.read()
    try:
        doc = json.loads(doc_text)
    except json.JSONDecodeError as e:
        raise UserError(
            f"{name}: line {e.lineno}: invalid JSON ({e.msg} at column {e.colno})"
        ) from e
    lists = [k for k, v in doc.items() if isinstance(v, list)] if isinstance(doc, dict) else []
    if len(lists) != 1:
        raise UserError(
            f"{name}: a single JSON object, not rows; expected one object per line, "
            "a JSON array, or an object with exactly one list of rows"
        )
    for i, value in enumerate(doc[lists[0]], start=1):
        yield _as_row(i, value, "item")


def _json_array_rows(text: io.TextIOWrapper, name: str) -> Iterator[RawRow]:
    """Items of a top-level JSON array, decoded one at a time from a growing buffer."""
    decoder = json.JSONDecoder()
    buf, pos, eof, line_base = "", 0, False, 1

    def fill() -> bool:
        nonlocal buf, pos, line_base
        chunk = text.read(max(_CHUNK_CHARS, len(buf) - pos))
        line_base += buf.count("\n", 0, pos)
        buf, pos = buf[pos:] + chunk, 0
        return bool(chunk)

    def skip_space() -> str:
        nonlocal pos, eof
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n\ufeff":
                pos += 1
            if pos < len(buf):
                return buf[pos]
            if eof or not fill():
                eof = True
                return ""

    def line_no() -> int:
        return line_base + buf.count("\n", 0, pos)

    if skip_space() != "[":
        raise UserError(f"{name}: expected a JSON array starting with '['")
    pos += 1
    item = 0
    while True:
        c = skip_space()
        if c == "]":
            pos += 1
            if skip_space():
                raise UserError(f"{name}: line {line_no()}: unexpected text after the JSON array")
            return
        if not c:
            raise UserError(
                f"{name}: line {line_no()}: the JSON array is not closed; the file is truncated"
            )
        if item:
            if c != ",":
                raise UserError(f"{name}: line {line_no()}: expected ',' or ']' after item {item}")
            pos += 1
            skip_space()
        item += 1
        while True:
            try:
                value, end = decoder.raw_decode(buf, pos)
                if end < len(buf) or eof:
                    break
            except json.JSONDecodeError as e:
                if eof:
                    raise UserError(
                        f"{name}: item {item} (line {line_no()}): invalid JSON ({e.msg})"
                    ) from e
            if len(buf) - pos > MAX_ROW_BYTES:
                raise UserError(
                    f"{name}: item {item} is over the {_mb(MAX_ROW_BYTES)} limit per row"
                )
            if not fill():
                eof = True
        raw = buf[pos:end]
        pos = end
        bad = _undecodable(raw, name)
        yield RawRow(item, error=bad) if bad else _as_row(item, value, "item")


def _csv_rows(text: io.TextIOWrapper, name: str, delimiter: str | None) -> Iterator[RawRow]:
    csv.field_size_limit(MAX_ROW_BYTES)
    sample = text.read(_SNIFF_BYTES)
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(sample, delimiters=",\t;|").delimiter
        except csv.Error:
            delimiter = ","
    rest = _Prefixed(sample, text)
    reader = csv.reader(rest, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as e:
        raise UserError(f"{name}: line 1: unreadable CSV header ({e})") from e
    header = [h.lstrip("\ufeff").strip() for h in header]
    if bad := _undecodable(",".join(header), name):
        raise UserError(f"{name}: line 1: the header has {bad}")
    if len(set(header)) != len(header) or "" in header:
        dupes = sorted({h for h in header if header.count(h) > 1 or not h})
        raise UserError(f"{name}: line 1: the header has empty or repeated column names: {dupes}")
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            yield RawRow(reader.line_num, error=f"unreadable CSV ({e})")
            continue
        if not cells or cells == [""]:
            continue
        if len(cells) != len(header):
            yield RawRow(
                reader.line_num, error=f"has {len(cells)} fields, the header has {len(header)}"
            )
            continue
        if bad := _undecodable("".join(cells), name):
            yield RawRow(reader.line_num, error=bad)
            continue
        yield RawRow(reader.line_num, dict(zip(header, cells, strict=True)))


class _Prefixed:
    """Iterate lines of `prefix` followed by the rest of `stream` (the sniffed sample first)."""

    def __init__(self, prefix: str, stream: io.TextIOWrapper):
        self._lines = iter(io.StringIO(prefix, newline=""))
        self._stream = stream
        self._pending = ""

    def __iter__(self) -> _Prefixed:
        return self

    def __next__(self) -> str:
        for line in self._lines:
            if line.endswith(("\n", "\r")):
                return line
            self._pending = line  # the sample ended mid-line: join it with the stream
        line = self._pending + self._stream.readline()
        self._pending = ""
        if not line:
            raise StopIteration
        return line


def _as_row(number: int, value: Any, unit: str) -> RawRow:
    if isinstance(value, dict):
        return RawRow(number, value)
    kind = {list: "an array", str: "a string", type(None): "null"}.get(type(value), "a number")
    return RawRow(number, error=f"is {kind}, not a JSON object")


def _mb(n: int) -> str:
    return f"{n / 2**20:.0f} MB"


# --- Parquet and Hugging Face -------------------------------------------------------------


def _open_parquet(path: Path) -> Source:
    import pyarrow as pa
    import pyarrow.parquet as pq

    name = str(path)
    try:
        pf = pq.ParquetFile(path)
        total = pf.metadata.num_rows
    except (pa.ArrowException, OSError) as e:
        raise UserError(f"{name}: not a readable Parquet file ({e})") from e
    if total == 0:
        raise UserError(f"{name}: the Parquet file has no rows")
    progress = {"rows": 0}

    def rows() -> Iterator[RawRow]:
        number = 0
        try:
            for batch in pf.iter_batches(batch_size=2048):
                for value in batch.to_pylist():
                    number += 1
                    progress["rows"] = number
                    yield RawRow(number, value)
        except (pa.ArrowException, OSError) as e:
            raise UserError(f"{name}: row {number + 1}: unreadable Parquet data ({e})") from e

    return Source(name, "parquet", "row", total=total, _rows=rows, _done=lambda: progress["rows"])


def _rows_of_hf(ds: Any, name: str, fmt: str, notes: list[str]) -> Source:
    progress = {"rows": 0}

    def rows() -> Iterator[RawRow]:
        number = 0
        for batch in ds.iter(batch_size=1000):
            keys = list(batch)
            for values in zip(*(batch[k] for k in keys), strict=True):
                number += 1
                progress["rows"] = number
                yield RawRow(number, dict(zip(keys, values, strict=True)))

    return Source(name, fmt, "row", notes, len(ds), _rows=rows, _done=lambda: progress["rows"])


def _pick_split(dsd: Any, split: str | None, name: str) -> tuple[Any, str]:
    splits = list(dsd.keys())
    if split is None and len(splits) == 1:
        split = splits[0]
    if split not in splits:
        raise UserError(f"{name}: choose a split with --split, one of: {', '.join(splits)}")
    return dsd[split], split


def _open_hf_disk(path: Path, split: str | None) -> Source:
    name = str(path)
    markers = ("dataset_info.json", "state.json", "dataset_dict.json")
    if not any((path / m).exists() for m in markers):
        raise UserError(
            f"{name}: a folder, but not a Hugging Face save_to_disk folder "
            "(no dataset_dict.json or state.json); give a data file instead"
        )
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:  # the library raises many types for a damaged folder
        raise UserError(f"{name}: cannot load the save_to_disk folder ({e})") from e
    notes = []
    if isinstance(ds, datasets.DatasetDict):
        ds, split = _pick_split(ds, split, name)
        notes.append(f"split {split}")
    return _rows_of_hf(ds, name, "hf-disk", notes)


def _open_hf_hub(repo: str, split: str | None, subset: str | None) -> Source:
    import datasets

    try:
        ds = datasets.load_dataset(repo, subset, split=split)
    except Exception as e:  # offline, unknown name, gated, missing config: all one message
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(
            f"{repo}: cannot load this Hugging Face dataset ({reason}). Check the name, "
            "--subset and --split; offline, load it elsewhere and pass its save_to_disk folder"
        ) from e
    notes = []
    if isinstance(ds, datasets.DatasetDict):
        ds, split = _pick_split(ds, split, repo)
    if split:
        notes.append(f"split {split}")
    return _rows_of_hf(ds, repo, "hf-hub", notes)
