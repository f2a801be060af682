"""Regions of the feature space: spherical k-means clusters and which of them are sparse.

docs/method.md section 3, steps 1-2: the pool is clustered in the full gradient space by
spherical k-means (cosine similarity); clusters smaller than a percentile of the cluster
sizes (default the median, the paper's acceptance set) are under-represented.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from core.errors import UserError
from core.progress import ProgressFn, no_progress, parts
from core.rows import RowSource, rows_of, sample, take_unit, unit_blocks, unit_rows

_BLOCK = 8192  # rows per block of cosines to the centroids (fewer with many centroids)
SIMS_BYTES = 256 * 2**20  # the most memory one block of cosines takes
FIT_ROWS = 100_000  # k-means is fitted on at most this many rows (or FIT_PER_CLUSTER * k) ...
FIT_PER_CLUSTER = 20
SAMPLE_TOLERANCE = 1e-3  # ... stopping once fewer than this share of them move

# Markup is not what a cluster is about: LaTeX commands (with their environment names),
# HTML tags and entities are taken out of the text before its words are counted ...
_MARKUP = re.compile(
    r"\\+begin\s*\{(?:array|tabular)\*?\}\s*\{[^}]*\}"  # \begin{array}{cc}: with its columns
    r"|\\+(?:begin|end)\s*\{[^}]*\}"  # \begin{cases}, \end{array}
    r"|\\+[a-zA-Z]+"  # \frac, \mathrm, \left, \\cdot (escaped in JSON)
    r"|</?[a-zA-Z][^<>]*>"  # <a href=...>, </div>
    r"|&[a-zA-Z]+;"  # &nbsp;
)
# ... and command names that turn up without their backslash (lost in a conversion) are
# never keywords; those that are also English words (left, text, array, sum) are kept.
_MARKUP_WORDS = [
    "frac", "dfrac", "tfrac", "cfrac", "mathrm", "mathbf", "mathit", "mathsf", "mathtt",
    "mathcal", "mathbb", "mathfrak", "operatorname", "textbf", "textit", "texttt", "textrm",
    "textsf", "cdot", "cdots", "ldots", "vdots", "ddots", "displaystyle", "qquad", "hline",
    "pmatrix", "bmatrix", "vmatrix", "boxed", "leq", "geq", "neq", "infty", "rightarrow",
    "leftarrow", "nbsp", "href", "http", "https", "www",
]  # fmt: skip
MARKUP_WORDS = frozenset(_MARKUP_WORDS)


@dataclass
class Clustering:
    """Cluster of each row, unit centroids (k x d), and each row's cosine to its centroid."""

    labels: np.ndarray
    centroids: np.ndarray
    similarity: np.ndarray
    iterations: int

    @property
    def k(self) -> int:
        return len(self.centroids)

    def sizes(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.k)


def default_k(rows: int) -> int:
    """Clusters when k is not given: about sqrt(N / 2), at least 2. (The paper's 1% of N
    gives too few clusters to see on small sets; ask for it with k = 0.01.)"""
    return max(2, min(rows, round((rows / 2) ** 0.5)))


def resolve_k(k: float, n: int) -> int:
    """k as given (a count), or a fraction of n (0 < k < 1); at least 1, at most n."""
    if problem := k_problem(k):
        raise UserError(f"k (clusters) {problem}")
    value = round(k * n) if k < 1 else int(k)
    return max(1, min(value, n))


def k_problem(k: float) -> str | None:
    """Why `k` cannot be a number of clusters ("must be ..."), or None: it must be a fraction
    of the rows (0 < k < 1) or a whole count of at least 2."""
    if math.isfinite(k) and (0 < k < 1 or (k >= 2 and float(k).is_integer())):
        return None
    shown = int(k) if math.isfinite(k) and float(k).is_integer() else k
    return f"must be a fraction of the rows between 0 and 1 or a whole count of at least 2, not {shown}"


def _block_rows(k: int) -> int:
    """Rows per block of row-to-centroid cosines, so that a block takes at most SIMS_BYTES."""
    return max(256, min(_BLOCK, SIMS_BYTES // (4 * max(k, 1))))


def _nearest(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index, cosine) of each unit row's nearest unit centroid, in blocks of rows."""
    labels = np.empty(len(x), dtype=np.int64)
    best = np.empty(len(x), dtype=np.float32)
    block = _block_rows(len(centroids))
    for start in range(0, len(x), block):
        sims = x[start : start + block] @ centroids.T
        labels[start : start + block] = sims.argmax(1)
        best[start : start + block] = sims[np.arange(len(sims)), labels[start : start + block]]
    return labels, best


def nearest(
    features: np.ndarray | RowSource,
    centroids: np.ndarray,
    *,
    top: int = 1,
    on_progress: ProgressFn = no_progress,
) -> tuple[np.ndarray, np.ndarray]:
    """The `top` (1 or 2) nearest unit centroids of every row (cosine), streamed in blocks:
    (N indices, N cosines) for top 1, N x 2 of each for top 2 (nearest first; with one
    centroid the second is -1 with cosine -inf). `on_progress(rows done, N)`."""
    source = rows_of(features)
    n, k = source.rows, len(centroids)
    labels = np.empty((n, top), dtype=np.int64)
    best = np.empty((n, top), dtype=np.float32)
    on_progress(0, n)
    for start, x in unit_blocks(source, _block_rows(k)):
        sims = x @ centroids.T
        rows = np.arange(len(sims))
        for t in range(top):
            pick = sims.argmax(1) if k > t else np.full(len(sims), -1)
            labels[start : start + len(x), t] = pick
            best[start : start + len(x), t] = sims[rows, pick] if k > t else -np.inf
            if t + 1 < top and k > t:
                sims[rows, pick] = -np.inf
        on_progress(start + len(x), n)
    return (labels[:, 0], best[:, 0]) if top == 1 else (labels, best)


def _seed(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeding: rows are drawn with probability proportional to their
    squared distance (2 - 2 cos) to the nearest chosen centroid; of 2 + log k such draws the
    one that lowers the total distance most is kept. For large k (over 64) each round keeps
    k / 64 plain draws instead, which bounds seeding to ~64 passes over the rows."""
    batch = max(1, k // 64)
    trials = 2 + int(np.log(k)) if batch == 1 else batch
    chosen = [int(rng.integers(len(x)))]
    closest = x @ x[chosen[0]]
    while len(chosen) < k:
        d2 = np.clip(2 - 2 * closest, 0, None).astype(np.float64)
        total = d2.sum()
        if total <= 0:  # every row sits on a centroid already: take any unused rows
            rest = np.setdiff1d(np.arange(len(x)), chosen)
            if not len(rest):
                break
            picks = rng.choice(rest, min(batch, len(rest), k - len(chosen)), replace=False)
        else:
            draws = rng.choice(
                len(x), min(trials, k - len(chosen)) if batch > 1 else trials, p=d2 / total
            )
            if batch == 1:
                candidates = np.maximum(closest[:, None], x @ x[draws].T)
                draws = draws[[int(np.argmin((2 - 2 * candidates).sum(0)))]]
            picks = np.unique(draws)
        chosen.extend(int(p) for p in picks)
        closest = np.maximum(closest, (x @ x[picks].T).max(1))
    return x[chosen[:k]].copy()


def fit_rows_for(k: int) -> int:
    """The rows k-means with k clusters is fitted on: FIT_ROWS, or FIT_PER_CLUSTER per
    cluster when that is more. A larger dataset is fitted on a seeded sample of that many
    rows, and every row is then assigned to its nearest centroid."""
    return max(FIT_ROWS, FIT_PER_CLUSTER * k)


def spherical_kmeans(
    features: np.ndarray | RowSource,
    k: float,
    *,
    seed: int = 0,
    iterations: int = 20,
    fit_rows: int | None = None,
    on_progress: ProgressFn = no_progress,
) -> Clustering:
    """Spherical k-means of the rows of `features` (N x d, in memory or a RowSource such as
    a feature set on disk): cosine assignment, mean-direction centroids, k-means++ seeding;
    the same clusters for the same seed. `k` is a count or a fraction of N. An emptied
    cluster is re-seeded with the row worst served.

    Up to `fit_rows` rows (default `fit_rows_for(k)`) all rows are clustered together, and
    `on_progress(steps done, iterations + 1)` reports the seeding, then each iteration.
    Beyond, the centroids are fitted on a seeded sample of `fit_rows` rows (stopping once
    fewer than SAMPLE_TOLERANCE of them change cluster), then every row is assigned to its
    nearest centroid in one streamed pass; `on_progress(steps, STEPS)` covers both."""
    source = rows_of(features)
    n = source.rows
    k = resolve_k(k, n)
    fit_rows = fit_rows or fit_rows_for(k)
    if n <= fit_rows:
        x = (
            unit_rows(features, np.float32)
            if isinstance(features, np.ndarray)
            else take_unit(source, np.arange(n))
        )
        return _lloyd(x, k, np.random.default_rng(seed), iterations, on_progress)
    fitting, assigning = parts(on_progress, [iterations * fit_rows, n])
    x = take_unit(source, sample(n, fit_rows, seed))
    fitted = _lloyd(
        x, k, np.random.default_rng(seed), iterations, fitting, tolerance=SAMPLE_TOLERANCE
    )
    del x
    labels, similarity = nearest(source, fitted.centroids, on_progress=assigning)
    return Clustering(labels, fitted.centroids, similarity, fitted.iterations)


def _lloyd(
    x: np.ndarray,
    k: int,
    rng: np.random.Generator,
    iterations: int,
    on_progress: ProgressFn,
    *,
    tolerance: float = 0.0,
) -> Clustering:
    """Spherical k-means of unit rows `x` in memory: seeding, then up to `iterations`
    assignment-update steps, stopping when no row (or at most `tolerance` of them) moves."""
    n = len(x)
    on_progress(0, iterations + 1)
    centroids = _seed(x, k, rng)
    on_progress(1, iterations + 1)
    labels, ran = np.full(n, -1), 0
    for ran in range(1, iterations + 1):
        on_progress(ran, iterations + 1)
        new_labels, similarity = _nearest(x, centroids)
        moved = int(np.count_nonzero(new_labels != labels))
        if moved == 0:
            break
        labels = new_labels
        sums = np.zeros_like(centroids)
        _segment_sum(sums, labels, x)
        empty = np.flatnonzero(np.bincount(labels, minlength=k) == 0)
        if len(empty):
            worst = np.argsort(similarity)[: len(empty)]
            sums[empty] = x[worst]
        centroids = unit_rows(sums, np.float32)
        if moved <= tolerance * n:
            break
    labels, similarity = _nearest(x, centroids)
    on_progress(iterations + 1, iterations + 1)
    return Clustering(labels, centroids, similarity, ran)


def _segment_sum(out: np.ndarray, labels: np.ndarray, x: np.ndarray) -> None:
    """out[j] += sum of rows of x labelled j, through one sparse matrix product."""
    from scipy.sparse import csr_matrix

    onehot = csr_matrix(
        (np.ones(len(x), dtype=x.dtype), (labels, np.arange(len(x)))), shape=(len(out), len(x))
    )
    out += onehot @ x


def sparse_clusters(sizes: np.ndarray, percentile: float = 50.0) -> np.ndarray:
    """True for clusters whose size is below the given percentile of cluster sizes
    (default the median: the paper's acceptance set)."""
    sizes = np.asarray(sizes)
    return sizes < np.percentile(sizes, percentile)


def keywords(texts: list[str], labels: np.ndarray, k: int, *, top: int = 6) -> list[list[str]]:
    """The top words of each cluster by class-based TF-IDF (BERTopic's c-TF-IDF): a word's
    share of the cluster's words times log(1 + mean words per cluster / the word's count
    over all clusters). English stop words and markup (LaTeX commands, HTML) are left out.
    Kept sparse (clusters x words), so 10,000 clusters cost what their words do."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

    vectorizer = CountVectorizer(
        stop_words=sorted(ENGLISH_STOP_WORDS | MARKUP_WORDS),
        token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b",
        lowercase=True,
    )
    try:
        counts = vectorizer.fit_transform(_MARKUP.sub(" ", t) for t in texts)
    except ValueError:  # no words at all (numbers or symbols only)
        return [[] for _ in range(k)]
    from scipy.sparse import csr_matrix, diags

    onehot = csr_matrix(
        (np.ones(len(labels)), (labels, np.arange(len(labels)))), shape=(k, len(labels))
    )
    per_class = csr_matrix(onehot @ counts, dtype=np.float64)  # k x words, kept sparse
    words_per_class = np.asarray(per_class.sum(1)).ravel()
    idf = np.log(1 + words_per_class.mean() / np.maximum(np.asarray(per_class.sum(0)).ravel(), 1))
    scores = csr_matrix(diags(1 / np.maximum(words_per_class, 1)) @ per_class @ diags(idf))
    vocab = vectorizer.get_feature_names_out()
    out = []
    for c in range(k):
        row = slice(scores.indptr[c], scores.indptr[c + 1])
        values, words = scores.data[row], scores.indices[row]
        best = np.lexsort((words, -values))[:top]  # highest first; ties by the word's order
        out.append([str(vocab[words[i]]) for i in best if values[i] > 0])
    return out


def representatives(clustering: Clustering, *, per_cluster: int = 3) -> list[list[int]]:
    """The rows nearest each centroid (highest cosine), `per_cluster` of them."""
    order = np.lexsort((-clustering.similarity, clustering.labels))
    starts = np.searchsorted(clustering.labels[order], np.arange(clustering.k))
    ends = np.searchsorted(clustering.labels[order], np.arange(clustering.k), side="right")
    return [order[s : min(e, s + per_cluster)].tolist() for s, e in zip(starts, ends, strict=True)]
