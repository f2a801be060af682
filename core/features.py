"""Feature sets: gradient features of a dataset, computed once, stored in chunks, resumable.

A feature set is keyed by everything that changes its numbers: the
dataset's fingerprint, the proxy's identity (name and revision, or a hash of its files),
the method, dims, rank, seed, max length and the code version. Same key, same numbers:
never computed twice.

On disk, `datasets/<dataset id>/features/<key>/` holds `manifest.json` and one
`chunk-NNNNN.npy` (float32, rows x dim) per `chunk_rows` rows in dataset order. Each chunk
is written to a temporary name and renamed, then recorded in the manifest (rewritten the
same way) with its size and CRC-32. A run that is killed resumes from the chunks the
manifest lists; a chunk that is missing, short or fails its checksum is computed again.
Chunks are computed the same way every time, so a resumed run ends with features
identical to an uninterrupted one.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import shutil
import sqlite3
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from core.config import (
    METHODS,
    SENTENCE,
    FeatureConfig,
    ProxySpec,
    Runtime,
)
from core.errors import UserError, check_bounds
from core.files import atomic_write
from core.gradients import collate, featurizer
from core.progress import ProgressFn, no_progress
from core.proxy import Encoded, load_proxy, proxy_facts, proxy_identity
from core.workspace import DatasetInfo, Workspace

TOKEN_BUDGET = {"cpu": 4096, "cuda": 32768}
MAX_BATCH = 64


def _identity(proxy: ProxySpec, config: FeatureConfig) -> str:
    if config.method == SENTENCE:
        from core.sentence import resolve_sentence_model

        return proxy_identity(resolve_sentence_model(proxy.name), proxy.revision)
    return proxy_identity(proxy.name, proxy.revision)


def feature_key(dataset: DatasetInfo, proxy: ProxySpec, config: FeatureConfig) -> str:
    identity = _identity(proxy, config)
    fields = {"data": dataset.fingerprint, "proxy": identity, **config.key_fields()}
    return hashlib.blake2b(json.dumps(fields, sort_keys=True).encode(), digest_size=12).hexdigest()


@dataclass
class FeatureSet:
    """A stored feature set (complete or not) and its manifest."""

    key: str
    folder: Path
    rows: int
    dim: int
    chunk_rows: int
    proxy: str
    config: FeatureConfig
    chunks: dict[int, dict[str, int]] = field(default_factory=dict)
    complete: bool = False
    facts: dict[str, Any] = field(default_factory=dict)
    cached: bool = False  # answered from the cache, nothing computed

    @property
    def n_chunks(self) -> int:
        return -(-self.rows // self.chunk_rows)

    def chunk_path(self, index: int) -> Path:
        return self.folder / f"chunk-{index:05d}.npy"

    def _chunk_bytes(self, index: int) -> bytes | None:
        """The chunk file's bytes if it is listed in the manifest, the right size, and its
        checksum matches; else None."""
        entry = self.chunks.get(index)
        path = self.chunk_path(index)
        if entry is None or not path.exists() or path.stat().st_size != entry["bytes"]:
            return None
        data = path.read_bytes()
        return data if zlib.crc32(data) == entry["crc32"] else None

    def chunk_is_valid(self, index: int) -> bool:
        return self._chunk_bytes(index) is not None

    def load_chunk(self, index: int) -> np.ndarray:
        """The chunk's rows x dim float32 array, checked and read from disk once."""
        data = self._chunk_bytes(index)
        if data is None:
            raise UserError(
                f"feature chunk {self.chunk_path(index)} is missing or damaged; compute the features again"
            )
        return np.load(io.BytesIO(data))

    def iter_chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, rows x dim float32 array) per chunk, in dataset order."""
        for index in range(self.n_chunks):
            yield index * self.chunk_rows, self.load_chunk(index)

    def arrays(self) -> Iterator[np.ndarray]:
        """The chunks' arrays in order, for streaming computations."""
        return (chunk for _, chunk in self.iter_chunks())

    def matrix(self) -> np.ndarray:
        """All features, N x dim float32, in dataset row order."""
        if not self.complete:
            raise UserError("these features are not complete yet; compute them first")
        return np.concatenate([chunk for _, chunk in self.iter_chunks()])

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

    def write_chunk(self, index: int, values: np.ndarray, *, truncated: int = 0) -> None:
        """Store rows [index * chunk_rows, ...) atomically; `truncated` counts cut samples."""
        buffer = io.BytesIO()
        np.save(buffer, values.astype(np.float32, copy=False))
        data = buffer.getvalue()
        atomic_write(self.chunk_path(index), data)
        self.chunks[index] = {
            "rows": len(values),
            "bytes": len(data),
            "crc32": zlib.crc32(data),
            "truncated": truncated,
        }
        self.save_manifest()


def _open_set(
    folder: Path,
    key: str,
    dataset: DatasetInfo,
    proxy: ProxySpec,
    config: FeatureConfig,
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
            m["proxy"],
            config,
            {int(k): v for k, v in m["chunks"].items()},
            m["complete"],
            m["facts"],
        )
        if fs.rows == dataset.rows and dim in (None, fs.dim):
            return fs
    except (OSError, ValueError, KeyError):
        pass  # no manifest yet, or an unreadable one: start over
    return FeatureSet(key, folder, dataset.rows, dim or config.dim, chunk_rows, proxy.name, config)


def find_features(
    ws: Workspace,
    dataset: str,
    *,
    proxy: ProxySpec = ProxySpec(),
    config: FeatureConfig = FeatureConfig(),
) -> FeatureSet | None:
    """The complete, intact feature set for these settings, or None. Loads no model."""
    info = ws.dataset(dataset)
    key = feature_key(info, proxy, config)
    folder = info.path.parent / "features" / key
    if not (folder / "manifest.json").exists():
        return None
    fs = _open_set(folder, key, info, proxy, config, Runtime().chunk_rows, None)
    if not fs.complete or not all(fs.chunk_is_valid(i) for i in range(fs.n_chunks)):
        return None
    fs.cached = True
    return fs


def feature_sets(ws: Workspace, dataset: str) -> list[dict[str, Any]]:
    """The catalogue's feature sets of a dataset, newest first."""
    info = ws.dataset(dataset)
    with ws.connect() as db:
        rows = db.execute(
            "SELECT * FROM feature_sets WHERE dataset_id = ? ORDER BY updated_at DESC", (info.id,)
        ).fetchall()
    return [
        {**dict(r), "config": json.loads(r["config"]), "facts": json.loads(r["facts"])}
        for r in rows
    ]


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
) -> FeatureSet:
    """The dataset's features for these settings: from the cache, or computed (resuming).

    `on_progress(rows done, rows)` is called after each batch; it may raise Cancelled,
    which keeps every chunk finished so far.
    """
    _check(config, runtime)
    if cached := find_features(ws, dataset, proxy=proxy, config=config):
        on_progress(cached.rows, cached.rows)
        return cached
    info = ws.dataset(dataset)
    try:
        return _compute(ws, info, proxy, config, runtime, on_progress)
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


def _changed(ws: Workspace, info: DatasetInfo) -> str | None:
    """'deleted' or 'replaced' when the catalogue no longer holds `info`; None when it does
    (renamed or not)."""
    with ws.connect() as db:
        if db.execute("SELECT 1 FROM datasets WHERE id = ?", (info.id,)).fetchone():
            return None
        named = db.execute("SELECT 1 FROM datasets WHERE name = ?", (info.name,)).fetchone()
    return "replaced" if named else "deleted"


def _drop_leftovers(ws: Workspace, info: DatasetInfo) -> None:
    """Remove what a computation wrote into the folder of a dataset that is gone (checked
    under the catalogue's write lock, as the workspace's own clean-up does)."""
    with ws.transaction() as db:
        if not db.execute("SELECT 1 FROM datasets WHERE id = ?", (info.id,)).fetchone():
            shutil.rmtree(info.path.parent, ignore_errors=True)


def _compute(
    ws: Workspace,
    info: DatasetInfo,
    proxy: ProxySpec,
    config: FeatureConfig,
    runtime: Runtime,
    on_progress: ProgressFn,
) -> FeatureSet:
    """compute_features' work; raises _DatasetChanged when the dataset goes meanwhile."""
    key = feature_key(info, proxy, config)
    folder = info.path.parent / "features" / key
    if _changed(ws, info):  # mkdir would make its folder again
        raise _DatasetChanged
    folder.mkdir(parents=True, exist_ok=True)
    with _exclusive(folder):
        encoder = encoder_for(proxy, config, runtime)
        fs = _open_set(folder, key, info, proxy, config, runtime.chunk_rows, encoder.dim)
        todo = [i for i in range(fs.n_chunks) if not fs.chunk_is_valid(i)]
        _register(ws, info, fs, proxy)
        done = sum(fs.chunks[i]["rows"] for i in range(fs.n_chunks) if i not in todo)
        on_progress(done, fs.rows)
        started, computed = time.perf_counter(), 0
        for index, chunk in _chunks(info.path, fs.chunk_rows):
            if index not in todo:
                continue
            values, truncated = encoder.encode(
                *chunk, on_rows=lambda n, start=done: on_progress(start + n, fs.rows)
            )
            if _changed(ws, info):  # deleted or replaced: stop at once
                raise _DatasetChanged
            fs.write_chunk(index, values, truncated=truncated)
            computed += len(values)
            done += len(values)
            on_progress(done, fs.rows)
        seconds = time.perf_counter() - started
        fs.complete = True
        fs.facts = {
            **encoder.facts(),
            "truncated": sum(c.get("truncated", 0) for c in fs.chunks.values()),
            "computed_rows": computed,
            "seconds": round(seconds, 2),
            "samples_per_second": round(computed / seconds, 2) if seconds and computed else None,
        }
        fs.save_manifest()
        _register(ws, info, fs, proxy)
    return fs


class _GradientEncoder:
    """Chunks of records -> gradient features with a loaded proxy."""

    def __init__(self, proxy: ProxySpec, config: FeatureConfig, runtime: Runtime):
        self.proxy = load_proxy(
            proxy.name,
            revision=proxy.revision,
            trust_remote_code=proxy.trust_remote_code,
            device=runtime.device,
        )
        self.config, self.dim = config, config.dim
        self.features = featurizer(self.proxy.model, config)
        self.budget = runtime.token_budget or TOKEN_BUDGET[self.proxy.device.type]
        self.max_batch = min(runtime.batch_size or MAX_BATCH, self.features.max_batch or MAX_BATCH)

    def facts(self) -> dict[str, Any]:
        return {
            **proxy_facts(self.proxy),
            "max_length": self.config.max_length,
            "uncovered_parameters": self.features.uncovered,
        }

    def encode(self, prompts, responses, messages, *, on_rows) -> tuple[np.ndarray, int]:
        encoded = [
            self.proxy.encode(
                p, r, messages=json.loads(m) if m else None, max_length=self.config.max_length
            )
            for p, r, m in zip(prompts, responses, messages, strict=True)
        ]
        values = _run_chunk(
            self.features, encoded, self.proxy, self.budget, self.max_batch, on_rows
        )
        return values, sum(e.truncated for e in encoded)


class _SentenceChunks:
    """Chunks of records -> sentence embeddings (the baseline), with the encoder interface."""

    def __init__(self, proxy: ProxySpec, runtime: Runtime):
        from core.proxy import resolve_device
        from core.sentence import SentenceEncoder

        self.model = SentenceEncoder(proxy.name, device=str(resolve_device(runtime.device)))
        self.dim = self.model.dim

    def facts(self) -> dict[str, Any]:
        return self.model.facts()

    def encode(
        self,
        prompts,
        responses,
        messages,  # noqa: ARG002 - the encoder interface: the chat is not embedded
        *,
        on_rows,  # noqa: ARG002 - the encoder interface: one call, no rows to report
    ) -> tuple[np.ndarray, int]:
        return self.model.encode(prompts, responses), 0


def encoder_for(
    proxy: ProxySpec, config: FeatureConfig, runtime: Runtime
) -> _GradientEncoder | _SentenceChunks:
    """A loaded model that turns (prompts, responses, messages) into feature rows exactly
    as the feature set of these settings does (used for new samples, e.g. synthetic ones)."""
    if config.method == SENTENCE:
        return _SentenceChunks(proxy, runtime)
    return _GradientEncoder(proxy, config, runtime)


def _check(config: FeatureConfig, runtime: Runtime) -> None:
    if config.method not in (*METHODS, SENTENCE):
        raise UserError(f"method {config.method!r}: use factorized, exact or sentence")
    check_bounds(config)
    check_bounds(runtime)


def _register(ws: Workspace, info: DatasetInfo, fs: FeatureSet, proxy: ProxySpec) -> None:
    """Record the feature set in the catalogue, under its dataset (which must still be there)."""
    with ws.transaction() as db:
        if not db.execute("SELECT 1 FROM datasets WHERE id = ?", (info.id,)).fetchone():
            raise _DatasetChanged
        db.execute(
            "INSERT OR REPLACE INTO feature_sets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                fs.key,
                info.id,
                proxy.name,
                _identity(proxy, fs.config),
                json.dumps(asdict(fs.config)),
                fs.rows,
                fs.dim,
                int(fs.complete),
                json.dumps(fs.facts),
                time.strftime("%Y-%m-%dT%H:%M:%S"),
            ),
        )


def _chunks(path: Path, chunk_rows: int) -> Iterator[tuple[int, tuple[list, list, list]]]:
    """(chunk index, (prompts, responses, messages)) in dataset order."""
    pf = pq.ParquetFile(path)
    for index, batch in enumerate(
        pf.iter_batches(batch_size=chunk_rows, columns=["prompt", "response", "messages"])
    ):
        yield (
            index,
            (batch.column(0).to_pylist(), batch.column(1).to_pylist(), batch.column(2).to_pylist()),
        )


def _run_chunk(
    features,
    encoded: list[Encoded],
    proxy,
    budget: int,
    max_batch: int,
    on_rows: Callable[[int], None],
) -> np.ndarray:
    """Features of one chunk in its row order: length-sorted batches within a token budget.
    `on_rows(n)` is told the rows done so far after each batch."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].ids))
    out = np.zeros((len(encoded), features.config.dim), dtype=np.float32)
    batches, current = [], []
    for i in order:
        longest = len(encoded[i].ids)
        if current and ((len(current) + 1) * longest > budget or len(current) >= max_batch):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    done = 0
    for rows in batches:
        for part, values in _with_oom_retry(features, [encoded[i] for i in rows], rows, proxy):
            out[part] = values
            done += len(part)
            if done < len(encoded):  # the chunk's end is reported once it is stored
                on_rows(done)
    return out


def _with_oom_retry(
    features, samples: list[Encoded], rows: list[int], proxy
) -> Iterator[tuple[list[int], np.ndarray]]:
    """Run a batch; when the device runs out of memory, halve it and go on."""
    try:
        batch = collate(samples, pad_id=_pad_id(proxy.tokenizer)).to(proxy.device)
        values = features(batch).float().cpu().numpy()
    except (torch.OutOfMemoryError, RuntimeError) as e:
        if not isinstance(e, torch.OutOfMemoryError) and "allocate memory" not in str(e):
            raise
        if proxy.device.type == "cuda":
            torch.cuda.empty_cache()
        if len(samples) == 1:
            raise UserError(
                f"one sample of {len(samples[0].ids)} tokens does not fit in the device's memory; "
                "lower the max length (tokens per sample)"
            ) from e
        half = len(samples) // 2
        yield from _with_oom_retry(features, samples[:half], rows[:half], proxy)
        yield from _with_oom_retry(features, samples[half:], rows[half:], proxy)
        return
    yield rows, values


def _pad_id(tokenizer) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return candidate
    return 0
