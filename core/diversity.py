"""The diversity report: G-Vendi of a dataset, its groups, its most redundant samples, the
baselines beside it, and the comparison of several datasets.

Features come from the feature store (computed first when missing); the numerics are in
core/vendi.py. Every function returns plain data (dicts, lists, arrays) for the CLI and
the app alike.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from core.config import FeatureConfig, ProxySpec, Runtime
from core.errors import UserError
from core.features import FeatureSet, compute_features, sentence_features
from core.maps import clusters_for
from core.progress import ProgressFn, no_progress, parts
from core.records import read_columns
from core.sentence import SENTENCE_MODEL
from core.textstats import distinct_n, mean_length
from core.vendi import (
    bootstrap,
    equal_size,
    g_vendi,
    marginal_values,
    per_group,
    spectrum,
    vendi,
    vendi_family,
)
from core.workspace import Workspace

MAX_GROUPS = 200
BASELINE_ROWS = 100_000  # text baselines beyond this many rows use a seeded sample
MISSING = "(missing)"  # the label of a record without a value for a field (absent or null)
# expected costs, in passes over the rows, that share a progress bar between a job's parts
FEATURE_PASSES = 50  # computing features (a part that drops out when they are cached)
CLUSTER_PASSES = 10  # spherical k-means


def _orders_json(orders: dict[float, float]) -> dict[str, float]:
    return {("inf" if math.isinf(q) else f"{q:g}"): v for q, v in orders.items()}


def score(
    ws: Workspace,
    dataset: str,
    *,
    proxy: ProxySpec = ProxySpec(),
    config: FeatureConfig = FeatureConfig(),
    runtime: Runtime = Runtime(),
    q: float = 1.0,
    by: str | None = None,
    k: float | None = None,
    replicates: int = 0,
    seed: int = 0,
    on_progress: ProgressFn = no_progress,
) -> dict[str, Any]:
    """G-Vendi (and order q) of a dataset; per group when `by` is a field, 'source' or
    'cluster'; a bootstrap interval when `replicates` > 0. `on_progress(steps, STEPS)`
    through the features, the spectrum, the bootstrap and the groups."""
    features, moment, resampled, labelled, grouped = parts(
        on_progress,
        [
            FEATURE_PASSES,
            1,
            replicates,
            CLUSTER_PASSES if by == "cluster" else 0,
            1 if by else 0,
        ],
    )
    fs = compute_features(
        ws, dataset, proxy=proxy, config=config, runtime=runtime, on_progress=features
    )
    moment(0, fs.rows)
    values, _ = spectrum(fs.arrays(), rows=fs.rows, on_progress=moment).eigen()
    result: dict[str, Any] = {
        "dataset": dataset,
        "rows": fs.rows,
        "g_vendi": vendi(values, 1.0),
        "q": q,
        "vendi_q": vendi(values, q),
        "orders": _orders_json(vendi_family(values)),
        "proxy": fs.proxy,
        "method": fs.config.method,
        "feature_key": fs.key,
        "cached": fs.cached,
        "warnings": [fs.facts["warning"]] if fs.facts.get("warning") else [],
    }
    if replicates:
        interval = bootstrap(fs, q=q, replicates=replicates, seed=seed, on_progress=resampled)
        result["interval"] = {
            "low": interval.low,
            "high": interval.high,
            "level": interval.level,
            "replicates": replicates,
            "blocks": interval.blocks,
        }
    if by:
        labelled(0, 1)
        labels = group_labels(ws, dataset, by, features=fs, k=k, seed=seed, on_progress=labelled)
        labelled(1, 1)
        result["by"] = by
        result["groups"] = [
            {**g, "group": str(g["group"])} for g in per_group(fs, labels, q, on_progress=grouped)
        ]
    on_progress(1, 1)
    return result


def meta_label(meta: dict[str, Any], field: str) -> str:
    """A record's value of a meta field as a group or colour label: MISSING when the record
    has none (the field absent or null)."""
    value = meta.get(field)
    return MISSING if value is None else str(value)


def group_labels(
    ws: Workspace,
    dataset: str,
    by: str,
    *,
    features: FeatureSet | None = None,
    k: float | None = None,
    seed: int = 0,
    on_progress: ProgressFn = no_progress,
) -> np.ndarray:
    """A label per row: k-means cluster ('cluster', the map's clusters; `on_progress` through
    the clustering), the record's source ('source'), or the value of a field kept in the
    records' meta (any categorical field; MISSING where a record has none)."""
    info = ws.dataset(dataset)
    if by == "cluster":
        if features is None:
            raise ValueError("clusters need the features")
        return clusters_for(features, k=k, seed=seed, on_progress=on_progress).labels
    if by == "source":
        return np.asarray(read_columns(info.path, ["source"])["source"])
    metas = _metas(info.path)
    if not any(by in m for m in metas):
        fields = sorted({f for m in metas[:1000] for f in m})
        raise UserError(
            f"dataset {dataset!r} has no field {by!r} to group by; "
            f"use cluster, source or one of: {', '.join(fields) or '(no other fields)'}"
        )
    labels = np.asarray([meta_label(m, by) for m in metas])
    if len(np.unique(labels)) > MAX_GROUPS:
        raise UserError(
            f"field {by!r} has {len(np.unique(labels))} distinct values; group by a categorical "
            f"field (at most {MAX_GROUPS} values) or by cluster"
        )
    return labels


def _metas(path: Path) -> list[dict[str, Any]]:
    """Each record's meta (the fields the mapping did not use), in row order."""
    return [json.loads(m) if m else {} for m in read_columns(path, ["meta"])["meta"]]


def field_labels(path: Path, field: str) -> list[str]:
    """Each record's value of a meta field as a label (meta_label), in row order, for the
    records' Parquet file at `path`; any number of distinct values (colouring a map)."""
    return [meta_label(m, field) for m in _metas(path)]


def meta_fields(path: Path, *, sample: int = 200) -> list[str]:
    """Field names kept in the meta of the records at `path` (from the first rows), for
    grouping and colouring."""
    pf = pq.ParquetFile(path)
    batch = next(pf.iter_batches(batch_size=sample, columns=["meta"]), None)
    metas = [json.loads(m) for m in batch.column(0).to_pylist() if m] if batch else []
    return sorted({f for m in metas for f in m})


def redundant(
    ws: Workspace,
    dataset: str,
    fs: FeatureSet,
    *,
    limit: int | None = None,
    on_progress: ProgressFn = no_progress,
) -> list[dict[str, Any]]:
    """Samples by marginal value (how much G-Vendi drops without them), lowest first:
    the most redundant at the top. `on_progress(steps, STEPS)` through the two passes."""
    if limit is not None and limit < 1:  # a negative slice would keep all but the last rows
        raise UserError(f"the number of redundant samples must be at least 1, not {limit}")
    first, second = parts(on_progress, [1, 2])
    first(0, fs.rows)
    moment = spectrum(fs.arrays(), rows=fs.rows, on_progress=first)
    values = marginal_values(fs.arrays(), moment, on_progress=second)
    order = np.argsort(values, kind="stable")[:limit]
    shown = read_columns(ws.dataset(dataset).path, ["id", "prompt"], order)
    ids, prompts = shown["id"], shown["prompt"]
    return [
        {"row": int(i), "id": id_, "marginal_value": float(values[i]), "prompt": prompt}
        for i, id_, prompt in zip(order, ids, prompts, strict=True)
    ]


def baselines(
    ws: Workspace,
    dataset: str,
    *,
    sentence_model: str = SENTENCE_MODEL,
    runtime: Runtime = Runtime(),
    on_progress: ProgressFn = no_progress,
    seed: int = 0,
) -> dict[str, Any]:
    """Surface baselines beside G-Vendi: sentence-embedding Vendi (cosine kernel), distinct
    n-grams (n = 1..4) and mean response length. A missing sentence model is reported,
    not raised: the other baselines still come back. `on_progress(steps, STEPS)` through
    the text statistics and the sentence embeddings."""
    text, embedded = parts(on_progress, [1, FEATURE_PASSES])
    text(0, 1)
    info = ws.dataset(dataset)
    table = pq.read_table(info.path, columns=["prompt", "response"])
    rows = np.arange(table.num_rows)
    if len(rows) > BASELINE_ROWS:
        rows = np.sort(np.random.default_rng(seed).choice(rows, BASELINE_ROWS, replace=False))
    prompts = table.column("prompt").take(rows).to_pylist()
    responses = table.column("response").take(rows).to_pylist()
    out: dict[str, Any] = {
        "rows": len(rows),
        "distinct_n": {
            str(n): v
            for n, v in distinct_n(
                p + "\n" + r for p, r in zip(prompts, responses, strict=True)
            ).items()
        },
        "mean_response": mean_length(responses),
    }
    text(1, 1)
    try:
        fs = sentence_features(
            ws, dataset, model=sentence_model, runtime=runtime, on_progress=embedded
        )
        out["sentence_vendi"] = g_vendi(fs.arrays())
        out["sentence_model"] = sentence_model
    except UserError as e:
        out["sentence_vendi"] = None
        out["sentence_error"] = str(e)
    on_progress(1, 1)
    return out


def compare(
    ws: Workspace,
    datasets: list[str],
    *,
    proxy: ProxySpec = ProxySpec(),
    config: FeatureConfig = FeatureConfig(),
    runtime: Runtime = Runtime(),
    equal: bool = False,
    repeats: int = 5,
    replicates: int = 0,
    q: float = 1.0,
    seed: int = 0,
    on_progress: ProgressFn = no_progress,
) -> dict[str, Any]:
    """G-Vendi of several datasets under the same proxy and projection. G-Vendi grows with
    N, so with `equal` each is also scored on random subsamples of the smallest size
    (mean and standard deviation over `repeats` draws); `sizes_differ` says when that matters.
    Without `equal`, `replicates` > 0 adds a bootstrap interval (low, high, level) to each
    score. `on_progress(steps, STEPS)` through every dataset's features, then the scores."""
    if len(set(datasets)) != len(datasets):
        raise UserError("name each dataset once")
    rows = [ws.dataset(name).rows for name in datasets]
    weights = [FEATURE_PASSES * r for r in rows] + [
        r * (1 + (0 if equal else replicates)) for r in rows
    ]
    weights.append(len(rows) * repeats * min(rows) if equal else 0)
    *steps, subsampled = parts(on_progress, weights)
    featurised, scored = steps[: len(datasets)], steps[len(datasets) :]
    sets = {
        name: compute_features(
            ws, name, proxy=proxy, config=config, runtime=runtime, on_progress=step
        )
        for name, step in zip(datasets, featurised, strict=True)
    }
    out = []
    for (name, fs), step in zip(sets.items(), scored, strict=True):
        step(0, 1)
        entry: dict[str, Any] = {"name": name, "rows": fs.rows, "g_vendi": g_vendi(fs.arrays(), q)}
        if replicates and not equal:
            interval = bootstrap(fs, q=q, replicates=replicates, seed=seed, on_progress=step)
            entry.update(low=interval.low, high=interval.high, level=interval.level)
        step(1, 1)
        out.append(entry)
    sizes = {fs.rows for fs in sets.values()}
    result: dict[str, Any] = {
        "q": q,
        "sizes_differ": len(sizes) > 1,
        "equal_size": None,
        "replicates": replicates if not equal else 0,
        "datasets": out,
    }
    if equal:
        size = min(sizes)
        scores = equal_size(
            dict(sets),
            size=size,
            repeats=repeats,
            q=q,
            seed=seed,
            on_progress=subsampled,
        )
        for entry in out:
            entry["g_vendi_full"] = entry["g_vendi"]
            entry["g_vendi"], entry["std"] = scores[entry["name"]]
            entry["rows_used"] = size
        result["equal_size"] = size
    warnings = {fs.facts["warning"] for fs in sets.values() if fs.facts.get("warning")}
    result["warnings"] = sorted(warnings)
    on_progress(1, 1)
    return result
