"""The whole path in a real browser: Debian's chromium driven by Playwright, the app started
on a free 127.0.0.1 port with an empty workspace, the LLM a local chat-completions server.

demo present -> upload a file -> tiny-random features -> G-Vendi -> the map: a cluster from
the table, points by a real lasso drag, a saved selection -> the sentence space beside it,
a pick in the disagreement table -> synthesis -> what the run filled -> review (a rejected
item accepted by editing the grid) -> export, downloaded and read back -> keep the 10 most
diverse rows. Dataset text with <script> and <img onerror> must show as text
and never run. A refresh keeps the state. Each page's render time once cached is measured
and printed, never asserted (a test does not depend on the machine's speed; the 2 s
budget is checked by bench/scale_1m.py at a million rows). A screenshot of every page goes
to $PRISM_SCREENSHOTS (the README's come from there) or the test's temporary folder.
"""

from __future__ import annotations

import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from core import curation, synthesis
from core.demo import demo_rows
from core.workspace import Workspace
from tests.browser import CHROMIUM, PAGES, draw_lasso, launch, open_page, running_app
from tests.browser import idle as browser_idle
from tests.conftest import HANG_SECONDS
from tests.fake_llm import FakeLLM

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"
)

XSS = [
    {
        "question": "<script>window.__xss = 'script'</script>What is 2 + 2?",
        "answer": "<img src=x onerror=\"window.__xss = 'img'\">2 + 2 = 4. The answer is \\boxed{4}.",
    },
    {
        "question": "<b onmouseover=\"window.__xss = 'b'\">Bold?</b> What is 3 + 3?",
        "answer": "6 \\boxed{6}",
    },
]


class Watcher:
    """A local HTTP server that records every request: an image or link in dataset text
    that the browser rendered would call it."""

    def __init__(self):
        self.hits: list[str] = []
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def app(tmp_path):
    """The app on a free port with an empty workspace; yields (url, workspace folder)."""
    with running_app(tmp_path / "ws") as served:
        yield served.url, tmp_path / "ws"


def test_the_whole_path(app, tmp_path):
    url, ws_root = app
    shots = Path(os.environ.get("PRISM_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    upload = tmp_path / "e2e.jsonl"
    rows = XSS + [{"question": r["question"], "answer": r["answer"]} for r in demo_rows(60, seed=7)]
    upload.write_text("".join(json.dumps(r) + "\n" for r in rows))

    watcher = Watcher()
    # the file name is Markdown for an image on the watcher: the sidebar shows it as text
    file_name = f"e2e ![px](http:127.0.0.1:{watcher.port}/p) x.jsonl"
    with FakeLLM() as llm, playwright.sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1100}, accept_downloads=True)
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.set_default_timeout(HANG_SECONDS * 1000)

        def text(value: str, **kw):
            # visible only: the data grid keeps hidden copies of cell text for screen readers
            return page.get_by_text(value, **kw).filter(visible=True).first

        def go(name: str) -> float:
            return open_page(page, name)

        def idle() -> None:
            browser_idle(page)

        def pick_first_row(grid) -> None:
            """Tick the first row's selection box of a table, once the grid has drawn it."""
            grid.scroll_into_view_if_needed()
            grid.locator('[role="gridcell"]').first.wait_for(state="attached")
            box = grid.bounding_box()
            page.mouse.click(box["x"] + 18, box["y"] + 35 + 17)  # under the 35 px header

        def shot(name: str, at: str | None = None) -> None:
            if at:  # the page scrolls inside the app, so bring the part worth seeing into view
                text(at, exact=True).scroll_into_view_if_needed()
            # tables draw on a canvas after they mount: wait for their first cell
            for grid in page.locator('[data-testid="stDataFrame"]').all():
                grid.locator('[role="gridcell"]').first.wait_for(state="attached")
            page.wait_for_timeout(300)
            page.screenshot(path=str(shots / f"{name}.png"))

        # 1. the demo is there on first start
        page.goto(url)
        text("Datasets in this workspace", exact=True).wait_for()
        idle()
        assert page.get_by_role("combobox", name="Active dataset").input_value() == "demo"
        shot("1-data")

        # 2. import a file through the upload widget
        page.locator('input[type="file"]').set_input_files(
            {"name": file_name, "mimeType": "application/jsonl", "buffer": upload.read_bytes()}
        )
        text("The first record in full").wait_for()
        idle()
        text("The first record in full").click()
        text("window.__xss = 'script'").wait_for()  # the script tag shows as text
        page.get_by_role("textbox", name="Dataset name").fill("e2e")
        page.keyboard.press("Enter")
        idle()
        page.get_by_role("button", name="Import").click()
        text("Imported 62 rows as").wait_for()
        idle()
        assert page.get_by_role("combobox", name="Active dataset").input_value() == "e2e"
        source = text("62 rows · from e2e")  # the file name, shown as typed (U+2060 aside)
        assert source.inner_text().replace("\u2060", "") == f"62 rows · from {file_name}"

        # 3. the proxy: tiny-random, in the sidebar
        page.get_by_role("combobox", name="Proxy model").click()
        page.get_by_role("option", name="tiny-random", exact=True).click()
        idle()

        # 4. features
        go("Features")
        page.get_by_role("button", name="Compute features").click()
        text("Features ready: 62 x 1024").wait_for()
        idle()
        shot("2-features")

        # 5. G-Vendi
        go("Diversity")
        gvendi = page.locator('[data-testid="stMetric"]').filter(has_text="G-Vendi").first
        assert float(re.search(r"\d+\.\d+", gvendi.inner_text()).group()) > 1
        shot("3-diversity")

        # 6. the map: a cluster from the table, then points with a lasso drag
        go("Map")
        plot = page.locator(".js-plotly-plot .nsewdrag").first
        plot.wait_for()
        pick_first_row(page.locator('[data-testid="stDataFrame"]').first)
        text("samples in cluster(s)").wait_for()
        idle()
        shot("4-map", at="Colour by")  # the picked cluster highlighted
        draw_lasso(page)
        text("points selected on the map").wait_for()
        idle()
        page.get_by_role("textbox", name="Save the selection as").fill("lassoed")
        page.keyboard.press("Enter")
        idle()
        page.get_by_role("button", name="Save selection").click()
        text("as selection lassoed").wait_for()
        shot("5-map-selection", at="Selection")
        assert Workspace(ws_root).selection("e2e", "lassoed")["rows"]

        # 6b. gradient beside meaning: the sentence space's map beside it, linked
        page.get_by_text("Beside meaning", exact=True).click()
        page.get_by_role("button", name="Compute sentence embeddings").click()
        text("Where the spaces disagree", exact=True).wait_for()
        idle()
        pick_first_row(page.locator('[data-testid="stDataFrame"]').filter(has_text="spread over"))
        picked = re.compile(r"(\d+) samples in cluster\(s\) (gradient|sentence) \d+")
        count = int(picked.search(text(picked).inner_text()).group(1))
        idle()
        assert count > 0
        shot("5b-beside-meaning", at="Beside meaning")  # the two maps, the same rows lit
        page.get_by_text("Beside meaning", exact=True).click()  # back to one map
        idle()

        # 7. synthesis against the local chat-completions server, then the review table
        go("Synthesize")
        page.get_by_role("textbox", name="Base URL").fill(llm.url)
        page.keyboard.press("Enter")
        idle()
        page.get_by_role("textbox", name="Model").fill("fake-generator")
        page.keyboard.press("Enter")
        idle()
        page.get_by_role("spinbutton", name="Samples wanted").fill("6")
        page.keyboard.press("Enter")
        idle()
        page.get_by_role("button", name="Start a run").click()
        text("Review the decisions below").wait_for(timeout=240_000)
        idle()
        text("Review run").wait_for()
        assert llm.requests, "the generator was never asked"

        # the curator accepts an item the loop rejected, by editing the review grid
        kept = re.compile(r"(\d+) samples of this run go to the curated set")
        before = int(kept.search(text(kept).inner_text()).group(1))  # shown under the grid
        grid = page.locator('[data-testid="stDataFrame"]').last
        grid.scroll_into_view_if_needed()
        grid.locator("#glide-cell-0-0").wait_for(state="attached")

        def cell(column: int, row: int) -> str:  # the grid's hidden accessible copy of a cell
            return grid.locator(f"#glide-cell-{column}-{row}").inner_text()

        shown = grid.locator('[id^="glide-cell-0-"]').count()
        row = next(  # columns: 0 item, 1 decision, 2 status, ..., 6 reason
            i for i in range(shown) if cell(2, i) == "rejected" and cell(6, i).startswith("landed")
        )
        item = cell(0, row)
        accepted = page.get_by_role("option", name="accepted", exact=True)
        for attempt in range(3):  # a click can land while the grid is still being drawn
            box = grid.bounding_box()
            page.mouse.click(box["x"] + 20, box["y"] + 35 + 17)  # an item cell in view
            for key in ["ArrowUp"] * shown + ["ArrowDown"] * row:  # to the row (the grid
                page.keyboard.press(key)  # scrolls with the keyboard: rows below its height)
            page.keyboard.press("ArrowRight")  # to the row's decision cell
            page.keyboard.press("Enter")  # opens the choice
            try:
                accepted.wait_for(timeout=60_000)
                break
            except playwright.TimeoutError:
                page.screenshot(path=str(shots / f"6-no-choice-{attempt}.png"))
                page.keyboard.press("Escape")
                idle()
        accepted.click()
        text(f"{before + 1} samples of this run go to the curated set").wait_for()
        idle()
        run_id = synthesis.list_runs(Workspace(ws_root), "e2e")[0]["id"]
        flipped = next(
            i for i in synthesis.review(Workspace(ws_root), run_id) if i["item_id"] == item
        )
        assert flipped["decision"] == "accepted" and flipped["status"] == "rejected"
        shot("6-synthesize", at="Runs")
        # what the run filled: the whole set before and after, at equal size, per cluster
        text("What the run filled", exact=True).wait_for()
        after = page.locator('[data-testid="stMetric"]').filter(has_text="With the accepted")
        assert re.search(r"\d+\.\d\d", after.inner_text())
        shot("6b-run-filled", at="What the run filled")

        # 8. export, downloaded and read back
        go("Export")
        page.get_by_role("button", name="Prepare a download").click()
        download_button = page.get_by_role(
            "button", name=re.compile(r"^Download e2e-curated\.jsonl")
        )
        download_button.wait_for()
        with page.expect_download() as download:
            download_button.click()
        path = tmp_path / "downloaded.jsonl"
        download.value.save_as(path)
        shot("7-export")
        exported = [json.loads(line) for line in path.read_text().splitlines()]
        expected = curation.summary(Workspace(ws_root), "e2e")
        assert len(exported) == expected["rows"] == 62 + expected["by_source"].get("synthetic", 0)
        assert all(
            r["messages"][0]["role"] == "user" and r["messages"][1]["content"] for r in exported
        )
        assert {r["source"] for r in exported} == {"seed", "synthetic"}
        assert exported[0]["messages"][0]["content"] == XSS[0]["question"]  # kept as the data said
        assert flipped["problem"] in {r["messages"][0]["content"] for r in exported}

        # 8b. keep the 10 most diverse seed rows
        page.get_by_role("spinbutton", name="Rows to keep").fill("10")
        page.keyboard.press("Enter")
        idle()
        page.get_by_role("button", name="Choose them").click()
        keep = page.get_by_role("button", name="Keep only these 10 rows")
        keep.wait_for()
        idle()
        shot("8-export-diverse", at="Rows to keep")
        chosen = Workspace(ws_root).selection("e2e", "most diverse 10 (greedy)")["rows"]
        keep.click()
        page.locator('[data-testid="stMetric"]').filter(
            has_text=re.compile(r"Seed kept\s*10$")
        ).wait_for()
        idle()
        assert curation.kept_mask(Workspace(ws_root), "e2e").nonzero()[0].tolist() == chosen

        # 9. nothing ran from the data, and nothing was fetched because of it
        assert page.evaluate("window.__xss") is None and dialogs == []
        assert watcher.hits == [], watcher.hits

        # 10. a refresh keeps the state: the dataset, the proxy, the generator
        page.reload()
        text("Write it out", exact=True).wait_for()
        idle()
        assert page.get_by_role("combobox", name="Active dataset").input_value() == "e2e"
        assert page.get_by_role("combobox", name="Proxy model").input_value() == "tiny-random"
        go("Synthesize")
        assert page.get_by_role("textbox", name="Model").input_value() == "fake-generator"

        # 11. each page once its results are cached
        timings = {name: min(go(name) for _ in range(2)) for name in PAGES}
        browser.close()
    watcher.close()
    print(
        "\npage render times once cached (s): "
        + ", ".join(f"{k} {v:.2f}" for k, v in timings.items())
    )
