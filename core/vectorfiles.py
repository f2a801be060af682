"""Files of vectors (N rows x d dims): read in row blocks for `features-import`, and
written for `embed --out` with what makes them the same feature set elsewhere.

Reading never holds the whole matrix. A .npy file is read by offset (a Fortran-ordered
one through a memory map); a Parquet file in record batches, its vectors one list (or
fixed-size list) column or d floating-point columns; a .safetensors file by offset from its
header (dtypes F16, BF16, F32, F64). The format is told by the file's first bytes, not its
name. Every block comes back as float32 and checked: a NaN, an infinity or a value too
large for float32 is an error naming the row. Rows are matched to a dataset's in its
order, or by ids: a Parquet column, or an integer tensor of a .safetensors file ("ids",
or the one named).

The tool's own files carry metadata under the key "prism" (JSON: the feature set's key,
the dataset's fingerprint, the proxy, its revision and identity, the feature settings, the
code version). A .safetensors file holds it in its header, beside the tensor "features";
a .npy file in the sidecar `FILE.npy.json`, with the hash of the .npy's contents, so that
a sidecar left beside another file is told apart.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.errors import UserError
from core.files import atomic_target

METADATA_KEY = "prism"
FEATURES_TENSOR = "features"
IDS_TENSOR = "ids"
BLOCK_BYTES = 16 << 20  # float32 bytes per block read and per chunk written
PARQUET_BATCH_BYTES = 2 << 20  # Parquet is decoded in smaller batches (pyarrow's memory)
SIDECAR_SUFFIX = ".json"
_SAFETENSORS_FLOATS = {"F16": "<f2", "BF16": "<u2", "F32": "<f4", "F64": "<f8"}
_SAFETENSORS_INTS = {
    "I8": "<i1",
    "I16": "<i2",
    "I32": "<i4",
    "I64": "<i8",
    "U8": "<u1",
    "U16": "<u2",
    "U32": "<u4",
    "U64": "<u8",
}
_ITEM_BYTES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "U16": 2,
    "I16": 2,
    "F16": 2,
    "BF16": 2,
    "U32": 4,
    "I32": 4,
    "F32": 4,
    "U64": 8,
    "I64": 8,
    "F64": 8,
}
_MAX_HEADER = 100_000_000  # the safetensors library's limit on a header's size


def block_rows(dim: int) -> int:
    """Rows per block (and per stored chunk) of `dim` float32 values: BLOCK_BYTES' worth."""
    return max(1, BLOCK_BYTES // (4 * dim))


def content_hash(path: Path, on_bytes: Callable[[int], None] = lambda _: None) -> str:
    """blake2b (16 bytes, hex) of the file's contents, read in 4 MiB pieces; `on_bytes(n)`
    is told the bytes read so far."""
    h = hashlib.blake2b(digest_size=16)
    done = 0
    with open(path, "rb") as f:
        while piece := f.read(1 << 22):
            h.update(piece)
            done += len(piece)
            on_bytes(done)
    return h.hexdigest()


def sidecar(path: Path) -> Path:
    """Where the metadata of a .npy written by `embed --out` lies: `FILE.npy.json`."""
    return path.with_name(path.name + SIDECAR_SUFFIX)


@dataclass
class VectorFile:
    """An opened file of vectors: `rows` x `dim` of `dtype`. `metadata`: the tool's (see
    the module doc), with `metadata_hash`, the hash of the .npy its sidecar describes.
    `id_name`: the column or tensor whose values match rows to a dataset's record ids;
    `ignored`: columns or tensors left out."""

    path: Path
    format: str
    rows: int
    dim: int
    dtype: str
    read: Callable[[int], Iterator[np.ndarray]]  # raw blocks of about n rows, in order
    metadata: dict[str, Any] | None = None
    metadata_hash: str | None = None
    id_name: str | None = None
    read_ids: Callable[[], pa.Array] | None = None
    ignored: list[str] = field(default_factory=list)

    def ids(self) -> pa.Array | None:
        """The rows' ids as text (whole numbers written out), or None for dataset order."""
        return self.read_ids() if self.read_ids else None

    def blocks(self, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, float32 block of `rows` rows; the last may be shorter), checked. A
        raw block that holds a whole block is passed on as it is; smaller ones (Parquet
        batches) are copied into one. Memory: a block and a raw block."""
        block: np.ndarray | None = None
        filled = first = read = 0
        for raw in self.read(rows):
            raw = _checked(raw, read, self.path)
            read += len(raw)
            if read > self.rows:
                raise UserError(f"{self.path}: holds more rows than the {self.rows:,} it lists")
            at = 0
            while at < len(raw):
                size = min(rows, self.rows - first)
                if block is None and len(raw) - at >= size:
                    at += size
                    yield first, raw[at - size : at]
                    first += size
                    continue
                if block is None:
                    block, filled = np.empty((size, self.dim), dtype=np.float32), 0
                take = min(size - filled, len(raw) - at)
                block[filled : filled + take] = raw[at : at + take]
                filled, at = filled + take, at + take
                if filled == size:
                    done, block = block, None
                    yield first, done
                    del done  # freed before the next raw block is read
                    first += size
            del raw
        if read != self.rows:
            raise UserError(
                f"{self.path}: {read:,} rows could be read of the {self.rows:,} it lists"
            )


def _checked(raw: np.ndarray, first: int, path: Path) -> np.ndarray:
    """`raw` as float32, or an error naming the first row with a NaN, an infinity or a value
    too large for float32. (Row sums in float64 cannot overflow for float32 values, and are
    not finite exactly when a value is not.)"""
    with np.errstate(over="ignore", invalid="ignore"):
        block = raw.astype(np.float32, copy=False)
        bad = ~np.isfinite(block.sum(axis=1, dtype=np.float64))
    if bad.any():
        row = first + int(np.argmax(bad))
        raise UserError(
            f"{path}: row {row} holds NaN or an infinite value (or one too large for float32); "
            "nothing was imported"
        )
    return block


def open_vectors(
    path: Path, *, column: str | None = None, id_column: str | None = None
) -> VectorFile:
    """Open a .npy, .parquet or .safetensors file of vectors (told by its first bytes).
    `column`: the vectors' column (Parquet) or tensor (safetensors) when the file has
    several; `id_column`: the column or tensor of ids that match rows to the dataset's. Any
    problem with the file (its shape, its dtype, no rows, a missing column) is a UserError."""
    with open(path, "rb") as f:
        head = f.read(9)
    if head.startswith(b"\x93NUMPY"):
        if column or id_column:
            flag = "--column" if column else "--id-column"
            raise UserError(
                f"{path}: a .npy file holds one array and no ids ({flag} is for Parquet and "
                "safetensors files); its rows are matched in dataset order"
            )
        found = _open_npy(path)
    elif head.startswith(b"PAR1"):
        found = _open_parquet(path, column, id_column)
    elif (
        len(head) == 9
        and head[8:9] == b"{"
        and 2 <= int.from_bytes(head[:8], "little") <= _MAX_HEADER
    ):
        found = _open_safetensors(path, column, id_column)
    elif head.startswith(b"PK"):
        raise UserError(
            f"{path}: a zip archive (.npz?); save the matrix alone with numpy.save (.npy), or "
            "as .parquet or .safetensors"
        )
    else:
        raise UserError(
            f"{path}: not a .npy, .parquet or .safetensors file (its first bytes are none of theirs)"
        )
    if found.rows == 0:
        raise UserError(f"{path}: holds no rows; nothing was imported")
    if found.dim == 0:
        raise UserError(f"{path}: its rows have no values (0 dims); nothing was imported")
    return found


def _shape_problem(path: Path, shape: tuple[int, ...], what: str = "array") -> None:
    if len(shape) != 2:
        said = " x ".join(str(n) for n in shape) or "a single value"
        raise UserError(
            f"{path}: the {what} is {len(shape)}-D ({said}); vectors are a 2-D array, rows x dims"
        )


def _dtype_problem(path: Path, dtype: str, what: str = "array") -> UserError:
    return UserError(
        f"{path}: the {what} holds {dtype} values; vectors are floating point (float16, "
        "bfloat16, float32 or float64)"
    )


# --- .npy -------------------------------------------------------------------------------------


def npy_layout(f: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, Fortran order, dtype, offset of the data) of the .npy file open in `f`, read
    from its header (numpy.save's format 1.0 or 2.0); ValueError for anything else."""
    fmt = np.lib.format
    f.seek(0)
    version = fmt.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = fmt.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = fmt.read_array_header_2_0(f)
    else:
        raise ValueError(f"version {version} (use numpy.save's 1.0 or 2.0)")
    return shape, fortran, dtype, f.tell()


def _open_npy(path: Path) -> VectorFile:
    try:
        with open(path, "rb") as f:
            shape, fortran, dtype, offset = npy_layout(f)
    except ValueError as e:
        raise UserError(f"{path}: not a readable .npy file ({e})") from None
    if dtype.names or dtype.kind != "f":
        raise _dtype_problem(path, str(dtype))
    _shape_problem(path, shape)
    rows, dim = shape
    needed = offset + rows * dim * dtype.itemsize
    if path.stat().st_size < needed:
        raise UserError(
            f"{path}: shorter than its header says ({path.stat().st_size:,} of {needed:,} bytes; "
            "cut off?)"
        )

    def read(n: int) -> Iterator[np.ndarray]:
        if fortran:  # columns are contiguous: a row block is gathered through a memory map
            values = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F")
            for start in range(0, rows, n):
                yield np.ascontiguousarray(values[start : start + n])
            return
        with open(path, "rb") as f:
            f.seek(offset)
            for start in range(0, rows, n):
                count = min(n, rows - start)
                yield np.fromfile(f, dtype=dtype, count=count * dim).reshape(count, dim)

    return VectorFile(path, "npy", rows, dim, str(dtype), read, *_sidecar_metadata(path))


def _sidecar_metadata(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The tool's metadata from the .npy's sidecar and the hash it was written for."""
    try:
        saved = json.loads(sidecar(path).read_text())
        return dict(saved[METADATA_KEY]), str(saved["blake2b"])
    except (OSError, ValueError, KeyError, TypeError):
        return None, None


# --- Parquet ------------------------------------------------------------------------------------


def _is_list(kind: pa.DataType) -> bool:
    return (
        pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    )


def _open_parquet(path: Path, column: str | None, id_column: str | None) -> VectorFile:
    try:
        # read column chunks in pieces, not whole: a row group may hold all the rows
        pf = pq.ParquetFile(path, buffer_size=1 << 20, pre_buffer=False)
    except (pa.ArrowException, OSError) as e:
        raise UserError(f"{path}: not a readable Parquet file ({e})") from None
    schema = pf.schema_arrow
    names = schema.names
    for given, flag in ((column, "--column"), (id_column, "--id-column")):
        if given is not None and given not in names:
            raise UserError(f"{path}: no column {given!r} for {flag} (columns: {', '.join(names)})")
    others = [n for n in names if n != id_column]
    lists = [n for n in others if _is_list(schema.field(n).type)]
    if column is not None:
        if not _is_list(schema.field(column).type):
            raise UserError(
                f"{path}: column {column!r} holds {schema.field(column).type}, not a list of numbers"
            )
        vectors = [column]
    elif len(lists) > 1:
        raise UserError(
            f"{path}: several list columns ({', '.join(lists)}); name the vectors' column with --column"
        )
    else:
        vectors = lists or others
    if not vectors:
        raise UserError(f"{path}: no vector column (a list column, or numeric columns)")
    if _is_list(schema.field(vectors[0]).type):
        value_type = schema.field(vectors[0]).type.value_type
        if not pa.types.is_floating(value_type):
            raise _dtype_problem(path, str(value_type), f"column {vectors[0]!r}")
        dtype = str(value_type)
        dim = _list_dim(pf, vectors[0], path)
        ignored = [n for n in others if n != vectors[0]]
    else:
        for name in vectors:
            kind = schema.field(name).type
            if not pa.types.is_floating(kind):
                hint = "; give it as --id-column if it holds the ids" if id_column is None else ""
                raise UserError(
                    f"{path}: column {name!r} holds {kind}, not floating-point numbers (vectors "
                    f"are one list column or floating-point columns){hint}"
                )
        dtype, dim, ignored = str(schema.field(vectors[0]).type), len(vectors), []
    rows = pf.metadata.num_rows

    def read(n: int) -> Iterator[np.ndarray]:  # noqa: ARG001 - batches of PARQUET_BATCH_BYTES
        first = 0
        batch_rows = max(1, PARQUET_BATCH_BYTES // (4 * dim))
        for batch in pf.iter_batches(batch_size=batch_rows, columns=vectors):
            yield _batch_values(batch, dim, first, path)
            first += batch.num_rows

    def read_ids() -> pa.Array:
        values = pf.read(columns=[id_column]).column(0).combine_chunks()
        return _ids_as_text(values, path, f"column {id_column!r}")

    return VectorFile(
        path,
        "parquet",
        rows,
        dim,
        dtype,
        read,
        id_name=id_column,
        read_ids=read_ids if id_column else None,
        ignored=ignored,
    )


def _list_dim(pf: pq.ParquetFile, name: str, path: Path) -> int:
    """The length of the first row's list (every row is checked against it when read)."""
    kind = pf.schema_arrow.field(name).type
    if pa.types.is_fixed_size_list(kind):
        return kind.list_size
    for batch in pf.iter_batches(batch_size=1, columns=[name]):
        first = batch.column(0)
        if first.null_count:
            raise UserError(f"{path}: row 0 of column {name!r} is empty (null)")
        return len(first[0])
    return 0


def _batch_values(batch: pa.RecordBatch, dim: int, first: int, path: Path) -> np.ndarray:
    """A record batch's vectors as a rows x dim array; nulls and lists of another length
    are errors naming the row."""
    name = batch.schema.names[0]
    if batch.num_columns == 1 and _is_list(batch.schema.field(0).type):
        values = batch.column(0)
        if values.null_count:
            row = first + _first_true(values.is_null())
            raise UserError(f"{path}: row {row} of column {name!r} is empty (null)")
        if not pa.types.is_fixed_size_list(values.type):
            lengths = pc.list_value_length(values).to_numpy()
            wrong = lengths != dim
            if wrong.any():
                at = int(np.argmax(wrong))
                raise UserError(
                    f"{path}: row {first + at} of column {name!r} has {lengths[at]} values, "
                    f"not {dim} as row 0"
                )
        flat = values.flatten()
        if flat.null_count:
            row = first + _first_true(flat.is_null()) // dim
            raise UserError(f"{path}: row {row} of column {name!r} holds an empty (null) value")
        return flat.to_numpy(zero_copy_only=False).reshape(-1, dim)
    for i, column in enumerate(batch.columns):
        if column.null_count:
            row = first + _first_true(column.is_null())
            raise UserError(
                f"{path}: row {row} of column {batch.schema.names[i]!r} is empty (null)"
            )
    return np.column_stack([c.to_numpy(zero_copy_only=False) for c in batch.columns])


def _first_true(mask: pa.Array) -> int:
    return int(np.argmax(mask.to_numpy(zero_copy_only=False)))


def _ids_as_text(values: pa.Array, path: Path, what: str) -> pa.Array:
    """Ids as text: strings as they are, whole numbers written out; nulls are errors."""
    if values.null_count:
        raise UserError(f"{path}: row {_first_true(values.is_null())} of {what} has no id (null)")
    kind = values.type
    if pa.types.is_integer(kind) or pa.types.is_large_string(kind):
        return values.cast(pa.string())
    if pa.types.is_string(kind):
        return values
    raise UserError(f"{path}: {what} holds {kind}; ids are text or whole numbers")


# --- safetensors ----------------------------------------------------------------------------------


def _open_safetensors(path: Path, column: str | None, id_column: str | None) -> VectorFile:
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            length = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(length))
        metadata = header.pop("__metadata__", None) or {}
        tensors = {name: _tensor_entry(t) for name, t in header.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{path}: not a readable safetensors file (its header: {e})") from None
    base = 8 + length
    for name, (dtype, shape, (begin, end)) in tensors.items():
        if dtype not in _ITEM_BYTES:
            raise UserError(f"{path}: tensor {name!r} has the unknown dtype {dtype}")
        if end - begin != math.prod(shape) * _ITEM_BYTES[dtype] or base + end > size:
            raise UserError(f"{path}: tensor {name!r} does not fit in the file (cut off?)")
    for given, flag in ((column, "--column"), (id_column, "--id-column")):
        if given is not None and given not in tensors:
            raise UserError(
                f"{path}: no tensor {given!r} for {flag} (tensors: {', '.join(tensors)})"
            )
    ids_name = id_column or (IDS_TENSOR if IDS_TENSOR in tensors else None)
    candidates = [n for n in tensors if n != ids_name]
    if column is not None:
        name = column
    elif FEATURES_TENSOR in candidates:
        name = FEATURES_TENSOR
    else:
        two_d = [n for n in candidates if len(tensors[n][1]) == 2]
        if len(two_d) > 1:
            raise UserError(
                f"{path}: several 2-D tensors ({', '.join(two_d)}); name the vectors' tensor with --column"
            )
        if not two_d and len(candidates) != 1:
            raise UserError(
                f"{path}: no 2-D tensor of vectors (tensors: {', '.join(tensors) or 'none'})"
            )
        name = (two_d or candidates)[0]
    dtype, shape, (begin, _) = tensors[name]
    _shape_problem(path, shape, f"tensor {name!r}")
    if dtype not in _SAFETENSORS_FLOATS:
        raise _dtype_problem(path, dtype, f"tensor {name!r}")
    rows, dim = shape
    stored = np.dtype(_SAFETENSORS_FLOATS[dtype])

    def read(n: int) -> Iterator[np.ndarray]:
        with open(path, "rb") as f:
            f.seek(base + begin)
            for start in range(0, rows, n):
                count = min(n, rows - start)
                raw = np.fromfile(f, dtype=stored, count=count * dim).reshape(count, dim)
                if dtype == "BF16":  # bfloat16 is the top half of a float32
                    raw = (raw.astype(np.uint32) << 16).view(np.float32)
                yield raw

    read_ids = None
    if ids_name is not None:
        ids_dtype, ids_shape, (ids_begin, _) = tensors[ids_name]
        if ids_dtype not in _SAFETENSORS_INTS or len(ids_shape) != 1:
            raise UserError(
                f"{path}: the ids tensor {ids_name!r} is {ids_dtype} {list(ids_shape)}; ids are "
                "a 1-D tensor of whole numbers, one a row"
            )
        if ids_shape[0] != rows:
            raise UserError(
                f"{path}: the ids tensor {ids_name!r} has {ids_shape[0]:,} ids for {rows:,} rows"
            )

        def read_ids() -> pa.Array:
            with open(path, "rb") as f:
                f.seek(base + ids_begin)
                values = np.fromfile(f, dtype=np.dtype(_SAFETENSORS_INTS[ids_dtype]), count=rows)
            return _ids_as_text(pa.array(values), path, f"tensor {ids_name!r}")

    try:
        tool = json.loads(metadata[METADATA_KEY]) if METADATA_KEY in metadata else None
    except (ValueError, TypeError):
        tool = None
    return VectorFile(
        path,
        "safetensors",
        rows,
        dim,
        dtype,
        read,
        tool,
        None,
        id_name=ids_name,
        read_ids=read_ids,
        ignored=[n for n in candidates if n != name],
    )


# --- writing ------------------------------------------------------------------------------------


def _tensor_entry(entry: dict[str, Any]) -> tuple[str, tuple[int, ...], tuple[int, int]]:
    """(dtype, shape, (begin, end)) of a safetensors header entry; ValueError unless the
    shape is whole numbers of at least 0 and the offsets two with 0 <= begin <= end."""
    shape = tuple(entry["shape"])
    offsets = tuple(entry["data_offsets"])
    if not all(type(n) is int and n >= 0 for n in shape):
        raise ValueError(f"shape {list(shape)}")
    if len(offsets) != 2 or not all(type(n) is int for n in offsets):
        raise ValueError(f"data_offsets {list(offsets)}")
    if not 0 <= offsets[0] <= offsets[1]:
        raise ValueError(f"data_offsets {list(offsets)}")
    return str(entry["dtype"]), shape, offsets


def npy_header(rows: int, dim: int) -> bytes:
    """The .npy header (format 1.0, as numpy.save writes it) of a rows x dim float32 array."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "<f4", "fortran_order": False, "shape": (rows, dim)}
    )
    return buffer.getvalue()


def write_vectors(
    target: Path,
    chunks: Iterable[np.ndarray],
    rows: int,
    dim: int,
    metadata: dict[str, Any],
) -> list[Path]:
    """Stream rows x dim float32 `chunks` (in row order) into `target`, atomically: a
    .safetensors file (tensor "features", `metadata` in its header), else a .npy file and
    its sidecar (`metadata` and the .npy's hash). Returns the files written."""
    if target.suffix == ".safetensors":
        header = {
            FEATURES_TENSOR: {
                "dtype": "F32",
                "shape": [rows, dim],
                "data_offsets": [0, rows * dim * 4],
            },
            "__metadata__": {METADATA_KEY: json.dumps(metadata, sort_keys=True)},
        }
        text = json.dumps(header).encode()
        text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
        _stream(target, len(text).to_bytes(8, "little") + text, chunks)
        return [target]
    digest = _stream(target, npy_header(rows, dim), chunks)
    side = sidecar(target)
    with atomic_target(side) as tmp:
        tmp.write_text(json.dumps({METADATA_KEY: metadata, "blake2b": digest}, indent=1))
    return [target, side]


def _stream(target: Path, head: bytes, chunks: Iterable[np.ndarray]) -> str:
    """Write `head` then each chunk's float32 bytes to `target` atomically; returns the
    blake2b hash (as content_hash gives it) of what was written."""
    h = hashlib.blake2b(head, digest_size=16)
    with atomic_target(target) as tmp, open(tmp, "wb") as f:
        f.write(head)
        for chunk in chunks:
            data = memoryview(np.ascontiguousarray(chunk, dtype="<f4")).cast("B")
            h.update(data)
            f.write(data)
    return h.hexdigest()
