"""The decisions of the synthesis loop, pure: no server, no workspace, no files.

- `Pool`: the seed samples and those accepted so far (unit features, texts, ids).
- `choose_targets`: which clusters a round generates for, which accept, how many each.
- `plan_requests`: the round's generation requests, each with its seeded exemplars.
- `decide` / `judge`: the acceptance policy; a candidate's features and the clusters in,
  a decision and its reason out.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import OutOfRange
from core.prompts import generation_prompt, normalise_text
from core.regions import sparse_clusters
from core.rows import RowSource, unit_blocks

if TYPE_CHECKING:
    from core.synthesis import SynthesisSettings

OVERGENERATE = 2  # problems asked for per sample wanted: many are rejected on the way
MIN_GROWTH = 64  # rows a full Pool grows by at least
# A run's pool is allocated with room for this many times its target: a round's accepted
# samples are all kept, so a run can end above its target, but not by that much; beyond,
# the pool grows by a copy of itself.
POOL_ROOM = 4
POOL_BLOCK = 65_536  # pool rows compared with a round's candidates at once


class Pool:
    """The seed samples and the ones accepted so far: unit feature rows (float32), texts,
    ids, and the texts normalised (for duplicate checks). The rows live in a buffer with
    room to spare (allocated with the pool for what a run may add), so adding a sample
    writes one row instead of copying the pool."""

    def __init__(self, features: np.ndarray, texts: list[str], ids: list[str], *, room: int = 0):
        """A pool of these unit rows, with `room` more rows allocated for what is added."""
        self._buffer = np.empty((len(features) + room, features.shape[1]), dtype=np.float32)
        self._buffer[: len(features)] = features
        self.size = self.n_seed = len(features)
        self.texts, self.ids = list(texts), list(ids)
        self.normalised = {normalise_text(t) for t in texts}

    @classmethod
    def of_rows(cls, source: RowSource, texts: list[str], ids: list[str], *, room: int = 0) -> Pool:
        """A pool of the rows of `source` unit-normalised (a feature set on disk: filled
        block by block, so the pool is the only copy in memory), with `room` to add."""
        pool = cls(np.empty((0, source.dim), dtype=np.float32), texts, ids, room=source.rows + room)
        for start, block in unit_blocks(source):
            pool._buffer[start : start + len(block)] = block
        pool.size = pool.n_seed = source.rows
        return pool

    @property
    def features(self) -> np.ndarray:
        """The pool's rows (a view: valid until the next add)."""
        return self._buffer[: self.size]

    @property
    def capacity(self) -> int:
        return len(self._buffer)

    def reserve(self, extra: int) -> None:
        """Make room for `extra` more rows (one copy now, none in the adds that follow)."""
        if self.size + extra > self.capacity:
            grown = np.empty((self.size + extra, self._buffer.shape[1]), dtype=np.float32)
            grown[: self.size] = self.features
            self._buffer = grown

    def add(self, vector: np.ndarray, text: str, sample_id: str) -> None:
        if self.size == self.capacity:  # grows geometrically in what was added
            self.reserve(max(MIN_GROWTH, self.size - self.n_seed))
        self._buffer[self.size] = vector
        self.size += 1
        self.texts.append(text)
        self.ids.append(sample_id)
        self.normalised.add(normalise_text(text))


# --- targets ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Targets:
    order: list[int]  # the clusters to generate for, the thinnest first
    accepting: set[int]  # the clusters where a new sample may land
    room: dict[int, int]  # how many samples each accepting cluster takes this round


def check_clusters(clusters: tuple[int, ...], k: int) -> None:
    """OutOfRange unless every cluster id is one of a map of `k` clusters."""
    bad = [c for c in clusters if not 0 <= c < k]
    if bad:
        raise OutOfRange(
            "clusters", f"{bad[0]} is not a cluster of the map: it has clusters 0 to {k - 1}"
        )


def choose_targets(
    labels: np.ndarray,
    *,
    mode: str,
    sparse_below: float,
    cap: int | None,
    target_rows: set[int],
    n_seed: int,
) -> Targets:
    """The round's targets from the pool's cluster labels (seed rows first, then accepted
    samples). Auto mode: the clusters below the `sparse_below` percentile of sizes, each
    with room up to that size. Targeted mode: the clusters whose members are at least half
    in the target region (`target_rows` of the seed, and every accepted sample), else the
    one with the largest share; no room limit. `cap` bounds each cluster's room."""
    sizes = np.bincount(labels, minlength=int(labels.max()) + 1)
    if mode == "auto":
        threshold = np.percentile(sizes, sparse_below)
        accepting = set(np.flatnonzero(sparse_clusters(sizes, sparse_below)).tolist())
        room = {c: math.ceil(threshold - sizes[c]) for c in accepting}
    else:
        in_target = np.zeros(len(labels), dtype=bool)
        in_target[[r for r in target_rows if r < len(labels)]] = True
        in_target[n_seed:] = True  # what this run accepted lies in the target region
        share = np.bincount(labels, weights=in_target, minlength=len(sizes)) / np.maximum(sizes, 1)
        accepting = set(np.flatnonzero(share >= 0.5).tolist()) or {int(np.argmax(share))}
        room = {c: 10**9 for c in accepting}
    if cap:
        room = {c: min(n, cap) for c, n in room.items()}
    return Targets(sorted(accepting, key=lambda c: (sizes[c], c)), accepting, room)


# --- planning the generation requests ----------------------------------------------------------


@dataclass(frozen=True)
class PlannedRequest:
    key: str  # the request's key in the run's log: gen/r<round>/c<cluster>/<index>
    cluster: int
    exemplar_ids: list[str]
    prompt: str


def _rng(*parts: Any) -> random.Random:
    return random.Random(
        hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).hexdigest()
    )


def plan_requests(
    round_no: int,
    targets: list[int],
    labels: np.ndarray,
    pool: Pool,
    *,
    remaining: int,
    target_rows: set[int],
    settings: SynthesisSettings,
    template: str,
) -> list[PlannedRequest]:
    """The round's generation requests: enough for `remaining` samples spread over the
    rounds left (times OVERGENERATE), round-robin over `targets`, each with up to
    `settings.exemplars` members of its cluster (in targeted mode, members in the target
    region when it has some), drawn and shuffled by a seeded generator: the same run plans
    the same requests, which is what lets a resumed run answer them from its log."""
    wanted = math.ceil(remaining / (settings.rounds - round_no + 1)) * OVERGENERATE
    n_requests = max(1, math.ceil(wanted / settings.problems_per_prompt))
    planned = []
    for n in range(n_requests):
        cluster, index = targets[n % len(targets)], n // len(targets)
        members = np.flatnonzero(labels == cluster)
        chosen = list(members)
        if settings.mode == "targeted":
            chosen = [m for m in members if m in target_rows or m >= pool.n_seed] or chosen
        rng = _rng(settings.seed, round_no, cluster, index)
        exemplars = rng.sample(chosen, min(settings.exemplars, len(chosen)))
        rng.shuffle(exemplars)
        prompt = generation_prompt(
            template, [pool.texts[m] for m in exemplars], settings.problems_per_prompt
        )
        planned.append(
            PlannedRequest(
                key=f"gen/r{round_no}/c{cluster}/{index}",
                cluster=cluster,
                exemplar_ids=[pool.ids[m] for m in exemplars],
                prompt=prompt,
            )
        )
    return planned


# --- acceptance ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    status: str  # accepted or rejected
    landed: int  # the cluster whose centroid is nearest
    reason: str | None = None  # why it was rejected
    reason_kind: str | None = None  # the reason's kind (for counting)


def decide(
    text: str,
    vector: np.ndarray,
    pool: Pool,
    centroids: np.ndarray,
    targets: Targets,
    taken: Counter,
    *,
    duplicate_cosine: float,
    mode: str,
    nearest: float | None = None,
) -> Decision:
    """Whether a candidate (its problem text and unit feature vector) joins the pool. It
    lands in the cluster of the nearest centroid; it is rejected as a duplicate (the same
    normalised text as a pool sample, or a cosine above `duplicate_cosine` with one), when
    it landed outside the accepting clusters, or when that cluster's room this round is
    taken (`taken`: accepted this round, by cluster). `nearest`: its highest cosine with
    the pool, when the caller has it (else computed)."""
    landed = int(np.argmax(centroids @ vector))
    if nearest is None:
        nearest = float((pool.features @ vector).max())
    if normalise_text(text) in pool.normalised:
        return Decision(
            "rejected", landed, "duplicate (the same text as an existing sample)", "duplicate"
        )
    if nearest > duplicate_cosine:
        return Decision(
            "rejected",
            landed,
            f"near-duplicate (gradient cosine {nearest:.3f} with an existing sample)",
            "duplicate",
        )
    if landed not in targets.accepting:
        dense, where = (
            ("", "not a target") if mode == "targeted" else ("dense ", "not under-represented")
        )
        return Decision(
            "rejected",
            landed,
            f"landed in {dense}cluster {landed} ({where})",
            "landed in a dense cluster",
        )
    if taken[landed] >= targets.room.get(landed, 0):
        return Decision(
            "rejected",
            landed,
            f"cluster {landed} is full (its room this round is taken)",
            "cluster full",
        )
    return Decision("accepted", landed)


def judge(
    candidates: list[tuple[str, np.ndarray, str]],
    pool: Pool,
    centroids: np.ndarray,
    targets: Targets,
    *,
    duplicate_cosine: float,
    mode: str,
) -> list[Decision]:
    """A round's decisions on its candidates (problem text, unit features, sample id), in
    order: each accepted one joins `pool` before the next is decided. The candidates'
    cosines with the pool as the round starts come from one pass over it (in blocks of
    POOL_BLOCK rows); those with the samples accepted meanwhile are added one by one."""
    if not candidates:
        return []
    pool.reserve(len(candidates))
    vectors = np.stack([vector for _, vector, _ in candidates]).astype(np.float32)
    before = np.full(len(candidates), -np.inf, dtype=np.float32)
    for start in range(0, pool.size, POOL_BLOCK):
        block = pool.features[start : start + POOL_BLOCK] @ vectors.T
        np.maximum(before, block.max(0), out=before)
    started = pool.size
    taken: Counter = Counter()
    decisions = []
    for (text, vector, sample_id), nearest in zip(candidates, before, strict=True):
        if pool.size > started:  # the samples this round accepted so far
            nearest = max(nearest, (pool.features[started:] @ vector).max())
        decision = decide(
            text,
            vector,
            pool,
            centroids,
            targets,
            taken,
            duplicate_cosine=duplicate_cosine,
            mode=mode,
            nearest=float(nearest),
        )
        if decision.status == "accepted":
            taken[decision.landed] += 1
            pool.add(vector, text, sample_id)
        decisions.append(decision)
    return decisions
