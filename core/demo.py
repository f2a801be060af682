"""The built-in demo: 360 math word problems with worked solutions, kept as data.

`core/demo.jsonl` is the source of truth, one JSON object a line: `id` (demo-0000 ...),
`question`, `answer` (worked steps, the last line "The answer is \\boxed{final}."),
`final`, `family` (13 problem families) and `difficulty` (easy / medium / hard), balanced
over families and difficulties. tests/test_demo.py checks those properties and re-derives
answers from the question text; edit the file by hand and keep one compact JSON object a
line (`json.dumps(row, ensure_ascii=False)`).

The app imports it as dataset `demo` when a workspace first opens (`ensure_demo`); tests,
benchmarks and the tiny proxy's tokenizer read it through `all_rows` and `demo_rows`.
"""

from __future__ import annotations

import json
import random
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import UserError
from core.files import atomic_write

if TYPE_CHECKING:
    from core.workspace import DatasetInfo, Workspace

DEMO_FILE = Path(__file__).with_name("demo.jsonl")
DEMO_NAME = "demo"
DEMO_MAPPING = {"prompt": "question", "response": "answer", "id": "id"}
DIFFICULTIES: tuple[str, ...] = ("easy", "medium", "hard")


@lru_cache(maxsize=1)
def _rows() -> tuple[dict, ...]:
    with DEMO_FILE.open(encoding="utf-8") as f:
        return tuple(json.loads(line) for line in f)


def all_rows() -> list[dict]:
    """Every demo row, in the file's order (copies: callers may change them)."""
    return [dict(row) for row in _rows()]


def demo_rows(n: int | None = None, *, seed: int = 0) -> list[dict]:
    """`n` rows of the demo (all when None), shuffled; the same rows and order for a seed.

    The sample is balanced like the whole: family counts differ by at most one, and so do
    the difficulty counts within a family. Rows are dealt round by round, one per (family,
    difficulty) cell that still has one, easy cells first, from cells shuffled with
    `random.Random(seed)`; the global random state is never touched. ValueError when `n`
    is negative or more than the demo holds.
    """
    rows = all_rows()
    n = len(rows) if n is None else n
    if not 0 <= n <= len(rows):
        raise ValueError(f"the demo has {len(rows)} rows; cannot take {n}")
    rng = random.Random(seed)
    cells: dict[tuple[int, str], list[dict]] = {}
    for row in rows:
        cells.setdefault((DIFFICULTIES.index(row["difficulty"]), row["family"]), []).append(row)
    order = sorted(cells)
    for cell in order:
        rng.shuffle(cells[cell])
    rounds = max(len(cell) for cell in cells.values())
    dealt = [cells[c][k] for k in range(rounds) for c in order if k < len(cells[c])]
    sample = dealt[:n]
    rng.shuffle(sample)
    return sample


def write_jsonl(path: Path) -> int:
    """Write the demo problems (a copy of core/demo.jsonl) to `path`; returns the row count.

    Written to a temporary file beside `path` and renamed into place: a failure leaves
    `path` as it was and nothing behind. UserError when `path` is a folder, its folder is
    missing, or the file cannot be written.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{path} is a folder; give a file name, like {path / 'demo.jsonl'}")
    if not path.parent.is_dir():
        raise UserError(f"{path}: no folder {path.parent}")
    try:
        atomic_write(path, DEMO_FILE.read_bytes())
    except OSError as e:
        raise UserError(f"{path}: cannot write the demo problems ({e.strerror or e})") from e
    return len(_rows())


def ensure_demo(ws: Workspace, *, force: bool = False) -> DatasetInfo | None:
    """Import the demo as dataset `demo` the first time a workspace opens (or when `force`).

    A curator who deletes it does not get it back on the next start; `force` re-imports it.
    Returns the demo dataset, or None when it was deliberately removed.
    """
    if ws.has_dataset(DEMO_NAME):
        return ws.dataset(DEMO_NAME)
    if ws.get_meta("demo_seeded") and not force:
        return None
    from core.records import Mapping

    try:
        info, _ = ws.import_dataset(
            DEMO_FILE,
            name=DEMO_NAME,
            mapping=Mapping(**DEMO_MAPPING),
            label="built-in demo (core/demo.jsonl)",
        )
    except UserError:  # another process imported it a moment ago
        info = ws.dataset(DEMO_NAME)
    ws.set_meta("demo_seeded", "1")
    return info
