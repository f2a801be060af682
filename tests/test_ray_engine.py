"""The `ray` engine against a REAL local Ray cluster (no mocks): a head and a second node
started here with `ray start` (1 CPU each), stopped at the end by the processes they
started (never a cluster this module did not start). Features equal the local engine's; a
worker killed mid-run, a driver killed mid-run, a set begun on one engine and finished on
the other; bad addresses and missing GPUs are one clean error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from core.config import ProxySpec, Runtime  # noqa: E402
from core.errors import Cancelled, UserError  # noqa: E402
from core.features import compute_features, find_features  # noqa: E402
from core.workspace import Workspace  # noqa: E402
from tests.conftest import (  # noqa: E402
    HANG_SECONDS,
    REPO,
    assert_user_error,
    children,
    free_port,
    kill_after_chunks,
    processes_under,
)
from tests.test_features import demo_file  # noqa: E402

TINY = ProxySpec("tiny-random")
ROWS = 300
CHUNK = 32  # 10 chunks


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
def test_features_equal_the_local_engine(ray_cluster, data, local, tmp_path, workers):
    ws = _ws(tmp_path, data)
    fs = compute_features(ws, "d", proxy=TINY, runtime=_ray(ray_cluster, workers=workers))
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
def test_begun_on_one_engine_finished_on_the_other(ray_cluster, data, local, tmp_path, first, then):
    ws = _ws(tmp_path, data)
    runtime = {"local": Runtime(chunk_rows=CHUNK), "ray": _ray(ray_cluster, workers=2)}
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
    raylets = [p for p in processes_under(folder) if "raylet" in _cmdline(p)]
    return [p for p in children(raylets) if "EncodeChunk" in _cmdline(p)]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""


def test_a_worker_killed_mid_run_is_restarted(ray_cluster, data, local, tmp_path):
    ws = _ws(tmp_path, data)
    killed: list[int] = []

    def kill_one(done: int, total: int | None) -> None:
        if not killed and 0 < done < (total or 0):  # a chunk is stored, others are running
            actors = _worker_actors(ray_cluster["folder"])
            assert actors, "no worker actor found"
            os.kill(actors[0], signal.SIGKILL)
            killed.append(actors[0])

    fs = compute_features(
        ws, "d", proxy=TINY, runtime=_ray(ray_cluster, workers=2), on_progress=kill_one
    )
    assert killed and fs.complete
    np.testing.assert_allclose(fs.matrix(), local, atol=1e-6, rtol=0)


def test_the_driver_killed_mid_run_resumes(ray_cluster, data, local, tmp_path):
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
        ray_cluster["address"],
        "--workers",
        "2",
        "--workspace",
        str(ws_dir),
        "--json",
    ]
    listed = kill_after_chunks(embed, ws_dir, 2)
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
        f"127.0.0.1:{free_port()}",
    )  # fmt: skip
    assert_user_error(r, "no Ray cluster answers at 127.0.0.1:", "ray start --head")


def test_a_cluster_asking_for_a_token_this_process_lacks_is_one_clean_error(ray_cluster, cli, data):
    if tuple(int(part) for part in ray.__version__.split(".")[:2]) < (2, 59):
        pytest.skip("Ray before 2.59 has no token authentication")
    assert cli("import", str(data), "--name", "d").code == 0
    r = cli(
        "embed", "d", "--proxy", "tiny-random", "--engine", "ray", "--address",
        ray_cluster["address"], env={"RAY_AUTH_MODE": "disabled"},
    )  # fmt: skip
    assert_user_error(
        r,
        f"the Ray cluster at {ray_cluster['address']} asks for its authentication token",
        "RAY_AUTH_MODE=token",
    )


def test_missing_gpus_are_one_clean_error(ray_cluster, cli, data):
    assert cli("import", str(data), "--name", "d").code == 0
    r = cli(
        "embed", "d", "--proxy", "tiny-random", "--engine", "ray", "--address",
        ray_cluster["address"], "--gpus-per-worker", "1",
    )  # fmt: skip
    assert_user_error(r, "the Ray cluster has no GPUs", "--gpus-per-worker 1")
    r = cli(
        "embed", "d", "--proxy", "tiny-random", "--engine", "ray", "--address",
        ray_cluster["address"], "--workers", "3",
    )  # fmt: skip
    assert_user_error(r, "has room for only 2 workers of 1 CPUs and 0 GPUs, not 3")


def test_a_proxy_the_workers_cannot_load_is_one_clean_error(ray_cluster, cli, data, tmp_path):
    assert cli("import", str(data), "--name", "d").code == 0
    broken = tmp_path / "broken-model"  # its files hash (its identity) but do not load
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "qwen2"}')
    (broken / "model.safetensors").write_bytes(b"not a model")
    r = cli(
        "embed", "d", "--proxy", str(broken), "--engine", "ray", "--address",
        ray_cluster["address"],
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
