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
from core.progress import ProgressFn, no_progress
from core.vendi import unit_rows

_BLOCK = 8192

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


def _nearest(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index, cosine) of each unit row's nearest unit centroid, in blocks of rows."""
    labels = np.empty(len(x), dtype=np.int64)
    best = np.empty(len(x), dtype=np.float32)
    for start in range(0, len(x), _BLOCK):
        sims = x[start : start + _BLOCK] @ centroids.T
        labels[start : start + _BLOCK] = sims.argmax(1)
        best[start : start + _BLOCK] = sims[np.arange(len(sims)), labels[start : start + _BLOCK]]
    return labels, best


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


def spherical_kmeans(
    features: np.ndarray,
    k: float,
    *,
    seed: int = 0,
    iterations: int = 20,
    on_progress: ProgressFn = no_progress,
) -> Clustering:
    """Spherical k-means of the rows of `features` (N x d): cosine assignment, mean-direction
    centroids, k-means++ seeding; the same clusters for the same seed. `k` is a count or a
    fraction of N. An emptied cluster is re-seeded with the row worst served.
    `on_progress(steps done, iterations + 1)`: the seeding, then each iteration."""
    x = unit_rows(features, np.float32)
    n = len(x)
    k = resolve_k(k, n)
    rng = np.random.default_rng(seed)
    on_progress(0, iterations + 1)
    centroids = _seed(x, k, rng)
    on_progress(1, iterations + 1)
    labels, ran = np.full(n, -1), 0
    for ran in range(1, iterations + 1):
        on_progress(ran, iterations + 1)
        new_labels, similarity = _nearest(x, centroids)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
        sums = np.zeros_like(centroids)
        _segment_sum(sums, labels, x)
        empty = np.flatnonzero(np.bincount(labels, minlength=k) == 0)
        if len(empty):
            worst = np.argsort(similarity)[: len(empty)]
            sums[empty] = x[worst]
        centroids = unit_rows(sums, np.float32)
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
    over all clusters). English stop words and markup (LaTeX commands, HTML) are left out."""
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
    from scipy.sparse import csr_matrix

    onehot = csr_matrix(
        (np.ones(len(labels)), (labels, np.arange(len(labels)))), shape=(k, len(labels))
    )
    per_class = np.asarray((onehot @ counts).todense(), dtype=np.float64)
    words_per_class = per_class.sum(1, keepdims=True)
    tf = per_class / np.maximum(words_per_class, 1)
    idf = np.log(1 + words_per_class.mean() / np.maximum(per_class.sum(0), 1))
    scores = tf * idf
    vocab = vectorizer.get_feature_names_out()
    out = []
    for row in scores:
        best = np.argsort(-row)[:top]
        out.append([str(vocab[i]) for i in best if row[i] > 0])
    return out


def representatives(clustering: Clustering, *, per_cluster: int = 3) -> list[list[int]]:
    """The rows nearest each centroid (highest cosine), `per_cluster` of them."""
    order = np.lexsort((-clustering.similarity, clustering.labels))
    starts = np.searchsorted(clustering.labels[order], np.arange(clustering.k))
    ends = np.searchsorted(clustering.labels[order], np.arange(clustering.k), side="right")
    return [order[s : min(e, s + per_cluster)].tolist() for s, e in zip(starts, ends, strict=True)]
