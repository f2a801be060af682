"""Plotly figures for the pages, and reading a chart selection back as dataset rows.

Every data point carries its dataset row in customdata[0], so a selection (click, box or
lasso, over any number of traces) maps to rows without trace-local point indices.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from core.geometry import rows_inside

PALETTE = [
    "#4c78a8", "#f58518", "#54a24b", "#b279a2", "#e45756", "#72b7b2", "#eeca3b", "#ff9da6",
    "#9d755d", "#bab0ac", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#7f7f7f", "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5", "#c49c94", "#dbdb8d",
]  # fmt: skip
SPARSE_COLOUR = "#d62728"
DENSE_COLOUR = "#9aa5b1"
MAX_CATEGORIES = 20


def palette(n: int) -> list[str]:
    """n distinct colours: PALETTE first, then hues a golden angle apart (for any n)."""
    extra = [f"hsl({(i * 137.508) % 360:.1f},70%,{42 + 12 * (i % 3)}%)" for i in range(n)]
    return (PALETTE + extra)[:n]


def excerpt(text: str, length: int = 80) -> str:
    """A short, HTML-escaped, one-line excerpt for hover labels."""
    flat = " ".join(text.split())
    return html.escape(flat[:length] + ("…" if len(flat) > length else ""))


MAP_POINTS = (
    25_000  # points drawn at most: above, a sample over the density of all (bench/map_render.py)
)
_DENSITY_BINS = 256  # cells across the density layer's wider side
_CLEAR_RINGS = 2_000  # up to this many sparse points drawn, their rings at full strength
_SPARSE_TRACES = 40  # sparse clusters with a trace (and legend entry) each; beyond, one trace


def drawn_rows(labels: np.ndarray, first: np.ndarray, limit: int, seed: int = 0) -> np.ndarray:
    """The sorted rows the map draws: all when there are at most `limit`, else a seeded
    sample of `limit`. Rows of the clusters flagged in `first` (per cluster: the sparse
    ones, the picked ones) take up to half: every one of them when they fit, else each
    such cluster up to one common cap, so the smallest are always drawn in full; the rest
    is a uniform sample of the other rows."""
    n = len(labels)
    if n <= limit:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    priority = first[labels]
    sizes = np.bincount(labels[priority], minlength=len(first))
    cap = _cap(sizes[sizes > 0], limit // 2)
    shuffled = rng.permutation(np.flatnonzero(priority))
    by_cluster = shuffled[np.argsort(labels[shuffled], kind="stable")]
    starts = np.concatenate([[0], np.cumsum(sizes)])[labels[by_cluster]]
    taken = by_cluster[np.arange(len(by_cluster)) - starts < cap]
    others = np.flatnonzero(~priority)
    rest = rng.choice(others, min(len(others), limit - len(taken)), replace=False)
    return np.sort(np.concatenate([taken, rest]))


def _with_lit(rows: np.ndarray, lit: np.ndarray, most: int, seed: int = 0) -> np.ndarray:
    """The sorted `rows` drawn, with the `lit` rows not among them added: all of them, or a
    seeded sample of `most`."""
    extra = np.setdiff1d(lit, rows)
    if len(extra) > most:
        extra = np.random.default_rng(seed).choice(extra, most, replace=False)
    return np.union1d(rows, extra)


def _cap(sizes: np.ndarray, budget: int) -> int:
    """The largest cap q with sum(min(size, q)) <= budget (all of the largest when they fit)."""
    s = np.sort(sizes)
    if s.sum() <= budget:
        return int(s[-1]) if len(s) else 0
    before = np.concatenate([[0], np.cumsum(s)[:-1]])  # rows of the clusters below each
    over = np.flatnonzero(before + s * (len(s) - np.arange(len(s))) > budget)[0]
    return int((budget - before[over]) // (len(s) - over))


def map_figure(
    coords: np.ndarray,
    *,
    colour: np.ndarray,
    colour_kind: str,
    labels: np.ndarray,
    sparse: np.ndarray,
    texts: Sequence[str],
    highlight: set[int] | None = None,
    lit_rows: np.ndarray | None = None,
    title: str = "",
    limit: int | None = None,
    half_width: bool = False,
) -> go.Figure:
    """A WebGL scatter of the layout (`coords`, N x 2).

    At most `limit` (default MAP_POINTS) points are drawn (`drawn_rows`: above it, a sample in which the sparse
    and the highlighted clusters come first), over a grey density layer of all N points (a
    2-D histogram), so the browser's work does not grow with N; a box or lasso selects from
    all N points by its shape (`selected_rows`).
    `colour` is a value per row: numbers when `colour_kind` is "continuous" (density),
    else categories (cluster ids, sparse/dense, a field's values), one trace per category.
    Over 20 categories: coloured by "cluster", every sparse cluster keeps its own colour
    (and up to 40 of them their own trace and legend entry; more share one trace) and the
    dense ones share one grey trace; any other colouring keeps the 19 largest and puts the
    rest in "other". `labels` are cluster ids and `sparse` flags per cluster: points of
    sparse clusters get a dark ring (a separate, unselectable layer) and sparse clusters a
    red starred label at their centre. `highlight` dims every cluster but these, and
    `lit_rows` (sorted dataset rows: a selection made on another map) every row but these,
    which a sampled view draws first (up to a quarter of it). `texts`
    (a row's prompt) give the hover excerpts. Each point's customdata is [dataset row,
    cluster]. Category names and `colour_kind` come from the data: they are HTML-escaped
    (plotly renders HTML in legends and hovers). `half_width`: for half the page's width
    (two maps side by side), the legend goes under the map, across.
    """
    n = len(coords)
    picked = np.zeros(len(sparse), dtype=bool)
    if highlight:
        picked[[c for c in highlight if 0 <= c < len(sparse)]] = True
    rows = drawn_rows(labels, sparse | picked, limit or MAP_POINTS)
    if lit_rows is not None and len(rows) < n:
        rows = _with_lit(rows, lit_rows, (limit or MAP_POINTS) // 4)
    xy = np.round(coords[rows].astype(np.float64), 3)  # 3 decimals: a third of the JSON
    drawn_labels = labels[rows]
    colour = np.asarray(colour)
    drawn_colour = colour[rows]
    # object dtype: plotly would send an int array as a typed array, whose per-point slice
    # comes back from the browser as an object {"0": row, "1": cluster}, not a list
    customdata = np.column_stack([rows, drawn_labels]).astype(object)
    length = 80 if len(rows) <= 20_000 else 30
    text = np.array([excerpt(texts[r], length) for r in rows], dtype=object)
    dimmed = bool(highlight) or lit_rows is not None
    lit = picked[drawn_labels] if highlight else np.zeros(len(rows), dtype=bool)
    if lit_rows is not None:
        lit |= np.isin(rows, lit_rows)
    opacity = np.where(lit, 0.95, 0.12) if dimmed else 0.8
    size = 6 if len(rows) < 5_000 else 4 if len(rows) < 50_000 else 3
    template = "%{text}<extra>row %{customdata[0]} · cluster %{customdata[1]}</extra>"

    def points(mask: np.ndarray | slice, **marker) -> dict[str, Any]:
        alpha = opacity if np.isscalar(opacity) else opacity[mask]
        return dict(
            x=xy[mask, 0],
            y=xy[mask, 1],
            mode="markers",
            customdata=customdata[mask],
            text=text[mask],
            hovertemplate=template,
            marker=dict(size=size, opacity=alpha, **marker),
        )

    traces = [_density_layer(coords)] if len(rows) < n else []
    if colour_kind == "continuous":
        traces.append(
            go.Scattergl(
                name="samples",
                **points(
                    slice(None),
                    color=drawn_colour,
                    colorscale="Viridis",
                    cmin=float(colour.min()),
                    cmax=float(colour.max()),
                    showscale=True,
                    colorbar=dict(title="density", thickness=12),
                ),
            )
        )
    elif colour_kind == "cluster" and len(np.unique(colour)) > MAX_CATEGORIES:
        thin = np.flatnonzero(sparse)
        thin = thin[np.isin(thin, drawn_colour)]
        shades = np.array(palette(len(thin)), dtype=object)
        if len(thin) <= _SPARSE_TRACES:
            for c, shade in zip(thin, shades, strict=True):
                traces.append(go.Scattergl(name=f"{c}★", **points(drawn_colour == c, color=shade)))
        elif len(thin):  # one trace, each sparse cluster still in its own colour
            mask = sparse[drawn_colour]
            shade_of = dict(zip(thin.tolist(), shades, strict=True))
            per_point = [shade_of[c] for c in drawn_colour[mask].tolist()]
            name = f"sparse clusters ({len(thin)})★"
            traces.append(go.Scattergl(name=name, **points(mask, color=per_point)))
        dense = ~sparse[drawn_colour]
        if dense.any():
            name = f"dense clusters ({int(np.sum(~sparse[np.unique(colour)]))})"
            traces.append(go.Scattergl(name=name, **points(dense, color=DENSE_COLOUR)))
    else:
        values = colour.astype(str)
        categories, counts = np.unique(values, return_counts=True)
        if len(categories) > MAX_CATEGORIES:
            categories = categories[np.argsort(-counts, kind="stable")][: MAX_CATEGORIES - 1]
        shown = sorted(categories, key=_natural)
        drawn_values = values[rows]
        masks = [(html.escape(c), drawn_values == c) for c in shown]
        rest = ~np.isin(values, categories)
        if rest.any():
            masks.append(("other", rest[rows]))
        for (name, mask), shade in zip(masks, palette(len(masks)), strict=True):
            named = {"sparse": SPARSE_COLOUR, "dense": DENSE_COLOUR}.get(name, shade)
            traces.append(go.Scattergl(name=name, **points(mask, color=named)))
    ring = sparse[drawn_labels] & (lit if dimmed else True)
    if ring.any():  # rings on the points of sparse clusters; no customdata: never selected
        traces.append(
            go.Scattergl(
                x=xy[ring, 0],
                y=xy[ring, 1],
                mode="markers",
                hoverinfo="skip",
                name="in a sparse cluster",
                marker=dict(
                    size=size + 3,
                    symbol="circle-open",
                    color="#111111",
                    line=dict(width=1),
                    # thousands of rings would hide the colours under them: lighter
                    opacity=0.7 * min(1.0, (_CLEAR_RINGS / ring.sum()) ** 0.5),
                ),
            )
        )
    named = np.arange(len(sparse)) if len(sparse) <= 400 else np.flatnonzero(sparse)
    if len(named) <= 400:  # labels at the clusters' centres (the sparse ones, when many)
        counts = np.bincount(labels, minlength=len(sparse))[named]
        with np.errstate(invalid="ignore", divide="ignore"):
            centres = np.column_stack(
                [
                    np.bincount(labels, weights=coords[:, i], minlength=len(sparse))[named] / counts
                    for i in (0, 1)
                ]
            )
        traces.append(
            go.Scatter(
                x=centres[:, 0],
                y=centres[:, 1],
                mode="text",
                hoverinfo="skip",
                showlegend=False,
                name="clusters",
                text=[f"<b>{c}★</b>" if sparse[c] else str(c) for c in named],
                textfont=dict(
                    color=[SPARSE_COLOUR if sparse[c] else "#333" for c in named], size=11
                ),
            )
        )
    figure = go.Figure(traces)
    figure.update_layout(
        title=html.escape(title),
        height=640,
        margin=dict(l=10, r=10, t=40, b=10),
        dragmode="lasso",
        xaxis=dict(visible=False),
        yaxis=dict(visible=False, scaleanchor="x"),
        legend=dict(
            itemsizing="constant",
            title=html.escape(colour_kind) if colour_kind != "continuous" else None,
            **(dict(orientation="h", yanchor="top", y=-0.02, x=0) if half_width else {}),
        ),
        plot_bgcolor="white",
    )
    return figure


RUN_MARKERS = {  # a run's samples over the map: marked apart from the data's points
    "accepted": dict(symbol="star", size=14, color="#ffd400", line=dict(color="#111111", width=1)),
    "rejected": dict(symbol="x-thin-open", size=10, color="#444444", line=dict(width=2)),
}


def with_run_points(figure: go.Figure, points: list[dict[str, Any]], run_id: str) -> go.Figure:
    """A copy of a map figure with a run's samples drawn over it (core.filled.run_points:
    x, y, decision, cluster, map_k, problem), one trace per decision with its own marker
    (RUN_MARKERS). The traces carry no customdata: they are not dataset rows, so a click on
    one selects nothing. Problems are HTML-escaped in the hovers."""
    out = go.Figure(figure)
    for decision, marker in RUN_MARKERS.items():
        shown = [p for p in points if p["decision"] == decision]
        if not shown:
            continue
        out.add_trace(
            go.Scatter(
                x=[round(p["x"], 3) for p in shown],
                y=[round(p["y"], 3) for p in shown],
                mode="markers",
                name=f"{decision} by run {html.escape(run_id)} ({len(shown)})",
                text=[
                    f"{decision}"
                    + (f" ({html.escape(p['reason_kind'])})" if p["reason_kind"] else "")
                    + f" · cluster {p['cluster']} of the run's map (k = {p['map_k']})"
                    + f"<br>{excerpt(p['problem'])}"
                    for p in shown
                ],
                hovertemplate="%{text}<extra></extra>",
                marker=marker,
            )
        )
    return out


def _density_layer(coords: np.ndarray) -> go.Heatmap:
    """Grey shading of how many points fall in each cell (log scale; empty cells clear):
    where all the points are, under a sample of them. Square cells on the map's extent."""
    x, y = coords[:, 0].astype(np.float64), coords[:, 1].astype(np.float64)
    width, height = max(np.ptp(x), 1e-9), max(np.ptp(y), 1e-9)
    across = (
        (_DENSITY_BINS, max(1, round(_DENSITY_BINS * height / width)))
        if width >= height
        else (max(1, round(_DENSITY_BINS * width / height)), _DENSITY_BINS)
    )
    counts, xs, ys = np.histogram2d(x, y, bins=across)
    shade = np.where(counts > 0, np.log1p(counts), np.nan).T  # rows are y
    return go.Heatmap(
        x=np.round((xs[:-1] + xs[1:]) / 2, 4),
        y=np.round((ys[:-1] + ys[1:]) / 2, 4),
        z=np.round(shade, 2),
        colorscale=[[0, "#eef1f5"], [1, "#8a96a6"]],
        showscale=False,
        hoverinfo="skip",
        name="density of all points",
    )


def cluster_sizes(by_cluster: dict[str, int]) -> go.Figure:
    """Bars of samples per cluster, in the order of the cluster ids as numbers (0, 1, 2,
    ..., 10), not as text (0, 1, 10, 2)."""
    ids = sorted(by_cluster, key=int)
    figure = go.Figure(go.Bar(x=ids, y=[by_cluster[i] for i in ids], marker_color=PALETTE[0]))
    figure.update_layout(
        height=300,
        margin=dict(l=10, r=10, t=10, b=10),
        xaxis=dict(title="cluster", type="category", categoryorder="array", categoryarray=ids),
        yaxis_title="samples",
    )
    return figure


def _natural(value: str) -> tuple[int, Any]:
    return (0, int(value)) if value.lstrip("-").isdigit() else (1, value)


def selected_rows(selection: dict[str, Any] | None, coords: np.ndarray | None = None) -> list[int]:
    """Dataset rows of a Streamlit plotly selection. A box or lasso, given the layout's
    `coords` (N x 2, every row, drawn or not), selects every row inside its shape
    (core.geometry, exact over all N: a sampled view selects from all points); clicked
    points (or, without `coords`, the points the browser reports) by each point's
    customdata; label traces without customdata are ignored."""
    if not selection:
        return []
    shapes = (
        [(s.get("x") or [], s.get("y") or []) for s in selection.get("box", []) if s],
        [(s.get("x") or [], s.get("y") or []) for s in selection.get("lasso", []) if s],
    )
    if coords is not None and any(shapes):
        return rows_inside(coords, *shapes).tolist()
    rows = set()
    for point in selection.get("points", []):
        data = point.get("customdata")
        if isinstance(data, dict):  # a typed array's slice, serialised by index
            data = [data[k] for k in sorted(data, key=int)]
        if data:
            rows.add(int(data[0]))
    return sorted(rows)


def comparison_figure(datasets: list[dict[str, Any]], title: str) -> go.Figure:
    """Bars of G-Vendi per dataset (`name`, `g_vendi`), with error bars from each entry's
    `std` (equal-size subsamples) or `low`/`high` (a bootstrap interval), none without
    either. Dataset names are HTML-escaped."""
    scores = np.array([d["g_vendi"] for d in datasets], dtype=np.float64)
    err = None
    if all("std" in d for d in datasets):
        err = dict(type="data", array=[d["std"] for d in datasets])
    elif all("low" in d and "high" in d for d in datasets):
        err = dict(
            type="data",
            symmetric=False,
            array=(np.array([d["high"] for d in datasets]) - scores).tolist(),
            arrayminus=(scores - np.array([d["low"] for d in datasets])).tolist(),
        )
    figure = go.Figure(
        go.Bar(
            x=[html.escape(d["name"]) for d in datasets],
            y=scores.tolist(),
            error_y=err,
            marker_color="#7b2cbf",
        )
    )
    figure.update_layout(
        title=html.escape(title), yaxis_title="G-Vendi", height=380, margin=dict(t=50, b=30)
    )
    return figure
