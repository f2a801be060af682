"""The `ray` engine against a REAL local Ray cluster (no mocks): a head and a second node
started here with `ray start` (1 CPU each), stopped at the end by the processes they
started (never a cluster this module did not start). Features equal the local engine's; a
worker killed mid-run, a driver killed mid-run, a set begun on one engine and finished on
the other; bad addresses and missing GPUs are one clean error."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from core.config import ProxySpec, Runtime  # noqa: E402
from core.errors import Cancelled, UserError  # noqa: E402
from core.features import compute_features, find_features  # noqa: E402
from core.workspace import Workspace  # noqa: E402
from tests.conftest import HANG_SECONDS, REPO, assert_user_error  # noqa: E402
from tests.test_features import demo_file  # noqa: E402

TINY = ProxySpec("tiny-random")
ROWS = 300
CHUNK = 32  # 10 chunks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes_under(folder: str) -> list[int]:
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


def _children(parents: list[int]) -> list[int]:
    """Pids of the processes whose parent is one of `parents`."""
    out = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            if entry.name.isdigit():
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if ppid in parents:
                    out.append(int(entry.name))
    return out


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict]:
    """A head and a second node on this machine (1 CPU each), in a short temporary folder
    (a Unix socket path is at most 107 bytes); its processes are ended at the end, by pid."""
    folder = tempfile.mkdtemp(prefix="prism-ray-", dir="/tmp" if Path("/tmp").is_dir() else None)
    ray_cli = str(Path(sys.executable).parent / "ray")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = [
        "--num-cpus=1",
        "--num-gpus=0",
        "--disable-usage-stats",
        f"--dashboard-agent-listen-port={_free_port()}",
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
            pids = _processes_under(folder)
            pids += _children(pids)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            time.sleep(2)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return demo_file(tmp_path_factory.mktemp("rows") / "d.jsonl", ROWS)


@pytest.fixture(scope="module")
def local(data, tmp_path_factory) -> np.ndarray:
    """The local engine's features of the rows."""
    ws = Workspace(tmp_path_factory.mktemp("local") / "ws")
    ws.import_dataset(data, name="d")
    return compute_features(ws, "d", proxy=TINY, runtime=Runtime(chunk_rows=CHUNK)).matrix()


def _ws(tmp_path: Path, data: Path) -> Workspace:
    ws = Workspace(tmp_path / "ws")
    ws.import_dataset(data, name="d")
    return ws


def _ray(cluster: dict, **more) -> Runtime:
    return Runtime(chunk_rows=CHUNK, engine="ray", address=cluster["address"], **more)


@pytest.mark.parametrize("workers", [1, 2])
def test_features_equal_the_local_engine(cluster, data, local, tmp_path, workers):
    ws = _ws(tmp_path, data)
    fs = compute_features(ws, "d", proxy=TINY, runtime=_ray(cluster, workers=workers))
    assert fs.complete and fs.rows == ROWS and sorted(fs.chunks) == list(range(10))
    assert fs.facts["engine"] == "ray" and fs.facts["workers"] == workers
    assert fs.facts["computed_rows"] == ROWS
    np.testing.assert_allclose(fs.matrix(), local, atol=1e-6, rtol=0)
    # the same feature set: found by the local settings, nothing computed again
    again = compute_features(ws, "d", proxy=TINY, runtime=Runtime(chunk_rows=CHUNK))
    assert again.cached and again.key == fs.key


def _stop_after(chunks: int):
    """An on_progress that cancels once `chunks` chunks are stored."""

    def stop(done: int, total: int | None) -> None:
        if done >= chunks * CHUNK and done < (total or 0):
            raise Cancelled

    return stop


@pytest.mark.parametrize("first, then", [("local", "ray"), ("ray", "local")])
def test_begun_on_one_engine_finished_on_the_other(cluster, data, local, tmp_path, first, then):
    ws = _ws(tmp_path, data)
    runtime = {"local": Runtime(chunk_rows=CHUNK), "ray": _ray(cluster, workers=2)}
    with pytest.raises(Cancelled):
        compute_features(ws, "d", proxy=TINY, runtime=runtime[first], on_progress=_stop_after(3))
    assert find_features(ws, "d", proxy=TINY) is None  # not complete
    fs = compute_features(ws, "d", proxy=TINY, runtime=runtime[then])
    assert 0 < fs.facts["computed_rows"] <= ROWS - 3 * CHUNK  # only the missing chunks
    assert fs.facts.get("engine", "local") == then
    np.testing.assert_allclose(fs.matrix(), local, atol=1e-6, rtol=0)


def _worker_actors(folder: str) -> list[int]:
    """Pids of the feature actors running on the cluster's nodes (children of its raylets,
    titled by Ray after their class)."""
    raylets = [p for p in _processes_under(folder) if "raylet" in _cmdline(p)]
    return [p for p in _children(raylets) if "EncodeChunk" in _cmdline(p)]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""


def test_a_worker_killed_mid_run_is_restarted(cluster, data, local, tmp_path):
    ws = _ws(tmp_path, data)
    killed: list[int] = []

    def kill_one(done: int, total: int | None) -> None:
        if not killed and 0 < done < (total or 0):  # a chunk is stored, others are running
            actors = _worker_actors(cluster["folder"])
            assert actors, "no worker actor found"
            os.kill(actors[0], signal.SIGKILL)
            killed.append(actors[0])

    fs = compute_features(
        ws, "d", proxy=TINY, runtime=_ray(cluster, workers=2), on_progress=kill_one
    )
    assert killed and fs.complete
    np.testing.assert_allclose(fs.matrix(), local, atol=1e-6, rtol=0)


def test_the_driver_killed_mid_run_resumes(cluster, data, local, tmp_path):
    ws_dir = tmp_path / "ws"
    _ws(tmp_path, data)
    embed = [
        sys.executable,
        "-m",
        "core",
        "embed",
        "d",
        "--proxy",
        "tiny-random",
        "--chunk-rows",
        str(CHUNK),
        "--engine",
        "ray",
        "--address",
        cluster["address"],
        "--workers",
        "2",
        "--workspace",
        str(ws_dir),
        "--json",
    ]
    proc = subprocess.Popen(embed, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    listed, deadline = 0, time.time() + HANG_SECONDS
    while time.time() < deadline and listed < 2 and proc.poll() is None:
        for m in ws_dir.glob("datasets/*/features/*/manifest.json"):
            with contextlib.suppress(ValueError, OSError):  # caught mid-rename
                listed = len(json.loads(m.read_text())["chunks"])
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 2 <= listed < 10, "the kill did not land midway"
    done = subprocess.run(embed, cwd=REPO, capture_output=True, text=True, timeout=HANG_SECONDS)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"] == ROWS
    fs = find_features(Workspace(ws_dir), "d", proxy=TINY)
    assert fs.facts["computed_rows"] <= ROWS - 2 * CHUNK  # the rerun did not start over
    np.testing.assert_allclose(fs.matrix(), local, atol=1e-6, rtol=0)


def test_an_unreachable_address_is_one_clean_error(cli, data):
    assert cli("import", str(data), "--name", "d").code == 0
    r = cli(
        "embed", "d", "--proxy", "tiny-random", "--engine", "ray", "--address",
        f"127.0.0.1:{_free_port()}",
    )  # fmt: skip
    assert_user_error(r, "no Ray cluster answers at 127.0.0.1:", "ray start --head")


def test_missing_gpus_are_one_clean_error(cluster, cli, data):
    assert cli("import", str(data), "--name", "d").code == 0
    r = cli(
        "embed", "d", "--proxy", "tiny-random", "--engine", "ray", "--address",
        cluster["address"], "--gpus-per-worker", "1",
    )  # fmt: skip
    assert_user_error(r, "the Ray cluster has no GPUs", "--gpus-per-worker 1")
    r = cli(
        "embed", "d", "--proxy", "tiny-random", "--engine", "ray", "--address",
        cluster["address"], "--workers", "3",
    )  # fmt: skip
    assert_user_error(r, "has room for only 2 workers of 1 CPUs and 0 GPUs, not 3")


def test_a_proxy_the_workers_cannot_load_is_one_clean_error(cluster, cli, data, tmp_path):
    assert cli("import", str(data), "--name", "d").code == 0
    broken = tmp_path / "broken-model"  # its files hash (its identity) but do not load
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "qwen2"}')
    (broken / "model.safetensors").write_bytes(b"not a model")
    r = cli(
        "embed", "d", "--proxy", str(broken), "--engine", "ray", "--address",
        cluster["address"],
    )  # fmt: skip
    assert_user_error(r, "on the Ray cluster: proxy", "broken-model")


def test_engine_flags_are_range_checked(cli):
    for flags, needle in (
        (["--workers", "0"], "--workers"),
        (["--gpus-per-worker", "-1"], "--gpus-per-worker"),
        (["--cpus-per-worker", "nan"], "--cpus-per-worker"),
        (["--engine", "spark"], "--engine"),
    ):
        assert_user_error(cli("embed", "d", *flags), needle)
    for verb in ("score", "map", "compare", "synthesize"):  # the verbs that compute features
        shown = cli(verb, "--help").out
        assert all(f in shown for f in ("--engine", "--address", "--workers", "--gpus-per-worker"))


def test_a_bad_engine_in_core_is_a_user_error(tmp_path, data):
    ws = _ws(tmp_path, data)
    with pytest.raises(UserError, match="engine 'spark': use local or ray"):
        compute_features(ws, "d", proxy=TINY, runtime=Runtime(engine="spark"))
