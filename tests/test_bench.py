"""The benchmarks cannot rot: each script in bench/ runs at its `--quick` size and prints its
figures, and its `--help` and its import load nothing heavy. No test here asserts a speed:
the benchmarks print ratios against reference runs in their own process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import HANG_SECONDS, REPO

HELPERS = {"__init__", "measure", "synthetic"}  # bench/ modules that are not benchmarks
# script: (needs ../shared/data, a line of figures it prints at its quick size)
SCRIPTS = {
    "college_math_ari": (
        True,
        r"\| gradient features, tiny-random \| -?\d\.\d{3} \| -?\d\.\d{3} \|",
    ),
    "duplicates_scale": (False, r"bands / reference: time \d+\.\d\dx, extra memory \d+\.\d\dx"),
    "export_memory": (False, r"peak memory ratio: \d+\.\d\dx for 10x the rows"),
    "features_fidelity": (
        False,
        r"\| tiny-random \| -?[01]\.\d{3} \| -?[01]\.\d{3} \| -?[01]\.\d{3} "
        r"\| \d+\.\d\d / \d+\.\d\d / \d+\.\d\d \| [+-]\d+\.\d% \|",
    ),
    "features_speed": (False, r"speed-up factorized vs exact per sample: \d+x"),
    "import_memory": (False, r"peak memory ratio, 10,000 vs 1,000 rows: \d+\.\d\dx for 10x"),
    "llm_transport": (
        False,
        r"new each / pool, time per request: \d+\.\d\dx one at a time, \d+\.\d\dx 8 at once",
    ),
    "map_render": (False, r"\| sampled \| 3,000 \| \d+\.\d\d s \| \d+\.\d\d s, \d+\.\d MB \|"),
    "map_scale": (False, r"spherical k-means, k = 100: \d+\.\d s, \d+ iterations"),
    "mix_vs_single": (True, r"\| mix-of-five \| \d+\.\d\d \| \d+\.\d\d \|"),
    "ray_scaling": (
        False,
        r"ray 1 worker / local: \d+\.\d\dx the time; 2-worker scaling efficiency: \d+\.\d\d",
    ),
    "scale_1m": (
        False,
        r"\| G-Vendi \(score\) \| \d+\.\d s \| \d+ MiB \| <= 2 min \|(.|\n)*"
        r"near-duplicate search \(all pairs\): recall 1\.0000 against all pairs",
    ),
    "select_diverse": (
        True,
        r"greedy \(gradient\) / random, gradient space: \d+\.\d\dx(.|\n)*"
        r"select / score \(one G-Vendi pass over all rows\): \d+\.\d\dx the time",
    ),
    "vendi_scale": (False, r"score_dual / streamed: \d+\.\dx the time, \d+\.\dx the memory"),
}
# what `--help` and an import must not load (numpy and the light core modules may load)
HEAVY = {
    "torch",
    "transformers",
    "sentence_transformers",
    "sklearn",
    "scipy",
    "umap",
    "numba",
    "pyarrow",
    "pandas",
    "datasets",
    "vendi_score",
    "playwright",
    "streamlit",
    "ray",
}


def _env(**extra: str) -> dict[str, str]:
    offline = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return {**os.environ, **offline, **extra}


def _repo_files() -> set[str]:
    """The repository's files, without hidden folders (.git, .venv) and byte-code caches."""
    found = set()
    for folder, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
        found.update(str(Path(folder, f).relative_to(REPO)) for f in files)
    return found


def _heavy_imports(importtime_log: str) -> set[str]:
    """The HEAVY packages among the modules that `python -X importtime` says it imported."""
    names = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in importtime_log.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return names & HEAVY


def test_every_benchmark_has_a_quick_run():
    scripts = {p.stem for p in (REPO / "bench").glob("*.py")} - HELPERS
    assert scripts == set(SCRIPTS)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_help_and_import_load_nothing_heavy(script):
    helped = subprocess.run(
        [sys.executable, "-X", "importtime", f"bench/{script}.py", "--help"],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=HANG_SECONDS,
    )
    assert helped.returncode == 0, helped.stderr[-3000:]
    assert "--quick" in helped.stdout and "usage:" in helped.stdout
    assert _heavy_imports(helped.stderr) == set()

    imported = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import bench.{script}"],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=HANG_SECONDS,
    )
    assert imported.returncode == 0, imported.stderr[-3000:]
    assert imported.stdout == ""  # importing runs nothing
    assert _heavy_imports(imported.stderr) == set()


@pytest.fixture
def short_tmp():
    """A temporary folder with a short path: Chromium, which the benchmarks that open pages
    start, refuses a socket path beyond 107 bytes under a deep TMPDIR."""
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        yield Path(folder)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_quick_run_prints_its_figures(script, short_tmp, request):
    needs_data, figures = SCRIPTS[script]
    if needs_data:
        request.getfixturevalue("shared_data")  # skips when ../shared/data is not there
    before = _repo_files()
    done = subprocess.run(
        [sys.executable, f"bench/{script}.py", "--quick"],
        cwd=REPO,
        env=_env(TMPDIR=str(short_tmp)),
        capture_output=True,
        text=True,
        timeout=HANG_SECONDS,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(figures, done.stdout), done.stdout
    assert _repo_files() == before  # it wrote nothing into the repository
    # and removed its temporary files (torch keeps its compile cache in the same folder)
    assert [p.name for p in short_tmp.iterdir() if not p.name.startswith("torchinductor_")] == []
