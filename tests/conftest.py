"""Shared fixtures: a fresh workspace, the CLI in a subprocess, the public data beside the repo."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import pty
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# Tests never touch the network: the Hugging Face libraries read these at import time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

# Every Ray cluster of the test session, and every process that connects to one, uses this
# session's own token: Ray 2.59 and later turn token authentication on for a new cluster
# whenever a token exists, and write one into the home folder otherwise (earlier versions
# ignore both settings).
RAY_TOKEN = Path(tempfile.mkdtemp(prefix="prism-ray-token-")) / "auth_token"
RAY_TOKEN.write_text(secrets.token_hex(32))
atexit.register(shutil.rmtree, RAY_TOKEN.parent, ignore_errors=True)
os.environ["RAY_AUTH_MODE"] = "token"
os.environ["RAY_AUTH_TOKEN_PATH"] = str(RAY_TOKEN)

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


def kill_after_chunks(
    command: list[str], workspace: Path, chunks: int, *, env: dict[str, str] | None = None
) -> int:
    """Start `command` (a feature computation into `workspace`), SIGKILL it once a feature
    manifest there lists `chunks` chunks (or it ends, or HANG_SECONDS pass); returns how
    many chunks the manifest listed when it was killed."""
    proc = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    listed, deadline = 0, time.time() + HANG_SECONDS
    while time.time() < deadline and listed < chunks and proc.poll() is None:
        for m in workspace.glob("datasets/*/features/*/manifest.json"):
            with contextlib.suppress(ValueError, OSError):  # caught mid-rename
                listed = len(json.loads(m.read_text())["chunks"])
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return listed


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


# --- a local Ray cluster (tests/test_ray_engine.py, the Features page's engine) ----------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_under(folder: str) -> list[int]:
    """Pids of this user's processes whose command line names `folder` (the nodes' Ray
    processes: each is started with the cluster's temporary folder in its arguments)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if entry.stat().st_uid == os.getuid() and folder in (entry / "cmdline").read_text():
                pids.append(int(entry.name))
    return pids


def children(parents: list[int]) -> list[int]:
    """Pids of the processes whose parent is one of `parents`."""
    out = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            if entry.name.isdigit():
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if ppid in parents:
                    out.append(int(entry.name))
    return out


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[dict]:
    """A head and a second node on this machine (1 CPU each), in a short temporary folder
    (a Unix socket path is at most 107 bytes); its processes are ended at the end, by pid
    (never `ray stop`, which would stop any other cluster of this machine too). Skips when
    Ray is not installed."""
    ray = pytest.importorskip("ray")
    folder = tempfile.mkdtemp(prefix="prism-ray-", dir="/tmp" if Path("/tmp").is_dir() else None)
    ray_cli = str(Path(sys.executable).parent / "ray")
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = [
        "--num-cpus=1",
        "--num-gpus=0",
        "--disable-usage-stats",
        f"--dashboard-agent-listen-port={free_port()}",
    ]
    env = {**os.environ, "RAY_ADDRESS": ""}
    try:
        for extra in (
            ["--head", f"--port={port}", f"--temp-dir={folder}", "--include-dashboard=false"],
            [f"--address={address}"],
        ):
            started = subprocess.run(
                [ray_cli, "start", *extra, *common],
                env=env,
                capture_output=True,
                text=True,
                timeout=HANG_SECONDS,
            )
            assert started.returncode == 0, started.stdout + started.stderr
        deadline = time.time() + HANG_SECONDS
        nodes = 0
        while nodes < 2 and time.time() < deadline:  # both raylets registered
            status = subprocess.run(
                [ray_cli, "status", f"--address={address}"], capture_output=True, text=True, env=env
            )
            nodes = status.stdout.count("node_")
            time.sleep(0.5)
        assert nodes >= 2, status.stdout + status.stderr
        yield {"address": address, "folder": folder}
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = processes_under(folder)
            pids += children(pids)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            time.sleep(2)
        shutil.rmtree(folder, ignore_errors=True)
