"""The 2-D map of a feature set: PCA then UMAP (cosine), optional HDBSCAN groups, density.

Above `fit_rows` rows the PCA and UMAP are fitted on a seeded sample and the other rows
are placed with UMAP's transform, in batches: a million rows are placed within minutes,
streamed from disk. The local density of a point
is 1 / (mean distance to its `neighbours` nearest points on the map): high in crowded
regions, low in thin ones.
"""

from __future__ import annotations

import re
import threading
import warnings
from dataclasses import dataclass

import numpy as np

from core.progress import ProgressFn, no_progress, parts
from core.rows import RowSource, rows_of, sample, take_unit, unit_blocks, unit_rows

LAYOUT_VERSION = 2  # 2: the rows beyond the fitted sample placed in batches
TRANSFORM_BATCH = 50_000  # rows placed by one call of UMAP's transform
GROUPS_FIT_ROWS = 50_000  # HDBSCAN runs on a sample of this many points at most
PLACE_BLOCK = 4096  # layout rows compared with the points being placed at once


@dataclass(frozen=True)
class LayoutConfig:
    """Everything that changes the layout's coordinates (with the features)."""

    pca_dims: int = 50
    neighbors: int = 15
    min_dist: float = 0.1
    seed: int = 0
    fit_rows: int = 20_000

    def key_fields(self) -> dict[str, object]:
        return {**self.__dict__, "version": LAYOUT_VERSION}


class _Epochs:
    """A file for UMAP's tqdm bar (its documented `tqdm_kwds`) that passes each "done/total"
    it writes on as progress: the epochs of the layout's optimisation, the long part that
    UMAP reports. Updates from any other thread than the caller's are dropped."""

    def __init__(self, on_progress: ProgressFn):
        self.on_progress = on_progress
        self.thread = threading.get_ident()

    def write(self, text: str) -> None:
        found = re.findall(r"(\d+)/(\d+)", text)
        if found and threading.get_ident() == self.thread:
            done, total = found[-1]
            self.on_progress(int(done), int(total))

    def flush(self) -> None:
        pass

    def kwds(self) -> dict[str, object]:
        return {
            "disable": False,
            "file": self,
            "bar_format": "{n}/{total}",
            "miniters": 1,  # fixed: tqdm's monitor thread then never redraws the bar
            "mininterval": 0,  # every epoch
        }


def umap_layout(
    features: np.ndarray | RowSource,
    config: LayoutConfig = LayoutConfig(),
    on_progress: ProgressFn = no_progress,
) -> np.ndarray:
    """N x 2 float32 coordinates of the unit-normalised rows (cosine geometry) of a matrix or
    a RowSource (a feature set on disk: streamed, never all in memory). The PCA and UMAP are
    fitted on `config.fit_rows` seeded rows; the other rows are projected block by block and
    placed by UMAP's transform in batches of TRANSFORM_BATCH rows.
    `on_progress(done, STEPS)` through the PCA, UMAP's neighbour graph and its epochs (of
    the fit, then of each batch placed)."""
    from sklearn.decomposition import PCA

    source = rows_of(features)
    n = source.rows
    if n < 4:  # too few points for a neighbour graph: spread them on a line
        on_progress(1, 1)
        return np.column_stack([np.arange(n, dtype=np.float32), np.zeros(n, dtype=np.float32)])
    rng = np.random.default_rng(config.seed)
    fit = (
        np.sort(rng.choice(n, config.fit_rows, replace=False))
        if n > config.fit_rows
        else np.arange(n)
    )
    rest = np.setdiff1d(np.arange(n), fit)
    # shares of the bar: the PCA, the neighbour graph (reported when it is done), the fit's
    # epochs, then the batches placed by the transform (neighbour queries and epochs), in
    # proportion to the rows left over
    pca, graph, epochs, placed = parts(
        on_progress, [1 + n / 100_000, 4, 10, 10 * len(rest) / max(len(fit), 1)]
    )
    pca(0, 1)
    dims = min(config.pca_dims, source.dim, len(fit))
    projection = PCA(dims, svd_solver="randomized", random_state=config.seed).fit(
        take_unit(source, fit)
    )
    reduced = np.empty((n, dims), dtype=np.float32)
    for start, x in unit_blocks(source):
        reduced[start : start + len(x)] = projection.transform(x)
        pca(start + len(x), n)
    pca(1, 1)
    graph(0, 1)
    import umap

    def graph_done(done: int, total: int | None) -> None:
        graph(1, 1)  # UMAP reports nothing before its first epoch
        epochs(done, total)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap warns that a seed disables its parallelism
        model = umap.UMAP(
            n_neighbors=min(config.neighbors, len(fit) - 1),
            min_dist=config.min_dist,
            metric="cosine",
            random_state=config.seed,
            low_memory=True,
            init="spectral" if len(fit) > config.neighbors + 1 else "random",
            tqdm_kwds=_Epochs(graph_done).kwds(),
        ).fit(reduced[fit])
    coords = np.empty((n, 2), dtype=np.float32)
    coords[fit] = model.embedding_
    epochs(1, 1)
    batches = range(0, len(rest), TRANSFORM_BATCH)
    placed(0, max(len(batches), 1))
    for b, start in enumerate(batches):

        def queried(done: int, total: int | None, b: int = b) -> None:
            placed(b + (done / total if total else 0), len(batches))

        rows = rest[start : start + TRANSFORM_BATCH]
        model.tqdm_kwds = _Epochs(queried).kwds()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            coords[rows] = model.transform(reduced[rows])
        placed(b + 1, len(batches))
    placed(1, 1)
    return coords


def place(
    features: np.ndarray | RowSource,
    coords: np.ndarray,
    vectors: np.ndarray,
    neighbours: int = LayoutConfig.neighbors,
) -> np.ndarray:
    """Map positions (M x 2 float32) for M new feature vectors on the layout `coords` of
    `features` (N x 2, row for row): each at the mean position of its `neighbours` nearest
    rows in feature space (cosine), weighted by their cosine.

    This is where UMAP's own transform starts a new point (the membership-weighted mean of
    its neighbours' positions) before its few epochs of optimisation. The fitted UMAP is not
    kept (a layout is stored as coordinates), and fitting one again to place a few points
    would move every point of the map; the neighbours' mean needs only the features, in one
    streamed pass. A point whose neighbours lie in two places of the map sits between them."""
    source = rows_of(features)
    new = unit_rows(vectors, np.float32)
    m = len(new)
    if m == 0:
        return np.empty((0, 2), dtype=np.float32)
    k = max(1, min(neighbours, source.rows))
    best = np.full((m, k), -np.inf, dtype=np.float32)  # the highest cosines so far ...
    where = np.zeros((m, k), dtype=np.int64)  # ... and their rows
    for start, block in unit_blocks(source, PLACE_BLOCK):
        cosines = np.concatenate([best, new @ block.T], axis=1)
        top = np.argpartition(-cosines, k - 1, axis=1)[:, :k]  # columns: k kept, then the block
        kept = np.take_along_axis(where, np.minimum(top, k - 1), 1)
        where = np.where(top < k, kept, start + top - k)
        best = np.take_along_axis(cosines, top, 1)
    weights = np.clip(best, 1e-6, None).astype(np.float64)
    placed = np.einsum("mk,mkc->mc", weights, coords[where].astype(np.float64))
    return (placed / weights.sum(1, keepdims=True)).astype(np.float32)


def density(coords: np.ndarray, neighbours: int = 15) -> np.ndarray:
    """1 / mean distance to the `neighbours` nearest other points on the map."""
    from sklearn.neighbors import NearestNeighbors

    k = min(neighbours + 1, len(coords))
    if k < 2:
        return np.ones(len(coords), dtype=np.float32)
    distances, _ = NearestNeighbors(n_neighbors=k).fit(coords).kneighbors(coords)
    mean = distances[:, 1:].mean(1)
    return (1.0 / np.maximum(mean, 1e-9)).astype(np.float32)


def hdbscan_groups(
    coords: np.ndarray, min_size: int | None = None, *, fit_rows: int = GROUPS_FIT_ROWS
) -> np.ndarray:
    """Visual groups on the map (HDBSCAN); -1 marks points in no group. Beyond `fit_rows`
    points, HDBSCAN runs on a seeded sample of that many (the smallest group scaled to
    match) and every point takes the group of its nearest sampled point."""
    from sklearn.cluster import HDBSCAN

    n = len(coords)
    size = min_size or max(5, n // 200)
    if n > fit_rows:
        fit = sample(n, fit_rows, 0)
        labels = hdbscan_groups(coords[fit], max(2, round(size * fit_rows / n)), fit_rows=fit_rows)
        from sklearn.neighbors import KDTree

        nearest = KDTree(coords[fit]).query(coords, k=1, return_distance=False)[:, 0]
        return labels[nearest]
    if n <= size:
        return np.zeros(n, dtype=np.int64)
    return HDBSCAN(min_cluster_size=size, copy=True).fit(coords).labels_.astype(np.int64)
