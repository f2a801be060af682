"""The map of a dataset, cached: clusters with their descriptions, the 2-D layout, density.

Artefacts live beside the feature set they come from (`<feature folder>/<kind>-<key>.npz`),
written atomically; the same feature set and parameters give the same file, so nothing is
computed twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from core.features import FeatureSet
from core.files import atomic_target
from core.layout import LayoutConfig, density, hdbscan_groups, umap_layout
from core.progress import ProgressFn, no_progress
from core.regions import (
    Clustering,
    default_k,
    keywords,
    representatives,
    resolve_k,
    sparse_clusters,
    spherical_kmeans,
)
from core.vendi import per_group
from core.workspace import Workspace

CLUSTERS_VERSION = 1


def _artefact(fs: FeatureSet, kind: str, params: dict[str, Any]) -> Path:
    """Where the artefact of this kind and these parameters of `fs` is kept."""
    key = hashlib.blake2b(
        json.dumps({"features": fs.key, "kind": kind, **params}, sort_keys=True).encode(),
        digest_size=10,
    ).hexdigest()
    return fs.folder / f"{kind}-{key}.npz"


def _save(path: Path, **arrays: np.ndarray) -> None:
    with atomic_target(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _load(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError):
        return None  # missing or damaged: computed again


def clusters_for(
    fs: FeatureSet,
    *,
    k: float | None = None,
    seed: int = 0,
    on_progress: ProgressFn = no_progress,
) -> Clustering:
    """Spherical k-means of a feature set (k a count or a fraction of N; default
    `default_k`), cached. `on_progress` as spherical_kmeans reports it; (1, 1) when cached."""
    k_rows = resolve_k(k, fs.rows) if k else default_k(fs.rows)
    params = {"k": k_rows, "seed": seed, "version": CLUSTERS_VERSION}
    path = _artefact(fs, "clusters", params)
    if (saved := _load(path)) is not None:
        on_progress(1, 1)
        return Clustering(
            saved["labels"], saved["centroids"], saved["similarity"], int(saved["iterations"])
        )
    clustering = spherical_kmeans(fs.matrix(), k_rows, seed=seed, on_progress=on_progress)
    _save(
        path,
        labels=clustering.labels,
        centroids=clustering.centroids,
        similarity=clustering.similarity,
        iterations=np.array(clustering.iterations),
    )
    return clustering


@dataclass
class Layout:
    coords: np.ndarray  # N x 2 float32
    density: np.ndarray  # N float32
    cached: bool


def layout_for(
    fs: FeatureSet,
    config: LayoutConfig = LayoutConfig(),
    on_progress: ProgressFn = no_progress,
    *,
    compute: bool = True,
) -> Layout | None:
    """The 2-D layout and local density of a feature set, cached; None when it is not
    cached yet and `compute` is False."""
    path = _artefact(fs, "layout", config.key_fields())
    if (saved := _load(path)) is not None:
        return Layout(saved["coords"], saved["density"], True)
    if not compute:
        return None
    coords = umap_layout(fs.matrix(), config, on_progress)
    dens = density(coords)
    _save(path, coords=coords, density=dens)
    return Layout(coords, dens, False)


def groups_for(fs: FeatureSet, layout: Layout, config: LayoutConfig = LayoutConfig()) -> np.ndarray:
    """HDBSCAN groups on the layout, cached with it."""
    params = {**config.key_fields(), "hdbscan": 1}
    path = _artefact(fs, "groups", params)
    if (saved := _load(path)) is not None:
        return saved["labels"]
    labels = hdbscan_groups(layout.coords)
    _save(path, labels=labels)
    return labels


def describe(
    ws: Workspace,
    dataset: str,
    fs: FeatureSet,
    clustering: Clustering,
    *,
    sparse_below: float = 50.0,
    on_progress: ProgressFn = no_progress,
) -> list[dict[str, Any]]:
    """One row per cluster: id, size, sparse (size below the percentile), G-Vendi, top
    keywords of its prompts, and the ids of the 3 samples nearest its centroid.
    `on_progress(clusters done, clusters)` after each cluster's G-Vendi (vendi.per_group)."""
    table = pq.read_table(ws.dataset(dataset).path, columns=["id", "prompt"])
    ids, prompts = table.column("id").to_pylist(), table.column("prompt").to_pylist()
    sizes = clustering.sizes()
    sparse = sparse_clusters(sizes, sparse_below)
    words = keywords(prompts, clustering.labels, clustering.k)
    examples = representatives(clustering)
    scores = {
        g["group"]: g["g_vendi"]
        for g in per_group(fs.matrix(), clustering.labels, on_progress=on_progress)
    }
    out = []
    for c in range(clustering.k):
        out.append(
            {
                "id": c,
                "size": int(sizes[c]),
                "sparse": bool(sparse[c]),
                "g_vendi": float(scores.get(c, 0.0)),  # an empty cluster has none
                "keywords": words[c],
                "examples": [ids[i] for i in examples[c]],
                "example_rows": [int(i) for i in examples[c]],
                "example_prompts": [prompts[i] for i in examples[c]],
            }
        )
    return out
