"""The curated set: the seed samples the curator keeps, plus the accepted synthetic ones.

Removals are rows of the seed dataset with a reason, kept in the catalogue (table
`removed`), so they survive restarts and can be undone. They come from a map selection,
the redundancy list, or near-duplicate groups: samples with the same text, or whose
gradient features have a cosine above a threshold; resolving a group keeps one sample
and removes the rest.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from core.config import Runtime
from core.errors import UserError
from core.features import FeatureSet
from core.progress import ProgressFn, no_progress
from core.prompts import normalise_text
from core.records import Record, iter_records
from core.synthesis import synthetic_features, synthetic_records
from core.vendi import g_vendi, unit_rows
from core.workspace import Workspace

SOURCES = ("seed", "synthetic")
SIMS_BYTES = 256 * 2**20  # the most memory one band of near-duplicate cosines takes
ANSWER_FORMATS = (  # how a response states its final answer, checked in this order
    ("'#### N'", re.compile(r"^\s*####\s*\S", re.M)),
    ("'\\boxed{...}'", re.compile(r"\\boxed\s*\{")),
)


def removed(ws: Workspace, dataset: str) -> dict[int, str]:
    """Removed seed rows and why."""
    return ws.catalogue.removed_rows(ws.dataset(dataset).id)


def remove_rows(ws: Workspace, dataset: str, rows: list[int], reason: str) -> int:
    """Take seed rows out of the curated set (again: the newer reason wins); returns how many."""
    info = ws.dataset(dataset)
    rows = sorted({int(r) for r in rows})
    if rows and (rows[0] < 0 or rows[-1] >= info.rows):
        raise UserError(f"rows must be between 0 and {info.rows - 1}")
    ws.catalogue.remove_rows(info.id, rows, reason)
    return len(rows)


def restore_rows(ws: Workspace, dataset: str, rows: list[int] | None = None) -> int:
    """Put removed rows back (all of them when `rows` is None); returns how many."""
    return ws.catalogue.restore_rows(ws.dataset(dataset).id, rows)


# --- near-duplicate groups -----------------------------------------------------------------


def _components(n: int, pairs: list[tuple[int, int]]) -> list[list[int]]:
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def duplicate_groups(
    ws: Workspace,
    dataset: str,
    features: FeatureSet | None = None,
    *,
    threshold: float = 0.98,
    block: int = 4096,
    on_progress: ProgressFn = no_progress,
) -> list[dict[str, Any]]:
    """Groups of seed rows that say the same: the same prompt and response (white space and
    case folded), or gradient features with a cosine above `threshold` (when `features`
    are given; see similar_pairs). Rows already removed are left out. Largest groups first."""
    info = ws.dataset(dataset)
    gone = removed(ws, dataset)
    table = pq.read_table(info.path, columns=["id", "prompt", "response"])
    ids = table.column("id").to_pylist()
    prompts, responses = table.column("prompt").to_pylist(), table.column("response").to_pylist()
    live = [i for i in range(info.rows) if i not in gone]
    first_of: dict[str, int] = {}
    pairs: list[tuple[int, int]] = []
    for i in live:
        key = normalise_text(prompts[i]) + "\x00" + normalise_text(responses[i])
        if key in first_of:
            pairs.append((first_of[key], i))
        else:
            first_of[key] = i
    if features is not None and len(live) > 1:
        x = unit_rows(features.matrix()[live], np.float32)
        close = similar_pairs(x, threshold, block=block, on_progress=on_progress)
        pairs += [(live[i], live[j]) for i, j in close]
    out = []
    for members in _components(info.rows, pairs):
        members.sort()
        same = all(_same_text(members[0], m, prompts, responses) for m in members[1:])
        kind = "exact" if same else "gradient"
        out.append(
            {
                "rows": members,
                "ids": [ids[m] for m in members],
                "kind": kind,
                "keep": members[0],
                "prompt": prompts[members[0]][:200],
            }
        )
    out.sort(key=lambda g: (-len(g["rows"]), g["rows"][0]))
    for n, group in enumerate(out):
        group["group"] = n
    return out


def similar_pairs(
    x: np.ndarray, threshold: float, *, block: int = 4096, on_progress: ProgressFn = no_progress
) -> list[tuple[int, int]]:
    """Pairs (i, j), i < j, of rows of `x` (N x d, unit rows) whose dot product is above
    `threshold`. Each band of `block` rows is compared with itself and the rows after it
    (the upper triangle, never more than SIMS_BYTES of products at once); progress counts rows."""
    n = len(x)
    step = max(1, min(block, SIMS_BYTES // (4 * n)))
    pairs: list[tuple[int, int]] = []
    for start in range(0, n, step):
        sims = x[start : start + step] @ x[start:].T
        a, b = np.nonzero(sims > threshold)
        keep = a < b  # each pair once, no self pairs
        a, b = (a[keep] + start).tolist(), (b[keep] + start).tolist()
        pairs += zip(a, b, strict=True)
        on_progress(min(start + step, n), n)
    return pairs


def _same_text(a: int, b: int, prompts: list[str], responses: list[str]) -> bool:
    return normalise_text(prompts[a]) == normalise_text(prompts[b]) and normalise_text(
        responses[a]
    ) == normalise_text(responses[b])


def resolve_group(
    ws: Workspace, dataset: str, group: dict[str, Any], keep: int | None = None
) -> int:
    """Keep one row of a duplicate group (its first unless told), remove the others."""
    keep = group["keep"] if keep is None else keep
    if keep not in group["rows"]:
        raise UserError(f"row {keep} is not in this group (rows {group['rows']})")
    others = [r for r in group["rows"] if r != keep]
    return remove_rows(ws, dataset, others, f"{group['kind']} duplicate of row {keep}")


# --- the curated set -----------------------------------------------------------------------


def kept_rows(ws: Workspace, dataset: str) -> list[int]:
    """The seed rows of the curated set: every row of the dataset but the removed ones."""
    gone = removed(ws, dataset)
    return [row for row in range(ws.dataset(dataset).rows) if row not in gone]


def check_include(include: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    bad = [s for s in include if s not in SOURCES]
    if bad or not include:
        raise UserError(f"include {', '.join(bad) or 'nothing'}: choose from seed, synthetic")
    return tuple(include)


def curated_records(
    ws: Workspace,
    dataset: str,
    *,
    include: tuple[str, ...] = SOURCES,
    clusters: np.ndarray | None = None,
) -> Iterator[tuple[Record, dict[str, Any]]]:
    """The curated set, streamed: (record, provenance) for kept seed rows, then accepted
    synthetic samples. Provenance: id, source, cluster (the map's, when `clusters` is given
    for the seed rows; where it landed for synthetic ones), run, round, generator,
    exemplar ids, votes."""
    include = check_include(include)
    if "seed" in include:
        kept = set(kept_rows(ws, dataset))
        for row, record in enumerate(iter_records(ws.dataset(dataset).path)):
            if row in kept:
                yield record, _provenance(record, cluster=_seed_cluster(clusters, row))
    if "synthetic" in include:
        for record in synthetic_records(ws, dataset):
            m = record.meta
            yield (
                record,
                _provenance(
                    record,
                    cluster=m.get("cluster"),
                    run=m.get("run"),
                    round=m.get("round"),
                    generator=m.get("generator"),
                    exemplar_ids=m.get("exemplar_ids"),
                    votes=m.get("votes"),
                ),
            )


def _seed_cluster(clusters: np.ndarray | None, row: int) -> int | None:
    """A seed row's cluster for its provenance: the map's, when `clusters` is given."""
    return int(clusters[row]) if clusters is not None else None


def _provenance(record: Record, **fields: Any) -> dict[str, Any]:
    base = {
        "id": record.id,
        "source": record.source,
        "cluster": None,
        "run": None,
        "round": None,
        "generator": None,
        "exemplar_ids": None,
        "votes": None,
    }
    base.update(fields)
    if base["votes"] is not None:
        base["votes"] = json.dumps(base["votes"], ensure_ascii=False)  # one type for every row
    return base


def curated_g_vendi(
    ws: Workspace,
    dataset: str,
    features: FeatureSet,
    *,
    include: tuple[str, ...] = SOURCES,
    runtime: Runtime = Runtime(),
) -> float:
    """G-Vendi of the curated set in the feature space of `features` (kept seed rows, plus
    the synthetic samples' features from their runs, computed anew where a run used
    other feature settings)."""
    include = check_include(include)
    parts = []
    if "seed" in include:
        keep = np.array(kept_rows(ws, dataset), dtype=np.int64)
        parts.append(unit_rows(features.matrix()[keep], np.float32))
    if "synthetic" in include:
        # the feature set's own proxy spec: its pinned revision too
        vectors = synthetic_features(ws, dataset, features.encoder.proxy, features.config, runtime)
        if len(vectors):
            parts.append(vectors)
    rows = [p for p in parts if len(p)]
    if not rows:
        raise UserError("the curated set is empty")
    return g_vendi(np.vstack(rows))


def answer_format(response: str) -> str:
    """The way `response` states its final answer: one of ANSWER_FORMATS' names, or
    'another form'."""
    for name, pattern in ANSWER_FORMATS:
        if pattern.search(response):
            return name
    return "another form"


def answer_format_note(formats: dict[str, Counter]) -> str | None:
    """A note when the seed and synthetic answers (`formats[source][format]`: counts) mostly
    end in different formats, which a model trained on the mix would learn both of."""
    seed, synthetic = formats.get("seed"), formats.get("synthetic")
    if not seed or not synthetic:
        return None
    (seed_format, seed_n), (syn_format, syn_n) = seed.most_common(1)[0], synthetic.most_common(1)[0]
    if seed_format == syn_format:
        return None
    return (
        f"the seed answers mostly end in {seed_format} ({seed_n:,} of {seed.total():,}) and "
        f"the synthetic ones in {syn_format} ({syn_n:,} of {synthetic.total():,}): a model "
        "trained on the mix learns both formats; rewrite one side (for synthetic samples, "
        "the solve template) if one format matters"
    )


def answer_formats(path: Path) -> list[str]:
    """The format of each record's final answer (answer_format), in row order, for the
    records' Parquet file at `path`: what the summary counts of the seed rows."""
    batches = pq.ParquetFile(path).iter_batches(columns=["response"])
    return [answer_format(r) for batch in batches for r in batch.column(0).to_pylist()]


def summary(
    ws: Workspace,
    dataset: str,
    *,
    include: tuple[str, ...] = SOURCES,
    clusters: np.ndarray | None = None,
    seed_formats: list[str] | None = None,
) -> dict[str, Any]:
    """Sizes of the curated set by source and by cluster, the removals by reason, and notes
    (answers in different formats by source). `seed_formats`: the dataset's answer_formats,
    when the caller keeps them (they are read from its records otherwise); the removals
    and the synthetic samples are read each time."""
    include = check_include(include)
    by_source: Counter = Counter()
    by_cluster: Counter = Counter()
    formats: dict[str, Counter] = {source: Counter() for source in SOURCES}
    if "seed" in include:
        if seed_formats is None:
            seed_formats = answer_formats(ws.dataset(dataset).path)
        for row in kept_rows(ws, dataset):  # the seed rows of curated_records, without reading them
            by_source["seed"] += 1
            formats["seed"][seed_formats[row]] += 1
            if (cluster := _seed_cluster(clusters, row)) is not None:
                by_cluster[cluster] += 1
    if "synthetic" in include:
        for record, prov in curated_records(ws, dataset, include=("synthetic",)):
            by_source[prov["source"]] += 1
            formats[prov["source"]][answer_format(record.response)] += 1
            if prov["cluster"] is not None:
                by_cluster[int(prov["cluster"])] += 1
    gone = removed(ws, dataset)
    reasons = Counter(reason.split(" of row")[0] for reason in gone.values())
    return {
        "dataset": dataset,
        "rows": sum(by_source.values()),
        "by_source": dict(by_source),
        "by_cluster": {str(k): v for k, v in sorted(by_cluster.items())},
        "removed": len(gone),
        "removed_by_reason": dict(reasons),
        "notes": [note] if (note := answer_format_note(formats)) else [],
    }
