"""The 2-D map of a feature set: PCA then UMAP (cosine), optional HDBSCAN groups, density.

Above `fit_rows` rows UMAP is fitted on a seeded sample and the other rows are placed
with its transform, which keeps large sets within minutes. The local density of a point
is 1 / (mean distance to its `neighbours` nearest points on the map): high in crowded
regions, low in thin ones.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from core.progress import ProgressFn, no_progress
from core.vendi import unit_rows

LAYOUT_VERSION = 1


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


def umap_layout(
    features: np.ndarray,
    config: LayoutConfig = LayoutConfig(),
    on_progress: ProgressFn = no_progress,
) -> np.ndarray:
    """N x 2 float32 coordinates of the unit-normalised rows (cosine geometry)."""
    from sklearn.decomposition import PCA

    x = unit_rows(features, np.float32)
    n = len(x)
    if n < 4:  # too few points for a neighbour graph: spread them on a line
        return np.column_stack([np.arange(n, dtype=np.float32), np.zeros(n, dtype=np.float32)])
    rng = np.random.default_rng(config.seed)
    fit = (
        np.sort(rng.choice(n, config.fit_rows, replace=False))
        if n > config.fit_rows
        else np.arange(n)
    )
    dims = min(config.pca_dims, x.shape[1], len(fit))
    on_progress(0, 3)
    reduced = (
        PCA(dims, svd_solver="randomized", random_state=config.seed)
        .fit(x[fit])
        .transform(x)
        .astype(np.float32)
    )
    on_progress(1, 3)
    import umap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap warns that a seed disables its parallelism
        model = umap.UMAP(
            n_neighbors=min(config.neighbors, len(fit) - 1),
            min_dist=config.min_dist,
            metric="cosine",
            random_state=config.seed,
            low_memory=True,
            init="spectral" if len(fit) > config.neighbors + 1 else "random",
        ).fit(reduced[fit])
    coords = np.empty((n, 2), dtype=np.float32)
    coords[fit] = model.embedding_
    on_progress(2, 3)
    rest = np.setdiff1d(np.arange(n), fit)
    if len(rest):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            coords[rest] = model.transform(reduced[rest])
    on_progress(3, 3)
    return coords


def density(coords: np.ndarray, neighbours: int = 15) -> np.ndarray:
    """1 / mean distance to the `neighbours` nearest other points on the map."""
    from sklearn.neighbors import NearestNeighbors

    k = min(neighbours + 1, len(coords))
    if k < 2:
        return np.ones(len(coords), dtype=np.float32)
    distances, _ = NearestNeighbors(n_neighbors=k).fit(coords).kneighbors(coords)
    mean = distances[:, 1:].mean(1)
    return (1.0 / np.maximum(mean, 1e-9)).astype(np.float32)


def hdbscan_groups(coords: np.ndarray, min_size: int | None = None) -> np.ndarray:
    """Visual groups on the map (HDBSCAN); -1 marks points in no group."""
    from sklearn.cluster import HDBSCAN

    size = min_size or max(5, len(coords) // 200)
    if len(coords) <= size:
        return np.zeros(len(coords), dtype=np.int64)
    return HDBSCAN(min_cluster_size=size, copy=True).fit(coords).labels_.astype(np.int64)
