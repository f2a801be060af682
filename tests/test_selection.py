"""Keep the N most diverse: greedy G-Vendi selection (core/selection.py)."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import UserError
from core.rows import Matrix
from core.selection import greedy_rows
from core.vendi import equal_size, g_vendi
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
    assert np.array_equal(greedy_rows(x, 60, seed=3), greedy_rows(x, 60, seed=3))
    # a pool smaller than the data (stochastic greedy) is reproducible too
    big = np.random.default_rng(0).standard_normal((10_000, 16))  # beyond WHOLE_POOL rows
    assert np.array_equal(greedy_rows(big, 50, seed=7), greedy_rows(big, 50, seed=7))
    assert not np.array_equal(greedy_rows(big, 50, seed=7), greedy_rows(big, 50, seed=8))


@pytest.mark.parametrize("size", [1, 40, 300, 1490])
def test_never_selects_a_row_twice(size):
    x = planted()
    rows = greedy_rows(x, size, seed=0)
    assert len(rows) == size
    assert len(np.unique(rows)) == size
    assert rows.min() >= 0 and rows.max() < len(x)


def test_all_rows_and_duplicated_rows():
    x = planted()
    assert sorted(greedy_rows(x, len(x))) == list(range(len(x)))
    twice = np.vstack([x[:50], x[:50]])  # exact duplicates: still never a row index twice
    assert len(np.unique(greedy_rows(twice, 80))) == 80


def test_beats_random_on_planted_clusters_of_unequal_size():
    x = planted()
    chosen = g_vendi(x[greedy_rows(x, 50, seed=0)])
    mean, sd = equal_size({"all": x}, size=50, repeats=20, seed=0)["all"]
    # random draws mostly land in the two big clusters; greedy covers all eight
    assert chosen > mean + 5 * sd
    assert chosen > 1.8 * mean


def test_each_pick_is_a_greedy_pick():
    """With the whole data as the pool, every pick has the largest log-det gain left (up to
    rounding: ties may go either way), computed afresh in float64 from the picks before it:
    the in-round low-rank updates are exact."""
    x = planted(d=8)[::20]
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    a = np.eye(8)
    rows = greedy_rows(x, 24, batch=6)  # 4 rounds, each with every row left in its pool
    for i, row in enumerate(rows):
        gains = np.einsum("ij,jk,ik->i", u, np.linalg.inv(a), u)
        gains[rows[:i]] = -np.inf
        assert gains[row] >= gains.max() - 1e-5, (i, gains[row], gains.max())
        a += np.outer(u[row], u[row])


def test_a_row_source_gives_the_same_rows():
    x = planted().astype(np.float32)
    assert np.array_equal(greedy_rows(Matrix(x), 100), greedy_rows(x, 100))


@pytest.mark.parametrize("size", [0, 1491])
def test_a_size_out_of_range_is_a_user_error(size):
    with pytest.raises(UserError, match="between 1 and 1490"):
        greedy_rows(planted(), size)


def _workspace_with(tmp_path, rows: int):
    from core.workspace import Workspace
    from tests.test_features import demo_file

    ws = Workspace(tmp_path / "ws")
    ws.import_dataset(demo_file(tmp_path / "a.jsonl", rows), name="a")
    return ws


def test_removed_rows_are_never_chosen(tmp_path):
    from core import curation
    from core.rows import Matrix
    from core.selection import select_curated

    ws = _workspace_with(tmp_path, 40)
    x = planted()[:40]
    curation.remove_rows(ws, "a", list(range(0, 40, 2)), "test")  # every even row
    for method in ("greedy", "random"):
        out = select_curated(ws, "a", Matrix(x), 20, method=method)
        assert sorted(out["rows"]) == list(range(1, 40, 2))  # all 20 curated rows, no other
    out = select_curated(ws, "a", Matrix(x), 5, sentence=Matrix(x[:, ::-1].copy()))
    assert all(row % 2 for row in out["rows"])
    with pytest.raises(UserError, match="between 1 and 20 \\(the curated rows\\), not 21"):
        select_curated(ws, "a", Matrix(x), 21)


def test_the_subsets_are_compared_in_both_spaces(tmp_path):
    from core.rows import Matrix
    from core.selection import select_curated

    ws = _workspace_with(tmp_path, 40)
    rng = np.random.default_rng(0)
    gradient = planted()[:40]  # 40 rows of the biggest planted cluster, plus two outliers
    gradient[[3, 17]] += rng.standard_normal((2, gradient.shape[1])) * 10
    sentence = np.eye(8)[0] + rng.standard_normal((40, 8)) * 0.1  # all close in meaning
    sentence[[5, 9]] = np.eye(8)[[1, 2]]  # but two rows, apart in meaning only
    out = select_curated(ws, "a", Matrix(gradient), 4, sentence=Matrix(sentence), draws=7)
    by_name = {s["subset"]: s for s in out["subsets"]}
    assert list(by_name) == [
        "greedy in gradient space",
        "greedy in sentence space",
        "random subsets",
    ]
    assert [s["chosen"] for s in out["subsets"]] == [True, False, False]
    assert {3, 17} <= set(out["rows"])
    for s in out["subsets"]:  # every subset measured in both spaces
        assert set(s["g_vendi"]) == {"gradient", "sentence"}
    random = by_name["random subsets"]
    assert random["draws"] == 7 and random["sd"]["gradient"] > 0
    # each greedy wins in its own space
    g = by_name["greedy in gradient space"]["g_vendi"]
    t = by_name["greedy in sentence space"]["g_vendi"]
    assert g["gradient"] > t["gradient"] and t["sentence"] > g["sentence"]
    assert out["g_vendi"] == pytest.approx(g["gradient"])
    by_sentence = select_curated(
        ws, "a", Matrix(gradient), 4, sentence=Matrix(sentence), method="sentence"
    )
    assert {5, 9} <= set(by_sentence["rows"])
    assert by_sentence["subsets"][1]["chosen"]
    with pytest.raises(UserError, match="needs the sentence embeddings"):
        select_curated(ws, "a", Matrix(gradient), 4, method="sentence")


def test_select_cli_saves_a_selection(cli, tmp_path, workspace_dir):
    from core.workspace import Workspace
    from tests.test_features import demo_file

    assert cli("import", str(demo_file(tmp_path / "a.jsonl", 40)), "--name", "a").code == 0
    flags = ("--proxy", "tiny-random", "--dim", "64")
    r = cli("select", "a", "--size", "10", *flags, "--save", "diverse", "--json", "--no-sentence")
    assert r.code == 0, r.err
    rows = r.json["rows"]
    assert len(set(rows)) == 10 and r.json["saved"] == "diverse"
    assert r.json["g_vendi"] > 1 and r.json["subsets"][-1]["draws"] == 5
    assert [s["subset"] for s in r.json["subsets"]] == [
        "greedy in gradient space",
        "random subsets",
    ]
    saved = Workspace(workspace_dir).selection("a", "diverse")
    assert saved["rows"] == sorted(rows)
    again = cli("select", "a", "--size", "10", *flags, "--json").json
    assert again["rows"] == rows  # deterministic for a seed, whatever is compared
    assert [s["subset"] for s in again["subsets"]] == [
        "greedy in gradient space",
        "greedy in sentence space",
        "random subsets",
    ]  # the sentence model comes offline from its package
    text = cli("select", "a", "--size", "10", *flags, "--how", "sentence").out
    assert "* greedy in sentence space" in text and "sentence G-Vendi" in text
    assert_user_error(cli("select", "a", "--size", "0", *flags), "--size")
    assert_user_error(cli("select", "a", "--size", "41", *flags), "between 1 and 40")
    assert_user_error(cli("select", "zzz", "--size", "3", *flags), "no dataset named 'zzz'")
    assert "curate a --keep-selection diverse" in cli("select", "a", "--size", "10", *flags,
        "--save", "diverse", "--no-sentence").out  # fmt: skip
    kept = cli("curate", "a", "--keep-selection", "diverse", "--json")
    assert kept.code == 0, kept.err
    assert kept.json["rows"] == 10 and kept.json["removed"] == 30
    assert_user_error(cli("curate", "a", "--keep-selection", "nope"), "no selection named 'nope'")


def test_the_chosen_rows_are_scored_and_saved_under_the_name_as_stored(tmp_path):
    from core.rows import Matrix
    from core.selection import select_curated

    ws = _workspace_with(tmp_path, 40)
    x = planted()[:40]
    for method in ("greedy", "random"):
        out = select_curated(ws, "a", Matrix(x), 12, method=method, save=f"  {method} pick ")
        assert out["g_vendi"] == pytest.approx(g_vendi(x[out["rows"]]), rel=1e-6)
        marked = [s for s in out["subsets"] if s["chosen"]]
        assert len(marked) == 1 and marked[0]["g_vendi"]["gradient"] == out["g_vendi"]
        assert out["saved"] == f"{method} pick"  # as the workspace stores it
        assert ws.selection("a", out["saved"])["rows"] == sorted(out["rows"])
