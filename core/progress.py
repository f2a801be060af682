"""Progress reporting shared by the CLI (a tqdm bar) and the app (st.progress).

A long job calls `on_progress(done, total)` now and then; `total` is None when unknown.
The callback may raise `core.errors.Cancelled` to stop the job.
"""

from collections.abc import Callable, Sequence

ProgressFn = Callable[[int, "int | None"], None]

STEPS = 1000  # a job made of several parts reports done / STEPS of the whole


def no_progress(done: int, total: int | None) -> None:
    """The default callback: ignore progress."""


def parts(on_progress: ProgressFn, weights: Sequence[float]) -> list[ProgressFn]:
    """One callback per consecutive part of a job, sharing one bar: reported as
    on_progress(steps, STEPS) and never moving back. A part takes, of the bar left when it
    starts, the share of its weight (its expected cost) among the weights of the parts left.
    A part whose first report is already complete (it had nothing to do: cached) gives its
    share to the parts after it; so a part reports (0, n) before its work."""
    weights = [float(w) for w in weights]
    reached = [0]

    def part(i: int) -> ProgressFn:
        start: list[float] = []

        def update(done: int, of: int | None) -> None:
            fraction = min(max(done / of, 0.0), 1.0) if of else 0.0
            if not start:
                start.append(reached[0] / STEPS)
                if fraction >= 1:
                    weights[i] = 0.0
            left = sum(weights[i:])
            share = weights[i] / left if left else 1.0
            steps = round((start[0] + (1 - start[0]) * share * fraction) * STEPS)
            reached[0] = max(reached[0], steps)
            on_progress(reached[0], STEPS)

        return update

    return [part(i) for i in range(len(weights))]
