"""Raw rows from data files and Hugging Face datasets, streamed.

`open_source(spec)` looks at what `spec` is (a file, a `save_to_disk` folder or a hub
name) and returns a `Source` whose `rows()` yields `RawRow`s one at a time: a row's
number in the file (line, row or item, 1-based), its value (a dict) or the reason it
could not be read. A bad row never stops the others; a file that cannot be read at all
raises `UserError` naming the file and the problem.

Rows that are skipped with their reason: invalid JSON, bytes not valid in the file's
encoding, JSON nested more than `MAX_DEPTH` levels, a JSON string holding a lone UTF-16
surrogate (`"\\ud800"`: not Unicode text; the row is skipped, never repaired), a row over
`MAX_ROW_BYTES`. A gzip file that ends early (a cut download) gives its complete lines and
then one skipped row saying the rest is lost; a half line is never read as a row.
Only regular files are read: a named pipe, a device or a socket is refused (reading one
could wait forever or never end).

Formats are recognised by content first (magic bytes, the first character), then by
extension, so a JSON array saved as `.jsonl` or a gzipped file without `.gz` still reads.
"""

from __future__ import annotations

import codecs
import csv
import errno
import gzip
import io
import json
import os
import re
import stat
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from core.errors import UserError

MAX_ROW_BYTES = 16 * 2**20
"""A row (a JSONL line, a CSV record, a JSON array item) larger than this is skipped."""

MAX_DEPTH = 100
"""A JSON row whose objects and arrays nest deeper than this is skipped."""

_SNIFF_BYTES = 64 * 1024
_CHUNK_CHARS = 1 << 20
_BAD_BYTES = re.compile("[\udc80-\udcff]")  # undecodable bytes under errors="surrogateescape"
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # \ud800-\udfff written in JSON
_SURROGATE = re.compile("[\ud800-\udfff]")
# a JSON string (possibly cut off at the end of the text) or a bracket
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.?)*(?:"|\Z)|[\[\]{}]', re.DOTALL)
_TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep"
_TOO_LONG = f"a number of over {sys.get_int_max_str_digits()} digits"  # Python's int limit
_NUMBER = re.compile(r"[-+0-9.eE]+")
_NOT_REGULAR = {
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}
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
    limit: int | None = None,
) -> Source:
    """Open a file, a `save_to_disk` folder, or a Hugging Face hub dataset name.

    `split` picks a split of a hub dataset or a DatasetDict folder; `subset` is the hub
    configuration; `encoding` overrides UTF-8 for text files. `limit`, the rows the caller
    will read, has a hub dataset streamed: its first `limit` rows are fetched, not the
    whole split (files and folders are read as they are, row by row, anyway).
    """
    if encoding:
        check_encoding(encoding)
    path = Path(spec).expanduser()
    found = _stat(path)
    if found is not None and stat.S_ISDIR(found.st_mode):
        return _open_hf_disk(path, split)
    if found is not None:
        _check_regular(path, found)
        return _open_file(path, encoding)
    text = str(spec)
    if _HUB_NAME.match(text) and not text.lower().endswith(_DATA_SUFFIXES):
        return _open_hf_hub(text, split, subset, limit)
    raise UserError(f"{spec}: no such file or folder")


def regular_file(spec: str | os.PathLike) -> Path:
    """The path of a regular file to read; a missing path, a folder, a named pipe, a device
    or a socket is a UserError that says which."""
    path = Path(spec).expanduser()
    found = _stat(path)
    if found is None:
        raise UserError(f"{spec}: no such file")
    if stat.S_ISDIR(found.st_mode):
        raise UserError(f"{path}: is a folder; give a file")
    _check_regular(path, found)
    return path


def _check_regular(path: Path, found: os.stat_result) -> None:
    if not stat.S_ISREG(found.st_mode):
        kind = _NOT_REGULAR.get(stat.S_IFMT(found.st_mode), "not a file")
        raise UserError(
            f"{path}: is {kind}, not a regular file; save the data to a file and give that"
        )


def check_encoding(encoding: str) -> None:
    """UserError unless `encoding` names a text encoding Python knows."""
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        raise UserError(
            f"encoding {encoding!r} is unknown; use a text encoding such as utf-8, latin-1 or cp1252"
        ) from None
    if not getattr(info, "_is_text_encoding", True):
        raise UserError(
            f"encoding {encoding!r} is not a text encoding; use one such as utf-8 or latin-1"
        )


def _stat(path: Path) -> os.stat_result | None:
    """What is at `path` (links followed), or None when nothing is. A path that cannot be
    looked at (a symbolic link loop, a folder on the way without permission) is a UserError."""
    try:
        return path.stat()
    except ValueError:  # a NUL character: no file has such a name
        return None
    except (FileNotFoundError, NotADirectoryError):
        if not path.is_symlink():
            return None
        raise UserError(
            f"{path}: a symbolic link to {os.readlink(path)}, which is missing"
        ) from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UserError(
                f"{path}: a symbolic link loop (the link leads back to itself); "
                "point it at the data file"
            ) from None
        if isinstance(e, PermissionError):
            raise UserError(
                f"{path}: permission denied (this user may not open a folder on the way "
                "or the file itself)"
            ) from None
        raise UserError(f"{path}: cannot look at it ({e.strerror or e})") from None


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

    state: dict[str, Any] = {"binary": None, "gzip": None}

    def open_text(newline: str | None) -> io.TextIOWrapper:
        binary = state["binary"] = open(path, "rb")  # noqa: SIM115
        stream: IO[bytes] = binary
        if gz:
            state["gzip"] = _CompleteLines(binary)
            stream = io.BufferedReader(state["gzip"])
        return io.TextIOWrapper(
            stream, encoding=encoding, errors="surrogateescape", newline=newline
        )

    def done() -> int:
        binary = state["binary"]
        try:
            return binary.tell() if binary and not binary.closed else 0
        except (OSError, ValueError):
            return 0

    def rows() -> Iterator[RawRow]:
        try:
            text = open_text("" if fmt == "csv" else None)
        except OSError as e:
            raise UserError(f"{name}: cannot read the file ({e.strerror})") from e
        if fmt == "jsonl":
            reader = _jsonl_rows(text, name, suffix == ".json")
        elif fmt == "json":
            reader = _json_array_rows(text, name)
        else:
            reader = _csv_rows(text, name, "\t" if suffix == ".tsv" else None)
        last = 0
        try:
            for raw in reader:
                last = raw.number
                yield raw
            if state["gzip"] and state["gzip"].truncated:
                yield RawRow(last + 1, error=_CUT_OFF)
        except (zlib.error, gzip.BadGzipFile) as e:
            raise UserError(f"{name}: corrupt gzip data ({e})") from e
        finally:
            text.close()
            state["binary"].close()

    unit = {"jsonl": "line", "json": "item", "csv": "line"}[fmt]
    return Source(name, fmt, unit, notes, total=size, _rows=rows, _done=done)


_CUT_OFF = "cut off: the gzip data ends early (the file is truncated); the rest of the file is lost"


class _CompleteLines(io.RawIOBase):
    """The decompressed bytes of a gzip file. When the data ends early (a truncated file),
    the stream ends after the last complete line and `truncated` is set: a half line could
    read as a valid but wrong row (a CSV number cut short), so it is dropped. A line longer
    than `MAX_ROW_BYTES` is passed on unheld: the readers skip such a line anyway."""

    def __init__(self, binary: IO[bytes]):
        self._gzip = gzip.GzipFile(fileobj=binary)
        self._ready = b""  # complete lines not handed out yet
        self._held = b""  # bytes after the last newline so far
        self._ended = False
        self.truncated = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._ready and not self._ended:
            try:
                data = self._gzip.read1(_CHUNK_CHARS)
            except EOFError:  # the compressed data stops before its end marker
                self._ended = self.truncated = True
                self._held = b""
                break
            if not data:
                self._ended = True
                self._ready, self._held = self._held, b""
                break
            data = self._held + data
            cut = data.rfind(b"\n") + 1 if len(data) <= MAX_ROW_BYTES else len(data)
            self._ready, self._held = data[:cut], data[cut:]
        n = min(len(buffer), len(self._ready))
        buffer[:n] = self._ready[:n]
        self._ready = self._ready[n:]
        return n

    def close(self) -> None:
        self._gzip.close()
        super().close()


def _gunzip_head(path: Path) -> bytes:
    """The first complete lines of a gzip file (for sniffing its format); UserError when it is
    corrupt, or truncated before its first complete line."""
    try:
        with open(path, "rb") as binary, io.BufferedReader(_CompleteLines(binary)) as f:
            head = f.read(_SNIFF_BYTES)
            truncated = f.raw.truncated
    except (OSError, zlib.error) as e:
        raise UserError(f"{path}: corrupt gzip data ({e})") from e
    if not head and truncated:
        raise UserError(
            f"{path}: the gzip data ends before the first complete line; the file is truncated"
        )
    return head


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


def _undecodable(text: str) -> str | None:
    """The row-level reason for bytes that are not valid in the file's encoding, if any."""
    m = _BAD_BYTES.search(text)
    if not m:
        return None
    byte = ord(m.group()) - 0xDC00
    return (
        f"bytes that are not valid UTF-8 (0x{byte:02x} at character {m.start() + 1}); "
        "save the file as UTF-8 or give its encoding"
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
        if bad := _undecodable(line):
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
        except RecursionError:
            yield RawRow(number, error=_TOO_DEEP)
            continue
        except ValueError:  # not a decoding error: an integer too long to convert
            yield RawRow(number, error=_TOO_LONG)
            continue
        yield _json_row(number, value, line)


def _json_document_rows(text: io.TextIOWrapper, first: str, name: str) -> Iterator[RawRow]:
    """A `.json` file holding one object, e.g. {"data": [...]}: take its one list of rows."""
    doc_text = first + text.read()
    try:
        doc = json.loads(doc_text)
    except json.JSONDecodeError as e:
        raise UserError(
            f"{name}: line {e.lineno}: invalid JSON ({e.msg} at column {e.colno})"
        ) from e
    except (RecursionError, ValueError) as e:
        problem = f"is {_TOO_DEEP}" if isinstance(e, RecursionError) else f"holds {_TOO_LONG}"
        raise UserError(
            f"{name}: the JSON document {problem} somewhere; save its rows one per line "
            "(JSONL) or as a JSON array, where such a row is skipped on its own"
        ) from None
    lists = [k for k, v in doc.items() if isinstance(v, list)] if isinstance(doc, dict) else []
    if len(lists) != 1:
        raise UserError(
            f"{name}: a single JSON object, not rows; expected one object per line, "
            "a JSON array, or an object with exactly one list of rows"
        )
    for i, value in enumerate(doc[lists[0]], start=1):
        yield _json_row(i, value, doc_text)


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
        problem = None
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
            except (RecursionError, ValueError) as e:  # undecodable: find its end to skip it
                found = _value_end(buf, pos)
                if found is not None:
                    problem, end = _TOO_DEEP if isinstance(e, RecursionError) else _TOO_LONG, found
                    break
                if eof:
                    raise UserError(
                        f"{name}: item {item} (line {line_no()}): the JSON array is not "
                        "closed; the file is truncated"
                    ) from None
            if len(buf) - pos > MAX_ROW_BYTES:
                raise UserError(
                    f"{name}: item {item} is over the {_mb(MAX_ROW_BYTES)} limit per row"
                )
            if not fill():
                eof = True
        raw = buf[pos:end]
        pos = end
        if problem:
            yield RawRow(item, error=problem)
        else:
            bad = _undecodable(raw)
            yield RawRow(item, error=bad) if bad else _json_row(item, value, raw)


def _value_end(text: str, pos: int) -> int | None:
    """Where the JSON array, object or number starting at `pos` ends, or None when `text`
    stops first. Only brackets outside strings count; the value is not otherwise checked."""
    if text[pos] not in "[{":
        number = _NUMBER.match(text, pos)
        return number.end() if number and number.end() < len(text) else None
    depth = 0
    for m in _JSON_TOKEN.finditer(text, pos):
        token = m.group()
        if token[0] == '"':
            if len(token) == 1 or token[-1] != '"' or m.end() == len(text):
                return None  # a string cut off by the end of the text
            continue
        depth += 1 if token in "[{" else -1
        if depth == 0:
            return m.end()
    return None


def _json_row(number: int, value: Any, raw: str) -> RawRow:
    """A parsed JSON row, or the reason it cannot be kept: not an object, nested more than
    MAX_DEPTH levels, or text with a lone UTF-16 surrogate (it cannot be stored as UTF-8).
    `raw` is the row's JSON text (or a text holding it); it tells cheaply which checks can
    be skipped: too few brackets to be that deep, no surrogate escape."""
    row = _as_row(number, value)
    deep = raw.count("{") + raw.count("[") > MAX_DEPTH
    surrogates = _SURROGATE_ESCAPE.search(raw) is not None
    if row.error or not (deep or surrogates):
        return row
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if surrogates and (m := _SURROGATE.search(node)):
                error = f"text with a lone UTF-16 surrogate (\\u{ord(m.group()):04x}), which is not Unicode"
                return RawRow(number, error=error)
        elif isinstance(node, (dict, list)):
            if depth > MAX_DEPTH:
                return RawRow(number, error=_TOO_DEEP)
            children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
    return row


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
    if bad := _undecodable(",".join(header)):
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
        if bad := _undecodable("".join(cells)):
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


def _as_row(number: int, value: Any) -> RawRow:
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


def _rows_of_hf(ds: Any, name: str, fmt: str, notes: list[str], total: int | None = None) -> Source:
    """The rows of a Dataset, read in batches, or of a streamed IterableDataset, read one
    at a time so that a reader that stops after N rows has fetched only those."""
    import datasets
    import pyarrow as pa

    streamed = isinstance(ds, datasets.IterableDataset)
    # a damaged or vanished Arrow file; streamed: network, format, access (many types)
    failures = Exception if streamed else (pa.ArrowException, OSError)
    progress = {"rows": 0}

    def values() -> Iterator[dict[str, Any]]:
        if streamed:
            yield from ds
            return
        for batch in ds.iter(batch_size=1000):
            keys = list(batch)
            for cells in zip(*(batch[k] for k in keys), strict=True):
                yield dict(zip(keys, cells, strict=True))

    def rows() -> Iterator[RawRow]:
        number = 0
        try:
            for value in values():
                number += 1
                progress["rows"] = number
                yield RawRow(number, dict(value))
        except failures as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise UserError(f"{name}: row {number + 1}: unreadable data ({reason})") from e

    total = len(ds) if total is None else total
    return Source(name, fmt, "row", notes, total, _rows=rows, _done=lambda: progress["rows"])


def _pick_split(dsd: Any, split: str | None, name: str) -> tuple[Any, str]:
    splits = list(dsd.keys())
    if split is None and len(splits) == 1:
        split = splits[0]
    if split not in splits:
        given = f"no split {split!r}; " if split else ""
        raise UserError(f"{name}: {given}choose a split, one of: {', '.join(splits)}")
    return dsd[split], split


def _open_hf_disk(path: Path, split: str | None) -> Source:
    name = str(path)
    markers = ("dataset_info.json", "state.json", "dataset_dict.json")
    if not any(_stat(path / m) for m in markers):
        raise UserError(
            f"{name}: a folder, but not a Hugging Face save_to_disk folder "
            "(no dataset_dict.json or state.json); give a data file instead"
        )
    import datasets

    from core import hub

    hub.quiet()
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:  # the library raises many types for a damaged folder
        raise UserError(f"{name}: cannot load the save_to_disk folder ({e})") from e
    notes = []
    if isinstance(ds, datasets.DatasetDict):
        ds, split = _pick_split(ds, split, name)
        notes.append(f"split {split}")
    return _rows_of_hf(ds, name, "hf-disk", notes)


def _open_hf_hub(repo: str, split: str | None, subset: str | None, limit: int | None) -> Source:
    """A hub dataset; without the network, one UserError at once (the same words serve the
    CLI and the Data page, so they name no command-line flag). With a `limit` it is streamed
    (only the rows read are fetched), except in offline mode, which reads the local cache."""
    import datasets

    from core import hub

    hub.quiet()
    if why := hub.unreachable():
        raise UserError(
            f"{repo}: cannot reach the Hugging Face hub ({why}); import a file or a "
            "save_to_disk folder instead, or set HF_HUB_OFFLINE=1 to read the dataset "
            "from the local Hugging Face cache"
        )
    offline = hub.offline_mode() or datasets.config.HF_HUB_OFFLINE
    streaming = limit is not None and not offline
    try:
        ds = datasets.load_dataset(repo, subset, split=split, streaming=streaming)
    except Exception as e:  # offline, unknown name, gated, missing config: all one message
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        where = (
            "offline mode (HF_HUB_OFFLINE) reads only the local Hugging Face cache; "
            "import a file or a save_to_disk folder instead"
            if offline
            else "check the name, the subset and the split"
        )
        raise UserError(f"{repo}: cannot load this Hugging Face dataset ({reason}); {where}") from e
    notes = []
    if isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        ds, split = _pick_split(ds, split, repo)
    if split:
        notes.append(f"split {split}")
    if streaming:
        notes.append(f"streamed: at most {limit:,} rows fetched")
    return _rows_of_hf(ds, repo, "hf-hub", notes, limit if streaming else None)
