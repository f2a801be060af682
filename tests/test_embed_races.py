"""A dataset deleted or replaced while `embed` computes its features: the embed stops with
one clear line (exit 2) and leaves no feature set behind, registered or on disk."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from contextlib import closing

import pytest

from core.config import ProxySpec
from core.features import compute_features, feature_sets, find_features
from core.workspace import Workspace
from tests.conftest import HANG_SECONDS, REPO, CliResult, assert_user_error
from tests.test_features import demo_file

TINY = ProxySpec("tiny-random")
ROWS = 120


@pytest.fixture
def embedding(tmp_path):
    """A workspace with dataset 'd' (ROWS rows) and an `embed` of it running in a subprocess,
    one row per chunk (a long run); yields (workspace, the data file, the process) once its
    first chunk is written."""
    data = demo_file(tmp_path / "d.jsonl", ROWS)
    ws = Workspace(tmp_path / "ws")
    ws.import_dataset(data, name="d")
    env = {**os.environ, "PRISM_WORKSPACE": str(ws.root), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "core", "embed", "d", "--proxy", "tiny-random", "--chunk-rows", "1"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + HANG_SECONDS
    while not list(ws.root.glob("datasets/*/features/*/chunk-00000.npy")):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, f"no chunk within {HANG_SECONDS} s"
        time.sleep(0.05)
    yield ws, data, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def result(proc: subprocess.Popen) -> CliResult:
    out, err = proc.communicate(timeout=HANG_SECONDS)
    return CliResult(proc.returncode, out, err)


def test_delete_while_embedding(embedding):
    ws, _, proc = embedding
    old = ws.dataset("d")
    ws.delete_dataset("d")
    assert_user_error(
        result(proc),
        "dataset 'd' was deleted while its features were computed",
        "nothing was kept",
    )
    assert not old.path.parent.exists()  # no chunk written after the delete survives
    assert list((ws.root / "datasets").iterdir()) == []
    with closing(sqlite3.connect(ws.db_path)) as db:  # the catalogue file itself
        assert db.execute("SELECT COUNT(*) FROM feature_sets").fetchone()[0] == 0


def test_replace_while_embedding(embedding):
    ws, data, proc = embedding
    old = ws.dataset("d")
    new, _ = ws.import_dataset(data, name="d", replace=True)  # the same rows: the same feature key
    assert_user_error(
        result(proc),
        "dataset 'd' was replaced while its features were computed",
        "nothing was kept",
    )
    assert not old.path.parent.exists()
    assert [p.name for p in (ws.root / "datasets").iterdir()] == [new.id]
    assert not (new.path.parent / "features").exists()
    assert feature_sets(ws, "d") == [] and find_features(ws, "d", proxy=TINY) is None
    fs = compute_features(ws, "d", proxy=TINY)  # the new dataset's own features compute whole
    assert fs.complete and fs.rows == ROWS and fs.facts["computed_rows"] == ROWS
    assert [r["dataset_id"] for r in feature_sets(ws, "d")] == [new.id]
