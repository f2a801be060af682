"""The selection geometry: which map points a box or a lasso polygon holds, edges included."""

from __future__ import annotations

import numpy as np

from core.geometry import inside_box, inside_polygon, rows_inside

SQUARE = ([0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0])


def pnpoly(x: float, y: float, xs: list[float], ys: list[float]) -> bool:
    """The textbook crossing test, one point at a time: the reference."""
    inside = False
    j = len(xs) - 1
    for i in range(len(xs)):
        if (ys[i] > y) != (ys[j] > y) and x < (xs[j] - xs[i]) * (y - ys[i]) / (ys[j] - ys[i]) + xs[
            i
        ]:
            inside = not inside
        j = i
    return inside


def test_points_on_and_near_the_edges_of_a_square():
    d = 1e-6
    points = np.array(
        [
            [0.5, 0.5],  # inside
            [1.0, 0.5],  # on the right edge
            [0.5, 0.0],  # on the bottom edge (horizontal)
            [0.5, 1.0],  # on the top edge (horizontal)
            [0.0, 0.0],  # a vertex
            [1.0, 1.0],  # a vertex
            [1 - d, 0.5],  # just inside
            [1 + d, 0.5],  # just outside
            [0.5, -d],  # just below
            [0.5, 1 + d],  # just above
            [-d, -d],  # just off a corner
            [2.0, 0.5],  # well outside, level with the square
        ],
        dtype=np.float32,
    )
    expected = [True] * 7 + [False] * 5
    assert inside_polygon(points, *SQUARE).tolist() == expected
    # the same square given clockwise, and as a box with its ends in either order
    assert inside_polygon(points, SQUARE[0][::-1], SQUARE[1][::-1]).tolist() == expected
    assert inside_box(points, (1.0, 0.0), (0.0, 1.0)).tolist()[:7] == [True] * 7
    assert not inside_box(points, (0.0, 1.0), (1.0, 0.0))[7:].any()


def test_a_concave_lasso_matches_the_reference_on_random_points():
    angles = np.linspace(0, 2 * np.pi, 41)[:-1]
    radius = np.where(np.arange(40) % 2 == 0, 1.0, 0.35)  # a 20-pointed star
    xs, ys = (radius * np.cos(angles)).tolist(), (radius * np.sin(angles)).tolist()
    points = np.random.default_rng(0).uniform(-1.2, 1.2, (20_000, 2))
    got = inside_polygon(points, xs, ys)
    expected = np.array([pnpoly(x, y, xs, ys) for x, y in points])
    assert 0 < got.sum() < len(points)
    assert (got == expected).all()


def test_a_lasso_that_crosses_itself_uses_the_even_odd_rule():
    xs, ys = [0.0, 2.0, 2.0, 0.0], [0.0, 2.0, 0.0, 2.0]  # a bow tie: two triangles
    points = np.array([[0.2, 1.0], [1.8, 1.0], [1.0, 0.2], [1.0, 1.8], [1.0, 1.0]])
    assert inside_polygon(points, xs, ys).tolist() == [True, True, False, False, True]


def test_degenerate_shapes_hold_nothing():
    points = np.array([[0.0, 0.0], [1.0, 1.0]])
    assert not inside_polygon(points, [0.0, 1.0], [0.0, 1.0]).any()  # two vertices
    assert not inside_polygon(points, [], []).any()
    assert not inside_polygon(points, [0.0, np.nan, 1.0], [0.0, 1.0, 0.0]).any()
    assert not inside_polygon(np.zeros((0, 2)), *SQUARE).any()


def test_rows_inside_is_the_union_of_the_shapes():
    points = np.array([[0.5, 0.5], [3.0, 3.0], [5.5, 5.5], [9.0, 9.0]], dtype=np.float32)
    boxes = [([2.5, 3.5], [3.5, 2.5])]
    polygons = [([5.0, 6.0, 6.0, 5.0], [5.0, 5.0, 6.0, 6.0]), SQUARE]
    assert rows_inside(points, boxes, polygons).tolist() == [0, 1, 2]
    assert rows_inside(points).tolist() == []
