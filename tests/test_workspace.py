"""The workspace: catalogue operations, atomic imports, killed imports, concurrent imports."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.errors import UserError
from core.records import iter_records
from core.workspace import Workspace, resolve_root
from tests.conftest import HANG_SECONDS, REPO, write_jsonl

ROWS = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(20)]


def big_jsonl(path: Path, rows: int) -> Path:
    with open(path, "w") as f:
        for i in range(rows):
            f.write(
                f'{{"question": "Problem {i}: what is {i} times 7?", "answer": "{i} x 7 = {7 * i}"}}\n'
            )
    return path


def test_import_list_rename_delete(tmp_path):
    ws = Workspace(tmp_path / "ws")
    info, report = ws.import_dataset(write_jsonl(tmp_path / "d.jsonl", ROWS), name="d")
    assert (info.name, info.rows, report.kept) == ("d", 20, 20)
    assert [r.prompt for r in iter_records(info.path)][:2] == ["q0", "q1"]
    assert [d.name for d in ws.datasets()] == ["d"]

    renamed = ws.rename_dataset("d", "e")
    assert renamed.path == info.path and [d.name for d in ws.datasets()] == ["e"]
    with pytest.raises(UserError, match=r"no dataset named 'd'.*datasets: e"):
        ws.dataset("d")

    ws.import_dataset(tmp_path / "d.jsonl", name="f")
    with pytest.raises(UserError, match="'f' exists"):
        ws.rename_dataset("e", "f")
    ws.delete_dataset("e")
    assert [d.name for d in ws.datasets()] == ["f"]
    assert not info.path.exists()


def test_replace_swaps_the_records(tmp_path):
    ws = Workspace(tmp_path / "ws")
    first, _ = ws.import_dataset(write_jsonl(tmp_path / "a.jsonl", ROWS), name="d")
    with pytest.raises(UserError, match="exists"):
        ws.import_dataset(tmp_path / "a.jsonl", name="d")
    second, _ = ws.import_dataset(
        write_jsonl(tmp_path / "b.jsonl", ROWS[:5]), name="d", replace=True
    )
    assert second.rows == 5 and second.id != first.id
    assert not first.path.exists() and second.path.exists()


def test_a_failed_import_changes_nothing(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ws.import_dataset(write_jsonl(tmp_path / "a.jsonl", ROWS), name="d")
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"k": 1, "q": "x", "a": "y"}] * 3)
    with pytest.raises(UserError, match="duplicate id"):
        ws.import_dataset(bad, name="d", replace=True, mapping=None or _mapping(id="k"))
    assert [(d.name, d.rows) for d in ws.datasets()] == [("d", 20)]
    assert list((ws.root / "tmp").iterdir()) == []


def _mapping(**kw):
    from core.records import Mapping

    return Mapping(prompt="q", response="a", **kw)


def test_import_killed_midway_leaves_nothing(tmp_path, workspace_dir):
    ws = Workspace(workspace_dir)
    ws.import_dataset(write_jsonl(tmp_path / "a.jsonl", ROWS), name="kept")
    path = big_jsonl(tmp_path / "big.jsonl", 600_000)
    env = {**os.environ, "PRISM_WORKSPACE": str(workspace_dir)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "core", "import", str(path), "--name", "big"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + HANG_SECONDS
    staged = []
    while time.time() < deadline and not staged:  # wait until records are being written
        staged = [
            p for p in (workspace_dir / "tmp").glob("*/records.parquet") if p.stat().st_size > 2**20
        ]
        time.sleep(0.05)
    assert staged, "the import never started writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list((workspace_dir / "tmp").iterdir()), "the killed import left its staging folder"
    reopened = Workspace(workspace_dir)  # collects what the dead process left
    assert [d.name for d in reopened.datasets()] == ["kept"]
    assert list((workspace_dir / "tmp").iterdir()) == []
    assert len(list((workspace_dir / "datasets").iterdir())) == 1


def test_orphan_dataset_folder_is_collected(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ws.import_dataset(write_jsonl(tmp_path / "a.jsonl", ROWS), name="d")
    orphan = ws.root / "datasets" / "deadbeef"  # as left by a kill between move and commit
    orphan.mkdir()
    (orphan / "records.parquet").write_bytes(b"partial")
    Workspace(ws.root)
    assert not orphan.exists()
    assert [d.name for d in Workspace(ws.root).datasets()] == ["d"]


def test_tmp_of_a_live_process_is_kept(tmp_path):
    ws = Workspace(tmp_path / "ws")
    with ws.staging() as tmp:
        Workspace(ws.root)
        assert tmp.exists()


def test_concurrent_imports(tmp_path, workspace_dir):
    path = big_jsonl(tmp_path / "mid.jsonl", 40_000)
    env = {**os.environ, "PRISM_WORKSPACE": str(workspace_dir)}

    def start(name: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "core", "import", str(path), "--name", name],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    procs = [start(n) for n in ("one", "two", "three", "same", "same")]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert [code for code, _ in results[:3]] == [0, 0, 0], results
    same = sorted(code for code, _ in results[3:])
    assert same == [0, 2], results
    loser = next(err for code, err in results[3:] if code == 2)
    assert loser.startswith("error: a dataset named 'same'") and loser.count("\n") == 1
    ws = Workspace(workspace_dir)
    assert [(d.name, d.rows) for d in ws.datasets()] == [
        (n, 40_000) for n in ("one", "same", "three", "two")
    ]
    for d in ws.datasets():
        assert sum(1 for _ in iter_records(d.path)) == 40_000
    db = sqlite3.connect(workspace_dir / "workspace.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_workspace_resolution(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("PRISM_WORKSPACE", raising=False)
    assert resolve_root() == Path("cache")
    monkeypatch.setenv("PRISM_WORKSPACE", str(tmp_path / "env"))
    assert resolve_root() == tmp_path / "env"
    assert resolve_root(tmp_path / "flag") == tmp_path / "flag"

    data = write_jsonl(tmp_path / "d.jsonl", ROWS)
    home = tmp_path / "cwd"
    home.mkdir()
    env = {"PYTHONPATH": str(REPO)}
    assert cli("import", str(data), env={**env, "PRISM_WORKSPACE": ""}, cwd=home).code == 0
    assert (home / "cache" / "workspace.sqlite").exists()
    r = cli("datasets", "--json", "--workspace", str(home / "cache"), env=env)
    assert [d["name"] for d in r.json["datasets"]] == ["d"]
    r = cli("datasets", "--json", env={**env, "PRISM_WORKSPACE": str(home / "cache")})
    assert [d["name"] for d in r.json["datasets"]] == ["d"]


def test_meta_round_trip(tmp_path):
    ws = Workspace(tmp_path / "ws")
    assert ws.get_meta("k", "none") == "none"
    ws.set_meta("k", "v")
    assert Workspace(ws.root).get_meta("k") == "v"
