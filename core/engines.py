"""Where a feature set's chunks are computed: the engine, the one swappable part of
core/features.py's computation (which reads the records, writes the chunks and keeps the
manifest whatever the engine).

An engine is opened for an encoder and a runtime (`open_engine`, a context manager) and
gives the vectors' `dim`, `facts()` (what the CLI and the pages say about the encoder) and
`encode_chunks(chunks, on_rows)`: for each (chunk index, its records) it is given, in
order, the chunk's rows x dim float32 array and the count of samples cut short. Each chunk
is encoded whole by the encoder's own `encode` (length-sorted batches within the chunk),
so the numbers do not depend on the engine.

- `local`: the encoder loaded in this process (`loaded` is there for the estimate).
- `ray`: an actor pool on a Ray cluster (core/ray_engine.py); ray is imported only then.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np

from core.config import ENGINES, Runtime
from core.encoders import Encoder, Loaded, Samples
from core.errors import UserError

Chunk = tuple[int, Samples]  # a chunk's index and its records
Encoded = tuple[int, np.ndarray, int]  # a chunk's index, its rows x dim values, samples cut


class Engine(Protocol):
    """An opened engine (see the module doc)."""

    dim: int
    loaded: Loaded | None  # the encoder in this process, when it runs here

    def facts(self) -> dict[str, Any]: ...

    def encode_chunks(
        self, chunks: Iterable[Chunk], on_rows: Callable[[int], None]
    ) -> Iterator[Encoded]:
        """(index, values, truncated) per chunk, in the order given; `on_rows(n)` may be
        told the rows done so far within the chunk being computed."""
        ...


class LocalEngine:
    """The encoder loaded in this process, one chunk at a time."""

    def __init__(self, encoder: Encoder, runtime: Runtime):
        self.loaded: Loaded | None = encoder.open(runtime)
        self.dim = self.loaded.dim

    def facts(self) -> dict[str, Any]:
        assert self.loaded is not None
        return self.loaded.facts()

    def encode_chunks(
        self, chunks: Iterable[Chunk], on_rows: Callable[[int], None]
    ) -> Iterator[Encoded]:
        assert self.loaded is not None
        for index, samples in chunks:
            values, truncated = self.loaded.encode(samples, on_rows)
            yield index, values, truncated


@contextmanager
def open_engine(encoder: Encoder, runtime: Runtime) -> Iterator[Engine]:
    """The runtime's engine for this encoder, open for the block: the encoder loaded here,
    or a Ray cluster connected to, checked for room, and the encoder loaded once by a
    worker there (a clear UserError when any of it fails)."""
    if runtime.engine == "local":
        yield LocalEngine(encoder, runtime)
    elif runtime.engine == "ray":
        try:
            from core.ray_engine import RayEngine
        except ImportError as e:
            if e.name != "ray" and not (e.name or "").startswith("ray."):
                raise
            raise UserError(
                "the ray engine needs Ray, which is not installed here: "
                "pip install -r requirements-ray.txt"
            ) from None

        yield RayEngine(encoder, runtime)
    else:
        raise UserError(f"engine {runtime.engine!r}: use {' or '.join(ENGINES)}")
