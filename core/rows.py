"""Feature rows wherever they are: a matrix in memory or a feature set's chunk files.

The computations that must scale past memory (G-Vendi by group, the bootstrap, k-means,
the layout, near-duplicates) read their rows through one small interface, `RowSource`:
`rows` and `dim`, `arrays()` (consecutive blocks in row order) and `take(rows)` (rows
gathered by index, in the order asked). A `FeatureSet` is one (its chunks memory-mapped);
`Matrix` makes a matrix in memory one. So the same code runs on 300 rows in a test and on
1,000,000 rows on disk, where only the blocks it works on are in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import numpy as np

BLOCK = 16384  # rows per block when a matrix in memory is streamed


def unit_rows(x: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """Rows scaled to unit length; all-zero rows stay zero (they carry no weight)."""
    x = np.asarray(x, dtype=dtype)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    return x / np.where(norms > 0, norms, 1.0)[:, None]


@runtime_checkable
class RowSource(Protocol):
    """N x dim feature rows that can be streamed in order or gathered by index."""

    rows: int
    dim: int

    def arrays(self) -> Iterator[np.ndarray]:
        """Consecutive blocks of rows, in row order."""
        ...

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The rows at these indices (any order, repeats allowed), in that order."""
        ...


class Matrix:
    """A matrix in memory as a RowSource (its dtype kept)."""

    def __init__(self, x: np.ndarray, block: int = BLOCK):
        self.x = np.asarray(x)
        self.rows, self.dim = self.x.shape
        self.block = block

    def arrays(self) -> Iterator[np.ndarray]:
        for start in range(0, self.rows, self.block):
            yield self.x[start : start + self.block]

    def take(self, rows: np.ndarray) -> np.ndarray:
        return self.x[np.asarray(rows, dtype=np.int64)]


class Subset:
    """The rows of `source` at the indices `index` (in that order) as a RowSource."""

    def __init__(self, source: RowSource, index: np.ndarray, block: int = BLOCK):
        self.source, self.index = source, np.asarray(index, dtype=np.int64)
        self.rows, self.dim = len(self.index), source.dim
        self.block = block

    def arrays(self) -> Iterator[np.ndarray]:
        for start in range(0, self.rows, self.block):
            yield self.source.take(self.index[start : start + self.block])

    def take(self, rows: np.ndarray) -> np.ndarray:
        return self.source.take(self.index[np.asarray(rows, dtype=np.int64)])


def rows_of(features: np.ndarray | RowSource) -> RowSource:
    """`features` as a RowSource: a matrix is wrapped, a source returned as it is."""
    return Matrix(features) if isinstance(features, np.ndarray) else features


def unit_blocks(source: RowSource, block: int = BLOCK) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, unit float32 rows) of consecutive blocks of at most `block` rows."""
    start = 0
    for array in source.arrays():
        for offset in range(0, len(array), block):
            part = array[offset : offset + block]
            yield start + offset, unit_rows(part, np.float32)
        start += len(array)


def take_unit(source: RowSource, rows: np.ndarray) -> np.ndarray:
    """The rows at these indices, unit-normalised, float32 (normalised in place: one copy,
    the same numbers as `unit_rows(..., np.float32)`)."""
    x = np.asarray(source.take(rows), dtype=np.float32)
    if not x.flags.writeable or not x.flags.owndata:
        x = x.copy()
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    x /= np.where(norms > 0, norms, 1.0)[:, None]
    return x


def sample(n: int, size: int, seed: int) -> np.ndarray:
    """`size` distinct rows of `n` (all of them when size >= n), drawn by a generator seeded
    with `seed`, in increasing order."""
    if size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def groups_of(labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows ordered by label then row, start of each label's rows in that order with the
    end appended) for labels 0 .. k - 1: rows of label c are order[starts[c]:starts[c + 1]]."""
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=k))])
    return order, starts


def by_label(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct labels sorted, rows ordered by label then row, start of each label's rows
    in that order, with the end appended): rows of label i are order[starts[i]:starts[i+1]]."""
    groups, inverse = np.unique(np.asarray(labels), return_inverse=True)
    return groups, *groups_of(inverse.ravel(), len(groups))


def batches(starts: np.ndarray, rows: int, alone: int | None = None) -> Iterator[tuple[int, int]]:
    """Consecutive runs of groups (first group, end group) holding at most `rows` rows
    together, for groups whose rows start at `starts` (end appended); a group of more than
    `rows` rows, or of more than `alone` when given, is a run by itself."""
    alone = rows if alone is None else min(alone, rows)
    first, groups = 0, len(starts) - 1
    while first < groups:
        end = first + 1
        if starts[end] - starts[first] <= alone:
            while (
                end < groups
                and starts[end + 1] - starts[end] <= alone
                and starts[end + 1] - starts[first] <= rows
            ):
                end += 1
        yield first, end
        first = end
