"""Feature sets: the vectors of a dataset, computed once, stored in chunks, resumable.

The vectors come from an encoder (core/encoders.py: gradient features, sentence
embeddings), which this store uses only through its interface. A feature set is keyed by
everything that changes its numbers: the dataset's fingerprint and the encoder's key
fields (the proxy's identity: name and revision, or a hash of its files; the method and
the settings it uses, such as dims, rank, seed, max length; the code version). Same key,
same numbers: never computed twice.

On disk, `datasets/<dataset id>/features/<key>/` holds `manifest.json` and one
`chunk-NNNNN.npy` (float32, rows x dim) per `chunk_rows` rows in dataset order. Each chunk
is written to a temporary name and renamed, then recorded in the manifest (rewritten the
same way) with its size and CRC-32. A run that is killed resumes from the chunks the
manifest lists; a chunk that is missing, short or fails its checksum is computed again.
Chunks are computed the same way every time, so a resumed run ends with features
identical to an uninterrupted one.

Vectors computed elsewhere come in through `import_features` (a file read in blocks into
the same chunks, moved in and registered whole, or not at all), and a feature set goes
out through `write_features_file` (`embed --out`) with what makes the import of that file
in another workspace holding the same data the same feature set (core/vectorfiles.py).

Reading: a chunk's checksum is checked once per version of its file (path, inode, size,
mtime; see `_VERIFIED`), then the chunk is memory-mapped, not copied. So finding a feature
set again costs a stat per chunk, and streaming or gathering rows (`arrays`, `take`) keeps
only the chunk in use mapped: memory stays bounded whatever the number of rows.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sqlite3
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import pyarrow.parquet as pq

from core.catalogue import FeatureSetRow, now
from core.config import FEATURES_VERSION, FILE, FILE_PREFIX, FeatureConfig, ProxySpec, Runtime
from core.encoders import Encoder, Samples, encoder_for
from core.engines import open_engine
from core.errors import UserError
from core.files import atomic_target, atomic_write, scratch_folder
from core.progress import ProgressFn, no_progress
from core.settings import check_bounds
from core.vectorfiles import VectorFile, npy_header, npy_layout
from core.workspace import DatasetInfo, Workspace

if TYPE_CHECKING:
    from core.estimate import Estimate

# Chunk files whose checksum matched, by (path, inode, size, mtime, the manifest's CRC-32):
# such a file is not read again until one of those changes. A file modified within
# RACY_SECONDS of its check is not remembered, since a write in the same tick of the file
# system's clock could leave its size and mtime as they were (git's "racily clean" rule).
_VERIFIED: set[tuple[str, int, int, int, int]] = set()
_VERIFIED_MAX = 1_000_000  # entries kept (forgotten all at once beyond: re-checked later)
RACY_SECONDS = 2.0
_READ_BYTES = 16 * 2**20  # a checksum reads the file in pieces of this size


def _stamp(path: Path, st: os.stat_result, entry: dict[str, int]) -> tuple[str, int, int, int, int]:
    return (str(path), st.st_ino, st.st_size, st.st_mtime_ns, entry["crc32"])


def _verified(f: BinaryIO, entry: dict[str, int]) -> bool:
    """Whether the open chunk file `f` has the manifest entry's size and CRC-32: from
    `_VERIFIED` when this version of the file was checked before, else by reading it."""
    st = os.fstat(f.fileno())
    if st.st_size != entry["bytes"]:
        return False
    stamp = _stamp(Path(f.name), st, entry)
    if stamp in _VERIFIED:
        return True
    crc = 0
    while piece := f.read(_READ_BYTES):
        crc = zlib.crc32(piece, crc)
    if crc != entry["crc32"]:
        return False
    if time.time() - st.st_mtime_ns / 1e9 > RACY_SECONDS:
        if len(_VERIFIED) >= _VERIFIED_MAX:
            _VERIFIED.clear()
        _VERIFIED.add(stamp)
    return True


def feature_key(dataset: DatasetInfo, encoder: Encoder) -> str:
    """The feature set's key: the dataset's fingerprint and the encoder's key fields."""
    fields = {"data": dataset.fingerprint, **encoder.key_fields()}
    return hashlib.blake2b(json.dumps(fields, sort_keys=True).encode(), digest_size=12).hexdigest()


@dataclass
class FeatureSet:
    """A stored feature set (complete or not) and its manifest; `encoder` made its vectors."""

    key: str
    folder: Path
    rows: int
    dim: int
    chunk_rows: int
    encoder: Encoder
    chunks: dict[int, dict[str, int]] = field(default_factory=dict)
    complete: bool = False
    facts: dict[str, Any] = field(default_factory=dict)
    cached: bool = False  # answered from the cache, nothing computed

    @property
    def proxy(self) -> str:
        """The name of the model (or source) the vectors come from."""
        return self.encoder.proxy.name

    @property
    def config(self) -> FeatureConfig:
        return self.encoder.config

    @property
    def n_chunks(self) -> int:
        return -(-self.rows // self.chunk_rows)

    def chunk_path(self, index: int) -> Path:
        return self.folder / f"chunk-{index:05d}.npy"

    def _open_verified(self, index: int) -> BinaryIO | None:
        """The chunk file, opened, if it is listed in the manifest, the right size, and its
        checksum matches (read once per version of the file: see `_VERIFIED`); else None.
        The checks are made on the open file, which is the one then read."""
        entry = self.chunks.get(index)
        if entry is None:
            return None
        try:
            f = open(self.chunk_path(index), "rb")  # noqa: SIM115 (the caller closes it)
        except OSError:
            return None
        try:
            if _verified(f, entry):
                return f
        except OSError:
            pass
        f.close()
        return None

    def chunk_is_valid(self, index: int) -> bool:
        """Whether the chunk is listed, whole and intact; a chunk file verified before and
        unchanged since (the same inode, size and mtime) is not read again."""
        entry = self.chunks.get(index)
        try:
            st = self.chunk_path(index).stat()
        except OSError:
            return False
        if entry is not None and _stamp(self.chunk_path(index), st, entry) in _VERIFIED:
            return True
        f = self._open_verified(index)
        if f is None:
            return False
        f.close()
        return True

    def load_chunk(self, index: int) -> np.ndarray:
        """The chunk's rows x dim array, checked (see `chunk_is_valid`) and memory-mapped,
        read-only: no copy is made, and only the pages used are read."""
        f = self._open_verified(index)
        if f is None:
            raise UserError(
                f"feature chunk {self.chunk_path(index)} is missing or damaged; compute the features again"
            )
        with f:
            shape, fortran, dtype, offset = npy_layout(f)
            if not np.prod(shape):
                return np.empty(shape, dtype=dtype)
            mapped = np.memmap(
                f, dtype=dtype, mode="r", shape=shape, order="F" if fortran else "C", offset=offset
            )
        return mapped.view(np.ndarray)  # a plain array on the mapping (which it keeps open)

    def iter_chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, rows x dim array) per chunk, in dataset order; each chunk is mapped
        while it is used (see `load_chunk`)."""
        for index in range(self.n_chunks):
            yield index * self.chunk_rows, self.load_chunk(index)

    def arrays(self) -> Iterator[np.ndarray]:
        """The chunks' arrays in order, for streaming computations."""
        return (chunk for _, chunk in self.iter_chunks())

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The rows at these indices (any order, repeats allowed) as a len(rows) x dim float32
        array, read from the chunks that hold them (one chunk mapped at a time)."""
        rows = np.asarray(rows, dtype=np.int64).ravel()
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        if not len(rows):
            return out
        if rows.min() < 0 or rows.max() >= self.rows:
            raise IndexError(f"rows must be between 0 and {self.rows - 1}")
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        chunk_of = ordered // self.chunk_rows
        present = np.unique(chunk_of)
        starts = np.searchsorted(chunk_of, present)
        ends = np.searchsorted(chunk_of, present, side="right")
        for index, lo, hi in zip(present.tolist(), starts, ends, strict=True):
            chunk = self.load_chunk(index)
            out[order[lo:hi]] = chunk[ordered[lo:hi] - index * self.chunk_rows]
            del chunk  # unmapped before the next is mapped
        return out

    def matrix(self) -> np.ndarray:
        """All features, N x dim float32, in dataset row order (N x dim x 4 bytes of memory:
        what streams or gathers rows uses `arrays` or `take` instead)."""
        if not self.complete:
            raise UserError("these features are not complete yet; compute them first")
        out = np.empty((self.rows, self.dim), dtype=np.float32)
        for start, chunk in self.iter_chunks():
            out[start : start + len(chunk)] = chunk
        return out

    def manifest(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "rows": self.rows,
            "dim": self.dim,
            "dtype": "float32",
            "chunk_rows": self.chunk_rows,
            "proxy": self.proxy,
            "config": asdict(self.config),
            "chunks": {str(k): v for k, v in sorted(self.chunks.items())},
            "complete": self.complete,
            "facts": self.facts,
        }

    def save_manifest(self) -> None:
        atomic_write(self.folder / "manifest.json", json.dumps(self.manifest(), indent=1).encode())

    def write_chunk(
        self, index: int, values: np.ndarray, *, truncated: int = 0, save: bool = True
    ) -> None:
        """Store rows [index * chunk_rows, ...) atomically (the bytes numpy.save writes,
        without a copy of them in memory); `truncated` counts cut samples. `save`: record it
        in the manifest now (an import saves the manifest once, at its end)."""
        values = np.ascontiguousarray(values, dtype=np.float32)
        head = npy_header(*values.shape)
        data = memoryview(values).cast("B")
        with atomic_target(self.chunk_path(index)) as tmp, open(tmp, "wb") as f:
            f.write(head)
            f.write(data)
        self.chunks[index] = {
            "rows": len(values),
            "bytes": len(head) + data.nbytes,
            "crc32": zlib.crc32(data, zlib.crc32(head)),
            "truncated": truncated,
        }
        if save:
            self.save_manifest()


def _open_set(
    folder: Path,
    key: str,
    dataset: DatasetInfo,
    encoder: Encoder,
    chunk_rows: int,
    dim: int | None,
) -> FeatureSet:
    """The feature set in `folder`, from its manifest if there is one, else a new empty one."""
    try:
        m = json.loads((folder / "manifest.json").read_text())
        fs = FeatureSet(
            key,
            folder,
            m["rows"],
            m["dim"],
            m["chunk_rows"],
            encoder,
            {int(k): v for k, v in m["chunks"].items()},
            m["complete"],
            m["facts"],
        )
        if fs.rows == dataset.rows and dim in (None, fs.dim):
            return fs
    except (OSError, ValueError, KeyError):
        pass  # no manifest yet, or an unreadable one: start over
    return FeatureSet(key, folder, dataset.rows, dim or encoder.config.dim, chunk_rows, encoder)


def find_features(
    ws: Workspace,
    dataset: str,
    *,
    proxy: ProxySpec = ProxySpec(),
    config: FeatureConfig = FeatureConfig(),
) -> FeatureSet | None:
    """The complete, intact feature set for these settings, or None. Loads no model."""
    encoder = encoder_for(proxy, config)
    info = ws.dataset(dataset)
    key = feature_key(info, encoder)
    folder = info.path.parent / "features" / key
    if not (folder / "manifest.json").exists():
        return None
    fs = _open_set(folder, key, info, encoder, Runtime().chunk_rows, None)
    if not fs.complete or not all(fs.chunk_is_valid(i) for i in range(fs.n_chunks)):
        return None
    fs.cached = True
    return fs


def feature_sets(ws: Workspace, dataset: str) -> list[dict[str, Any]]:
    """The catalogue's feature sets of a dataset, newest first; `settings`: those its
    encoder uses (method first), for showing."""
    out = [asdict(r) for r in ws.catalogue.feature_sets(ws.dataset(dataset).id)]
    for s in out:
        s["settings"] = encoder_for(ProxySpec(s["proxy"]), FeatureConfig(**s["config"])).settings()
    return out


@contextmanager
def _exclusive(folder: Path) -> Iterator[None]:
    with open(folder / "lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise UserError(
                "these features are being computed by another process right now; wait for it to finish"
            ) from e
        yield


def compute_features(
    ws: Workspace,
    dataset: str,
    *,
    proxy: ProxySpec = ProxySpec(),
    config: FeatureConfig = FeatureConfig(),
    runtime: Runtime = Runtime(),
    on_progress: ProgressFn = no_progress,
    on_estimate: Callable[[Estimate], None] | None = None,
) -> FeatureSet:
    """The dataset's features for these settings: from the cache, or computed (resuming).

    `on_progress(rows done, rows)` is called after each batch; it may raise Cancelled,
    which keeps every chunk finished so far. `on_estimate`, when given, is told how long
    the computation will take (core/estimate.py, timed with the loaded encoder) before it
    starts, when there is anything to compute.
    """
    encoder = encoder_for(proxy, config)
    check_bounds(config)
    check_bounds(runtime)
    if cached := find_features(ws, dataset, proxy=proxy, config=config):
        on_progress(cached.rows, cached.rows)
        return cached
    info = ws.dataset(dataset)
    if encoder.unavailable():  # imported vectors that this dataset lacks
        raise UserError(
            f"dataset {info.name!r} has no imported vectors {proxy.name}; attach them with "
            "features-import (or on the Features page), or choose a proxy to compute features"
        )
    try:
        return _compute(ws, info, encoder, runtime, on_progress, on_estimate)
    except (OSError, sqlite3.Error, _DatasetChanged) as e:
        how = _changed(ws, info)
        if how is None:
            raise
        _drop_leftovers(ws, info)
        raise UserError(
            f"dataset {info.name!r} was {how} while its features were computed; nothing was "
            "kept" + ("; compute the features of the new one" if how == "replaced" else "")
        ) from e


class _DatasetChanged(Exception):
    """The dataset a computation reads was deleted or replaced meanwhile."""


def sentence_request(model: str | None = None, *, seed: int = 0) -> tuple[ProxySpec, FeatureConfig]:
    """The feature settings of the sentence embeddings (the meaning space beside the gradient
    one: method `sentence`, core/sentence.py; default model all-MiniLM-L6-v2). `seed` seeds
    what is computed from them (clusters); the embeddings do not depend on it."""
    from core.config import SENTENCE
    from core.sentence import SENTENCE_MODEL

    return ProxySpec(model or SENTENCE_MODEL), FeatureConfig(method=SENTENCE, seed=seed)


def sentence_features(
    ws: Workspace,
    dataset: str,
    *,
    model: str | None = None,
    runtime: Runtime = Runtime(),
    on_progress: ProgressFn = no_progress,
) -> FeatureSet:
    """The dataset's sentence embeddings (`sentence_request`), cached like features. Raises
    UserError when the model cannot be loaded."""
    proxy, config = sentence_request(model)
    return compute_features(
        ws, dataset, proxy=proxy, config=config, runtime=runtime, on_progress=on_progress
    )


def _changed(ws: Workspace, info: DatasetInfo) -> str | None:
    """'deleted' or 'replaced' when the catalogue no longer holds `info`; None when it does
    (renamed or not)."""
    if ws.catalogue.has_dataset_id(info.id):
        return None
    return "replaced" if ws.catalogue.dataset_named(info.name) else "deleted"


def _drop_leftovers(ws: Workspace, info: DatasetInfo) -> None:
    """Remove what a computation wrote into the folder of a dataset that is gone (checked
    under the catalogue's write lock, as the workspace's own clean-up does)."""
    with ws.catalogue.transaction() as catalogue:
        if not catalogue.has_dataset_id(info.id):
            shutil.rmtree(info.path.parent, ignore_errors=True)


def _compute(
    ws: Workspace,
    info: DatasetInfo,
    encoder: Encoder,
    runtime: Runtime,
    on_progress: ProgressFn,
    on_estimate: Callable[[Estimate], None] | None = None,
) -> FeatureSet:
    """compute_features' work; raises _DatasetChanged when the dataset goes meanwhile."""
    key = feature_key(info, encoder)
    folder = info.path.parent / "features" / key
    if _changed(ws, info):  # mkdir would make its folder again
        raise _DatasetChanged
    folder.mkdir(parents=True, exist_ok=True)
    with _exclusive(folder), open_engine(encoder, runtime) as engine:
        fs = _open_set(folder, key, info, encoder, runtime.chunk_rows, engine.dim)
        todo = [i for i in range(fs.n_chunks) if not fs.chunk_is_valid(i)]
        done = sum(fs.chunks[i]["rows"] for i in range(fs.n_chunks) if i not in todo)
        if on_estimate and todo and engine.loaded is not None:
            from core.estimate import measure

            proxy, config = encoder.proxy, encoder.config
            on_estimate(
                measure(engine.loaded, info, proxy, config, runtime, rows_left=fs.rows - done)
            )
        _register(ws, info, fs)
        on_progress(done, fs.rows)
        started, computed = time.perf_counter(), 0
        wanted = set(todo)
        chunks = (c for c in _chunks(info.path, fs.chunk_rows) if c[0] in wanted)
        progress = [done]  # rows stored so far, for the progress within a chunk
        for index, values, truncated in engine.encode_chunks(
            chunks, lambda n: on_progress(progress[0] + n, fs.rows)
        ):
            if _changed(ws, info):  # deleted or replaced: stop at once
                raise _DatasetChanged
            fs.write_chunk(index, values, truncated=truncated)
            computed += len(values)
            progress[0] += len(values)
            on_progress(progress[0], fs.rows)
        seconds = time.perf_counter() - started
        fs.complete = True
        fs.facts = {
            **engine.facts(),
            "truncated": sum(c.get("truncated", 0) for c in fs.chunks.values()),
            "computed_rows": computed,
            "seconds": round(seconds, 2),
            "samples_per_second": round(computed / seconds, 2) if seconds and computed else None,
        }
        fs.save_manifest()
        _register(ws, info, fs)
    return fs


def _register(ws: Workspace, info: DatasetInfo, fs: FeatureSet) -> None:
    """Record the feature set in the catalogue, under its dataset (which must still be there)."""
    with ws.catalogue.transaction() as catalogue:
        if not catalogue.has_dataset_id(info.id):
            raise _DatasetChanged
        catalogue.save_feature_set(
            FeatureSetRow(
                key=fs.key,
                dataset_id=info.id,
                proxy=fs.proxy,
                config=asdict(fs.config),
                rows=fs.rows,
                dim=fs.dim,
                complete=fs.complete,
                facts=fs.facts,
                updated_at=now(),
            )
        )


def _chunks(path: Path, chunk_rows: int) -> Iterator[tuple[int, Samples]]:
    """(chunk index, its records) in dataset order."""
    pf = pq.ParquetFile(path)
    columns = ["prompt", "response", "messages", "id"]
    for index, batch in enumerate(pf.iter_batches(batch_size=chunk_rows, columns=columns)):
        yield index, Samples(*(batch.column(c).to_pylist() for c in columns))


# --- vectors computed elsewhere ---------------------------------------------------------------


def import_features(
    ws: Workspace,
    dataset: str,
    path: str | Path,
    *,
    id_column: str | None = None,
    column: str | None = None,
    on_progress: ProgressFn = no_progress,
) -> FeatureSet:
    """Attach a file of vectors (core/vectorfiles.py: .npy, .parquet, .safetensors) as a
    feature set of the dataset, its rows in dataset order or matched by `id_column`.

    A file that this tool's `embed --out` wrote for the same data (its metadata names the
    dataset's fingerprint, the proxy and the settings) becomes the very feature set that
    computing it here gives: the same key and settings, so synthesis can use it. Any other
    becomes vectors of their own (method "file", proxy `file:` and a hash of the file and
    the id column): scored, mapped and curated like features. `facts["notes"]` says why a
    file of the tool's own was not taken as its settings.

    The file is read in blocks (memory: a few blocks, not the matrix) into a folder beside
    the feature set's, which is moved in and registered only once every row is read and
    checked: a bad file (wrong row count, NaN, unknown or repeated ids...) raises UserError
    and leaves the workspace as it was. `on_progress(done, total)` follows the hashing and
    the reading of the file.
    """
    from core.sources import regular_file
    from core.vectorfiles import block_rows, content_hash, open_vectors

    info = ws.dataset(dataset)
    source = regular_file(path)
    size = max(source.stat().st_size, 1)
    try:
        vectors = open_vectors(source, column=column, id_column=id_column)
        digest = content_hash(source, lambda done: on_progress(done, 2 * size))
    except OSError as e:
        raise UserError(f"{source}: cannot read it ({e.strerror or e})") from e
    notes: list[str] = []
    encoder = _recorded_encoder(vectors, digest, info, notes)
    if encoder is None:
        matched = f"{digest}:{vectors.id_name or ''}"
        identity = FILE_PREFIX + hashlib.blake2b(matched.encode(), digest_size=8).hexdigest()
        encoder = encoder_for(ProxySpec(identity), FeatureConfig(method=FILE, dim=vectors.dim))
    where = _row_order(vectors, info)
    if found := find_features(ws, dataset, proxy=encoder.proxy, config=encoder.config):
        on_progress(1, 1)
        return found
    key = feature_key(info, encoder)
    folder = info.path.parent / "features" / key
    made = [p for p in (folder.parent, folder) if not p.exists()]  # removed again on failure
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with _exclusive(folder), scratch_folder(folder) as scratch:
            rows = block_rows(vectors.dim)
            fs = FeatureSet(key, scratch, info.rows, vectors.dim, rows, encoder)
            for index, values in _dataset_order(vectors, where, rows, scratch):
                fs.write_chunk(index, values, save=False)
                del values  # freed before the next is read
                on_progress(size + size * min(len(fs.chunks) * rows, fs.rows) // fs.rows, 2 * size)
            fs.complete = True
            fs.facts = {
                **(vectors.metadata or {}).get("facts", {}),
                "imported_from": source.name,
                "format": vectors.format,
                "dtype": vectors.dtype,
                "rows_matched_by": f"ids in {vectors.id_name!r}" if vectors.id_name else "order",
                "file_blake2b": digest,
                "ignored": vectors.ignored,
                "notes": notes,
            }
            _move_in(fs, folder)
            _register(ws, info, fs)
    except BaseException as e:
        if folder in made:
            shutil.rmtree(folder, ignore_errors=True)
        if folder.parent in made:
            with contextlib.suppress(OSError):  # only when empty: another set may be there now
                folder.parent.rmdir()
        if isinstance(e, (OSError, sqlite3.Error, _DatasetChanged)) and (how := _changed(ws, info)):
            _drop_leftovers(ws, info)
            raise UserError(
                f"dataset {info.name!r} was {how} during the import; nothing was kept"
            ) from e
        if isinstance(e, OSError) and not isinstance(e, FileNotFoundError):
            raise UserError(f"{source}: cannot import it ({e.strerror or e})") from e
        raise
    on_progress(2 * size, 2 * size)
    return fs


def _recorded_encoder(
    vectors: VectorFile, digest: str, info: DatasetInfo, notes: list[str]
) -> Encoder | None:
    """The encoder that a file written by `embed --out` names, when its vectors are this
    dataset's features under it; else None, with the reason added to `notes`."""
    m = vectors.metadata
    if m is None:
        return None
    if vectors.metadata_hash not in (None, digest):
        notes.append(
            f"{vectors.path.name}.json describes another version of the file, so its settings "
            "were not used"
        )
        return None
    try:
        proxy = ProxySpec(str(m["proxy"]), m.get("revision"))
        encoder = encoder_for(proxy, FeatureConfig(**m["config"]))
    except (KeyError, TypeError, UserError):
        notes.append("its metadata is not readable by this version, so its settings were not used")
        return None
    if m.get("version") != FEATURES_VERSION:
        notes.append(
            f"it was written by features version {m.get('version')} and this is version "
            f"{FEATURES_VERSION} (the numbers differ), so it was imported as vectors of their own"
        )
        return None
    if m.get("data") != info.fingerprint:
        notes.append(
            f"it holds the features of other data (dataset {m.get('dataset')!r} where it was "
            f"written) than dataset {info.name!r}, so it was imported as vectors of their own"
        )
        return None
    settings = encoder.settings()
    if settings.get("dim", vectors.dim) != vectors.dim:
        raise UserError(
            f"{vectors.path}: its metadata says {settings['dim']} dims, but its rows have "
            f"{vectors.dim}; nothing was imported"
        )
    here = encoder.identity()
    if m.get("identity") not in (None, here):
        notes.append(
            f"the proxy {proxy.name} was {m['identity']} where the file was written and is "
            f"{here} here; the features are kept for it as it is here"
        )
    return encoder


def _row_order(vectors: VectorFile, info: DatasetInfo) -> np.ndarray | None:
    """For each row of the file, its dataset row; None when they are in dataset order. A
    file without ids must have the dataset's row count; ids must be the dataset's, each once."""
    import pyarrow.compute as pc

    path = vectors.path
    ids = vectors.ids()
    if ids is None:
        if vectors.rows != info.rows:
            raise UserError(
                f"{path}: {vectors.rows:,} rows, but dataset {info.name!r} has {info.rows:,} "
                "(rows are matched in dataset order; give an id column to match them by id); "
                "nothing was imported"
            )
        return None
    what = f"the ids in {vectors.id_name!r}"
    known = pq.read_table(info.path, columns=["id"]).column("id").combine_chunks()
    found = pc.index_in(ids, value_set=known)
    if found.null_count:
        row = int(np.argmax(found.is_null().to_numpy(zero_copy_only=False)))
        raise UserError(
            f"{path}: row {row} has the id {ids[row].as_py()!r}, which dataset {info.name!r} "
            f"lacks ({what}); nothing was imported"
        )
    where = found.to_numpy(zero_copy_only=False).astype(np.int64)
    counts = np.bincount(where, minlength=info.rows)
    if (counts > 1).any():
        twice = int(np.argmax(counts > 1))
        rows = np.flatnonzero(where == twice)[:2].tolist()
        raise UserError(
            f"{path}: the id {known[twice].as_py()!r} is on rows {rows[0]} and {rows[1]} "
            f"({what}); nothing was imported"
        )
    if (counts == 0).any():
        missing = int(np.argmax(counts == 0))
        raise UserError(
            f"{path}: {int((counts == 0).sum()):,} of the {info.rows:,} ids of dataset "
            f"{info.name!r} have no row, such as {known[missing].as_py()!r} ({what}); nothing "
            "was imported"
        )
    return None if (where == np.arange(len(where))).all() else where


def _dataset_order(
    vectors: VectorFile, where: np.ndarray | None, rows: int, scratch: Path
) -> Iterator[tuple[int, np.ndarray]]:
    """(chunk index, its `rows` rows) in dataset order. A file in another order goes
    through bucket files in `scratch` (at most 256, each a run of whole chunks): each block
    is split among them, then each bucket, sorted, gives its chunks. Memory: a block and a
    bucket."""
    if where is None:
        for first, block in vectors.blocks(rows):
            yield first // rows, block
            del block  # freed before the next block is read
        return
    n_chunks = -(-len(where) // rows)
    per_bucket = -(-n_chunks // 256) * rows  # dataset rows per bucket
    record = np.dtype([("row", "<i8"), ("v", "<f4", (vectors.dim,))])
    files: dict[int, Any] = {}
    with ExitStack() as stack:
        for first, block in vectors.blocks(rows):
            targets = where[first : first + len(block)]
            buckets = targets // per_bucket
            for bucket in np.unique(buckets).tolist():
                mine = buckets == bucket
                out = np.empty(int(mine.sum()), dtype=record)
                out["row"], out["v"] = targets[mine], block[mine]
                if bucket not in files:
                    files[bucket] = stack.enter_context(open(scratch / f"bucket-{bucket}", "ab"))
                files[bucket].write(out.tobytes())
    for bucket in sorted(files):
        path = scratch / f"bucket-{bucket}"
        held = np.fromfile(path, dtype=record)
        path.unlink()
        values = held["v"][np.argsort(held["row"])]  # its rows in dataset order, contiguous
        del held
        for start in range(0, len(values), rows):
            yield (bucket * per_bucket + start) // rows, values[start : start + rows]
        del values


def _move_in(fs: FeatureSet, folder: Path) -> None:
    """Move a complete feature set built in a scratch folder into `folder` (whose lock the
    caller holds): its chunks, then its manifest, the step that makes it whole; chunks of
    an earlier, unfinished computation beyond its own are removed."""
    for index in sorted(fs.chunks):
        os.replace(fs.chunk_path(index), folder / fs.chunk_path(index).name)
    fs.folder = folder
    for stale in folder.glob("chunk-*.npy"):
        if int(stale.stem.split("-")[1]) >= fs.n_chunks:
            stale.unlink(missing_ok=True)
    fs.save_manifest()


def write_features_file(info: DatasetInfo, fs: FeatureSet, target: Path) -> list[Path]:
    """Write the complete feature set `fs` of the dataset `info` to `target`, streamed chunk
    by chunk, with what makes it the same feature set when `import_features` reads it in
    another workspace holding the same data (core/vectorfiles.py): .safetensors, or a .npy
    and its sidecar. Returns the files written."""
    from core.vectorfiles import write_vectors

    if not fs.complete:
        raise UserError("these features are not complete yet; compute them first")
    facts = {k: fs.facts[k] for k in ("warning",) if k in fs.facts}
    recorded = recorded_settings(info, fs.encoder, dim=fs.dim, facts=facts)
    return write_vectors(target, fs.arrays(), fs.rows, fs.dim, recorded)


def recorded_settings(
    info: DatasetInfo, encoder: Encoder, *, dim: int, facts: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What a file of the dataset's `dim`-wide features under `encoder` carries (the
    metadata of core/vectorfiles.py) so that importing it makes the feature set that
    computing it gives."""
    return {
        "key": feature_key(info, encoder),
        "data": info.fingerprint,
        "dataset": info.name,
        "rows": info.rows,
        "dim": dim,
        "proxy": encoder.proxy.name,
        "revision": encoder.proxy.revision,
        "identity": encoder.identity(),
        "config": asdict(encoder.config),
        "version": FEATURES_VERSION,
        "facts": facts or {},
    }
