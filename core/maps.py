"""The map of a dataset, cached: clusters with their descriptions, the 2-D layout, density.

Artefacts live beside the feature set they come from (`<feature folder>/<kind>-<key>.npz`),
written atomically; the same feature set and parameters give the same file, so nothing is
computed twice. The features are read from their chunks as the work goes (streamed, or
gathered by row), never all at once: a million rows of 1024 dims cost a few blocks of
memory. The cluster descriptions (G-Vendi, keywords, examples) are kept as JSON, keyed by
the clustering they describe.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.config import SENTENCE, SPACES, FeatureConfig, ProxySpec
from core.errors import UserError
from core.features import FeatureSet, sentence_request
from core.files import Memo, atomic_target, file_version
from core.layout import LayoutConfig, density, hdbscan_groups, umap_layout
from core.progress import ProgressFn, no_progress
from core.records import read_columns
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

CLUSTERS_VERSION = 2  # 2: beyond regions.fit_rows_for(k) rows, fitted on a sample
DESCRIBED_VERSION = 1
KEYWORD_ROWS = 200_000  # keywords come from at most about this many prompts ...
KEYWORD_MIN_ROWS = 50  # ... and at least this many of each cluster (all of a smaller one)
_LOADED = Memo(size=8)  # artefacts read, by file version: a page rerun reads none again


def space_request(
    space: str, proxy: ProxySpec, config: FeatureConfig
) -> tuple[ProxySpec, FeatureConfig]:
    """The feature settings of a map's `space` (one of SPACES): "gradient", the given proxy
    and config; "sentence", the sentence embeddings of the diversity baseline (the same
    feature set: `features.sentence_request`), seeded by the config's seed for their
    clusters."""
    if space == "gradient":
        return proxy, config
    if space == SENTENCE:
        return sentence_request(seed=config.seed)
    raise UserError(f"space {space!r}: use {' or '.join(SPACES)}")


def space_noun(space: str) -> str:
    """What a space's vectors are called in messages: "features", "sentence embeddings"."""
    return "features" if space == "gradient" else f"{space} embeddings"


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
    """The arrays of an artefact, read once per version of its file (`_LOADED`; read-only,
    as every caller shares them); None when it is missing or damaged (computed again)."""

    def read() -> dict[str, np.ndarray] | None:
        try:
            with np.load(path) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError):
            return None
        for array in arrays.values():
            array.flags.writeable = False
        return arrays

    try:
        return _LOADED.get(file_version(path), read)
    except OSError:
        return None


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
    clustering = spherical_kmeans(fs, k_rows, seed=seed, on_progress=on_progress)
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
    coords = umap_layout(fs, config, on_progress)
    dens = density(coords)
    _save(path, coords=coords, density=dens)
    return Layout(coords, dens, False)


def groups_for(fs: FeatureSet, layout: Layout, config: LayoutConfig = LayoutConfig()) -> np.ndarray:
    """HDBSCAN groups on the layout, cached with it."""
    params = {**config.key_fields(), "hdbscan": 2}
    path = _artefact(fs, "groups", params)
    if (saved := _load(path)) is not None:
        return saved["labels"]
    labels = hdbscan_groups(layout.coords)
    _save(path, labels=labels)
    return labels


def keyword_rows(labels: np.ndarray, k: int, *, seed: int = 0) -> np.ndarray:
    """The rows whose prompts give the clusters' keywords, in order: all of them up to
    KEYWORD_ROWS; beyond, a seeded sample of each cluster, KEYWORD_ROWS / k rows but at
    least KEYWORD_MIN_ROWS (all rows of a smaller cluster)."""
    n = len(labels)
    if n <= KEYWORD_ROWS:
        return np.arange(n)
    quota = max(KEYWORD_MIN_ROWS, KEYWORD_ROWS // max(k, 1))
    order = np.lexsort((np.random.default_rng(seed).permutation(n), labels))
    starts = np.searchsorted(labels[order], np.arange(k))
    position = np.arange(n) - starts[labels[order]]
    return np.sort(order[position < quota])


def _description(
    path: Path, fs: FeatureSet, clustering: Clustering, on_progress: ProgressFn
) -> dict[str, Any]:
    """What describes the clusters whatever the sparse percentile: each one's G-Vendi,
    keywords and example rows; cached beside the features, keyed by the clustering."""
    digest = hashlib.blake2b(digest_size=10)
    for array in (clustering.labels, clustering.similarity, clustering.centroids):
        digest.update(np.ascontiguousarray(array).tobytes())
    params = {"clustering": digest.hexdigest(), "version": DESCRIBED_VERSION}
    target = _artefact(fs, "described", params).with_suffix(".json")
    try:
        return json.loads(target.read_text())
    except (OSError, ValueError):
        pass  # missing or damaged: computed again
    rows = keyword_rows(clustering.labels, clustering.k)
    prompts = read_columns(path, ["prompt"], rows)["prompt"]
    words = keywords(prompts, clustering.labels[rows], clustering.k)
    scores = {
        g["group"]: g["g_vendi"] for g in per_group(fs, clustering.labels, on_progress=on_progress)
    }
    described = {
        "g_vendi": [float(scores.get(c, 0.0)) for c in range(clustering.k)],  # empty: none
        "keywords": words,
        "example_rows": representatives(clustering),
    }
    with atomic_target(target) as tmp:
        tmp.write_text(json.dumps(described))
    return described


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
    keywords of its prompts (`keyword_rows`: all of them, or a sample of each cluster's
    beyond KEYWORD_ROWS rows), and the ids of the 3 samples nearest its centroid. The
    G-Vendi, keywords and examples are cached beside the features for this clustering.
    `on_progress(clusters done, clusters)` after each cluster's G-Vendi (vendi.per_group);
    (1, 1) when cached."""
    path = ws.dataset(dataset).path
    described = _description(path, fs, clustering, on_progress)
    on_progress(1, 1)
    sizes = clustering.sizes()
    sparse = sparse_clusters(sizes, sparse_below)
    examples = described["example_rows"]
    shown = np.array(sorted({r for rows in examples for r in rows}), dtype=np.int64)
    where = {int(r): i for i, r in enumerate(shown)}
    shown_columns = read_columns(path, ["id", "prompt"], shown)
    ids, prompts = shown_columns["id"], shown_columns["prompt"]
    out = []
    for c in range(clustering.k):
        out.append(
            {
                "id": c,
                "size": int(sizes[c]),
                "sparse": bool(sparse[c]),
                "g_vendi": described["g_vendi"][c],
                "keywords": described["keywords"][c],
                "examples": [ids[where[r]] for r in examples[c]],
                "example_rows": [int(r) for r in examples[c]],
                "example_prompts": [prompts[where[r]] for r in examples[c]],
            }
        )
    return out
