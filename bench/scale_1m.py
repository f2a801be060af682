"""A million rows on one machine: every CLI verb on 1,000,000 x 1024 features, its time
and its peak memory, against the targets of issue 13.

1. `build_workspace` makes the workspace: a dataset of ROWS word problems (JSONL written
   as it goes, then `python -m core import`) and ROWS x DIM synthetic features, written
   chunk by chunk to a .safetensors file as `embed --out` writes one (`write_features`),
   then attached with `python -m core features-import`: uneven clusters on the sphere (a
   Dirichlet spread of sizes, some of a few rows), with near-duplicates (cosine about
   0.99) and exact copies planted;
2. each verb runs as `python -m core VERB` in a process of its own; the table gives its
   wall time and that process's peak resident memory (ru_maxrss);
3. in this process, streamed: the recall of the near-duplicate search (candidate pairs
   within k-means cells) against all pairs, for a sample of rows (those in planted pairs
   and random ones); and what storing the features as float16 would cost: G-Vendi and
   cosines of float16 against float32;
4. every page of the app on that workspace in headless Chromium (`page_times`): its
   first render and its render once cached, a lasso's round trip on the Map, and the app
   server's peak memory.

    python bench/scale_1m.py [--rows 1000000] [--dim 1024] [--tmp DIR] [--keep] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import REPO, parse_args
from tests.browser import CHROMIUM

if TYPE_CHECKING:
    from core.workspace import Workspace

# core (torch, pyarrow, UMAP) and the fake LLM server are imported where they are used,
# so that `--help` and importing this file stay instant.

CHUNK = 16384  # rows per feature chunk file
NAME = "big"
PLANTED = 0.005  # the share of rows made near-duplicates of another row of their chunk
COPIES = 0.002  # the share of rows made exact copies of another row of their chunk
WORDS = [
    "apples",
    "train",
    "tank",
    "ladder",
    "circle",
    "triangle",
    "interest",
    "loan",
    "recipe",
    "garden",
    "fence",
    "clock",
    "marbles",
    "coins",
    "ribbon",
    "pool",
    "paint",
    "bicycle",
    "rocket",
    "prism",
    "library",
    "orchard",
    "bakery",
    "river",
    "stairs",
    "candle",
    "parcel",
    "kite",
    "tiles",
    "battery",
]


def cluster_sizes(rows: int, seed: int = 0) -> tuple[np.ndarray, int]:
    """The cluster of each row (uneven: Dirichlet(0.3) weights, so many clusters are tiny),
    and the number of clusters (one per 500 rows, at least 20)."""
    rng = np.random.default_rng(seed)
    centres = max(20, rows // 500)
    weights = rng.dirichlet(np.full(centres, 0.3))
    return rng.choice(centres, rows, p=weights).astype(np.int32), centres


def sphere_chunks(
    rows: int, dim: int, *, chunk_rows: int = CHUNK, seed: int = 0
) -> Iterator[np.ndarray]:
    """rows x dim float32 features, chunk by chunk: each row a random unit centre plus noise
    of its cluster's spread (0.4 to 1.0), with PLANTED near-duplicates and COPIES exact
    copies of other rows of the same chunk. The same chunks for the same arguments."""
    labels, count = cluster_sizes(rows, seed)
    rng = np.random.default_rng([seed, 1])
    centres = rng.standard_normal((count, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    spread = rng.uniform(0.4, 1.0, count).astype(np.float32) / np.sqrt(dim)
    for index, start in enumerate(range(0, rows, chunk_rows)):
        which = labels[start : start + chunk_rows]
        r = np.random.default_rng([seed, 2, index])
        x = centres[which] + spread[which, None] * r.standard_normal(
            (len(which), dim), dtype=np.float32
        )
        near, exact = int(len(x) * PLANTED), int(len(x) * COPIES)
        picked = r.choice(len(x), 2 * (near + exact), replace=False)
        originals, targets = np.split(picked, 2)
        noise = 0.1 / np.sqrt(dim) * r.standard_normal((near, dim), dtype=np.float32)
        x[targets[:near]] = x[originals[:near]] + noise * np.linalg.norm(
            x[originals[:near]], axis=1, keepdims=True
        )
        x[targets[near:]] = x[originals[near:]]
        yield x


def problems(path: Path, rows: int, seed: int = 0) -> Path:
    """A JSONL file of `rows` word problems (question, answer, topic), written as it goes;
    a row's words come from its feature cluster, so the clusters' keywords differ."""
    labels, _ = cluster_sizes(rows, seed)
    with open(path, "w") as f:
        for i, c in enumerate(labels.tolist()):
            a, b = WORDS[c % len(WORDS)], WORDS[(c // len(WORDS)) % len(WORDS)]
            f.write(
                json.dumps(
                    {
                        "question": f"Problem {i}: a {a} and a {b} cost {i % 97} and "
                        f"{i % 89} dollars. What do both cost?",
                        "answer": f"{i % 97} + {i % 89} = {i % 97 + i % 89}\n#### {i % 97 + i % 89}",
                        "topic": f"t{c % 7}",
                    }
                )
                + "\n"
            )
    return path


def write_features(
    ws: Workspace, target: Path, chunks: Iterable[np.ndarray], rows: int, dim: int
) -> None:
    """Write synthetic features (`chunks`: `rows` x `dim` in row blocks) of the dataset
    `big` to `target` as this tool's `embed --out` on a cluster would: a .safetensors file
    whose header names the data and the settings (tiny-random proxy, `dim` dims), so that
    `features-import` makes it the feature set synthesis can use. Streamed: memory holds
    one chunk."""
    from core.config import FeatureConfig, ProxySpec
    from core.encoders import encoder_for
    from core.features import recorded_settings
    from core.vectorfiles import write_vectors

    encoder = encoder_for(ProxySpec("tiny-random"), FeatureConfig(dim=dim))
    recorded = recorded_settings(
        ws.dataset(NAME), encoder, dim=dim, facts={"warning": "synthetic features (benchmark)"}
    )
    write_vectors(target, chunks, rows, dim, recorded)


def build_workspace(
    folder: Path, rows: int = 1_000_000, dim: int = 1024, *, seed: int = 0
) -> tuple[Workspace, dict[str, tuple[float, float]]]:
    """A workspace in `folder` whose dataset `big` has `rows` problems and, attached by
    `features-import`, `rows` x `dim` synthetic features (see `sphere_chunks`), active
    with those feature settings; and (seconds, peak RSS in MiB or nan) of each part.
    Memory stays bounded: the records and the features are written as they are made."""
    from core.workspace import Workspace

    folder.mkdir(parents=True, exist_ok=True)
    parts = {}
    t = time.perf_counter()
    data = problems(folder / "big.jsonl", rows, seed)
    parts["write the JSONL"] = (time.perf_counter() - t, float("nan"))
    ws_root = folder / "ws"
    parts["import the JSONL (import)"] = run_verb(["import", str(data), "--name", NAME], ws_root)
    data.unlink()
    ws = Workspace(ws_root)
    vectors = folder / "features.safetensors"
    t = time.perf_counter()
    write_features(ws, vectors, sphere_chunks(rows, dim, seed=seed), rows, dim)
    parts["write the features file (as embed --out)"] = (time.perf_counter() - t, float("nan"))
    parts["attach it (features-import)"] = run_verb(
        ["features-import", NAME, str(vectors)], ws_root
    )
    vectors.unlink()
    ws.set_meta("feature_settings", json.dumps({"proxy": "tiny-random", "dim": dim}))
    ws.set_meta("active_dataset", NAME)
    return ws, parts


def run_verb(args: list[str], workspace: Path) -> tuple[float, float]:
    """Run `python -m core ARGS --workspace W` in a new process: (seconds, peak RSS in MiB
    of that process). Its --json output is kept in `run_verb.last`."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "core", *args, "--workspace", str(workspace)],
            cwd=REPO,
            stdout=out,
            stderr=err,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{err.read().decode()[-3000:]}")
        text = out.read().decode()
    run_verb.last = json.loads(text) if "--json" in args else text
    return seconds, usage.ru_maxrss / 1024


run_verb.last = None


def duplicate_recall(
    ws: Workspace, groups: list[dict[str, Any]], threshold: float, queries: int, dim: int
) -> tuple[int, int]:
    """(pairs found, pairs there are) among the pairs (q, j) with a cosine above
    `threshold`, for `queries` rows q: half from the groups found, half at random; a pair
    counts as found when both rows are in one group. All pairs of the sample are computed
    here, streamed over the chunks (queries x N products)."""
    from core.config import FeatureConfig, ProxySpec
    from core.features import find_features
    from core.rows import take_unit, unit_blocks

    fs = find_features(ws, NAME, proxy=ProxySpec("tiny-random"), config=FeatureConfig(dim=dim))
    group_of = np.full(fs.rows, -1)
    for g in groups:
        group_of[g["rows"]] = g["group"]
    rng = np.random.default_rng(5)
    grouped = np.flatnonzero(group_of >= 0)
    chosen = rng.choice(grouped, min(len(grouped), queries // 2), replace=False)
    chosen = np.unique(np.concatenate([chosen, rng.choice(fs.rows, queries // 2, replace=False)]))
    q = take_unit(fs, chosen)
    found = there = 0
    for start, x in unit_blocks(fs):
        a, b = np.nonzero(q @ x.T > threshold)
        rows_a, rows_b = chosen[a], start + b
        keep = rows_a != rows_b
        rows_a, rows_b = rows_a[keep], rows_b[keep]
        there += len(rows_a)
        found += int(
            np.count_nonzero((group_of[rows_a] >= 0) & (group_of[rows_a] == group_of[rows_b]))
        )
    return found, there


def float16_fidelity(ws: Workspace, dim: int, pairs: int = 20_000) -> dict[str, float]:
    """G-Vendi of the features stored as float16 against float32 (streamed), and the
    cosines of `pairs` random pairs: largest and mean absolute difference."""
    from core.config import FeatureConfig, ProxySpec
    from core.features import find_features
    from core.rows import unit_rows
    from core.vendi import spectrum, vendi

    fs = find_features(ws, NAME, proxy=ProxySpec("tiny-random"), config=FeatureConfig(dim=dim))
    full = vendi(spectrum(fs.arrays()).eigen()[0])
    half = vendi(spectrum(c.astype(np.float16) for c in fs.arrays()).eigen()[0])
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, fs.rows, (2, pairs))
    x, y = fs.take(a), fs.take(b)
    exact = np.einsum("ij,ij->i", unit_rows(x), unit_rows(y))
    rounded = np.einsum(
        "ij,ij->i", unit_rows(x.astype(np.float16)), unit_rows(y.astype(np.float16))
    )
    return {
        "g_vendi_32": full,
        "g_vendi_16": half,
        "cos_max": float(np.abs(exact - rounded).max()),
        "cos_mean": float(np.abs(exact - rounded).mean()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--k", type=int, default=1000, help="clusters of the default-size map")
    parser.add_argument("--paper-k", type=float, default=0.01, help="the paper's k: 1%% of N")
    parser.add_argument("--bootstrap", type=int, default=100, help="bootstrap replicates")
    parser.add_argument("--queries", type=int, default=2000, help="rows whose pairs check recall")
    parser.add_argument("--tmp", default=None, help="where the workspace is made")
    parser.add_argument("--keep", action="store_true", help="keep the workspace (its path printed)")
    quick = {"rows": 3000, "dim": 64, "k": 30, "bootstrap": 10, "queries": 200}
    args = parse_args(parser, quick, argv)
    minutes = 60.0
    features = ["--proxy", "tiny-random", "--dim", str(args.dim)]
    table: list[tuple[str, float, float, str]] = []

    def step(label: str, verb: list[str], target: float | None) -> float:
        seconds, peak = run_verb(verb, ws.root)
        table.append((label, seconds, peak, _target(target)))
        print(f"  {label}: {seconds:.1f} s, {peak:,.0f} MiB", flush=True)
        return seconds

    folder = Path(tempfile.mkdtemp(prefix="scale-", dir=args.tmp))
    try:
        print(f"{args.rows:,} rows x {args.dim} features in {folder}", flush=True)
        ws, built = build_workspace(folder, args.rows, args.dim)
        table += [(label, seconds, peak, "") for label, (seconds, peak) in built.items()]
        step(
            "estimate before computing (embed --estimate)",
            ["embed", NAME, *features, "--estimate"],
            None,
        )
        step("G-Vendi (score)", ["score", NAME, *features, "--json"], 2 * minutes)
        step(
            "groups by a field (score --by topic)",
            ["score", NAME, *features, "--by", "topic", "--json"],
            2 * minutes,
        )
        step(
            f"bootstrap, {args.bootstrap} replicates",
            ["score", NAME, *features, "--bootstrap", str(args.bootstrap), "--json"],
            2 * minutes,
        )
        step(
            "marginal values (score --redundant 100)",
            ["score", NAME, *features, "--redundant", "100", "--json"],
            2 * minutes,
        )
        default_map = step(
            "map, default k (clusters, descriptions)", ["map", NAME, *features, "--json"], None
        )
        step(
            "groups by cluster (score --by cluster)",
            ["score", NAME, *features, "--by", "cluster", "--json"],
            2 * minutes,
        )
        k_map = step(
            f"map, k = {args.k:,} (clusters, descriptions)",
            ["map", NAME, *features, "--k", str(args.k), "--json"],
            None,
        )
        layout = step(
            "layout (PCA + UMAP, the rest placed by transform)",
            ["map", NAME, *features, "--k", str(args.k), "--layout", "--json"],
            None,
        )
        paper = resolve(args.paper_k, args.rows)
        paper_map = step(
            f"map, k = {paper:,} (1% of N; clusters, descriptions)",
            ["map", NAME, *features, "--k", str(args.paper_k), "--json"],
            None,
        )
        table.append(
            (
                f"whole map, k = {args.k:,} (map + layout)",
                k_map + layout,
                float("nan"),
                _target(15 * minutes),
            )
        )
        table.append(
            (
                f"whole map, k = {paper:,} (map + layout)",
                paper_map + layout,
                float("nan"),
                _target(30 * minutes),
            )
        )
        del default_map
        step("near-duplicates (duplicates)", ["duplicates", NAME, *features, "--json"], 2 * minutes)
        groups = run_verb.last["groups"]
        search = run_verb.last["search"]
        step(
            "curation (curate --remove-rows, summary, G-Vendi)",
            ["curate", NAME, *features, "--remove-rows", "1,2,3", "--json"],
            2 * minutes,
        )
        step(
            "export (JSONL)",
            ["export", NAME, *features, "--out", str(folder / "out.jsonl")],
            2 * minutes,
        )
        synthesis_step(step, features)
        pages = page_times(ws.root) if Path(CHROMIUM).exists() else None
        found, there = duplicate_recall(ws, groups, 0.98, args.queries, args.dim)
        fidelity = float16_fidelity(ws, args.dim)
    finally:
        if args.keep:
            print(f"workspace kept in {folder / 'ws'}")
        else:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
    print(
        f"\n{args.rows:,} rows x {args.dim} float32 features ({args.rows * args.dim * 4 / 2**30:.2f} GiB), 2-core CPU"
    )
    print("| step | time | peak RSS | target |")
    print("| --- | ---: | ---: | --- |")
    for label, seconds, peak, target in table:
        memory = (
            ""
            if np.isnan(peak)
            else f"{peak / 1024:.2f} GiB"
            if peak >= 1024
            else f"{peak:.0f} MiB"
        )
        print(f"| {label} | {_seconds(seconds)} | {memory} | {target} |")
    if pages is None:
        print(f"\npages: not measured ({CHROMIUM} is not installed)")
    else:
        print("\n| page | first render | cached render | target |")
        print("| --- | ---: | ---: | --- |")
        for name, seconds in pages["first"].items():
            print(
                f"| {name} | {_seconds(seconds)} | {pages['cached'][name]:.2f} s | <= 2 s cached |"
            )
        print(
            f"Map: a lasso over all {args.rows:,} points, {pages['lasso']:.2f} s from release to "
            f"the rows shown; the app server's peak RSS {pages['server MiB'] / 1024:.2f} GiB"
        )
    print(
        f"\nnear-duplicate search ({search}): recall {found / max(there, 1):.4f} against all "
        f"pairs ({found:,} of {there:,} pairs above 0.98 of {args.queries:,} sampled rows)"
    )
    print(
        f"float16 storage: G-Vendi {fidelity['g_vendi_16']:.3f} against {fidelity['g_vendi_32']:.3f} "
        f"({(fidelity['g_vendi_16'] / fidelity['g_vendi_32'] - 1) * 100:+.4f}%); cosines differ by "
        f"{fidelity['cos_mean']:.1e} on average, {fidelity['cos_max']:.1e} at most"
    )


def synthesis_step(step, features: list[str]) -> None:
    """A synthesis run against the fake chat server (tests/fake_llm.py) in this process:
    20 samples wanted, one round; it builds the pool, clusters, judges the candidates."""
    from tests.fake_llm import FakeLLM

    with FakeLLM() as llm:
        step(
            "synthesis, one round (pool, candidates judged)",
            [
                "synthesize",
                NAME,
                *features,
                "--base-url",
                llm.url,
                "--model",
                "fake",
                "--target",
                "20",
                "--rounds",
                "1",
                "--json",
            ],
            2 * 60.0,
        )


def page_times(workspace: Path) -> dict[str, Any]:
    """The app on `workspace` in headless Chromium, each page opened from the sidebar:
    "first" (seconds to its first render, which computes what is not cached yet) and
    "cached" (the faster of two later renders: issue 13's <= 2 s) by page; "lasso" (seconds
    from a lasso's release on the Map page to its exact selection shown); "server MiB" (the
    app server's peak resident memory)."""
    from playwright.sync_api import sync_playwright

    from tests.browser import PAGES, draw_lasso, idle, launch, open_page, running_app

    with running_app(workspace) as served, sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.set_default_timeout(3_600_000)  # a first render at 1M computes for minutes
        started = time.perf_counter()
        page.goto(served.url)
        page.get_by_text(PAGES["Data"], exact=True).first.wait_for()
        idle(page)
        first = {"Data": time.perf_counter() - started}
        first |= {name: open_page(page, name) for name in PAGES if name != "Data"}
        cached = {name: min(open_page(page, name) for _ in range(2)) for name in PAGES}
        open_page(page, "Map")
        released = draw_lasso(page)
        page.get_by_text("points selected on the map").first.wait_for()
        lasso = time.perf_counter() - released
        browser.close()
        peak = _peak_mib(served.pid)
    return {"first": first, "cached": cached, "lasso": lasso, "server MiB": peak}


def _peak_mib(pid: int) -> float:
    """The peak resident memory (VmHWM) of a running process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def resolve(k: float, rows: int) -> int:
    return round(k * rows) if k < 1 else int(k)


def _target(seconds: float | None) -> str:
    return "" if seconds is None else f"<= {seconds / 60:g} min"


def _seconds(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


if __name__ == "__main__":
    main()
