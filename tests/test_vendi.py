"""G-Vendi numerics: the reference library, known cases, streaming, limits, weights, groups."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import spearmanr
from vendi_score.vendi import score_dual

from core import vendi as vendi_module
from core.vendi import (
    bootstrap,
    equal_size,
    g_vendi,
    kernel_eigenvalues,
    leave_one_out,
    marginal_values,
    per_group,
    spectrum,
    vendi,
)

rng = np.random.default_rng(0)


@pytest.mark.parametrize("q", [0.5, 1, 2, "inf"])
@pytest.mark.parametrize(("n", "d"), [(50, 20), (300, 64), (40, 100)])
def test_equals_vendi_score_score_dual(n, d, q):
    x = rng.standard_normal((n, d)) + 0.5  # correlated rows: a non-trivial spectrum
    ours = g_vendi(x, q=math.inf if q == "inf" else q)
    assert ours == pytest.approx(score_dual(x, q=q), rel=1e-6)


def test_orthogonal_directions_count_exactly():
    for n in (1, 7, 64):
        assert g_vendi(np.eye(64)[:n] * rng.uniform(0.1, 10, (n, 1))) == pytest.approx(n, rel=1e-9)


def test_identical_rows_give_one():
    row = rng.standard_normal(32)
    assert g_vendi(np.tile(row, (100, 1))) == pytest.approx(1.0, rel=1e-9)
    assert g_vendi(np.outer(rng.uniform(0.5, 2, 50), row)) == pytest.approx(
        1.0, rel=1e-9
    )  # scale is ignored


def test_duplicating_every_row_changes_nothing():
    x = rng.standard_normal((80, 16))
    assert g_vendi(np.vstack([x, x])) == pytest.approx(g_vendi(x), rel=1e-9)
    assert g_vendi(np.repeat(x, 3, axis=0), q=2) == pytest.approx(g_vendi(x, q=2), rel=1e-9)


def test_two_orthogonal_subspaces_add_as_expected():
    a = np.hstack([rng.standard_normal((60, 8)), np.zeros((60, 8))])
    b = np.hstack([np.zeros((30, 8)), rng.standard_normal((30, 8))])
    pa, pb = 60 / 90, 30 / 90
    # spectrum of the union = pa * spectrum(a) + pb * spectrum(b) on disjoint directions
    entropy = (
        pa * math.log(g_vendi(a))
        + pb * math.log(g_vendi(b))
        - pa * math.log(pa)
        - pb * math.log(pb)
    )
    assert g_vendi(np.vstack([a, b])) == pytest.approx(math.exp(entropy), rel=1e-9)
    same = np.hstack([np.zeros((60, 8)), a[:, :8]])  # a copy of a in the other subspace
    assert g_vendi(np.vstack([a, same])) == pytest.approx(2 * g_vendi(a), rel=1e-9)


def test_streaming_chunks_equals_in_memory():
    x = rng.standard_normal((1000, 48))
    chunks = (x[i : i + 77] for i in range(0, 1000, 77))
    assert g_vendi(chunks) == pytest.approx(g_vendi(x), rel=1e-12)  # float64: the same sums
    x32 = x.astype(np.float32)  # float32 blocks: summed in another order, float32 rounding
    assert g_vendi(x32[i : i + 77] for i in range(0, 1000, 77)) == pytest.approx(
        g_vendi(x), rel=1e-6
    )
    moment = spectrum(x.astype(np.float16))  # stored half-precision features are read too
    assert vendi(moment.eigen()[0]) == pytest.approx(g_vendi(x), rel=1e-3)


def test_orders_and_their_limits():
    x = rng.standard_normal((200, 32)) + 0.3
    values = kernel_eigenvalues(x)
    orders = [vendi(values, q) for q in (0, 0.5, 1, 2, 10, math.inf)]
    assert orders == sorted(orders, reverse=True)  # non-increasing in q
    assert orders[0] == 32  # q = 0 counts the directions
    assert vendi(values, 1 + 1e-7) == pytest.approx(orders[2], rel=1e-5)
    assert vendi(values, 1 - 1e-7) == pytest.approx(orders[2], rel=1e-5)
    assert vendi(values, 500) == pytest.approx(orders[-1], rel=1e-2)
    assert orders[-1] == pytest.approx(1 / values.max())


def test_integer_weights_equal_duplicated_rows():
    x = rng.standard_normal((40, 12))
    w = rng.integers(1, 4, 40)
    assert g_vendi(x, weights=w.astype(float)) == pytest.approx(
        g_vendi(np.repeat(x, w, axis=0)), rel=1e-9
    )


def test_bootstrap_interval():
    x = rng.standard_normal((300, 16)) + 0.2
    point = g_vendi(x)
    ci = bootstrap(x, replicates=60)
    assert ci.low < point < ci.high
    wide = bootstrap(x[:40], replicates=60)
    assert (wide.high - wide.low) > (ci.high - ci.low)  # fewer rows, wider interval


def test_the_block_bootstrap_has_the_spread_of_resampling_rows(monkeypatch):
    x = rng.standard_normal((3000, 16)) + 0.2
    x[:1000] += rng.standard_normal(16)  # a dense part: the rows are not alike
    point = g_vendi(x)
    rows = bootstrap(x, replicates=200, seed=2)
    monkeypatch.setattr(vendi_module, "EXACT_BOOTSTRAP_ROWS", 100)  # beyond: blocks
    blocks = bootstrap(x, replicates=200, seed=2)
    assert rows.blocks is None and blocks.blocks == 256
    assert blocks.low < point < blocks.high
    ratio = (blocks.high - blocks.low) / (rows.high - rows.low)
    assert 0.75 < ratio < 1.33, ratio  # 1.03 measured: the same spread to first order


def test_per_group_equals_separate_scores():
    x = rng.standard_normal((150, 20))
    labels = np.array(["a"] * 100 + ["b"] * 30 + ["c"] * 20)
    groups = per_group(x, labels)
    assert [g["group"] for g in groups] == ["a", "b", "c"]
    for g in groups:
        assert g["g_vendi"] == pytest.approx(g_vendi(x[labels == g["group"]]), rel=1e-9)


def test_per_group_gathers_small_groups_together_and_streams_large_ones(monkeypatch):
    monkeypatch.setattr(vendi_module, "GROUP_ROWS", 20)  # larger groups are streamed ...
    monkeypatch.setattr(vendi_module, "BLOCK", 7)  # ... 7 rows at a time
    monkeypatch.setattr(vendi_module, "GATHER_ROWS", 50)  # smaller ones gathered together
    sizes = {"a": 12, "b": 15, "c": 18, "d": 60, "e": 9, "f": 21, "g": 3}
    labels = np.repeat(list(sizes), list(sizes.values()))
    rng.shuffle(labels)
    x = rng.standard_normal((len(labels), 8)) + 0.3
    x[labels == "g"] = x[labels == "g"][0]  # one direction: G-Vendi 1
    seen = []
    groups = per_group(x, labels, on_progress=lambda d, t: seen.append((d, t)))
    assert [g["group"] for g in groups] == ["d", "f", "c", "b", "a", "e", "g"]
    for g in groups:
        assert g["rows"] == sizes[g["group"]]
        assert g["g_vendi"] == pytest.approx(g_vendi(x[labels == g["group"]]), rel=1e-6)
    assert seen[-1] == (7, 7) and len(seen) < 7  # batches of groups, not one call each


@pytest.mark.parametrize(("n", "d"), [(200, 16), (500, 64), (64, 200)])
def test_marginal_values_follow_exact_leave_one_out(n, d):
    x = rng.standard_normal((n, d))
    x[n // 2 :, : d // 2] *= 0.1  # a dense half and a spread half
    approx, exact = marginal_values(x), leave_one_out(x)
    assert spearmanr(approx, exact)[0] > 0.99
    assert np.abs(approx - exact).mean() < 0.03 * np.abs(exact).mean()


def test_crowded_samples_are_the_most_redundant():
    e1 = np.eye(32)[0]
    crowded = e1 + 0.01 * rng.standard_normal((50, 32))
    spread = rng.standard_normal((10, 32))
    values = marginal_values(np.vstack([crowded, spread]))
    assert values[:50].max() < values[50:].min()


def test_equal_size_comparison():
    a = np.hstack([rng.standard_normal((400, 8)), np.zeros((400, 8))])
    b = np.hstack([np.zeros((100, 8)), rng.standard_normal((100, 8))])
    mix = np.vstack([a[:200], b])
    scores = equal_size({"a": a, "b": b, "mix": mix}, repeats=3)
    assert scores["mix"][0] > max(scores["a"][0], scores["b"][0])
    assert all(std >= 0 for _, std in scores.values())
