"""The app served on a free 127.0.0.1 port, and Debian's chromium under Playwright: shared by
the end-to-end test and the benchmarks that open the app's pages."""

from __future__ import annotations

import math
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# Each page's link in the sidebar, and a text it shows once drawn.
PAGES = {
    "Data": "Datasets in this workspace",
    "Features": "Feature sets of this dataset",
    "Diversity": "By group",
    "Map": "Clusters",
    "Synthesize": "3. Run",
    "Export": "Write it out",
}


class Served(NamedTuple):
    url: str
    pid: int  # the Streamlit server's process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_app(
    workspace: Path, script: str | Path = "app.py", args: tuple[str, ...] = ()
) -> Iterator[str]:
    """`streamlit run app.py` (or another `script`, given `args`) on a free port with this
    workspace; yields its URL and process once healthy."""
    port = free_port()
    env = {**os.environ, "PRISM_WORKSPACE": str(workspace), "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(script),
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            *(("--", *args) if args else ()),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.3)
        yield Served(url, server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)


def launch(playwright):
    """Headless Debian chromium (Playwright downloads no browser of its own)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def idle(page) -> None:
    """Wait until the app has finished its rerun (the running indicator is gone)."""
    page.wait_for_timeout(200)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden")


def open_page(page, name: str) -> float:
    """Open a page from the sidebar; seconds until its marker text shows and it is idle."""
    started = time.perf_counter()
    page.get_by_role("link", name=name, exact=True).click()
    page.get_by_text(PAGES[name], exact=True).filter(visible=True).first.wait_for()
    idle(page)
    return time.perf_counter() - started


def draw_lasso(page, share: float = 1 / 3, vertices: int = 40) -> float:
    """Drag a closed circle with the mouse over the map's plot area: its radius `share` of
    the area's smaller side, around the centre. Returns the time.perf_counter() at which
    the mouse was released."""
    area = page.locator(".js-plotly-plot .nsewdrag").first.bounding_box()
    cx, cy = area["x"] + area["width"] / 2, area["y"] + area["height"] / 2
    r = min(area["width"], area["height"]) * share
    page.mouse.move(cx + r, cy)
    page.mouse.down()
    for i in range(1, vertices + 1):
        a = 2 * math.pi * i / vertices
        page.mouse.move(cx + r * math.cos(a), cy + r * math.sin(a))
    released = time.perf_counter()
    page.mouse.up()
    return released
