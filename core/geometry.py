"""Which points of the 2-D map lie inside a drawn selection: boxes and lasso polygons.

A selection drawn on a sampled or density view of the map is applied here to every point
of the layout, so it returns the exact dataset rows inside it, drawn or not. A point on a
box's or a polygon's edge (within `EDGE` of the drawing's size) is inside; a lasso that
crosses itself follows the even-odd rule, as plotly draws it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

EDGE = 1e-9  # how near an edge counts as on it, relative to the drawing's extent


def inside_box(points: np.ndarray, x: tuple[float, float], y: tuple[float, float]) -> np.ndarray:
    """N booleans: whether each of the N x 2 `points` lies in the box spanning `x` and `y`
    (each two ends, in any order), edges included."""
    (x0, x1), (y0, y1) = sorted(x), sorted(y)
    px, py = points[:, 0], points[:, 1]
    return (px >= x0) & (px <= x1) & (py >= y0) & (py <= y1)


def inside_polygon(points: np.ndarray, xs: Sequence[float], ys: Sequence[float]) -> np.ndarray:
    """N booleans: whether each of the N x 2 `points` lies inside the closed polygon with
    vertices (xs[i], ys[i]) (even-odd rule; its edges included). Fewer than 3 vertices
    enclose nothing.

    Cost: a sort of the points in the polygon's bounding box by y, then for each edge only
    the points in its band of y: about N log N plus N times the edges a horizontal line
    crosses, not N times the vertices."""
    vx, vy = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    n = len(points)
    result = np.zeros(n, dtype=bool)
    if len(vx) < 3 or len(vx) != len(vy) or not (np.isfinite(vx).all() and np.isfinite(vy).all()):
        return result
    tol = EDGE * max(float(np.ptp(vx)), float(np.ptp(vy)), 1.0)
    candidates = np.flatnonzero(inside_box(points, (vx.min(), vx.max()), (vy.min(), vy.max())))
    if not len(candidates):
        return result
    px = points[candidates, 0].astype(np.float64)
    py = points[candidates, 1].astype(np.float64)
    order = np.argsort(py, kind="stable")
    px, py = px[order], py[order]
    odd = np.zeros(len(order), dtype=bool)
    edge = np.zeros(len(order), dtype=bool)
    for x1, y1, x2, y2 in zip(vx, vy, np.roll(vx, -1), np.roll(vy, -1), strict=True):
        low, high = min(y1, y2), max(y1, y2)
        # the points whose y is within the edge's band (widened by the tolerance for `edge`)
        a, b = np.searchsorted(py, [low - tol, high + tol], side="left")
        a_in, b_in = np.searchsorted(py, [low, high], side="left")  # [low, high): crossings
        if b_in > a_in and y1 != y2:
            band = slice(a_in, b_in)
            crossing = x1 + (py[band] - y1) * ((x2 - x1) / (y2 - y1))
            odd[band] ^= px[band] < crossing
        if b > a:  # on the segment: within `tol` of it
            near = slice(a, b)
            qx, qy = px[near], py[near]
            dx, dy = x2 - x1, y2 - y1
            length = dx * dx + dy * dy
            t = np.clip(((qx - x1) * dx + (qy - y1) * dy) / length, 0.0, 1.0) if length else 0.0
            distance = np.hypot(qx - (x1 + t * dx), qy - (y1 + t * dy))
            edge[near] |= distance <= tol
    result[candidates[order]] = odd | edge
    return result


def rows_inside(
    points: np.ndarray,
    boxes: Sequence[tuple[Sequence[float], Sequence[float]]] = (),
    polygons: Sequence[tuple[Sequence[float], Sequence[float]]] = (),
) -> np.ndarray:
    """The sorted rows of the N x 2 `points` inside any of the `boxes` ((x ends, y ends)) or
    `polygons` ((xs, ys)): the union of the shapes, as a box or lasso drawn with Shift adds."""
    hit = np.zeros(len(points), dtype=bool)
    for x, y in boxes:
        if len(x) == 2 and len(y) == 2:
            hit |= inside_box(points, (float(x[0]), float(x[1])), (float(y[0]), float(y[1])))
    for xs, ys in polygons:
        hit |= inside_polygon(points, xs, ys)
    return np.flatnonzero(hit)
