"""Progress reporting shared by the CLI (a tqdm bar) and the app (st.progress).

A long job calls `on_progress(done, total)` now and then; `total` is None when unknown.
The callback may raise `core.errors.Cancelled` to stop the job.
"""

from collections.abc import Callable

ProgressFn = Callable[[int, "int | None"], None]


def no_progress(done: int, total: int | None) -> None:
    """The default callback: ignore progress."""
