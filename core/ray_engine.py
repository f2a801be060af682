"""The `ray` engine (core/engines.py): a feature set's chunks computed by an actor pool on
a Ray cluster, written here.

The process that owns the workspace (the driver) reads the chunks to compute as
core/features.py reads them and puts each chunk's records (their text: the features are
4 x dim bytes a row, the text usually less) in Ray's object store, one block per chunk.
Ray Data maps them with `EncodeChunk`, a callable class: each of `workers` actors (with
`cpus_per_worker` CPUs and `gpus_per_worker` GPUs) loads the encoder once and encodes whole
chunks with the encoder's own `encode` (length-sorted batches within the chunk), so the
numbers are those of a local run. The rows come back to the driver as a stream in chunk
order (Ray Data's back-pressure bounds what is in flight), and the driver writes the
chunks: no shared file system is needed, and killing the driver leaves the chunks written
so far, from which the same command resumes. An actor whose process dies is restarted by
Ray and its chunk computed again.

Before anything runs, the engine checks, with bounded waits, that the address answers, that
the cluster has room for the workers asked for (GPUs included), and that a worker can load
the encoder (that worker also tells the vectors' dim and the encoder's facts): each failure
is one UserError.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import ray

from core.config import Runtime
from core.encoders import Encoder, Samples
from core.engines import Chunk, Encoded
from core.errors import UserError

CONNECT_SECONDS = 10.0  # to reach the address given
LOAD_SECONDS = 900.0  # for a worker to load the encoder (a model download included)
# what the workers take from the driver's environment (offline mode, the model cache)
PASSED_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME")

_connected: list[str | None] = []  # the address this process is connected to, once it is


def _worker_runtime(runtime: Runtime) -> Runtime:
    """The runtime a worker loads the encoder with: on its CPUs when it holds no GPU."""
    from dataclasses import replace

    if runtime.gpus_per_worker == 0 and runtime.device == "auto":
        return replace(runtime, device="cpu")
    return runtime


def _open_encoder(encoder: Encoder, runtime: Runtime):
    """The encoder loaded in a worker, its torch threads limited to the worker's CPUs."""
    import torch

    if runtime.gpus_per_worker == 0:
        torch.set_num_threads(max(1, math.floor(runtime.cpus_per_worker)))
    return encoder.open(_worker_runtime(runtime))


def _probe(encoder: Encoder, runtime: Runtime) -> tuple[int, dict[str, Any]]:
    """Run on a worker: load the encoder; its dim and facts."""
    loaded = _open_encoder(encoder, runtime)
    return loaded.dim, loaded.facts()


class EncodeChunk:
    """Ray Data's callable class: one per actor, which loads the encoder once; each call
    encodes one chunk's records (a block) with the encoder's `encode`."""

    def __init__(self, encoder: Encoder, runtime: Runtime):
        self.loaded = _open_encoder(encoder, runtime)

    def __call__(self, batch: pa.Table) -> dict[str, np.ndarray]:
        column = {name: batch.column(name).to_pylist() for name in batch.column_names}
        samples = Samples(column["prompt"], column["response"], column["messages"], column["id"])
        values, truncated = self.loaded.encode(samples)
        counts = np.zeros(len(samples), dtype=np.int64)
        counts[:1] = truncated  # the chunk's count, on its first row
        return {
            "chunk": np.asarray(column["chunk"], dtype=np.int64),
            "row": np.asarray(column["row"], dtype=np.int64),
            "values": values,
            "truncated": counts,
        }


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _explained(e: BaseException) -> UserError:
    """A failure on the cluster as one UserError: a UserError raised by a worker as it is
    (Ray's wrapper of it, also a UserError, says the traceback), anything else by its last
    line."""
    seen: set[int] = set()
    cause: BaseException | None = e
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, UserError) and not isinstance(cause, ray.exceptions.RayError):
            return UserError(f"on the Ray cluster: {cause}")
        cause = getattr(cause, "cause", None) or cause.__cause__
    return UserError(f"the Ray cluster failed: {type(e).__name__}: {_first_line(str(e))[:300]}")


def _reachable(address: str) -> None:
    """Raise UserError unless a TCP connection to host:port opens within CONNECT_SECONDS
    (`auto` and `local` name no port and are left to Ray)."""
    where = address.removeprefix("ray://")
    if where in ("auto", "local") or ":" not in where:
        return
    host, _, port = where.rpartition(":")
    try:
        port_number = int(port)
    except ValueError:
        raise UserError(f"Ray address {address!r}: give host:port") from None
    try:
        with socket.create_connection((host.strip("[]"), port_number), timeout=CONNECT_SECONDS):
            pass
    except OSError as e:
        raise UserError(
            f"no Ray cluster answers at {address} ({e.strerror or e}); start one there with "
            "`ray start --head`, or check --address"
        ) from None


@contextlib.contextmanager
def _stderr_to(file: BinaryIO) -> Iterator[None]:
    """Send what this process writes to stderr (C++ code included: file descriptor 2) to
    `file` for the duration."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        os.dup2(file.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _connect_error(address: str | None, error: Exception, logged: str) -> UserError:
    """Why ray.init failed, from the exception chain and what Ray logged meanwhile."""
    where = address or "this machine"
    chain, cause = [], error
    while cause is not None and len(chain) < 10:
        chain.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    if "InvalidAuthToken" in logged or any("InvalidAuthToken" in text for text in chain):
        return UserError(
            f"the Ray cluster at {where} asks for its authentication token, and this process "
            "has none: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH to the cluster's token "
            "file (as on its nodes), then try again"
        )
    return UserError(f"cannot connect to the Ray cluster at {where}: {_first_line(chain[0])[:300]}")


def connect(runtime: Runtime) -> None:
    """Connect this process to the runtime's Ray cluster: its address, else $RAY_ADDRESS,
    else a Ray already started in this process, else a new one on this machine (`auto`
    finds a cluster started here with `ray start`). Once: again only when the address
    changes. The workers get the driver's `core` package and offline settings."""
    address = runtime.address or os.environ.get("RAY_ADDRESS") or None
    if ray.is_initialized() and (_connected == [address] or (address is None and not _connected)):
        return
    if address:
        _reachable(address)
    if ray.is_initialized():
        ray.shutdown()
    _connected.clear()
    import core

    env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
    with tempfile.TemporaryFile() as held:
        try:
            with _stderr_to(held):  # Ray's core logs each failed try to reach the cluster
                ray.init(
                    address=address or "local",
                    runtime_env={"py_modules": [str(Path(core.__file__).parent)], "env_vars": env},
                    log_to_driver=False,
                    logging_level=logging.ERROR,
                    include_dashboard=False if not address else None,
                )
        except Exception as e:  # Ray raises ConnectionError, RuntimeError, ValueError...
            held.seek(0)
            raise _connect_error(address, e, held.read().decode(errors="replace")) from None
        held.seek(0)
        sys.stderr.write(held.read().decode(errors="replace"))
    _connected.append(address)
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.CRITICAL)  # failures are raised, as UserErrors


def check_room(runtime: Runtime) -> None:
    """Raise UserError unless the cluster's live nodes have room for `workers` actors of
    `cpus_per_worker` CPUs and `gpus_per_worker` GPUs each."""
    cpus, gpus, n = runtime.cpus_per_worker, runtime.gpus_per_worker, runtime.workers
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    total_gpus = sum(r.get("GPU", 0) for r in nodes)
    if gpus and not total_gpus:
        raise UserError(
            f"the Ray cluster has no GPUs, and --gpus-per-worker {gpus:g} asks for them; "
            "use --gpus-per-worker 0 to compute on its CPUs"
        )

    def fits(have: float, need: float) -> float:
        return math.floor(have / need + 1e-9) if need else math.inf

    room = sum(min(fits(r.get("CPU", 0), cpus), fits(r.get("GPU", 0), gpus)) for r in nodes)
    if room < n:
        shown = "no" if room == 0 else f"only {room}"
        raise UserError(
            f"the Ray cluster ({len(nodes)} nodes, {sum(r.get('CPU', 0) for r in nodes):g} CPUs, "
            f"{total_gpus:g} GPUs) has room for {shown} workers of {cpus:g} CPUs and {gpus:g} "
            f"GPUs, not {n}; ask for fewer --workers or fewer resources each"
        )


class RayEngine:
    """Chunks computed by a Ray Data actor pool (see the module doc)."""

    loaded = None  # the encoder never runs in this process

    def __init__(self, encoder: Encoder, runtime: Runtime):
        self.encoder, self.runtime = encoder, runtime
        connect(runtime)
        check_room(runtime)
        probe = ray.remote(_probe).options(
            num_cpus=runtime.cpus_per_worker, num_gpus=runtime.gpus_per_worker, max_retries=0
        )
        try:
            self.dim, self._facts = ray.get(probe.remote(encoder, runtime), timeout=LOAD_SECONDS)
        except ray.exceptions.GetTimeoutError:
            raise UserError(
                f"no Ray worker loaded the proxy {encoder.proxy.name} within {LOAD_SECONDS:g} s"
            ) from None
        except ray.exceptions.RayError as e:
            raise _explained(e) from None

    def facts(self) -> dict[str, Any]:
        r = self.runtime
        return {
            **self._facts,
            "engine": "ray",
            "workers": r.workers,
            "gpus_per_worker": r.gpus_per_worker,
            "cpus_per_worker": r.cpus_per_worker,
        }

    def encode_chunks(
        self,
        chunks: Iterable[Chunk],
        on_rows: Callable[[int], None],  # noqa: ARG002 - chunks arrive whole
    ) -> Iterator[Encoded]:
        expected: dict[int, int] = {}
        refs = []
        for index, samples in chunks:
            n = len(samples)
            expected[index] = n
            table = pa.table(
                {
                    "chunk": pa.array([index] * n, pa.int64()),
                    "row": pa.array(range(n), pa.int64()),
                    "prompt": pa.array(samples.prompts, pa.string()),
                    "response": pa.array(samples.responses, pa.string()),
                    "messages": pa.array(samples.messages or [None] * n, pa.string()),
                    "id": pa.array(samples.ids or [None] * n, pa.string()),
                }
            )
            refs.append(ray.put(table))
            del table
        if not refs:
            return
        try:
            yield from self._stream(refs, expected)
        except ray.exceptions.RayError as e:
            raise _explained(e) from None

    def _stream(self, refs: list, expected: dict[int, int]) -> Iterator[Encoded]:
        """Map the blocks with the actor pool; (index, values, truncated) per chunk as its
        rows come back (a chunk may come in several batches)."""
        from ray.data import DataContext

        r = self.runtime
        ctx = DataContext.get_current()
        ctx.execution_options.preserve_order = True  # chunks come back in order: one is held
        ctx.enable_progress_bars = False
        ctx.wait_for_min_actors_s = LOAD_SECONDS
        ctx.print_on_execution_start = False
        data = ray.data.from_arrow_refs(refs).map_batches(
            EncodeChunk,
            fn_constructor_args=(self.encoder, r),
            batch_size=None,  # a whole block, one chunk
            batch_format="pyarrow",
            concurrency=r.workers,
            num_cpus=r.cpus_per_worker,
            num_gpus=r.gpus_per_worker,
            max_restarts=-1,  # an actor whose process dies is started again...
            max_task_retries=-1,  # ...and its chunk computed again
        )
        parts: dict[int, list[tuple[np.ndarray, np.ndarray, int]]] = {}
        got: dict[int, int] = {}
        for batch in data.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1):
            for index in np.unique(batch["chunk"]).tolist():
                mine = batch["chunk"] == index
                rows, values = batch["row"][mine], np.asarray(batch["values"][mine], np.float32)
                parts.setdefault(index, []).append(
                    (rows, values, int(batch["truncated"][mine].sum()))
                )
                got[index] = got.get(index, 0) + len(rows)
                if got[index] == expected[index]:
                    pieces = parts.pop(index)
                    out = np.empty((expected[index], self.dim), dtype=np.float32)
                    for where, part, _ in pieces:
                        out[where] = part
                    yield index, out, sum(t for _, _, t in pieces)
