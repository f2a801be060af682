"""Keep the N most diverse: greedy G-Vendi selection (core/selection.py)."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import UserError
from core.rows import Matrix
from core.selection import greedy_rows, random_baseline, select
from core.vendi import g_vendi
from tests.conftest import assert_user_error


def planted(seed: int = 1, d: int = 32) -> np.ndarray:
    """Eight tight clusters of very unequal size (1000 rows down to 5)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((8, d)) * 3
    sizes = [1000, 300, 100, 50, 20, 10, 5, 5]
    return np.vstack(
        [c + rng.standard_normal((s, d)) * 0.3 for c, s in zip(centers, sizes, strict=True)]
    )


def test_deterministic_for_a_seed():
    x = planted()
    first = select(x, 60, seed=3)
    assert np.array_equal(first.rows, select(x, 60, seed=3).rows)
    assert first.g_vendi == select(x, 60, seed=3).g_vendi
    # a pool smaller than the data (stochastic greedy) is reproducible too
    big = np.random.default_rng(0).standard_normal((3000, 16))
    assert np.array_equal(greedy_rows(big, 50, seed=7), greedy_rows(big, 50, seed=7))
    assert not np.array_equal(greedy_rows(big, 50, seed=7), greedy_rows(big, 50, seed=8))


@pytest.mark.parametrize("size", [1, 40, 300, 1490])
def test_never_selects_a_row_twice(size):
    x = planted()
    rows = select(x, size, seed=0).rows
    assert len(rows) == size
    assert len(np.unique(rows)) == size
    assert rows.min() >= 0 and rows.max() < len(x)


def test_all_rows_and_duplicated_rows():
    x = planted()
    assert sorted(select(x, len(x)).rows) == list(range(len(x)))
    twice = np.vstack([x[:50], x[:50]])  # exact duplicates: still never a row index twice
    rows = select(twice, 80).rows
    assert len(np.unique(rows)) == 80


def test_beats_random_on_planted_clusters_of_unequal_size():
    x = planted()
    chosen = select(x, 50, seed=0)
    mean, sd = random_baseline(x, 50, draws=20, seed=0)
    # random draws mostly land in the two big clusters; greedy covers all eight
    assert chosen.g_vendi > mean + 5 * sd
    assert chosen.g_vendi > 1.8 * mean
    assert select(x, 50, method="random", seed=0).g_vendi < chosen.g_vendi


def test_selected_g_vendi_is_g_vendi_of_those_rows():
    x = planted()
    for method in ("greedy", "random"):
        chosen = select(x, 70, method=method, seed=2)
        assert chosen.g_vendi == pytest.approx(g_vendi(x[chosen.rows]), rel=1e-9)
        assert chosen.method == method


def test_a_row_source_gives_the_same_rows():
    x = planted().astype(np.float32)
    assert np.array_equal(select(Matrix(x), 100).rows, select(x, 100).rows)


@pytest.mark.parametrize(
    ("size", "method", "message"),
    [
        (0, "greedy", "between 1 and 1490"),
        (1491, "greedy", "between 1 and 1490"),
        (10, "sentence", "unknown selection method 'sentence'"),
    ],
)
def test_bad_input_is_a_user_error(size, method, message):
    with pytest.raises(UserError, match=message):
        select(planted(), size, method=method)


def test_select_cli_saves_a_selection(cli, tmp_path, workspace_dir):
    from core.workspace import Workspace
    from tests.test_features import demo_file

    assert cli("import", str(demo_file(tmp_path / "a.jsonl", 40)), "--name", "a").code == 0
    flags = ("--proxy", "tiny-random", "--dim", "64")
    r = cli("select", "a", "--size", "10", *flags, "--save", "diverse", "--json")
    assert r.code == 0, r.err
    rows = r.json["rows"]
    assert len(set(rows)) == 10 and r.json["saved"] == "diverse"
    assert r.json["g_vendi"] > 1 and r.json["random"]["draws"] == 5
    saved = Workspace(workspace_dir).selection("a", "diverse")
    assert saved["rows"] == sorted(rows)
    again = cli("select", "a", "--size", "10", *flags, "--json").json
    assert again["rows"] == rows  # deterministic for a seed
    assert_user_error(cli("select", "a", "--size", "0", *flags), "--size")
    assert_user_error(cli("select", "a", "--size", "41", *flags), "between 1 and 40")
    assert_user_error(cli("select", "zzz", "--size", "3", *flags), "no dataset named 'zzz'")
