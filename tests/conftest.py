"""Shared fixtures: a fresh workspace, the CLI in a subprocess, the public data beside the repo."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

# Tests never touch the network: the Hugging Face libraries read these at import time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

REPO = Path(__file__).resolve().parents[1]
HANG_SECONDS = 600  # how long a step may take before a test calls it hung: never a speed check
SHARED_DATA = REPO.parent / "shared" / "data"


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def json(self) -> dict:
        return json.loads(self.out)


@pytest.fixture
def workspace_dir(tmp_path: Path) -> Path:
    return tmp_path / "ws"


@pytest.fixture
def cli(workspace_dir: Path):
    """Run `python -m core ARGS` in a subprocess against the test's workspace; with
    `terminal`, its stderr is a terminal (a pseudo-terminal read here)."""

    def run(
        *args: str, env: dict[str, str] | None = None, cwd: Path = REPO, terminal: bool = False
    ) -> CliResult:
        full_env = {
            **os.environ,
            "PRISM_WORKSPACE": str(workspace_dir),
            "HF_HUB_OFFLINE": "1",
            **(env or {}),
        }
        command = [sys.executable, "-m", "core", *args]
        if terminal:
            return _on_a_terminal(command, full_env, cwd)
        p = subprocess.run(
            command, capture_output=True, text=True, env=full_env, cwd=cwd, timeout=HANG_SECONDS
        )
        return CliResult(p.returncode, p.stdout, p.stderr)

    return run


def _on_a_terminal(command: list[str], env: dict[str, str], cwd: Path) -> CliResult:
    """Run `command` with its stderr on a pseudo-terminal, read until the command ends."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=follower)
    os.close(follower)
    err = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed: the command has ended
            break
        if not chunk:
            break
        err += chunk
    os.close(leader)
    out = proc.stdout.read()
    code = proc.wait(timeout=HANG_SECONDS)
    return CliResult(code, out.decode(), err.decode(errors="replace"))


def assert_user_error(result: CliResult, *needles: str) -> str:
    """Exit 2, exactly one stderr line starting 'error:' that contains each needle, no traceback."""
    assert result.code == 2, (result.code, result.err)
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    return path


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not beside the repository")
    return SHARED_DATA
