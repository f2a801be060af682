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


def map_figure(
    coords: np.ndarray,
    *,
    colour: np.ndarray,
    colour_kind: str,
    labels: np.ndarray,
    sparse: np.ndarray,
    hover: Sequence[str],
    highlight: set[int] | None = None,
    title: str = "",
) -> go.Figure:
    """A WebGL scatter of the layout.

    `colour` is a value per point: numbers when `colour_kind` is "continuous" (density),
    else categories (cluster ids, sparse/dense, a field's values), one trace per category.
    Over 20 categories: coloured by "cluster", every sparse cluster keeps its own trace and
    colour and the dense ones share one grey trace; any other colouring keeps the 19 largest
    and puts the rest in "other". `labels` are cluster ids and `sparse` flags per cluster:
    points of sparse clusters get a dark ring (a separate, unselectable layer) and sparse
    clusters a red starred label at their centre. `highlight` dims every cluster but these.
    Each point's customdata is [dataset row, cluster]. Category names and `colour_kind` come
    from the data: they are HTML-escaped (plotly renders HTML in legends and hovers).
    """
    n = len(coords)
    xy = np.round(coords.astype(np.float64), 3)  # 3 decimals: a third of the JSON, same picture
    # object dtype: plotly would send an int array as a typed array, whose per-point slice
    # comes back from the browser as an object {"0": row, "1": cluster}, not a list
    customdata = np.column_stack([np.arange(n), labels]).astype(object)
    text = np.asarray(hover, dtype=object)
    opacity = 0.8 if not highlight else np.where(np.isin(labels, list(highlight)), 0.95, 0.12)
    size = 6 if n < 5_000 else 4 if n < 50_000 else 3
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

    traces = []
    if colour_kind == "continuous":
        traces.append(
            go.Scattergl(
                name="samples",
                **points(
                    slice(None),
                    color=colour,
                    colorscale="Viridis",
                    showscale=True,
                    colorbar=dict(title="density", thickness=12),
                ),
            )
        )
    elif colour_kind == "cluster" and len(np.unique(colour)) > MAX_CATEGORIES:
        thin = np.flatnonzero(sparse)
        thin = thin[np.isin(thin, colour)]
        for c, shade in zip(thin, palette(len(thin)), strict=True):
            traces.append(go.Scattergl(name=f"{c}★", **points(colour == c, color=shade)))
        dense = ~sparse[colour]
        if dense.any():
            name = f"dense clusters ({len(np.unique(colour[dense]))})"
            traces.append(go.Scattergl(name=name, **points(dense, color=DENSE_COLOUR)))
    else:
        values = colour.astype(str)
        categories, counts = np.unique(values, return_counts=True)
        if len(categories) > MAX_CATEGORIES:
            categories = categories[np.argsort(-counts, kind="stable")][: MAX_CATEGORIES - 1]
        shown = sorted(categories, key=_natural)
        masks = [(html.escape(c), values == c) for c in shown]
        rest = ~np.isin(values, categories)
        if rest.any():
            masks.append(("other", rest))
        for (name, mask), shade in zip(masks, palette(len(masks)), strict=True):
            named = {"sparse": SPARSE_COLOUR, "dense": DENSE_COLOUR}.get(name, shade)
            traces.append(go.Scattergl(name=name, **points(mask, color=named)))
    ring = sparse[labels] & (np.isin(labels, list(highlight)) if highlight else True)
    if (
        ring.any()
    ):  # rings on the points of sparse clusters; no customdata, so never selected as data
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
                    opacity=0.7,
                ),
            )
        )
    if len(sparse) <= 400:
        centres = np.array(
            [
                coords[labels == c].mean(0) if np.any(labels == c) else [np.nan, np.nan]
                for c in range(len(sparse))
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
                text=[f"<b>{c}★</b>" if sparse[c] else str(c) for c in range(len(sparse))],
                textfont=dict(color=[SPARSE_COLOUR if s else "#333" for s in sparse], size=11),
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
        ),
        plot_bgcolor="white",
    )
    return figure


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


def selected_rows(selection: dict[str, Any] | None) -> list[int]:
    """Dataset rows of the points in a Streamlit plotly selection (click, box or lasso),
    read from each point's customdata; label traces without customdata are ignored."""
    if not selection:
        return []
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
