"""Where two spaces of the same rows disagree: clusters of one that spread out in the other.

A dataset has two spaces on the Map: gradient features (how a proxy model learns from each
sample) and sentence embeddings (what the sample says). Each is clustered on its own
(core/maps.py). A cluster of one space whose rows lie far apart in the other is where the
two disagree: close in meaning but spread in gradient space (a cluster of the sentence
space), or close in gradient space but spread in meaning (a cluster of the gradient space).

The score. The spread of rows R (n >= 2 of them) in a space is their mean cosine distance
over distinct pairs,

    spread(R) = 1 - (|sum_i u_i|^2 - n) / (n (n - 1)),   u_i the rows' unit vectors,

exact from one sum of unit vectors per cluster (one streamed pass over each feature set;
an all-zero row counts in no pair). For a cluster C of space A, B the other space:

    score(C) = (spread_B(C) - typical_B) / (all_B - typical_B)

typical_B: the size-weighted mean spread of B's own clusters in B (how spread a cluster
of B is); all_B: the spread of all rows in B (how spread rows drawn at random are). So a
score of 0 says C is as tight in B as B's own clusters (the spaces agree on it); 1, that
its rows are as spread in B as rows drawn at random (B sees no group in them); below 0,
tighter than B's typical cluster. Pairs are averaged, not summed, so the score does not
grow with the cluster's size, and each space's spreads are measured against that space's
own references, so the two directions rank on one scale. A cluster of one row has no
pairs and no score: it is left out of the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from core.progress import ProgressFn, no_progress, parts
from core.regions import _segment_sum
from core.rows import RowSource, rows_of, unit_blocks

SPLITS_SHOWN = 5  # the other space's clusters listed per cluster, largest first


@dataclass(frozen=True)
class Space:
    """One space of the dataset's rows: its name ("gradient", "sentence"), its features (N x d
    in memory or a RowSource such as a feature set) and the cluster of each row (N ints)."""

    name: str
    features: np.ndarray | RowSource
    labels: np.ndarray


def _square_sums(
    features: np.ndarray | RowSource, labellings: list[np.ndarray], on_progress: ProgressFn
) -> tuple[list[np.ndarray], list[np.ndarray], float, int]:
    """In one streamed pass over the unit rows of `features`: for each labelling, per label
    the squared norm of the sum of its rows and its count of non-zero rows; and the same for
    all rows together. `on_progress(rows done, rows)`."""
    source = rows_of(features)
    sums = [np.zeros((int(labels.max()) + 1, source.dim)) for labels in labellings]
    counts = [np.zeros(len(s)) for s in sums]
    total = np.zeros(source.dim)
    on_progress(0, source.rows)
    for start, x in unit_blocks(source):
        x = x.astype(np.float64)
        live = (np.einsum("ij,ij->i", x, x) > 0.5).astype(np.float64)  # not an all-zero row
        for labels, s, c in zip(labellings, sums, counts, strict=True):
            block = labels[start : start + len(x)]
            _segment_sum(s, block, x)
            c += np.bincount(block, weights=live, minlength=len(c))
        total += x.sum(0)
        on_progress(start + len(x), source.rows)
    squares = [np.einsum("ij,ij->i", s, s) for s in sums]
    return squares, counts, float(total @ total), int(counts[0].sum())


def _spread(square: np.ndarray | float, n: np.ndarray | float) -> np.ndarray:
    """Mean cosine distance over distinct pairs from |sum of unit rows|^2 and the rows'
    count; NaN below two rows."""
    square, n = np.asarray(square, dtype=np.float64), np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n >= 2, 1 - (square - n) / (n * (n - 1)), np.nan)


def _references(own: np.ndarray, counts: np.ndarray, all_square: float, rows: int) -> dict:
    """A space's references: the size-weighted mean spread of its own clusters (`own`, with
    their `counts` of rows) and the spread of all its rows."""
    scored = ~np.isnan(own)
    weights = counts[scored]
    typical = float(np.average(own[scored], weights=weights)) if weights.sum() else 0.0
    everything = float(_spread(all_square, rows)) if rows >= 2 else 0.0
    return {"typical_spread": typical, "all_spread": everything}


def _splits(a: np.ndarray, b: np.ndarray, k_a: int) -> list[list[dict[str, int]]]:
    """For each cluster of labelling `a`, the clusters of `b` its rows are in, largest first:
    [{"cluster": j, "rows": n}, ...]."""
    k_b = int(b.max()) + 1
    pairs, rows = np.unique(a.astype(np.int64) * k_b + b, return_counts=True)
    cluster_a, cluster_b = pairs // k_b, pairs % k_b
    order = np.lexsort((cluster_b, -rows, cluster_a))
    out: list[list[dict[str, int]]] = [[] for _ in range(k_a)]
    for i in order:
        out[int(cluster_a[i])].append({"cluster": int(cluster_b[i]), "rows": int(rows[i])})
    return out


def disagreement(a: Space, b: Space, *, on_progress: ProgressFn = no_progress) -> dict[str, Any]:
    """The clusters of both spaces ranked by how much the other space disagrees (the module
    doc defines the score). Returns {"clusters": rows, highest score first, "spaces": {name:
    {"typical_spread", "all_spread"}}}; each row: "space" (whose cluster it is), "cluster",
    "size", "score", "spread" (its spread in the other space), "other_space",
    "other_clusters" (how many of the other space's clusters hold its rows) and
    "splits_into" (the largest SPLITS_SHOWN of them: {"cluster", "rows"}).
    `on_progress(steps, STEPS)` over the two passes, one per feature set."""
    n = len(a.labels)
    for space in (a, b):
        if len(space.labels) != n or rows_of(space.features).rows != n:
            raise ValueError(f"space {space.name}: its features and labels must have {n} rows")
    passes = parts(on_progress, [n, n])
    spreads: dict[str, dict[str, np.ndarray]] = {}
    references: dict[str, dict[str, float]] = {}
    for space, other, progress in ((a, b, passes[0]), (b, a, passes[1])):
        # in this space: the spread of its own clusters and of the other space's clusters
        squares, counts, all_square, rows = _square_sums(
            space.features, [space.labels, other.labels], progress
        )
        references[space.name] = _references(
            _spread(squares[0], counts[0]), counts[0], all_square, rows
        )
        spreads[other.name] = {"spread": _spread(squares[1], counts[1]), "rows": counts[1]}
    table = []
    for space, other in ((a, b), (b, a)):
        ref = references[other.name]
        scale = ref["all_spread"] - ref["typical_spread"]
        spread = spreads[space.name]["spread"]
        sizes = np.bincount(space.labels, minlength=len(spread))
        splits = _splits(space.labels, other.labels, len(spread))
        for c in np.flatnonzero(~np.isnan(spread)):
            score = (spread[c] - ref["typical_spread"]) / scale if scale > 1e-12 else 0.0
            table.append(
                {
                    "space": space.name,
                    "cluster": int(c),
                    "size": int(sizes[c]),
                    "score": float(score),
                    "spread": float(spread[c]),
                    "other_space": other.name,
                    "other_clusters": len(splits[c]),
                    "splits_into": splits[c][:SPLITS_SHOWN],
                }
            )
    table.sort(key=lambda r: (-r["score"], r["space"], r["cluster"]))
    return {"clusters": table, "spaces": references}
