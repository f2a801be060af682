"""The map's figure at scale: a bounded sample over a density layer of all points, the sparse
clusters first, and selections read back from their shapes over every point."""

from __future__ import annotations

import numpy as np

import charts
from core.geometry import inside_polygon

rng = np.random.default_rng(3)


def uneven(n_clusters: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Cluster labels with uneven sizes (a few of 1-5 rows), and the sparse flags (below median)."""
    weights = rng.dirichlet(np.full(n_clusters, 0.4))
    sizes = np.maximum(1, np.round(weights * rows).astype(int))
    sizes[:5] = [1, 2, 3, 4, 5]
    labels = rng.permutation(np.repeat(np.arange(n_clusters), sizes))
    return labels, sizes < np.median(sizes)


def data_traces(figure) -> list:
    return [t for t in figure.data if t.customdata is not None]


def test_a_large_map_draws_a_sample_with_every_sparse_point_over_the_density_of_all():
    labels, sparse = uneven(60, 20_000)
    coords = rng.standard_normal((len(labels), 2)).astype(np.float32)
    assert sparse[labels].sum() < 1000  # the sparse clusters fit in half the budget
    figure = charts.map_figure(
        coords,
        colour=labels,
        colour_kind="cluster",
        labels=labels,
        sparse=sparse,
        texts=[f"prompt {i}" for i in range(len(labels))],
        limit=2000,
    )
    rows = [int(p[0]) for t in data_traces(figure) for p in t.customdata]
    assert len(rows) == len(set(rows)) == 2000
    assert set(np.flatnonzero(sparse[labels])) <= set(rows)  # every sparse point drawn
    texts = [x for t in data_traces(figure) for x in t.text]
    assert sorted(texts) == sorted(f"prompt {r}" for r in rows)  # hovers for drawn rows only
    density = figure.data[0]
    assert density.type == "heatmap" and density.hoverinfo == "skip"
    counts = np.expm1(np.nan_to_num(np.asarray(density.z, dtype=float)))
    assert abs(counts.sum() - len(labels)) < 0.01 * len(labels)  # all points, not the sample
    assert charts.drawn_rows(labels, sparse, 2000).tolist() == sorted(rows)  # seeded: stable


def test_when_the_sparse_clusters_overflow_half_the_budget_the_smallest_stay_whole():
    labels, sparse = uneven(200, 50_000)
    limit = 2000
    assert sparse[labels].sum() > limit // 2
    rows = charts.drawn_rows(labels, sparse, limit)
    assert len(rows) == limit
    sizes = np.bincount(labels, minlength=len(sparse))
    drawn = np.bincount(labels[rows], minlength=len(sparse))
    cap = drawn[sparse].max()
    assert (drawn[sparse] == np.minimum(sizes[sparse], cap)).all()  # one common cap
    assert (drawn[sparse] == sizes[sparse])[np.argsort(sizes[sparse])][:20].all()
    assert drawn[sparse].sum() <= limit // 2 < drawn[sparse].sum() + (sizes[sparse] > cap).sum()
    # a picked dense cluster comes first too
    big = int(np.argmax(sizes))
    first = sparse.copy()
    first[big] = True
    assert np.bincount(labels[charts.drawn_rows(labels, first, limit)])[big] >= cap


def test_many_sparse_clusters_share_one_trace_and_keep_their_colours():
    labels, sparse = uneven(300, 30_000)
    assert sparse.sum() > 40
    figure = charts.map_figure(
        rng.standard_normal((len(labels), 2)),
        colour=labels,
        colour_kind="cluster",
        labels=labels,
        sparse=sparse,
        texts=["x"] * len(labels),
        limit=5000,
    )
    traces = data_traces(figure)
    assert [t.name for t in traces] == [
        f"sparse clusters ({sparse.sum()})★",
        f"dense clusters ({(~sparse).sum()})",
    ]
    thin = traces[0]
    colour_of: dict[int, str] = {}
    for (_, cluster), colour in zip(thin.customdata, thin.marker.color, strict=True):
        assert colour_of.setdefault(int(cluster), colour) == colour  # one colour per cluster
    assert set(colour_of) == set(np.flatnonzero(sparse))  # none left out, none in "other"
    assert len(set(colour_of.values())) == len(colour_of)
    assert charts.DENSE_COLOUR not in colour_of.values()


def test_a_shape_selects_from_every_point_and_a_click_by_its_row():
    coords = rng.uniform(-1, 1, (5000, 2)).astype(np.float32)
    xs, ys = [-0.5, 0.6, 0.1], [-0.4, -0.2, 0.7]
    lasso = {"xref": "x", "yref": "y", "x": xs, "y": ys}
    expected = np.flatnonzero(inside_polygon(coords, xs, ys)).tolist()
    clicked = [{"curve_number": 1, "point_index": 3, "customdata": [17, 2]}]
    assert charts.selected_rows({"points": clicked, "box": [], "lasso": [lasso]}, coords) == (
        expected
    )
    box = {"x": [0.2, -0.2], "y": [0.0, 0.5]}
    in_box = (np.abs(coords[:, 0]) <= 0.2) & (coords[:, 1] >= 0) & (coords[:, 1] <= 0.5)
    both = charts.selected_rows({"points": [], "box": [box], "lasso": [lasso]}, coords)
    assert both == sorted(set(expected) | set(np.flatnonzero(in_box).tolist()))
    assert charts.selected_rows({"points": clicked, "box": [], "lasso": []}, coords) == [17]
