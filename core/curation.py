"""The curated set: the seed samples the curator keeps, plus the accepted synthetic ones.

Removals are rows of the seed dataset with a reason, kept in the catalogue (table
`removed`), so they survive restarts and can be undone. They come from a map selection,
the redundancy list, or near-duplicate groups: samples with the same text, or whose
gradient features have a cosine above a threshold; resolving a group keeps one sample
and removes the rest.

At scale: what is derived from the removals (the removed rows as an array, their count
by reason) is read once per change of them (the catalogue numbers the changes), and each
record's answer format once per records file, so the summary costs a few array
operations, not a pass over the records. Near-duplicates among more than
EXACT_PAIRS_ROWS rows are searched among candidate pairs (`candidate_pairs`), not all.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from core.config import Runtime
from core.errors import UserError
from core.features import FeatureSet
from core.files import Memo, file_version
from core.progress import ProgressFn, no_progress, parts
from core.prompts import normalise_text
from core.records import Record, iter_records, read_columns
from core.regions import nearest, spherical_kmeans
from core.rows import RowSource, Subset, batches, groups_of, rows_of, take_unit
from core.synthesis import synthetic_features, synthetic_records
from core.vendi import SecondMoment, vendi
from core.workspace import Workspace

SOURCES = ("seed", "synthetic")
SIMS_BYTES = 256 * 2**20  # the most memory one band of near-duplicate cosines takes
EXACT_PAIRS_ROWS = 20_000  # up to this many rows, near-duplicates are sought among all pairs
CELL_ROWS = 1_000  # beyond, within k-means cells of about this many rows (candidate_pairs)
SPLIT_ROWS = 4 * CELL_ROWS  # a larger cell is split by k-means within it
CELL_BATCH_ROWS = 65_536  # rows of the cells compared in one go (gathered together)
ANSWER_FORMATS = (  # how a response states its final answer, checked in this order
    ("'#### N'", re.compile(r"^\s*####\s*\S", re.M)),
    ("'\\boxed{...}'", re.compile(r"\\boxed\s*\{")),
)
FORMAT_NAMES = (*(name for name, _ in ANSWER_FORMATS), "another form")

_REMOVALS = Memo()
_FORMATS = Memo()


def removed(ws: Workspace, dataset: str) -> dict[int, str]:
    """Removed seed rows and why."""
    return ws.catalogue.removed_rows(ws.dataset(dataset).id)


@dataclass(frozen=True)
class Removals:
    rows: np.ndarray  # the removed seed rows, ascending
    by_reason: dict[str, int]  # how many by reason ("exact duplicate of row 3": "exact duplicate")


def removals(ws: Workspace, dataset: str) -> Removals:
    """The dataset's removed rows and their count by reason, read from the catalogue once
    per change of them (its `removed_revision`), then kept."""
    info = ws.dataset(dataset)
    key = (str(ws.catalogue.path.resolve()), info.id, ws.catalogue.removed_revision(info.id))

    def read() -> Removals:
        rows, reasons = ws.catalogue.removed_reasons(info.id)
        by_reason = Counter(reason.split(" of row")[0] for reason in reasons)
        return Removals(np.asarray(rows, dtype=np.int64), dict(by_reason))

    return _REMOVALS.get(key, read)


def kept_mask(ws: Workspace, dataset: str) -> np.ndarray:
    """True for each seed row of the curated set: every row of the dataset but the removed."""
    mask = np.ones(ws.dataset(dataset).rows, dtype=bool)
    mask[removals(ws, dataset).rows] = False
    return mask


def remove_rows(ws: Workspace, dataset: str, rows: list[int], reason: str) -> int:
    """Take seed rows out of the curated set (again: the newer reason wins); returns how many."""
    info = ws.dataset(dataset)
    rows = sorted({int(r) for r in rows})
    if rows and (rows[0] < 0 or rows[-1] >= info.rows):
        raise UserError(f"rows must be between 0 and {info.rows - 1}")
    ws.catalogue.remove_rows(info.id, rows, reason)
    return len(rows)


def keep_only(ws: Workspace, dataset: str, rows: list[int], reason: str) -> int:
    """Take every seed row of the curated set but `rows` out of it; returns how many."""
    mask = kept_mask(ws, dataset)
    keep = np.asarray(sorted({int(r) for r in rows}), dtype=np.int64)
    if len(keep) and (keep[0] < 0 or keep[-1] >= len(mask)):
        raise UserError(f"rows must be between 0 and {len(mask) - 1}")
    mask[keep] = False
    return remove_rows(ws, dataset, np.flatnonzero(mask).tolist(), reason)


def restore_rows(ws: Workspace, dataset: str, rows: list[int] | None = None) -> int:
    """Put removed rows back (all of them when `rows` is None); returns how many."""
    return ws.catalogue.restore_rows(ws.dataset(dataset).id, rows)


# --- near-duplicate groups -----------------------------------------------------------------


def _components(pairs: np.ndarray) -> list[list[int]]:
    """The connected groups of rows linked by `pairs` (m x 2), each ascending."""
    if not len(pairs):
        return []
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    nodes = np.unique(pairs)
    ends = np.searchsorted(nodes, pairs)
    graph = coo_matrix(
        (np.ones(len(ends), dtype=np.int8), (ends[:, 0], ends[:, 1])), shape=(len(nodes),) * 2
    )
    count, labels = connected_components(graph, directed=False)
    order, starts = groups_of(labels, count)
    return [nodes[order[starts[g] : starts[g + 1]]].tolist() for g in range(count)]


def _text_pairs(path: Path, live: np.ndarray) -> np.ndarray:
    """Pairs (first row, later row) of live rows with the same prompt and response once
    white space and case are folded, found through a 128-bit digest of the folded text."""
    if len(live) < 2:
        return np.empty((0, 2), dtype=np.int64)
    digests = np.empty((len(live), 2), dtype=np.uint64)
    alive = np.zeros(int(live[-1]) + 1, dtype=bool)
    alive[live] = True
    at, row = 0, 0
    for batch in pq.ParquetFile(path).iter_batches(columns=["prompt", "response"]):
        prompts, responses = batch.column(0).to_pylist(), batch.column(1).to_pylist()
        for prompt, response in zip(prompts, responses, strict=True):
            if row < len(alive) and alive[row]:
                text = normalise_text(prompt) + "\x00" + normalise_text(response)
                digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
                digests[at] = np.frombuffer(digest, dtype=np.uint64)
                at += 1
            row += 1
    order = np.lexsort((live, digests[:, 1], digests[:, 0]))
    same = np.all(digests[order][1:] == digests[order][:-1], axis=1)
    first = np.maximum.accumulate(
        np.where(np.concatenate([[True], ~same]), np.arange(len(order)), 0)
    )
    later = np.flatnonzero(np.concatenate([[False], same]))
    return np.column_stack([live[order[first[later]]], live[order[later]]]).astype(np.int64)


def pair_search(ws: Workspace, dataset: str) -> str:
    """Which gradient search `duplicate_groups` makes on the dataset's live rows: 'all
    pairs' up to EXACT_PAIRS_ROWS, else 'candidate pairs'."""
    live = ws.dataset(dataset).rows - len(removals(ws, dataset).rows)
    return "all pairs" if live <= EXACT_PAIRS_ROWS else "candidate pairs"


def duplicate_groups(
    ws: Workspace,
    dataset: str,
    features: FeatureSet | None = None,
    *,
    threshold: float = 0.98,
    block: int = 4096,
    exact: bool | None = None,
    on_progress: ProgressFn = no_progress,
) -> list[dict[str, Any]]:
    """Groups of seed rows that say the same: the same prompt and response (white space and
    case folded), or gradient features with a cosine above `threshold` (when `features`
    are given). Rows already removed are left out. Largest groups first.

    The gradient search compares all pairs (`similar_pairs`; `on_progress(rows, rows)`)
    up to EXACT_PAIRS_ROWS live rows, else candidate pairs within k-means cells
    (`candidate_pairs`; `on_progress(steps, STEPS)`); `exact` forces one or the other."""
    info = ws.dataset(dataset)
    live = np.flatnonzero(kept_mask(ws, dataset))
    pairs = [_text_pairs(info.path, live)]
    if features is not None and len(live) > 1:
        if exact if exact is not None else len(live) <= EXACT_PAIRS_ROWS:
            x = take_unit(features, live)
            close = np.array(
                similar_pairs(x, threshold, block=block, on_progress=on_progress), dtype=np.int64
            ).reshape(-1, 2)
            del x
        else:
            close = candidate_pairs(Subset(features, live), threshold, on_progress=on_progress)
        pairs.append(live[close])
    groups = _components(np.concatenate(pairs))
    shown = np.array(sorted({r for g in groups for r in g}), dtype=np.int64)
    where = {int(r): i for i, r in enumerate(shown)}
    columns = read_columns(info.path, ["id", "prompt", "response"], shown)
    ids, prompts, responses = columns["id"], columns["prompt"], columns["response"]
    out = []
    for members in groups:
        at = [where[m] for m in members]
        same = all(_same_text(at[0], m, prompts, responses) for m in at[1:])
        out.append(
            {
                "rows": members,
                "ids": [ids[m] for m in at],
                "kind": "exact" if same else "gradient",
                "keep": members[0],
                "prompt": prompts[at[0]][:200],
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


def _cross_pairs(x: np.ndarray, y: np.ndarray, threshold: float) -> np.ndarray:
    """Pairs (i, j) of rows of `x` and rows of `y` (unit) whose dot product is above
    `threshold`, in bands of at most SIMS_BYTES of products."""
    if not len(x) or not len(y):
        return np.empty((0, 2), dtype=np.int64)
    step = max(1, SIMS_BYTES // (4 * len(y)))
    found = []
    for start in range(0, len(x), step):
        a, b = np.nonzero(x[start : start + step] @ y.T > threshold)
        found.append(np.column_stack([a + start, b]))
    return np.concatenate(found).astype(np.int64)


def candidate_pairs(
    features: np.ndarray | RowSource,
    threshold: float,
    *,
    cell_rows: int | None = None,
    seed: int = 0,
    on_progress: ProgressFn = no_progress,
) -> np.ndarray:
    """Pairs (i, j), i < j, of rows whose cosine is above `threshold`, sought among
    candidate pairs only, as semantic-dedup tools do: the rows are cut into cells of about
    `cell_rows` (default CELL_ROWS) by spherical k-means (a cell beyond SPLIT_ROWS is split by k-means within
    it), each row is a member of the cell of its nearest centroid and a guest of the cell
    of its second nearest, and each cell's members are compared with each other and with
    its guests. A pair is found when the two share their nearest centroid or one's nearest
    is the other's second; the others are missed (bench/scale_1m.py measures the recall
    against all pairs). A guest whose second cosine is below its first by more than
    2 sqrt(2 - 2 threshold) cannot be that close to a member and is not compared.
    Cost: N x cells for the cells, about 2 N x cell_rows products for the pairs.
    m x 2 int64, sorted; `on_progress(steps, STEPS)`."""
    source = rows_of(features)
    n, cell_rows = source.rows, cell_rows or CELL_ROWS
    if n <= cell_rows:  # one cell: all pairs
        x = take_unit(source, np.arange(n))
        return np.array(
            similar_pairs(x, threshold, on_progress=on_progress), dtype=np.int64
        ).reshape(-1, 2)
    clustering, splitting, assigning, comparing = parts(on_progress, [n, n / 4, n, 2 * n])
    k = math.ceil(n / cell_rows)
    first = spherical_kmeans(source, k, seed=seed, on_progress=clustering)
    sizes = first.sizes()
    big = np.flatnonzero(sizes > SPLIT_ROWS)
    leaves = [first.centroids[np.setdiff1d(np.arange(first.k), big)]]
    order, starts = groups_of(first.labels, first.k)
    splitting(0, len(big))
    for done, c in enumerate(big, 1):
        rows = order[starts[c] : starts[c + 1]]
        leaves.append(
            spherical_kmeans(
                Subset(source, rows), max(2, math.ceil(len(rows) / cell_rows)), seed=seed
            ).centroids
        )
        splitting(done, len(big))
    splitting(1, 1)
    del first, order
    leaves = np.vstack(leaves)
    best, sims = nearest(source, leaves, top=2, on_progress=assigning)
    reach = 2 * math.sqrt(max(0.0, 2 - 2 * threshold))
    guest = (best[:, 1] >= 0) & (sims[:, 1] >= sims[:, 0] - reach)
    members, member_starts = groups_of(best[:, 0], len(leaves))
    guest_rows = np.flatnonzero(guest)
    guests, guest_starts = groups_of(best[guest_rows, 1], len(leaves))
    guests = guest_rows[guests]
    found = []
    for lo, hi in batches(member_starts, CELL_BATCH_ROWS):
        m_rows = members[member_starts[lo] : member_starts[hi]]
        g_rows = guests[guest_starts[lo] : guest_starts[hi]]
        m, g = take_unit(source, m_rows), take_unit(source, g_rows)
        for c in range(lo, hi):
            ms, me = member_starts[c] - member_starts[lo], member_starts[c + 1] - member_starts[lo]
            gs, ge = guest_starts[c] - guest_starts[lo], guest_starts[c + 1] - guest_starts[lo]
            inside = np.array(similar_pairs(m[ms:me], threshold), dtype=np.int64).reshape(-1, 2)
            found.append(m_rows[ms:me][inside])
            across = _cross_pairs(m[ms:me], g[gs:ge], threshold)
            found.append(
                np.column_stack([m_rows[ms:me][across[:, 0]], g_rows[gs:ge][across[:, 1]]])
            )
        comparing(int(member_starts[hi]), n)
    pairs = np.concatenate(found) if found else np.empty((0, 2), dtype=np.int64)
    pairs = np.sort(pairs, axis=1)
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)


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
    return resolve_groups(ws, dataset, [{**group, "keep": keep}])


def resolve_groups(ws: Workspace, dataset: str, groups: list[dict[str, Any]]) -> int:
    """Keep the row `keep` of each group (its first, as `duplicate_groups` gives them) and
    remove the others, in one transaction; returns how many rows were removed."""
    info = ws.dataset(dataset)
    removed_rows = 0
    with ws.catalogue.transaction() as catalogue:
        for group in groups:
            others = sorted({int(r) for r in group["rows"]} - {int(group["keep"])})
            if others and (others[0] < 0 or others[-1] >= info.rows):
                raise UserError(f"rows must be between 0 and {info.rows - 1}")
            catalogue.remove_rows(
                info.id, others, f"{group['kind']} duplicate of row {group['keep']}"
            )
            removed_rows += len(others)
    return removed_rows


# --- the curated set -----------------------------------------------------------------------


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
        kept = kept_mask(ws, dataset)
        for row, record in enumerate(iter_records(ws.dataset(dataset).path)):
            if kept[row]:
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
    other feature settings), streamed from the feature chunks (removed rows weigh 0)."""
    include = check_include(include)
    moment = SecondMoment(features.dim)
    if "seed" in include:
        kept = kept_mask(ws, dataset).astype(np.float64)
        for start, chunk in features.iter_chunks():
            moment.add(chunk, kept[start : start + len(chunk)])
    if "synthetic" in include:
        # the feature set's own proxy spec: its pinned revision too
        vectors = synthetic_features(ws, dataset, features.encoder.proxy, features.config, runtime)
        if len(vectors):
            moment.add(vectors)
    if moment.weight <= 0:
        raise UserError("the curated set is empty")
    return vendi(moment.eigen()[0])


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


def answer_formats(path: Path) -> np.ndarray:
    """The format of each record's final answer (answer_format) as an index into
    FORMAT_NAMES (uint8), in row order, for the records' Parquet file at `path`: what the
    summary counts of the seed rows. Read once per version of the file, then kept."""

    def read() -> np.ndarray:
        batches = pq.ParquetFile(path).iter_batches(columns=["response"])
        codes = [
            FORMAT_NAMES.index(answer_format(r)) for b in batches for r in b.column(0).to_pylist()
        ]
        return np.asarray(codes, dtype=np.uint8)

    return _FORMATS.get(file_version(path), read)


def summary(
    ws: Workspace,
    dataset: str,
    *,
    include: tuple[str, ...] = SOURCES,
    clusters: np.ndarray | None = None,
) -> dict[str, Any]:
    """Sizes of the curated set by source and by cluster, the removals by reason, and notes
    (answers in different formats by source). The seed rows are counted from the removals
    (`removals`: kept per change of them) and their answers' formats (`answer_formats`:
    read once per records file), never read again; the synthetic samples are read each
    time."""
    include = check_include(include)
    info = ws.dataset(dataset)
    gone = removals(ws, dataset)
    by_source: Counter = Counter()
    by_cluster: Counter = Counter()
    formats: dict[str, Counter] = {source: Counter() for source in SOURCES}
    if "seed" in include:
        if info.rows > len(gone.rows):
            by_source["seed"] = info.rows - len(gone.rows)
        kept = _kept_counts(answer_formats(info.path), gone.rows, len(FORMAT_NAMES))
        formats["seed"].update({FORMAT_NAMES[f]: int(kept[f]) for f in np.flatnonzero(kept)})
        if clusters is not None:
            sizes = _kept_counts(clusters, gone.rows, int(clusters.max(initial=-1)) + 1)
            by_cluster.update({int(c): int(sizes[c]) for c in np.flatnonzero(sizes)})
    if "synthetic" in include:
        for record, prov in curated_records(ws, dataset, include=("synthetic",)):
            by_source[prov["source"]] += 1
            formats[prov["source"]][answer_format(record.response)] += 1
            if prov["cluster"] is not None:
                by_cluster[int(prov["cluster"])] += 1
    return {
        "dataset": dataset,
        "rows": sum(by_source.values()),
        "by_source": dict(by_source),
        "by_cluster": {str(k): v for k, v in sorted(by_cluster.items())},
        "removed": len(gone.rows),
        "removed_by_reason": dict(gone.by_reason),
        "notes": [note] if (note := answer_format_note(formats)) else [],
    }


def _kept_counts(values: np.ndarray, removed_rows: np.ndarray, length: int) -> np.ndarray:
    """How many rows not removed hold each value 0 .. length - 1."""
    values = np.asarray(values)
    return np.bincount(values, minlength=length) - np.bincount(
        values[removed_rows], minlength=length
    )
