"""Feature sets in the workspace: cached, keyed, chunked, resumed after SIGKILL, repaired."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest

from core.config import FeatureConfig, ProxySpec, Runtime
from core.demo import demo_rows
from core.encoders import KINDS, Encoder, Samples, encoder_for
from core.errors import UserError
from core.features import (
    _exclusive,
    compute_features,
    feature_key,
    feature_sets,
    find_features,
)
from core.proxy import load_proxy, tiny_random
from core.workspace import Workspace
from tests.conftest import REPO, assert_user_error, kill_after_chunks, write_jsonl

TINY = ProxySpec("tiny-random")


def demo_file(path: Path, n: int) -> Path:
    return write_jsonl(
        path, [{"question": r["question"], "answer": r["answer"]} for r in demo_rows(n)]
    )


@pytest.fixture
def ws(tmp_path) -> Workspace:
    ws = Workspace(tmp_path / "ws")
    ws.import_dataset(demo_file(tmp_path / "d.jsonl", 40), name="d")
    return ws


def test_computed_once_then_from_the_cache(ws):
    calls = []
    first = compute_features(
        ws,
        "d",
        proxy=TINY,
        runtime=Runtime(chunk_rows=16),
        on_progress=lambda d, _t: calls.append(d),
    )
    assert not first.cached and first.complete and first.rows == 40 and first.dim == 1024
    assert calls[-1] == 40 and calls == sorted(calls)  # progress only goes up
    second = compute_features(ws, "d", proxy=TINY)
    assert second.cached and second.key == first.key
    assert np.array_equal(first.matrix(), second.matrix())
    assert second.facts["warning"].startswith("'tiny-random' is a tiny random model")


def test_key_follows_every_setting(ws, tmp_path):
    base = compute_features(ws, "d", proxy=TINY, config=FeatureConfig(dim=64))
    for config in (
        FeatureConfig(dim=32),
        FeatureConfig(dim=64, seed=1),
        FeatureConfig(dim=64, rank=16),
        FeatureConfig(dim=64, max_length=64),
        FeatureConfig(dim=64, method="exact"),
    ):
        assert find_features(ws, "d", proxy=TINY, config=config) is None
        other = compute_features(ws, "d", proxy=TINY, config=config)
        assert other.key != base.key
    ws.import_dataset(demo_file(tmp_path / "e.jsonl", 41), name="e")  # different content
    assert find_features(ws, "e", proxy=TINY, config=FeatureConfig(dim=64)) is None
    ws.rename_dataset("d", "renamed")  # same content: still found
    assert find_features(ws, "renamed", proxy=TINY, config=FeatureConfig(dim=64)).key == base.key


# Keys computed by the code before the feature kinds became encoders (issue 12). A
# workspace made then must still find its features: these never change (bump
# FEATURES_VERSION instead when the numbers do).
PINNED_REVISION = "0123456789abcdef0123456789abcdef01234567"
PINNED_KEYS = [
    (
        ProxySpec("Qwen/Qwen2.5-0.5B-Instruct", PINNED_REVISION),
        FeatureConfig(),
        "5646f50dff32e2e0dbac7311",
    ),
    (
        ProxySpec("Qwen/Qwen2.5-0.5B-Instruct", PINNED_REVISION),
        FeatureConfig(dim=256, rank=32, seed=7, max_length=128),
        "49d6a0fdaa27334e4c16b37e",
    ),
    (
        ProxySpec("Qwen/Qwen2.5-0.5B-Instruct", PINNED_REVISION),
        FeatureConfig(method="exact", dim=256, rank=32, seed=7, max_length=128),
        "1000fc47d1040e54a1e683ba",
    ),
    (
        ProxySpec("sentence-transformers/all-mpnet-base-v2", PINNED_REVISION),
        FeatureConfig(method="sentence", dim=99),
        "d7ea6a839451e2bb401ba6b5",
    ),
]


@pytest.mark.parametrize(("proxy", "config", "key"), PINNED_KEYS)
def test_feature_keys_of_existing_sets_never_change(proxy, config, key):
    data = SimpleNamespace(fingerprint="5f1d3c0b9a8e7d6c5b4a39281706f5e4")
    assert feature_key(data, encoder_for(proxy, config)) == key


class PromptLengths(Encoder):
    """A toy kind of vector: each sample's prompt length and id length; loads nothing."""

    def settings(self) -> dict[str, object]:
        return {"method": self.config.method, "dim": self.config.dim}

    def identity(self) -> str:
        return "prompt-lengths-v1"

    def open(self, runtime: Runtime) -> PromptLengths.Loaded:  # noqa: ARG002 - the interface
        return PromptLengths.Loaded()

    class Loaded:
        dim = 2

        def encode(self, samples: Samples, on_rows=None) -> tuple[np.ndarray, int]:
            assert on_rows is not None  # the store reports progress through it
            lengths = [(len(p), len(i)) for p, i in zip(samples.prompts, samples.ids, strict=True)]
            return np.array(lengths, dtype=np.float32), 0

        def facts(self) -> dict[str, object]:
            return {"source": "prompt lengths"}


def test_a_new_kind_of_vector_is_only_an_encoder(ws, monkeypatch):
    """The feature store, its key and its listing use the encoder interface alone."""
    monkeypatch.setitem(KINDS, "lengths", PromptLengths)
    request = {"proxy": ProxySpec("none"), "config": FeatureConfig(method="lengths", dim=8)}
    fs = compute_features(ws, "d", **request, runtime=Runtime(chunk_rows=16))
    table = pq.read_table(ws.dataset("d").path, columns=["prompt", "id"]).to_pylist()
    expected = [[len(r["prompt"]), len(r["id"])] for r in table]
    assert fs.matrix().tolist() == expected and fs.facts["source"] == "prompt lengths"
    assert find_features(ws, "d", **request).key == fs.key
    listed = {s["key"]: s["settings"] for s in feature_sets(ws, "d")}
    assert listed[fs.key] == {"method": "lengths", "dim": 8}
    with pytest.raises(UserError, match="method 'nothing': use factorized, exact, sentence"):
        compute_features(ws, "d", config=FeatureConfig(method="nothing"))


def test_truncations_are_counted(ws):
    fs = compute_features(ws, "d", proxy=TINY, config=FeatureConfig(dim=32, max_length=48))
    assert fs.facts["truncated"] > 10
    assert (
        compute_features(ws, "d", proxy=TINY, config=FeatureConfig(dim=32)).facts["truncated"] == 0
    )


def test_corrupt_chunk_is_detected_and_recomputed(ws):
    config = FeatureConfig(dim=64)
    fs = compute_features(ws, "d", proxy=TINY, config=config, runtime=Runtime(chunk_rows=16))
    good = fs.matrix()
    chunk = fs.chunk_path(1)
    data = bytearray(chunk.read_bytes())
    data[-7] ^= 0xFF  # flip bits inside the values, size unchanged
    chunk.write_bytes(bytes(data))
    assert find_features(ws, "d", proxy=TINY, config=config) is None
    with pytest.raises(UserError, match="damaged"):
        fs.load_chunk(1)
    again = compute_features(ws, "d", proxy=TINY, config=config, runtime=Runtime(chunk_rows=16))
    assert again.facts["computed_rows"] == 16  # only the damaged chunk
    assert np.array_equal(again.matrix(), good)


def test_chunks_are_checked_once_per_version_of_their_file(ws, monkeypatch):
    import zlib

    config = FeatureConfig(dim=64)
    fs = compute_features(ws, "d", proxy=TINY, config=config, runtime=Runtime(chunk_rows=16))
    good = fs.matrix()
    reads: list[int] = []
    crc32 = zlib.crc32
    monkeypatch.setattr(zlib, "crc32", lambda data, *a: reads.append(len(data)) or crc32(data, *a))

    def age(path: Path, seconds: float) -> None:
        os.utime(path, (time.time() - seconds, time.time() - seconds))

    # files written just now are read at every check: a write in the same clock tick could
    # leave their size and mtime as they were
    assert find_features(ws, "d", proxy=TINY, config=config) and reads
    for i in range(fs.n_chunks):
        age(fs.chunk_path(i), 3600)
    assert find_features(ws, "d", proxy=TINY, config=config)
    reads.clear()  # checked once; then neither finding nor reading reads a chunk to check it
    again = find_features(ws, "d", proxy=TINY, config=config)
    assert again is not None and np.array_equal(again.matrix(), good) and reads == []
    chunk = again.load_chunk(1)
    assert not chunk.flags.writeable and not chunk.flags.owndata  # mapped, not copied
    assert np.array_equal(again.take(np.array([33, 2, 17, 2])), good[[33, 2, 17, 2]])

    # damaged with its size unchanged: the new mtime makes it checked again, and caught
    path = fs.chunk_path(1)
    original = path.read_bytes()
    damaged = bytearray(original)
    damaged[-7] ^= 0xFF
    path.write_bytes(bytes(damaged))
    age(path, 1800)
    assert find_features(ws, "d", proxy=TINY, config=config) is None
    with pytest.raises(UserError, match="damaged"):
        again.load_chunk(1)
    # put back as it was: intact again; then one byte longer with the mtime it had: caught
    path.write_bytes(original)
    age(path, 3600)
    assert find_features(ws, "d", proxy=TINY, config=config) is not None
    stamp = path.stat().st_mtime_ns
    path.write_bytes(original + b"\0")
    os.utime(path, ns=(stamp, stamp))
    assert find_features(ws, "d", proxy=TINY, config=config) is None


def test_a_run_in_progress_elsewhere_is_refused(ws):
    config = FeatureConfig(dim=32)
    compute_features(ws, "d", proxy=TINY, config=config)
    fs = find_features(ws, "d", proxy=TINY, config=config)
    fs.complete = False
    fs.save_manifest()
    with _exclusive(fs.folder), pytest.raises(UserError, match="another process"):
        compute_features(ws, "d", proxy=TINY, config=config)


def test_sigkill_midway_then_resume_gives_identical_features(tmp_path):
    """Kill `embed` after a few chunks; the rerun finishes with exactly the uninterrupted result."""
    data = demo_file(tmp_path / "d.jsonl", 360)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for name in ("killed", "whole"):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "core",
                "import",
                str(data),
                "--name",
                "d",
                "--workspace",
                str(tmp_path / name),
            ],
            check=True,
            env=env,
            cwd=REPO,
        )
    embed = [
        sys.executable,
        "-m",
        "core",
        "embed",
        "d",
        "--proxy",
        "tiny-random",
        "--chunk-rows",
        "8",
        "--json",
    ]
    killed = tmp_path / "killed"
    listed = kill_after_chunks([*embed, "--workspace", str(killed)], killed, 5, env=env)
    assert 5 <= listed < 45, "the kill did not land midway"
    for name in ("killed", "whole"):  # the killed run resumes; the other runs uninterrupted
        done = subprocess.run(
            [*embed, "--workspace", str(tmp_path / name), "--out", str(tmp_path / f"{name}.npy")],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["rows"] == 360
    a, b = np.load(tmp_path / "killed.npy"), np.load(tmp_path / "whole.npy")
    assert a.shape == (360, 1024) and np.array_equal(a, b)
    ws = Workspace(tmp_path / "killed")
    fs = find_features(ws, "d", proxy=TINY)
    assert fs.facts["computed_rows"] < 360  # the rerun did not start over
    assert (
        sorted(fs.chunks) == list(range(45)) and sum(c["rows"] for c in fs.chunks.values()) == 360
    )


def test_embed_cli(cli, tmp_path):
    assert cli("import", str(demo_file(tmp_path / "d.jsonl", 30)), "--name", "d").code == 0
    r = cli(
        "embed",
        "d",
        "--proxy",
        "tiny-random",
        "--dim",
        "64",
        "--json",
        "--out",
        str(tmp_path / "f.npy"),
    )
    assert r.code == 0, r.err
    assert {k: r.json[k] for k in ("rows", "dim", "method", "proxy", "cached")} == {
        "rows": 30,
        "dim": 64,
        "method": "factorized",
        "proxy": "tiny-random",
        "cached": False,
    }
    assert "warning: 'tiny-random' is a tiny random model" in r.err
    matrix = np.load(tmp_path / "f.npy")
    assert matrix.shape == (30, 64) and matrix.dtype == np.float32
    again = cli("embed", "d", "--proxy", "tiny-random", "--dim", "64", "--json")
    assert again.json["cached"] is True and again.json["key"] == r.json["key"]
    human = cli("embed", "d", "--proxy", "tiny-random", "--dim", "64")
    assert "from the cache" in human.out
    # rows come back in dataset order: row i is the features of row i alone
    first = (tmp_path / "d.jsonl").read_text().splitlines()[0]
    (tmp_path / "one.jsonl").write_text(first + "\n")
    assert cli("import", str(tmp_path / "one.jsonl"), "--name", "one").code == 0
    cli("embed", "one", "--proxy", "tiny-random", "--dim", "64", "--out", str(tmp_path / "one.npy"))
    assert np.allclose(np.load(tmp_path / "one.npy")[0], matrix[0], rtol=1e-4, atol=1e-6)


def test_embed_cli_errors(cli, tmp_path):
    assert cli("import", str(demo_file(tmp_path / "d.jsonl", 5)), "--name", "d").code == 0
    assert_user_error(cli("embed", "nope", "--proxy", "tiny-random"), "no dataset named 'nope'")
    assert_user_error(
        cli("embed", "d", "--proxy", "no-such-org/no-such-model"), "cannot be loaded", "tiny-random"
    )
    assert_user_error(
        cli("embed", "d", "--proxy", "tiny-random", "--dim", "0"), "--dim", "must be at least 8"
    )
    assert_user_error(
        cli("embed", "d", "--proxy", "tiny-random", "--device", "cuda"), "no CUDA GPU"
    )
    assert_user_error(
        cli("embed", "d", "--proxy", "tiny-random", "--method", "magic"), "invalid choice"
    )
    assert_user_error(
        cli("embed", "d", "--proxy", "tiny-random", "--out", str(tmp_path / "no" / "x.npy")),
        "no folder",
    )


def test_local_folder_proxy_equals_the_same_weights(ws, tmp_path):
    model, tokenizer = tiny_random("qwen2")
    folder = tmp_path / "my-proxy"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    proxy = load_proxy(str(folder))
    assert not proxy.is_random and str(folder.resolve()) in proxy.identity
    config = FeatureConfig(dim=64)
    from_folder = compute_features(ws, "d", proxy=ProxySpec(str(folder)), config=config)
    from_builder = compute_features(ws, "d", proxy=TINY, config=config)
    assert from_folder.key != from_builder.key
    assert np.allclose(from_folder.matrix(), from_builder.matrix(), rtol=1e-4, atol=1e-6)


def test_proxy_errors_say_what_to_do(tmp_path):
    with pytest.raises(
        UserError, match=r"cannot be loaded.*local model folder.*HF_HUB_OFFLINE.*tiny-random"
    ):
        load_proxy("no-such-org/no-such-model")
    from transformers import ViTConfig

    ViTConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2).save_pretrained(
        tmp_path / "vit"
    )
    with pytest.raises(UserError, match=r"not a causal language model \(vit\)"):
        load_proxy(str(tmp_path / "vit"))
    model, _ = tiny_random()
    model.save_pretrained(tmp_path / "notok")
    with pytest.raises(UserError, match="no usable tokenizer"):
        load_proxy(str(tmp_path / "notok"))


def test_cancel_keeps_finished_chunks(ws):
    from core.errors import Cancelled

    config = FeatureConfig(dim=32)

    def cancel_after_first_chunk(done: int, _total: int) -> None:
        if done >= 16:
            raise Cancelled

    with pytest.raises(Cancelled):
        compute_features(
            ws,
            "d",
            proxy=TINY,
            config=config,
            runtime=Runtime(chunk_rows=16),
            on_progress=cancel_after_first_chunk,
        )
    assert find_features(ws, "d", proxy=TINY, config=config) is None
    resumed = compute_features(ws, "d", proxy=TINY, config=config, runtime=Runtime(chunk_rows=16))
    assert resumed.facts["computed_rows"] == 24  # 40 rows, the first chunk of 16 was kept
