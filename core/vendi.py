"""G-Vendi and the Vendi family from features (docs/method.md section 2, steps 5-6).

Rows phi_i are unit-normalised to u_i; S = sum_i w_i u_i u_i^T / sum_i w_i (d x d; plain
mean without weights) has the same non-zero eigenvalues as the cosine kernel K / N, and
they sum to 1. The order-q Vendi score is exp(Renyi entropy of order q) of those
eigenvalues; q = 1 (Shannon) is G-Vendi: the effective number of distinct gradient
directions, from 1 (all parallel) to min(N, d).

S is accumulated chunk by chunk in float64 (memory d x d, whatever N), then one
eigendecomposition gives every order q. All functions take a matrix (N x d), or, where
noted, an iterable of row chunks or a RowSource (core/rows.py: a feature set on disk, read
block by block or gathered by row, so that memory stays bounded whatever N).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from core.progress import ProgressFn, no_progress, parts
from core.rows import BLOCK, RowSource, batches, by_label, rows_of, unit_rows

ORDERS = (0.5, 1.0, 2.0, float("inf"))
GROUP_ROWS = 32_768  # a set of rows up to this size is scored in memory; a larger one streamed
GATHER_ROWS = 65_536  # rows of several small groups gathered at once
EXACT_BOOTSTRAP_ROWS = 20_000  # up to this many rows the bootstrap resamples rows ...
BOOTSTRAP_BYTES = 2**30  # ... beyond, blocks of rows, their d x d moments taking this much
BOOTSTRAP_BLOCKS = (16, 256)  # the fewest and the most blocks


class SecondMoment:
    """S = sum_i w_i u_i u_i^T / sum_i w_i over row chunks added one at a time.

    Each block of rows is multiplied in the input's precision (float32 for float16/32
    features, float64 for float64) and added to a float64 sum, in blocks of `BLOCK` rows so
    that memory stays small whatever the chunk size.
    """

    BLOCK = 4096

    def __init__(self, dim: int):
        self.sum = np.zeros((dim, dim))
        self.weight = 0.0
        self.rows = 0

    def add(self, chunk: np.ndarray, weights: np.ndarray | None = None) -> None:
        dtype = np.float64 if np.asarray(chunk).dtype == np.float64 else np.float32
        for start in range(0, len(chunk), self.BLOCK):
            u = unit_rows(chunk[start : start + self.BLOCK], dtype)
            if weights is not None:
                w = np.asarray(weights[start : start + self.BLOCK], dtype=np.float64)
                self.weight += float(w.sum())
                u = u * np.sqrt(w).astype(dtype)[:, None]
            else:
                self.weight += len(u)
            self.rows += len(u)
            self.sum += u.T @ u

    @property
    def matrix(self) -> np.ndarray:
        return self.sum / self.weight

    def eigen(self) -> tuple[np.ndarray, np.ndarray]:
        """(eigenvalues, eigenvectors as columns) of S, eigenvalues descending, summing to 1."""
        values, vectors = np.linalg.eigh(self.matrix)
        values = np.clip(values[::-1], 0.0, None)
        return values / values.sum(), vectors[:, ::-1]


def vendi(eigenvalues: np.ndarray, q: float = 1.0) -> float:
    """exp of the order-q Renyi entropy of a spectrum (normalised to sum 1).

    q = 1: Shannon (G-Vendi); q = inf: 1 / largest eigenvalue; q = 0: the number of
    non-zero eigenvalues.
    """
    p = np.asarray(eigenvalues, dtype=np.float64)
    p = p[p > 0]
    p = p / p.sum()
    if q == 1:
        return float(np.exp(-np.sum(p * np.log(p))))
    if np.isinf(q):
        return float(1.0 / p.max())
    if q == 0:
        return float(len(p))
    log_p = np.log(p)  # log-sum-exp keeps large q from underflowing
    top = log_p.max()
    return float(np.exp((q * top + np.log(np.sum(np.exp(q * (log_p - top))))) / (1 - q)))


def _chunks(features: np.ndarray | Iterable[np.ndarray], rows: int = 16384) -> Iterator[np.ndarray]:
    if isinstance(features, np.ndarray):
        for start in range(0, len(features), rows):
            yield features[start : start + rows]
    else:
        yield from features


def spectrum(
    features: np.ndarray | Iterable[np.ndarray],
    weights: np.ndarray | None = None,
    *,
    rows: int | None = None,
    on_progress: ProgressFn = no_progress,
) -> SecondMoment:
    """The second moment of a matrix or of streamed chunks (weights only with a matrix).
    `on_progress(rows done, rows)` after each chunk; `rows` is the total of streamed chunks."""
    moment = None
    offset = 0
    total = len(features) if isinstance(features, np.ndarray) else rows
    for chunk in _chunks(features):
        if moment is None:
            moment = SecondMoment(chunk.shape[1])
        w = None if weights is None else weights[offset : offset + len(chunk)]
        moment.add(chunk, w)
        offset += len(chunk)
        on_progress(offset, total)
    if moment is None or moment.weight <= 0:
        raise ValueError("no rows with weight: G-Vendi needs at least one sample")
    return moment


def g_vendi(
    features: np.ndarray | Iterable[np.ndarray], q: float = 1.0, weights: np.ndarray | None = None
) -> float:
    """G-Vendi (q = 1) or another order of a matrix or of streamed chunks."""
    return vendi(spectrum(features, weights).eigen()[0], q)


def vendi_family(eigenvalues: np.ndarray, orders: Iterable[float] = ORDERS) -> dict[float, float]:
    return {q: vendi(eigenvalues, q) for q in orders}


def _gram_eigenvalues(u: np.ndarray) -> np.ndarray:
    """Eigenvalues (ascending, clipped at 0, not normalised) of u^T u (d x d), through the
    smaller of the two forms with the same non-zero spectrum: u u^T (N x N) when N < d."""
    small = u @ u.T if len(u) < u.shape[1] else u.T @ u
    return np.clip(np.linalg.eigvalsh(small), 0.0, None)


def kernel_eigenvalues(features: np.ndarray) -> np.ndarray:
    """The spectrum of a matrix in memory, descending, summing to 1 (the cosine kernel's
    eigenvalues / N; computed through the smaller form, see `_gram_eigenvalues`)."""
    values = _gram_eigenvalues(unit_rows(features))[::-1]
    return values / values.sum()


def _rows_spectrum(source: RowSource, rows: np.ndarray) -> SecondMoment:
    """The second moment of the rows at these indices (sorted first), gathered in blocks."""
    rows = np.sort(rows)
    return spectrum(
        source.take(rows[start : start + BLOCK]) for start in range(0, len(rows), BLOCK)
    )


def rows_score(source: RowSource, rows: np.ndarray, q: float = 1.0) -> float:
    """The order-q Vendi score of the rows at these indices: from the rows in memory (the
    kernel's spectrum, `kernel_eigenvalues`) up to GROUP_ROWS, streamed beyond."""
    if len(rows) <= GROUP_ROWS:
        return vendi(kernel_eigenvalues(source.take(rows)), q)
    return vendi(_rows_spectrum(source, rows).eigen()[0], q)


def score_with(
    source: np.ndarray | RowSource, rows: np.ndarray, extra: np.ndarray, q: float = 1.0
) -> float:
    """The order-q Vendi score of the rows of `source` at these indices together with the
    rows of `extra` (a matrix, d columns): in memory up to GROUP_ROWS rows in all, else the
    indexed rows' second moment streamed and `extra` added to it."""
    source, rows = rows_of(source), np.asarray(rows, dtype=np.int64)
    if not len(rows):
        return vendi(kernel_eigenvalues(extra), q)
    if len(rows) + len(extra) <= GROUP_ROWS:
        return vendi(kernel_eigenvalues(np.vstack([source.take(np.sort(rows)), extra])), q)
    return vendi(with_rows(_rows_spectrum(source, rows), extra).eigen()[0], q)


def with_rows(moment: SecondMoment, extra: np.ndarray) -> SecondMoment:
    """A copy of an unweighted second moment with the rows of `extra` added (weight 1 each)."""
    out = SecondMoment(moment.sum.shape[0])
    out.sum, out.weight, out.rows = moment.sum.copy(), moment.weight, moment.rows
    out.add(extra)
    return out


def swapped(
    source: np.ndarray | RowSource,
    moment: SecondMoment,
    extra: np.ndarray,
    *,
    repeats: int = 5,
    q: float = 1.0,
    seed: int = 0,
) -> tuple[float, float]:
    """The order-q Vendi score of the N rows of `source` (`moment`: their unweighted second
    moment, `spectrum`) with k random rows taken out and the k rows of `extra` put in their
    place, as (mean, standard deviation) over `repeats` seeded draws of the rows taken
    out. The set keeps its N rows, so against the score of `source` itself (the same N - k
    rows plus the k taken out) it compares the k rows of `extra` with k rows of the data at
    an equal size. Each draw costs one gather of k rows and one d x d eigendecomposition."""
    source = rows_of(source)
    k, n = len(extra), source.rows
    if not 0 < k < n:
        raise ValueError(f"swapping {k} rows needs between 1 and {n - 1} of them")
    added = with_rows(SecondMoment(moment.sum.shape[0]), extra).sum
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(repeats):
        out = unit_rows(source.take(np.sort(rng.choice(n, k, replace=False))), np.float32)
        s = (moment.sum - (out.T @ out).astype(np.float64) + added) / moment.weight
        scores.append(vendi(np.clip(np.linalg.eigvalsh(s), 0.0, None), q))
    return float(np.mean(scores)), float(np.std(scores))


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    level: float
    replicates: int
    blocks: int | None = None  # resampled blocks of rows (None: rows were resampled)


def bootstrap(
    features: np.ndarray | RowSource,
    *,
    q: float = 1.0,
    replicates: int = 100,
    level: float = 0.95,
    seed: int = 0,
    on_progress: ProgressFn = no_progress,
) -> Interval:
    """A bootstrap interval, the replicates' percentile interval re-centred on the
    full-data estimate. `on_progress(done, total)` as the work goes.

    Up to EXACT_BOOTSTRAP_ROWS rows, rows are resampled with replacement (as multinomial
    weights). Beyond, a block bootstrap in one pass over the data: the rows are dealt at
    random into B equal blocks (B from BOOTSTRAP_BLOCKS, as many as BOOTSTRAP_BYTES of
    d x d moments allow: 128 at d = 1024), each block's second moment is summed once, and
    each replicate resamples B blocks with replacement, its spectrum that of the weighted
    sum of their moments (no pass over the rows). Random blocks of n / B rows have the
    variance of n / B rows, so resampling B of them gives the spread of resampling n rows
    to first order, at the cost of one G-Vendi plus one d x d eigendecomposition per
    replicate."""
    source = rows_of(features)
    n = source.rows
    rng = np.random.default_rng(seed)
    if n > EXACT_BOOTSTRAP_ROWS:
        return _block_bootstrap(source, rng, q, replicates, level, on_progress)
    u = unit_rows(features if isinstance(features, np.ndarray) else source.take(np.arange(n)))
    scores = []
    for done in range(1, replicates + 1):
        counts = rng.multinomial(n, np.full(n, 1.0 / n)).astype(np.float64)
        scores.append(vendi(_gram_eigenvalues(u * np.sqrt(counts)[:, None]), q))
        on_progress(done, replicates)
    # Resampling with replacement duplicates rows, which pulls every replicate's score down;
    # so the percentile interval is re-centred on the estimate: it reports the spread only.
    return _interval(scores, vendi(kernel_eigenvalues(u), q), level)


def _interval(
    scores: list[float], estimate: float, level: float, blocks: int | None = None
) -> Interval:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(scores, [tail, 100 - tail]) + (estimate - np.mean(scores))
    return Interval(float(low), float(high), level, len(scores), blocks)


def _block_bootstrap(
    source: RowSource,
    rng: np.random.Generator,
    q: float,
    replicates: int,
    level: float,
    on_progress: ProgressFn,
) -> Interval:
    """`bootstrap` beyond EXACT_BOOTSTRAP_ROWS rows: resampled blocks of rows."""
    n, d = source.rows, source.dim
    low, high = BOOTSTRAP_BLOCKS
    blocks = int(min(high, max(low, BOOTSTRAP_BYTES // (8 * d * d)), n))
    summed, resampled = parts(on_progress, [n, replicates * d * d / 4])
    _, order, starts = by_label(rng.permutation(n) % blocks)
    moments = np.empty((blocks, d, d))
    sizes = np.diff(starts).astype(np.float64)
    for b in range(blocks):
        moments[b] = _rows_spectrum(source, order[starts[b] : starts[b + 1]]).sum
        summed(int(starts[b + 1]), n)
    total = moments.sum(0) / sizes.sum()
    values = np.clip(np.linalg.eigvalsh(total), 0.0, None)
    scores = []
    for done in range(1, replicates + 1):
        counts = rng.multinomial(blocks, np.full(blocks, 1.0 / blocks)).astype(np.float64)
        resample = np.tensordot(counts, moments, 1) / (counts @ sizes)
        scores.append(vendi(np.clip(np.linalg.eigvalsh(resample), 0.0, None), q))
        resampled(done, replicates)
    return _interval(scores, vendi(values, q), level, blocks)


def per_group(
    features: np.ndarray | RowSource,
    labels: np.ndarray,
    q: float = 1.0,
    on_progress: ProgressFn = no_progress,
) -> list[dict[str, object]]:
    """G-Vendi of each group of rows (e.g. a cluster, a source, a topic), largest group first.
    Small groups are gathered several at a time and each scored from its rows in memory; a
    group of more than GROUP_ROWS rows is streamed. `on_progress(groups done, groups)`."""
    source = rows_of(features)
    groups, order, starts = by_label(labels)
    out = []
    for first, end in batches(starts, GATHER_ROWS, alone=GROUP_ROWS):
        lo, hi = starts[first], starts[end]
        if end - first == 1 and hi - lo > GROUP_ROWS:  # one large group
            scores = [rows_score(source, order[lo:hi], q)]
        else:
            gathered = source.take(order[lo:hi])
            scores = [
                vendi(kernel_eigenvalues(gathered[starts[g] - lo : starts[g + 1] - lo]), q)
                for g in range(first, end)
            ]
        for g, score in zip(range(first, end), scores, strict=True):
            label = groups[g]
            out.append(
                {
                    "group": label.item() if hasattr(label, "item") else label,
                    "rows": int(starts[g + 1] - starts[g]),
                    "g_vendi": score,
                }
            )
        on_progress(end, len(groups))
    return sorted(out, key=lambda g: (-g["rows"], str(g["group"])))


def marginal_values(
    features: np.ndarray | Iterable[np.ndarray],
    moment: SecondMoment | None = None,
    *,
    probes: int = 16,
    on_progress: ProgressFn = no_progress,
) -> np.ndarray:
    """How much G-Vendi drops when each sample is left out; the lowest are the most redundant.

    A documented approximation of leave-one-out, in one pass over the rows. First order:
    removing u_i moves eigenvalue k from lambda_k to (N lambda_k - c_ik^2) / (N - 1), with
    c_ik = <v_k, u_i>, so the entropy changes by dH_i = (H + sum_k c_ik^2 log lambda_k) / (N - 1)
    and the drop is G-Vendi * (1 - exp(dH_i)). Its ranking matches exact leave-one-out; its
    scale is off by O(d / N) and it misses the drop every sample shares (the score's change
    from N to N - 1 rows). Both are corrected by an affine fit to the exact drops of `probes`
    rows spread over the first chunk (one rank-one downdate of S each). Negative: the score
    would rise without the sample. `on_progress(done, total)` after each probe and each chunk,
    in units of one row's work (a probe's eigendecomposition counts as d rows).
    """
    if moment is None:
        if not isinstance(features, np.ndarray):
            raise ValueError("pass the second moment when the features are streamed")
        moment = spectrum(features)
    values, vectors = moment.eigen()
    n = moment.rows
    if n < 2:
        return np.zeros(n)
    positive = values > 1e-12
    log_values = np.where(positive, np.log(np.where(positive, values, 1.0)), 0.0)
    entropy = -np.sum(values[positive] * log_values[positive])
    score = float(np.exp(entropy))
    dim = len(values)
    total = n + min(probes, n) * dim
    done = 0
    out, approx, exact = [], [], []
    for chunk in _chunks(features):
        u = unit_rows(chunk)
        delta_h = (entropy + (u @ vectors) ** 2 @ log_values) / (n - 1)
        drops = score * (1 - np.exp(delta_h))
        if not exact:
            for i in np.unique(np.linspace(0, len(u) - 1, min(probes, len(u))).astype(int)):
                without = (moment.sum - np.outer(u[i], u[i])) / (moment.weight - 1)
                exact.append(score - vendi(np.clip(np.linalg.eigvalsh(without), 0, None)))
                approx.append(drops[i])
                done += dim
                on_progress(done, total)
        out.append(drops)
        done += len(u)
        on_progress(min(done, total), total)
    on_progress(total, total)
    drops = np.concatenate(out)
    if len(exact) >= 3 and np.ptp(approx) > 0:
        slope, intercept = np.polyfit(approx, exact, 1)
        return slope * drops + intercept
    return drops + float(np.mean(np.subtract(exact, approx)))


def leave_one_out(features: np.ndarray, q: float = 1.0) -> np.ndarray:
    """Exact leave-one-out drops, one eigendecomposition per sample (for tests, small N)."""
    full = vendi(kernel_eigenvalues(features), q)
    return np.array(
        [
            full - vendi(kernel_eigenvalues(np.delete(features, i, 0)), q)
            for i in range(len(features))
        ]
    )


def equal_size(
    matrices: dict[str, np.ndarray | RowSource],
    *,
    size: int | None = None,
    repeats: int = 5,
    q: float = 1.0,
    seed: int = 0,
    on_progress: ProgressFn = no_progress,
) -> dict[str, tuple[float, float]]:
    """G-Vendi of each dataset (a matrix or a RowSource) on random subsamples of one size
    (default: the smallest dataset's), as (mean, standard deviation) over `repeats` draws.
    G-Vendi grows with N, so only equal sizes compare fairly (the paper's controlled
    setting). `on_progress(draws done, draws)` after each draw."""
    sources = {name: rows_of(m) for name, m in matrices.items()}
    size = size or min(s.rows for s in sources.values())
    rng = np.random.default_rng(seed)
    out = {}
    draws = len(sources) * repeats
    for i, (name, source) in enumerate(sources.items()):
        scores = []
        for r in range(repeats):
            scores.append(rows_score(source, rng.choice(source.rows, size, replace=False), q))
            on_progress(i * repeats + r + 1, draws)
        out[name] = (float(np.mean(scores)), float(np.std(scores)))
    return out
