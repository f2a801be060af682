"""Clusters, sparsity, the layout cache, cluster descriptions, map selections, the map verb."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

import charts
from core import diversity, maps
from core.config import FeatureConfig, ProxySpec
from core.errors import UserError
from core.features import compute_features
from core.layout import LayoutConfig, density, hdbscan_groups
from core.regions import (
    Clustering,
    default_k,
    keywords,
    representatives,
    resolve_k,
    sparse_clusters,
    spherical_kmeans,
)
from core.vendi import kernel_eigenvalues, vendi
from core.workspace import Workspace
from tests.conftest import assert_user_error
from tests.test_features import demo_file

rng = np.random.default_rng(0)


def planted(n: int = 1500, k: int = 8, d: int = 48, noise: float = 0.25, seed: int = 0):
    r = np.random.default_rng(seed)
    centres = r.standard_normal((k, d))
    labels = r.integers(0, k, n)
    return centres[labels] + noise * np.linalg.norm(centres, axis=1).mean() / np.sqrt(
        d
    ) * r.standard_normal((n, d)), labels


def test_kmeans_recovers_planted_clusters():
    x, truth = planted()
    for seed in range(4):
        result = spherical_kmeans(x, 8, seed=seed)
        assert adjusted_rand_score(truth, result.labels) > 0.99
        assert np.allclose(np.linalg.norm(result.centroids, axis=1), 1, atol=1e-5)
        assert result.sizes().sum() == len(x)


def test_kmeans_is_deterministic_for_a_seed():
    x, _ = planted(noise=1.5)  # overlapping clusters: the seed matters
    a, b = spherical_kmeans(x, 8, seed=3), spherical_kmeans(x, 8, seed=3)
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.centroids, b.centroids)
    assert not np.array_equal(a.labels, spherical_kmeans(x, 8, seed=4).labels)


def test_kmeans_fitted_on_a_sample_assigns_every_row_to_its_nearest_centroid(ws):
    x, truth = planted(n=3000, k=12)
    seen = []
    result = spherical_kmeans(
        x, 12, seed=0, fit_rows=400, on_progress=lambda d, t: seen.append((d, t))
    )
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = u @ result.centroids.T.astype(np.float64)
    assert np.array_equal(result.labels, sims.argmax(1))  # every row, not only the sample
    assert np.allclose(result.similarity, sims.max(1), atol=1e-5)
    assert result.sizes().sum() == 3000 and adjusted_rand_score(truth, result.labels) > 0.9
    assert seen[-1] == (1000, 1000) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    # the same clusters from a feature set on disk (streamed) as from its matrix in memory
    fs = features(ws)
    on_disk = spherical_kmeans(fs, 6, seed=1, fit_rows=50)
    in_memory = spherical_kmeans(fs.matrix(), 6, seed=1, fit_rows=50)
    assert np.array_equal(on_disk.labels, in_memory.labels)
    assert np.array_equal(on_disk.centroids, in_memory.centroids)


def test_k_as_count_or_fraction():
    assert resolve_k(10, 500) == 10 and resolve_k(0.1, 500) == 50 and resolve_k(900, 500) == 500
    for bad in (0, 1, -4, 2.5, float("nan"), float("inf")):
        with pytest.raises(UserError, match="whole count of at least 2"):
            resolve_k(bad, 10)
    assert default_k(2) == 2 and default_k(7473) == 61
    x, _ = planted(n=200)
    assert spherical_kmeans(x, 0.05).k == 10
    assert spherical_kmeans(x[:3], 5).k == 3  # never more clusters than rows


def test_sparse_flags_follow_the_percentile_rule():
    sizes = np.array([50, 3, 12, 7, 30, 7, 1, 20])
    median = np.median(sizes)  # 9.5
    assert sparse_clusters(sizes).tolist() == (sizes < median).tolist()
    assert sparse_clusters(sizes, 25).tolist() == (sizes < np.percentile(sizes, 25)).tolist()
    assert sparse_clusters(np.array([5, 5, 5])).tolist() == [
        False,
        False,
        False,
    ]  # all equal: none thin


def test_keywords_and_representatives():
    texts = ["the triangle angle and its hypotenuse"] * 5 + [
        "interest rate on the loan payment"
    ] * 5
    labels = np.array([0] * 5 + [1] * 5)
    words = keywords(texts, labels, 2, top=3)
    assert set(words[0]) <= {"triangle", "angle", "hypotenuse"} and len(words[0]) == 3
    assert set(words[1]) <= {"interest", "rate", "loan", "payment"}
    x, _ = planted(n=300)
    clustering = spherical_kmeans(x, 8, seed=0)
    reps = representatives(clustering, per_cluster=3)
    for c, rows in enumerate(reps):
        members = np.flatnonzero(clustering.labels == c)
        best = members[np.argsort(-clustering.similarity[members])][:3]
        assert rows == best.tolist()


def test_density_and_visual_groups():
    blobs = np.vstack([rng.normal(0, 0.1, (200, 2)), rng.normal(5, 1.0, (200, 2))])
    d = density(blobs)
    assert d[:200].mean() > 3 * d[200:].mean()  # the tight blob is denser
    groups = hdbscan_groups(blobs, min_size=20)
    assert len(set(groups[:200]) - {-1}) == 1 and set(groups[:200]) != set(groups[200:])


def test_selection_payload_of_a_multi_trace_figure_maps_to_rows():
    coords = rng.standard_normal((300, 2)).astype(np.float32)
    labels = rng.integers(0, 5, 300)
    colour = np.array(["alpha", "beta", "gamma"])[rng.integers(0, 3, 300)]
    figure = charts.map_figure(
        coords,
        colour=colour,
        colour_kind="topic",
        labels=labels,
        sparse=np.array([True, False, False, True, False]),
        texts=["x"] * 300,
    )
    data_traces = [t for t in figure.data if t.customdata is not None]
    assert len(data_traces) == 3  # one per colour; the sparse rings and the labels carry none
    # a lasso over two traces, as Streamlit reports it: trace-local indices, customdata per point
    points = []
    for curve, trace in enumerate(data_traces[:2]):
        for j in (0, 2, 5):
            points.append(
                {
                    "curve_number": curve,
                    "point_index": j,
                    "x": trace.x[j],
                    "y": trace.y[j],
                    "customdata": list(trace.customdata[j]),
                }
            )
    points.append(
        {"curve_number": 3, "point_index": 0, "x": 0, "y": 0}
    )  # a cluster label: no customdata
    rows = charts.selected_rows({"points": points, "box": [], "lasso": [{}]})
    assert len(rows) == 6
    for row, point in zip(
        sorted(rows), sorted(points[:-1], key=lambda p: p["customdata"][0]), strict=True
    ):
        # the row is the point drawn there (coordinates go to the browser with 3 decimals)
        assert np.allclose(coords[row], [point["x"], point["y"]], atol=1e-3)
        assert colour[row] == data_traces[point["curve_number"]].name
    assert charts.selected_rows(None) == [] and charts.selected_rows({"points": []}) == []


def test_hover_text_is_escaped():
    assert charts.excerpt("<script>alert(1)</script> and <img src=x onerror=alert(2)>", 200) == (
        "&lt;script&gt;alert(1)&lt;/script&gt; and &lt;img src=x onerror=alert(2)&gt;"
    )


@pytest.fixture
def ws(tmp_path) -> Workspace:
    ws = Workspace(tmp_path / "ws")
    ws.import_dataset(demo_file(tmp_path / "d.jsonl", 80), name="d")
    return ws


def features(ws):
    return compute_features(ws, "d", proxy=ProxySpec("tiny-random"), config=FeatureConfig(dim=64))


def test_layout_is_cached_not_recomputed(ws, monkeypatch):
    fs = features(ws)
    first = maps.layout_for(fs, LayoutConfig(fit_rows=50))
    assert not first.cached and first.coords.shape == (80, 2) and first.density.shape == (80,)

    def fail(*_args, **_kwargs):
        raise AssertionError("the layout was computed again")

    monkeypatch.setattr(maps, "umap_layout", fail)
    again = maps.layout_for(fs, LayoutConfig(fit_rows=50))
    assert again.cached and np.array_equal(again.coords, first.coords)
    with pytest.raises(AssertionError, match="computed again"):  # other settings, another layout
        maps.layout_for(fs, LayoutConfig(fit_rows=50, neighbors=5))


def test_clusters_are_cached_and_described(ws, monkeypatch):
    fs = features(ws)
    clustering = maps.clusters_for(fs, k=6)
    monkeypatch.setattr(
        maps, "spherical_kmeans", lambda *_a, **_k: (_ for _ in ()).throw(AssertionError("again"))
    )
    assert np.array_equal(maps.clusters_for(fs, k=6).labels, clustering.labels)
    described = maps.describe(ws, "d", fs, clustering, sparse_below=50)
    assert [c["id"] for c in described] == list(range(6))
    assert sum(c["size"] for c in described) == 80
    sizes = np.array([c["size"] for c in described])
    assert [c["sparse"] for c in described] == (sizes < np.median(sizes)).tolist()
    assert all(len(c["examples"]) == min(3, c["size"]) and c["keywords"] for c in described)
    # each cluster's G-Vendi is its members' (vendi.per_group): the same numbers, to the bit,
    # as the Diversity page's per-cluster scores of the same clusters
    matrix = fs.matrix()
    for c in described:
        members = matrix[clustering.labels == c["id"]]
        assert c["g_vendi"] == vendi(kernel_eigenvalues(members)), c["id"]
    by_cluster = diversity.score(
        ws, "d", proxy=ProxySpec("tiny-random"), config=FeatureConfig(dim=64), by="cluster", k=6
    )
    assert {g["group"]: g["g_vendi"] for g in by_cluster["groups"]} == {
        str(c["id"]): c["g_vendi"] for c in described
    }


def test_an_empty_cluster_is_described_with_no_diversity(ws):
    fs = features(ws)
    clustering = maps.clusters_for(fs, k=4)
    unused = np.zeros((1, clustering.centroids.shape[1]), clustering.centroids.dtype)
    with_empty = Clustering(
        clustering.labels,
        np.vstack([clustering.centroids, unused]),
        clustering.similarity,
        clustering.iterations,
    )
    calls = []
    described = maps.describe(ws, "d", fs, with_empty, on_progress=lambda *a: calls.append(a))
    assert [c["id"] for c in described] == [0, 1, 2, 3, 4]
    empty = described[4]
    assert (empty["size"], empty["g_vendi"], empty["examples"]) == (0, 0.0, [])
    assert [c["g_vendi"] for c in described[:4]] == [
        c["g_vendi"] for c in maps.describe(ws, "d", fs, clustering)
    ]
    assert calls[-1][0] == calls[-1][1]  # the bar ends full


def test_selections(ws):
    saved = ws.save_selection("d", "thin", [5, 3, 3, 70], note="cluster 4")
    assert saved["rows"] == [3, 5, 70] and len(saved["ids"]) == 3
    assert [s["name"] for s in ws.selections("d")] == ["thin"] and ws.selections("d")[0][
        "size"
    ] == 3
    ws.save_selection("d", "thin", [1])  # the same name replaces it
    assert ws.selection("d", "thin")["rows"] == [1]
    with pytest.raises(UserError, match="empty"):
        ws.save_selection("d", "none", [])
    with pytest.raises(UserError, match="between 0 and 79"):
        ws.save_selection("d", "far", [80])
    with pytest.raises(UserError, match=r"no selection named 'x'.*thin"):
        ws.selection("d", "x")
    ws.delete_dataset("d")  # selections go with their dataset
    with closing(sqlite3.connect(ws.db_path)) as db:  # the catalogue file itself
        assert db.execute("SELECT COUNT(*) FROM selections").fetchone()[0] == 0


def test_map_cli(cli, tmp_path):
    assert cli("import", str(demo_file(tmp_path / "d.jsonl", 60)), "--name", "d").code == 0
    r = cli(
        "map",
        "d",
        "--proxy",
        "tiny-random",
        "--dim",
        "64",
        "--k",
        "6",
        "--sparse-below",
        "40",
        "--json",
    )
    assert r.code == 0, r.err
    clusters = r.json["clusters"]
    assert len(clusters) == 6 and sum(c["size"] for c in clusters) == 60
    sizes = np.array([c["size"] for c in clusters])
    assert [c["sparse"] for c in clusters] == (sizes < np.percentile(sizes, 40)).tolist()
    assert all({"id", "size", "sparse", "keywords"} <= set(c) for c in clusters)
    human = cli("map", "d", "--proxy", "tiny-random", "--dim", "64", "--k", "6")
    assert "6 clusters of 60 rows" in human.out
    assert_user_error(
        cli("map", "d", "--proxy", "tiny-random", "--sparse-below", "0"), "--sparse-below"
    )
    assert_user_error(
        cli("map", "d", "--proxy", "tiny-random", "--k", "-3"), "--k", "whole count of at least 2"
    )


def test_keywords_leave_out_markup():
    latex = [
        r"Let $f(x) = \frac{3}{4}\left(x + \dfrac{1}{2}\right)$. Find the \text{slope} of the "
        r"tangent \mathrm{line}: \begin{array}{cc} parabola & tangent \end{array} so "
        r"\boxed{\frac{3}{4}} \cdot \sqrt{2}",
        r"The parabola $y = \frac{x^2}{2} \cdot \left[1 \right]$ has a tangent \textbf{slope} "
        r"\begin{cases} derivative \end{cases}; answer \boxed{1}, \\frac{1}{2} \\mathrm{d}",
    ] * 4
    plain = ["interest rate on the loan payment"] * 8
    words = keywords(latex + plain, np.array([0] * 8 + [1] * 8), 2, top=6)
    commands = {
        "frac", "dfrac", "mathrm", "begin", "end", "array", "cases", "left", "right", "text",
        "textbf", "cdot", "boxed", "sqrt", "cc",
    }  # fmt: skip
    assert not set(words[0]) & commands, words[0]
    assert {"parabola", "tangent", "slope"} <= set(words[0])
    assert set(words[1]) <= {"interest", "rate", "loan", "payment"}


def test_every_sparse_cluster_has_its_own_trace_beyond_the_palette():
    k = 61  # gsm8k's default: more clusters than colours
    labels = np.repeat(np.arange(k), np.arange(k) + 3)
    coords = rng.standard_normal((len(labels), 2)).astype(np.float32)
    sizes = np.bincount(labels)
    sparse = sizes < np.median(sizes)
    assert sparse.sum() > len(charts.PALETTE) > charts.MAX_CATEGORIES
    figure = charts.map_figure(
        coords,
        colour=labels,
        colour_kind="cluster",
        labels=labels,
        sparse=sparse,
        texts=["x"] * len(labels),
    )
    data = [t for t in figure.data if t.customdata is not None]
    names = [t.name for t in data]
    assert "other" not in names
    for c in np.flatnonzero(sparse):  # one trace per sparse cluster, holding all its points
        trace = data[names.index(f"{c}★")]
        assert sorted(int(p[1]) for p in trace.customdata) == [c] * sizes[c]
    colours = [t.marker.color for t in data if t.name.endswith("★")]
    assert len(set(colours)) == sparse.sum()  # each its own colour
    dense = [t for t in data if not t.name.endswith("★")]
    assert len(dense) == 1 and set(int(p[1]) for p in dense[0].customdata) == set(
        np.flatnonzero(~sparse)
    )
    assert sum(len(t.customdata) for t in data) == len(labels)  # every point once


def test_legend_names_from_the_data_are_text():
    coords = rng.standard_normal((40, 2)).astype(np.float32)
    link = '<a href="http://x">x</a>'
    colour = np.array([link, "<b>bold</b>", "plain", "(missing)"] * 10)
    labels = np.arange(40) % 4
    figure = charts.map_figure(
        coords,
        colour=colour,
        colour_kind="<i>field</i>",
        labels=labels,
        sparse=np.array([True, False, False, False]),
        texts=[link] * 40,
    )
    names = [t.name for t in figure.data if t.customdata is not None]
    assert not any("<" in n for n in names), names
    assert '&lt;a href="http://x"&gt;x&lt;/a&gt;' in {n.replace("&quot;", '"') for n in names}
    assert "<" not in figure.layout.legend.title.text
    assert all("<" not in t for t in figure.data[0].text)
    bars = charts.comparison_figure(
        [{"name": link, "g_vendi": 3.0, "low": 2.5, "high": 3.5}], "<img src=x>"
    )
    assert "<" not in bars.data[0].x[0] and "<" not in bars.layout.title.text
    assert list(bars.data[0].error_y.array) == [0.5]


def test_layout_progress_moves_through_umap():
    x, _ = planted(n=600, d=32)
    seen = []
    from core.layout import umap_layout

    coords = umap_layout(x, LayoutConfig(fit_rows=450), lambda d, t: seen.append(d / t))
    assert coords.shape == (600, 2) and seen == sorted(seen) and seen[-1] == 1.0
    # the epochs of the fit and of the transform each move the bar, not one jump per phase
    assert len({f for f in seen if 0 < f < 1}) > 50, sorted(set(seen))
    again = umap_layout(x, LayoutConfig(fit_rows=450))
    assert np.array_equal(coords, again)  # the progress does not change the result


def test_kmeans_reports_its_iterations():
    x, _ = planted(n=400)
    seen = []
    result = spherical_kmeans(x, 8, seed=0, on_progress=lambda d, t: seen.append((d, t)))
    assert seen[0] == (0, 21) and seen[-1] == (21, 21)
    assert len(seen) >= result.iterations + 2 and [d for d, _ in seen] == sorted(d for d, _ in seen)
