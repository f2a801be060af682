"""How to draw the map at 100,000 and 1,000,000 points: the candidates measured side by side.

Candidates (each where it can run here):
- `all`: Plotly WebGL (scattergl), every point a marker (the Map page up to 50,000 points);
- `sampled`: Plotly WebGL, a seeded sample of charts.MAP_POINTS points (sparse clusters
  first) over a 2-D histogram heatmap of all points: what the Map page draws above that
  (`sampled:N` draws N);
- `datashader`: the same sample over an image of all points rasterised by datashader
  (runs when `import datashader` works; it is not a dependency of the app);
- `atlas`: Apple's embedding-atlas Streamlit component (when `import embedding_atlas`
  works; not a dependency either).

For each, in this process: the figure's build time and its JSON (what Streamlit serialises
and sends on every rerun of the page); then in headless Chromium (Debian's, driven by
Playwright), on a small Streamlit page that draws it with lasso selection as the Map page
does: the time from opening the page to the map drawn and idle, a lasso drawn with the
mouse until the selected count is shown (rows found by core.geometry over all points), a
zoom and a pan (modebar) until the next idle frame, the JS heap in use (CDP
Performance.getMetrics) and the browser's peak resident memory (PSS, all its processes). A
candidate whose browser goes over --browser-gib is stopped and reported so. One size and
one candidate at a time; the browser is closed between them.

The map is synthetic: uneven clusters (default k, a few tiny) as blobs on the plane.

    python bench/map_render.py [--rows 100000,1000000] [--candidates all,sampled,datashader,atlas]
    python bench/map_render.py --quick   # 3,000 points, all and sampled; the browser part when chromium is there
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib

from bench.measure import REPO, parse_args

# charts (plotly), streamlit and the browser are imported where they are used, so that
# `--help` and importing this file stay instant.

CANDIDATES = ("all", "sampled", "datashader", "atlas")

# The page the browser opens: the map of `rows` points drawn by `mode`, with lasso
# selection read back as rows, as app_pages/map.py does.
HARNESS = """
import base64, io, sys
from pathlib import Path
import numpy as np
import streamlit as st
sys.path.insert(0, {repo!r})
import charts
from bench.map_render import build

DATA = Path(sys.argv[1])
rows, mode = int(st.query_params["rows"]), st.query_params["mode"]


@st.cache_resource
def load(rows):
    saved = np.load(DATA / f"map-{{rows}}.npz")
    texts = [f"Problem {{i}}: what is {{i % 97}} + {{i % 89}}?" for i in range(rows)]
    return saved["coords"], saved["labels"], saved["sparse"], texts


@st.cache_resource
def figure(rows, mode):
    return build(*load(rows), mode)


coords, labels, sparse, texts = load(rows)
if mode == "atlas":
    import pandas as pd
    from embedding_atlas.streamlit import embedding_atlas
    frame = pd.DataFrame(
        {{"x": coords[:, 0], "y": coords[:, 1], "cluster": labels.astype(str), "text": texts}}
    )
    value = embedding_atlas(frame, x="x", y="y", text="text", key="atlas")
    st.caption("map ready")
    st.text(str(value))
else:
    event = st.plotly_chart(
        figure(rows, mode), key="map", on_select="rerun",
        selection_mode=("points", "box", "lasso"), width="stretch",
    )
    st.caption("map ready")
    picked = charts.selected_rows(event.selection if event else None, coords)
    st.markdown(f"{{len(picked):,}} points selected on the map" if picked else "Nothing selected yet.")
"""


def build(coords: np.ndarray, labels: np.ndarray, sparse: np.ndarray, texts: list[str], mode: str):
    """The map's figure for `mode` (all, sampled, datashader): charts.map_figure."""
    import charts

    figure = charts.map_figure(
        coords,
        colour=labels,
        colour_kind="cluster",
        labels=labels,
        sparse=sparse,
        texts=texts,
        limit=len(coords) if mode == "all" else int(mode.split(":")[1]) if ":" in mode else None,
    )
    if mode == "datashader":
        import base64
        import io

        import datashader
        import datashader.transfer_functions as tf
        import pandas as pd

        (x0, y0), (x1, y1) = coords.min(0), coords.max(0)
        width = 800
        canvas = datashader.Canvas(
            plot_width=width,
            plot_height=max(1, round(width * (y1 - y0) / (x1 - x0))),
            x_range=(float(x0), float(x1)),
            y_range=(float(y0), float(y1)),
        )
        frame = pd.DataFrame({"x": coords[:, 0], "y": coords[:, 1]})
        image = tf.shade(canvas.points(frame, "x", "y"), cmap=["#eef1f5", "#8a96a6"], how="log")
        png = io.BytesIO()
        image.to_pil().save(png, "PNG")
        figure.data = [t for t in figure.data if t.type != "heatmap"]
        figure.add_layout_image(
            source="data:image/png;base64," + base64.b64encode(png.getvalue()).decode(),
            xref="x",
            yref="y",
            x=float(x0),
            y=float(y1),
            sizex=float(x1 - x0),
            sizey=float(y1 - y0),
            sizing="stretch",
            layer="below",
        )
    return figure


def synthetic_map(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows x 2 float32 coordinates, cluster labels, sparse flags per cluster): default-k
    clusters of uneven sizes (five of 1 to 5 points) as Gaussian blobs on the plane; sparse
    = below the median size."""
    from core.regions import default_k

    rng = np.random.default_rng(seed)
    k = default_k(rows)
    sizes = np.maximum(1, np.round(rng.dirichlet(np.full(k, 0.5)) * rows)).astype(int)
    sizes[: min(5, k)] = np.arange(1, min(5, k) + 1)
    sizes[np.argmax(sizes)] += rows - sizes.sum()
    labels = rng.permutation(np.repeat(np.arange(k), sizes))
    centres = rng.uniform(-10, 10, (k, 2))
    spread = 0.05 + 0.6 * np.sqrt(sizes / sizes.max())
    coords = centres[labels] + rng.standard_normal((rows, 2)) * spread[labels, None]
    return coords.astype(np.float32), labels, sizes < np.median(sizes)


def available(candidate: str) -> str | None:
    """Why `candidate` cannot run here, or None."""
    module = {"datashader": "datashader", "atlas": "embedding_atlas.streamlit"}.get(candidate)
    if module is None:
        return None
    import importlib.util

    try:
        found = importlib.util.find_spec(module)
    except ModuleNotFoundError:
        found = None
    return None if found else f"{module.split('.')[0]} is not installed"


def server_side(coords, labels, sparse, texts, mode: str) -> dict[str, float]:
    """Seconds to build the figure, seconds and MB of its JSON (sent on every rerun)."""
    import plotly.io

    t = time.perf_counter()
    figure = build(coords, labels, sparse, texts, mode)
    built = time.perf_counter() - t
    t = time.perf_counter()
    spec = plotly.io.to_json(figure, validate=False)
    return {"build_s": built, "json_s": time.perf_counter() - t, "json_mb": len(spec) / 1e6}


def _tree(root: int) -> list[int]:
    """`root` and all its descendants' pids (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def _pss(pid: int) -> int:
    """The process's proportional set size (shared pages split among their users), bytes."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return 0


def _name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


class BrowserMemory:
    """Samples the memory of this process's chromium processes (the sum of their
    proportional set sizes, so shared pages count once); past `limit`
    bytes kills them (the measurement then fails and says so)."""

    def __init__(self, limit: int):
        self.limit, self.peak, self.killed = limit, 0, False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> BrowserMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            pids = [p for p in _tree(os.getpid()) if _name(p).startswith("chrom")]
            total = sum(_pss(p) for p in pids)
            self.peak = max(self.peak, total)
            if total > self.limit and not self.killed:
                self.killed = True
                for pid in pids:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)


def idle_frame(page) -> None:
    """Wait for two animation frames: the page has drawn and its main thread is free."""
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def in_browser(url: str, rows: int, mode: str, limit_bytes: int, timeout_s: float) -> dict:
    """Load, lasso round trip, zoom and pan, JS heap, browser peak RSS for one candidate."""
    from playwright.sync_api import sync_playwright

    from tests.browser import draw_lasso, launch

    result: dict[str, object] = {}
    step = "start"
    with sync_playwright() as p, BrowserMemory(limit_bytes) as memory:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(timeout_s * 1000)
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url[:80]}"))
            cdp = page.context.new_cdp_session(page)
            cdp.send("Performance.enable")
            step = "load"
            started = time.perf_counter()
            page.goto(f"{url}/?rows={rows}&mode={mode}")
            if mode == "atlas":
                page.get_by_text("map ready").wait_for()
                frame = page.frame_locator("iframe").first
                frame.locator("canvas").first.wait_for()
                idle_frame(page)
                result["load_s"] = time.perf_counter() - started
                return result
            plot = page.locator(".js-plotly-plot .nsewdrag").first
            plot.wait_for()
            page.get_by_text("Nothing selected yet.").wait_for()
            idle_frame(page)
            result["load_s"] = time.perf_counter() - started

            step = "lasso"
            released = draw_lasso(page, share=1 / 5, vertices=32)
            page.get_by_text("points selected on the map").wait_for()
            idle_frame(page)
            result["lasso_s"] = time.perf_counter() - released

            step = "zoom and pan"
            box = plot.bounding_box()
            cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            for name, key in (("Zoom in", "zoom_s"), ("Pan", None)):
                page.mouse.move(cx, cy)  # the modebar shows while the mouse is over the plot
                button = page.locator(f'.modebar-btn[data-title="{name}"]').first
                t = time.perf_counter()
                button.click()
                idle_frame(page)
                if key:
                    result[key] = time.perf_counter() - t
            page.mouse.move(cx, cy)
            t = time.perf_counter()
            page.mouse.down()
            page.mouse.move(cx + 120, cy + 60, steps=8)
            page.mouse.up()
            idle_frame(page)
            result["pan_s"] = time.perf_counter() - t
            metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
            result["heap_mb"] = metrics["JSHeapUsedSize"] / 1e6
        except Exception as e:  # a killed or overloaded browser: say what happened
            result["failed"] = f"{step}: " + (
                f"over {limit_bytes / 2**30:.0f} GiB"
                if memory.killed
                else f"nothing within {timeout_s:.0f} s"
                if "Timeout" in type(e).__name__
                else type(e).__name__
            )
            if errors:
                result["failed"] += f"; the page said: {errors[0][:160]}"
        finally:
            with contextlib.suppress(Exception):
                browser.close()
            result["browser_peak_mb"] = memory.peak / 1e6
    return result


def _cell(value: object, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, float) else "-"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="100000,1000000", help="sizes, comma-separated")
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--skip-browser", action="store_true")
    parser.add_argument("--browser-gib", type=float, default=5.0, help="memory cap per browser")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per browser step")
    quick = {"rows": "3000", "candidates": "all,sampled", "timeout": 120.0}
    args = parse_args(parser, quick, argv)
    from core.geometry import inside_polygon
    from tests.browser import CHROMIUM

    sizes = [int(s) for s in args.rows.split(",")]
    candidates = [c for c in args.candidates.split(",") if c]
    skipped = {c: why for c in candidates if (why := available(c))}
    for candidate, why in skipped.items():
        print(f"{candidate}: not measured ({why})")
    candidates = [c for c in candidates if c not in skipped]
    browser = not args.skip_browser and Path(CHROMIUM).exists()
    if not browser and not args.skip_browser:
        print("the browser part is skipped: Debian's chromium is not installed")
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for rows in sizes:
            coords, labels, sparse = synthetic_map(rows)
            np.savez(folder / f"map-{rows}.npz", coords=coords, labels=labels, sparse=sparse)
            texts = [f"Problem {i}: what is {i % 97} + {i % 89}?" for i in range(rows)]
            angles = np.linspace(0, 2 * np.pi, 33)[:-1]
            t = time.perf_counter()
            inside = inside_polygon(coords, 5 * np.cos(angles), 5 * np.sin(angles))
            print(
                f"{rows:,} points, {len(sparse)} clusters ({sparse.sum()} sparse, "
                f"{sparse[labels].sum():,} points in them): a 32-vertex lasso over all points "
                f"in {time.perf_counter() - t:.3f} s ({inside.sum():,} inside)"
            )
            for mode in candidates:
                row = {"candidate": mode, "rows": rows}
                if mode != "atlas":
                    row |= server_side(coords, labels, sparse, texts, mode)
                table.append(row)
            del texts
        if browser:
            from tests.browser import running_app

            harness = folder / "harness.py"
            harness.write_text(HARNESS.format(repo=str(REPO)))
            with running_app(folder / "ws", harness, (str(folder),)) as served:
                for row in table:
                    row |= in_browser(
                        served.url,
                        row["rows"],
                        row["candidate"],
                        int(args.browser_gib * 2**30),
                        args.timeout,
                    )
    print(
        "| candidate | points | figure built | JSON per rerun | load to drawn | lasso round trip "
        "| zoom | pan | JS heap | browser peak memory |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in table:
        json_part = f"{r['json_s']:.2f} s, {r['json_mb']:.1f} MB" if "json_s" in r else "-"
        failed = f" ({r['failed']})" if "failed" in r else ""
        print(
            f"| {r['candidate']}{failed} | {r['rows']:,} | {_cell(r.get('build_s'), '.2f')} s "
            f"| {json_part} | {_cell(r.get('load_s'), '.2f')} s | {_cell(r.get('lasso_s'), '.2f')} s "
            f"| {_cell(r.get('zoom_s'), '.2f')} s | {_cell(r.get('pan_s'), '.2f')} s "
            f"| {_cell(r.get('heap_mb'), '.0f')} MB | {_cell(r.get('browser_peak_mb'), '.0f')} MB |"
        )
    print(json.dumps(table))


if __name__ == "__main__":
    main()
