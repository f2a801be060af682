"""Keep the N most diverse rows: a subset chosen to maximise G-Vendi (issue 15, part 1).

G-Vendi is exp(entropy) of the spectrum of S = mean of u_i u_i^T over the unit rows u_i
(core/vendi.py). For a fixed number of unit rows the trace of their sum is fixed, so a
flatter spectrum means both a higher entropy and a higher log det; the greedy method
maximises the log det of A = eps I + sum_{chosen} u u^T (d x d), which is monotone
submodular: adding u gains log(1 + u^T A^-1 u), and that gain only shrinks as A grows.

It scales by stochastic greedy in rounds: each round draws a random pool of unchosen rows
(all of them while they are at most WHOLE_POOL: then it is plain greedy),
scores them against A^-1 in one matrix product, then picks `batch` rows from the pool one at
a time, each pick the pool's largest gain, the others' gains updated exactly after each pick
(Sherman-Morrison: gain_x -= (x^T A^-1 u)^2 / (1 + gain_u)). Within a round A^-1 is kept as
the round's first inverse minus the picks' rank-one terms, so a pick costs one product of
the pool with a d-vector (on one thread: a matrix-vector product gains nothing from more,
and loses much on a busy machine) and no d x d update. Between rounds A^-1 takes the
round's terms at once, and every REFRESH rounds it is computed afresh from A, so rounding
does not build up. Memory: the pool (pool x d float32, twice) and three d x d matrices,
whatever N. Deterministic for a seed; a row is never chosen twice.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING, Any

import numpy as np
from threadpoolctl import threadpool_limits

from core.config import SELECTION_METHODS, Runtime
from core.errors import UserError
from core.progress import ProgressFn, no_progress, parts
from core.rows import RowSource, Subset, rows_of, take_unit
from core.vendi import rows_score

if TYPE_CHECKING:
    from core.workspace import Workspace

BATCH = 256  # rows picked from one pool before a new pool is drawn
POOL_FACTOR_MAX = 16  # at most this many pool rows per pick (bench/select_diverse.py)
WHOLE_POOL = 8192  # up to this many rows left, the pool is all of them (plain greedy)
REFRESH = 16  # rounds between two inversions of A (between them, A^-1 is updated)
EPSILON = 0.01  # the stochastic-greedy tolerance: pool per pick ~ (N / size) ln(1 / EPSILON)


def greedy_rows(
    features: np.ndarray | RowSource,
    size: int,
    *,
    seed: int = 0,
    ridge: float = 1.0,
    batch: int = BATCH,
    on_progress: ProgressFn = no_progress,
) -> np.ndarray:
    """`size` distinct row indices (in the order chosen) that greedily maximise
    log det(ridge I + sum u u^T) over the unit rows u: see the module docstring.
    `ridge` (in units of one unit row's contribution) keeps A invertible before d rows are
    chosen. `on_progress(rows chosen, size)` after each round."""
    source = rows_of(features)
    n, d = source.rows, source.dim
    if not 1 <= size <= n:
        raise UserError(f"the selection size must be between 1 and {n} (the rows)")
    rng = np.random.default_rng(seed)
    per_pick = min(POOL_FACTOR_MAX, max(1, math.ceil(n / size * math.log(1 / EPSILON))))
    a = np.eye(d) * ridge
    a_inv = np.eye(d) / ridge
    taken = np.zeros(n, dtype=bool)
    chosen: list[int] = []
    for round_ in itertools.count():
        if len(chosen) >= size:
            break
        picks = min(batch, size - len(chosen))
        free = np.flatnonzero(~taken)
        whole = len(free) <= max(picks * per_pick, WHOLE_POOL)
        pool = free if whole else rng.choice(free, picks * per_pick, replace=False)
        pool = np.sort(pool)
        x = take_unit(source, pool)
        if round_ % REFRESH == 0:
            a_inv = np.linalg.inv(a)  # afresh, so that rounding does not build up
        p = x @ a_inv.astype(np.float32)  # row i: A0^-1 x_i (A0: A at the round's start)
        gains = np.einsum("ij,ij->i", p, x).astype(np.float64)
        w = np.zeros((picks, d), dtype=np.float32)  # A^-1 = A0^-1 - w[:j]^T w[:j] after j picks
        open_ = np.ones(len(pool), dtype=bool)
        picked = []
        with threadpool_limits(1, user_api="blas"):  # vector products: threads only cost here
            for j in range(picks):
                best = int(np.argmax(np.where(open_, gains, -np.inf)))
                z = p[best] - w[:j].T @ (w[:j] @ x[best])  # A^-1 u, in O(j d)
                w[j] = z / np.float32(math.sqrt(1.0 + gains[best]))
                gains -= (x @ w[j]).astype(np.float64) ** 2
                open_[best] = False
                picked.append(best)
        taken[pool[picked]] = True
        chosen.extend(pool[picked].tolist())
        a += (x[picked].T @ x[picked]).astype(np.float64)
        a_inv -= (w.T @ w).astype(np.float64)  # the round's rank-one terms (Woodbury)
        on_progress(len(chosen), size)
    return np.asarray(chosen, dtype=np.int64)


def select_curated(
    ws: Workspace,
    dataset: str,
    gradient: RowSource,
    size: int,
    *,
    sentence: RowSource | None = None,
    method: str = "greedy",
    seed: int = 0,
    draws: int = 5,
    save: str | None = None,
    on_progress: ProgressFn = no_progress,
) -> dict[str, Any]:
    """Choose `size` of the dataset's curated seed rows (removed rows are never chosen) and
    compare subsets of that size in every space given.

    `gradient`: the dataset's gradient features; `sentence`: its sentence embeddings, when
    they are to be compared (one row per dataset row each). `method`: "greedy" (`greedy_rows` in
    gradient space), "sentence" (the same greedy in sentence space: the DEITA/QDIT kind of
    selection) or "random". The subsets compared: greedy in each space given, and `draws`
    uniform random subsets, each measured in every space (G-Vendi; over sentence embeddings
    it is the cosine-kernel Vendi score). The chosen rows are saved as the selection `save`
    when given. Returns {rows (dataset rows, in the order chosen), size, method, seed,
    curated_rows, saved, g_vendi (the chosen rows' G-Vendi in gradient space), subsets:
    [{subset, chosen, g_vendi: {space: value}, sd: {space: value} and draws (random only)}]}."""
    from core.curation import kept_mask

    if method not in SELECTION_METHODS:
        raise UserError(
            f"unknown selection method {method!r} (methods: {', '.join(SELECTION_METHODS)})"
        )
    spaces = {"gradient": gradient} | ({"sentence": sentence} if sentence is not None else {})
    space_of = {"greedy": "gradient", "sentence": "sentence", "random": "gradient"}
    if space_of[method] not in spaces:
        raise UserError("the sentence selection needs the sentence embeddings")
    mask = kept_mask(ws, dataset)
    kept = np.flatnonzero(mask)
    for name, features in spaces.items():
        if features.rows != len(mask):
            raise UserError(
                f"the {name} features have {features.rows} rows, dataset {dataset!r} {len(mask)}"
            )
    if not len(kept):
        raise UserError(f"the curated set of {dataset!r} is empty")
    if not 1 <= size <= len(kept):
        raise UserError(
            f"the selection size must be between 1 and {len(kept)} (the curated rows), not {size}"
        )
    curated = {name: Subset(features, kept) for name, features in spaces.items()}
    steps = parts(on_progress, [1.0] * len(curated))
    greedy = {
        name: greedy_rows(source, size, seed=seed, on_progress=step)
        for (name, source), step in zip(curated.items(), steps, strict=True)
    }
    rng = np.random.default_rng(seed)
    random_draws = [rng.choice(len(kept), size, replace=False) for _ in range(draws)]

    def scores(rows: np.ndarray) -> dict[str, float]:
        return {name: rows_score(source, rows) for name, source in curated.items()}

    subsets: list[dict[str, Any]] = [
        {
            "subset": f"greedy in {name} space",
            "chosen": space_of[method] == name and method != "random",
            "g_vendi": scores(rows),
        }
        for name, rows in greedy.items()
    ]
    measured = [scores(rows) for rows in random_draws]
    if method == "random":  # the first draw
        subsets.append({"subset": "random", "chosen": True, "g_vendi": measured[0]})
    subsets.append(
        {
            "subset": "random subsets",
            "chosen": False,
            "g_vendi": {n: float(np.mean([m[n] for m in measured])) for n in curated},
            "sd": {n: float(np.std([m[n] for m in measured])) for n in curated},
            "draws": draws,
        }
    )
    chosen = random_draws[0] if method == "random" else greedy[space_of[method]]
    rows = kept[chosen]
    g_vendi = next(s["g_vendi"]["gradient"] for s in subsets if s["chosen"])  # scored above
    if save is not None:
        note = f"{method} selection of {size} rows, seed {seed}, G-Vendi {g_vendi:.2f}"
        save = ws.save_selection(dataset, save, rows.tolist(), note=note)["name"]
    return {
        "rows": rows.tolist(),
        "size": size,
        "method": method,
        "seed": seed,
        "curated_rows": len(kept),
        "saved": save,
        "g_vendi": g_vendi,
        "subsets": subsets,
    }


def most_diverse(
    ws: Workspace,
    dataset: str,
    gradient: RowSource,
    size: int,
    *,
    method: str = "greedy",
    sentence_space: bool = True,
    runtime: Runtime = Runtime(),
    seed: int = 0,
    draws: int = 5,
    save: str | None = None,
    on_progress: ProgressFn = no_progress,
) -> dict[str, Any]:
    """`select_curated`, with the dataset's sentence embeddings computed (or read from the
    cache) when `sentence_space` or `method` "sentence" asks for them. When they cannot be
    had (no sentence model), a gradient-only comparison comes back with `sentence_error`
    saying why, unless `method` is "sentence", which raises that UserError."""
    from core.features import sentence_features

    wanted = sentence_space or method == "sentence"
    embedding, choosing = parts(on_progress, [1.0 if wanted else 0.0, 1.0])
    sentence, sentence_error = None, None
    if wanted:
        try:
            sentence = sentence_features(ws, dataset, runtime=runtime, on_progress=embedding)
        except UserError as e:
            if method == "sentence":
                raise
            sentence_error = str(e)
    out = select_curated(
        ws,
        dataset,
        gradient,
        size,
        sentence=sentence,
        method=method,
        seed=seed,
        draws=draws,
        save=save,
        on_progress=choosing,
    )
    return out | {"sentence_error": sentence_error}
