"""Vectors computed elsewhere (`features-import`): the tool's own files become the same
feature set as computing them here (synthesis included); foreign vectors are scored,
mapped, curated and exported; every bad file is refused with one line and the workspace
unchanged; a large file is read in blocks."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from safetensors.numpy import load_file, save_file

from core import synthesis, vectorfiles
from core.__main__ import main
from core.config import FeatureConfig, ProxySpec, SynthesisSettings
from core.errors import UserError
from core.features import (
    compute_features,
    feature_sets,
    find_features,
    import_features,
    write_features_file,
)
from core.llm import LLMSettings
from core.maps import clusters_for
from core.vendi import g_vendi, unit_rows
from core.workspace import Workspace
from tests.conftest import HANG_SECONDS, REPO, CliResult, assert_user_error, write_jsonl
from tests.fake_llm import FakeLLM
from tests.test_features import demo_file

TINY = ProxySpec("tiny-random")
CONFIG = FeatureConfig(dim=64)
FLAGS = ["--proxy", "tiny-random", "--dim", "64"]


def record_ids(ws: Workspace, name: str) -> list[str]:
    return pq.read_table(ws.dataset(name).path, columns=["id"]).column("id").to_pylist()


def planted(rows: int, dim: int = 16, sizes: tuple[int, ...] = (60, 40, 20)) -> tuple:
    """Unit vectors around len(sizes) well-separated directions (uneven groups), in a seeded
    shuffled order: (vectors, group of each row)."""
    rng = np.random.default_rng(0)
    centres = np.eye(dim, dtype=np.float32)[: len(sizes)] * 10
    groups = np.repeat(np.arange(len(sizes)), sizes)[:rows]
    rng.shuffle(groups)
    x = centres[groups] + rng.standard_normal((rows, dim)).astype(np.float32)
    return x.astype(np.float32), groups


def snapshot(root: Path) -> list[str]:
    """Every path under the workspace's datasets/ (folders too)."""
    return sorted(str(p.relative_to(root)) for p in (root / "datasets").rglob("*"))


def run_main(capsys, *args: str) -> CliResult:
    """The CLI in this process (as `cli` runs it in a subprocess): exit code, stdout, stderr."""
    code = main(list(args))
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)


# --- the tool's own files: the same feature set elsewhere ------------------------------------------


def test_embed_out_here_then_import_there_is_the_same_feature_set(cli, tmp_path):
    data = demo_file(tmp_path / "d.jsonl", 120)
    a, b = tmp_path / "A", tmp_path / "B"
    for root in (a, b):
        Workspace(root).import_dataset(data, name="d")
    st, npy = tmp_path / "f.safetensors", tmp_path / "f.npy"
    made = cli("embed", "d", *FLAGS, "--out", str(st), "--json", "--workspace", str(a))
    assert made.code == 0, made.err
    again = cli("embed", "d", *FLAGS, "--out", str(npy), "--json", "--workspace", str(a))
    assert again.json["cached"] and again.json["files"] == [str(npy), str(npy) + ".json"]
    computed = find_features(Workspace(a), "d", proxy=TINY, config=CONFIG).matrix()
    assert np.array_equal(load_file(st)["features"], computed)
    assert np.array_equal(np.load(npy), computed)  # a plain .npy, as before

    got = cli("features-import", "d", str(npy), "--json", "--workspace", str(b))
    assert got.code == 0, got.err
    assert got.json["key"] == made.json["key"] and got.json["method"] == "factorized"
    assert got.json["proxy"] == "tiny-random" and not got.json["vectors_of_their_own"]
    same = cli("features-import", "d", str(st), "--json", "--workspace", str(b))
    assert same.json["cached"] and same.json["key"] == made.json["key"]

    def scored(root: Path) -> dict:
        return cli("score", "d", *FLAGS, "--json", "--workspace", str(root)).json

    def mapped(root: Path) -> list:
        clusters = cli("map", "d", *FLAGS, "--json", "--workspace", str(root)).json["clusters"]
        return [(c["id"], c["size"], c["sparse"], c["keywords"]) for c in clusters]

    assert scored(b)["g_vendi"] == scored(a)["g_vendi"]
    assert mapped(b) == mapped(a)

    # synthesis in B runs on the imported features (nothing recomputed) with the same proxy
    ws = Workspace(b)
    with FakeLLM() as llm:
        run_id = synthesis.create_run(
            ws,
            "d",
            llm=LLMSettings(base_url=llm.url, model="fake", concurrency=4, timeout=10.0),
            settings=SynthesisSettings(target=4, rounds=1),
            proxy=TINY,
            config=CONFIG,
        )
        summary = synthesis.run_synthesis(ws, run_id)
    assert summary["state"] == "done"
    landed = [i for i in synthesis.review(ws, run_id) if i["landed_cluster"] is not None]
    assert landed  # candidates got gradient features and a cluster of the imported space
    assert find_features(ws, "d", proxy=TINY, config=CONFIG).facts["imported_from"] == "f.npy"


@pytest.fixture
def two_workspaces(tmp_path):
    """Dataset d (40 rows) with tiny-random features in workspace A; in B, d and e (other
    rows, the same count)."""
    a, b = Workspace(tmp_path / "A"), Workspace(tmp_path / "B")
    data = demo_file(tmp_path / "d.jsonl", 40)
    a.import_dataset(data, name="d")
    b.import_dataset(data, name="d")
    rows = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    other = write_jsonl(tmp_path / "e.jsonl", [{**r, "answer": r["answer"] + "!"} for r in rows])
    b.import_dataset(other, name="e")
    fs = compute_features(a, "d", proxy=TINY, config=CONFIG)
    return a, b, fs


def test_a_stale_sidecar_or_other_data_make_vectors_of_their_own(two_workspaces, tmp_path):
    a, b, fs = two_workspaces
    out = tmp_path / "f.npy"
    write_features_file(a.dataset("d"), fs, out)
    # the same file imported into other data: its settings are not claimed there
    other = import_features(b, "e", out)
    assert other.config.method == "file" and other.proxy.startswith("file:")
    assert "other data" in other.facts["notes"][0]
    # the .npy rewritten beside its old sidecar: the sidecar is not believed
    np.save(out, fs.matrix() * 2)
    stale = import_features(b, "d", out)
    assert stale.config.method == "file" and "another version" in stale.facts["notes"][0]
    assert np.array_equal(stale.matrix(), fs.matrix() * 2)


def test_chunks_are_the_bytes_numpy_save_writes(two_workspaces):
    _, _, fs = two_workspaces
    import io

    buffer = io.BytesIO()
    np.save(buffer, fs.load_chunk(0))
    assert fs.chunk_path(0).read_bytes() == buffer.getvalue()


def test_the_safetensors_file_is_read_by_the_library_and_read_back(two_workspaces, tmp_path):
    a, _, fs = two_workspaces
    out = tmp_path / "f.safetensors"
    write_features_file(a.dataset("d"), fs, out)
    from safetensors import safe_open

    with safe_open(str(out), "np") as f:
        recorded = json.loads(f.metadata()["prism"])
    assert recorded["key"] == fs.key and recorded["config"]["dim"] == 64
    assert recorded["proxy"] == "tiny-random" and recorded["data"] == a.dataset("d").fingerprint


# --- foreign vectors ---------------------------------------------------------------------------------


def test_foreign_vectors_are_scored_mapped_curated_and_exported(cli, tmp_path, workspace_dir):
    ws = Workspace(workspace_dir)
    ws.import_dataset(demo_file(tmp_path / "d.jsonl", 120), name="d")
    x, groups = planted(120)
    ids = record_ids(ws, "d")
    order = np.random.default_rng(3).permutation(120)  # the file's rows in another order
    table = pa.table(
        {
            "text": [f"row {i}" for i in order],  # left out
            "emb": pa.array(list(x[order]), type=pa.list_(pa.float32())),
            "key": [ids[i] for i in order],
        }
    )
    path = tmp_path / "emb.parquet"
    pq.write_table(table, path, row_group_size=50)
    got = cli("features-import", "d", str(path), "--id-column", "key", "--json")
    assert got.code == 0, got.err
    identity = got.json["proxy"]
    assert identity.startswith("file:") and got.json["vectors_of_their_own"]
    flags = ["--method", "file", "--proxy", identity]

    fs = find_features(ws, "d", proxy=ProxySpec(identity), config=FeatureConfig(method="file"))
    assert np.array_equal(fs.matrix(), x)  # back in dataset order
    score = cli("score", "d", *flags, "--json").json
    assert score["g_vendi"] == pytest.approx(g_vendi(unit_rows(x)), rel=1e-5)
    mapped = cli("map", "d", *flags, "--k", "3", "--json").json
    assert sorted(c["size"] for c in mapped["clusters"]) == [20, 40, 60]
    labels = clusters_for(fs, k=3).labels
    assert len(set(zip(labels.tolist(), groups.tolist(), strict=True))) == 3  # the planted groups

    syn = cli("synthesize", "d", *flags, "--base-url", "http://127.0.0.1:9/v1", "--model", "m")
    assert_user_error(syn, f"the proxy that made the imported vectors {identity} is unknown")
    curated = cli("curate", "d", *flags, "--remove-rows", "0,1", "--json").json
    assert curated["rows"] == 118 and curated["g_vendi"] > 1
    out = tmp_path / "out.jsonl"
    exported = cli("export", "d", *flags, "--out", str(out), "--json")
    assert exported.code == 0, exported.err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 118 and all(r["cluster"] is not None for r in rows)
    listed = cli("features", "d", "--json").json["feature_sets"]
    assert [(s["proxy"], s["imported_from"], s["dim"]) for s in listed] == [
        (identity, "emb.parquet", 16)
    ]
    # imported vectors a dataset lacks cannot be computed: said, nothing made
    other = cli("score", "d", "--method", "file", "--proxy", "file:0123456789abcdef")
    assert_user_error(other, "has no imported vectors file:0123456789abcdef", "features-import")


def test_safetensors_with_an_ids_tensor_and_bfloat16(tmp_path):
    import torch
    from safetensors.torch import save_file as save_torch

    ws = Workspace(tmp_path / "ws")
    ws.import_dataset(
        write_jsonl(
            tmp_path / "d.jsonl",
            [{"id": 10 + i, "question": f"q{i}", "answer": f"a{i}"} for i in range(30)],
        ),
        name="d",
    )
    x, _ = planted(30, sizes=(10, 10, 10))
    order = np.random.default_rng(1).permutation(30)
    save_torch(
        {
            "vectors": torch.from_numpy(x[order]).to(torch.bfloat16),
            "ids": torch.from_numpy(order + 10),
        },
        tmp_path / "v.safetensors",
    )
    fs = import_features(ws, "d", tmp_path / "v.safetensors")
    expected = torch.from_numpy(x).to(torch.bfloat16).float().numpy()
    assert fs.facts["rows_matched_by"] == "ids in 'ids'" and np.array_equal(fs.matrix(), expected)


# --- bad files ---------------------------------------------------------------------------------------


def _npy(values) -> callable:
    return lambda path, _ids: np.save(path.with_suffix(".npy"), values) or path.with_suffix(".npy")


def _parquet(columns: dict, **kw) -> callable:
    def make(path: Path, ids: list[str]) -> Path:
        table = pa.table({k: v(ids) if callable(v) else v for k, v in columns.items()})
        pq.write_table(table, path.with_suffix(".parquet"), **kw)
        return path.with_suffix(".parquet")

    return make


def _safetensors(tensors: dict) -> callable:
    def make(path: Path, _ids: list[str]) -> Path:
        save_file(tensors, path.with_suffix(".safetensors"))
        return path.with_suffix(".safetensors")

    return make


def _raw(data: bytes, suffix: str) -> callable:
    def make(path: Path, _ids: list[str]) -> Path:
        path.with_suffix(suffix).write_bytes(data)
        return path.with_suffix(suffix)

    return make


ROWS = 12
GOOD = np.ones((ROWS, 8), dtype=np.float32)


def _with(row: int, value: float, dtype=np.float32) -> np.ndarray:
    x = GOOD.astype(dtype)
    x[row, 3] = value
    return x


def _truncated_npy(path: Path, _ids: list[str]) -> Path:
    np.save(path.with_suffix(".npy"), GOOD)
    data = path.with_suffix(".npy").read_bytes()
    path.with_suffix(".npy").write_bytes(data[:-20])
    return path.with_suffix(".npy")


def _floats(n: int) -> callable:
    return lambda _ids: pa.array([list(map(float, range(8)))] * n, type=pa.list_(pa.float32()))


def _safetensors_header(entry: dict) -> Callable[[Path, list[str]], Path]:
    """A .safetensors file whose one tensor "v" has this header `entry`, and 384 bytes."""

    def make(path: Path, _ids: list[str]) -> Path:
        header = json.dumps({"v": entry}).encode()
        path = path.with_suffix(".safetensors")
        path.write_bytes(len(header).to_bytes(8, "little") + header + bytes(ROWS * 8 * 4))
        return path

    return make


BAD_FILES = {
    "wrong row count": (_npy(GOOD[:11]), (), "11 rows, but dataset 'd' has 12"),
    "NaN": (_npy(_with(5, np.nan)), (), "row 5 holds NaN"),
    "inf": (_npy(_with(7, -np.inf)), (), "row 7 holds NaN or an infinite value"),
    "too large for float32": (_npy(_with(2, 1e300, np.float64)), (), "row 2 holds"),
    "zero rows": (_npy(np.zeros((0, 8), np.float32)), (), "holds no rows"),
    "zero dims": (_npy(np.zeros((ROWS, 0), np.float32)), (), "0 dims"),
    "1-D": (_npy(np.ones(ROWS, np.float32)), (), "the array is 1-D (12)"),
    "3-D": (_npy(np.ones((ROWS, 2, 4), np.float32)), (), "3-D (12 x 2 x 4)"),
    "integers": (_npy(np.ones((ROWS, 8), np.int64)), (), "holds int64 values"),
    "cut off": (_truncated_npy, (), "shorter than its header says"),
    "ids for a .npy": (_npy(GOOD), ("--id-column", "id"), "a .npy file holds one array"),
    "an .npz": (
        lambda path, _ids: np.savez(path.with_suffix(".npz"), x=GOOD) or path.with_suffix(".npz"),
        (),
        "a zip archive",
    ),
    "text": (_raw(b'{"a": 1}\n', ".jsonl"), (), "not a .npy, .parquet or .safetensors file"),
    "empty": (_raw(b"", ".npy"), (), "not a .npy, .parquet or .safetensors file"),
    "an unknown id": (
        _parquet({"id": lambda ids: [*ids[:-1], "stranger"], "v": _floats(ROWS)}),
        ("--id-column", "id"),
        "row 11 has the id 'stranger', which dataset 'd' lacks",
    ),
    "a repeated id": (
        _parquet({"id": lambda ids: [*ids[:-1], ids[0]], "v": _floats(ROWS)}),
        ("--id-column", "id"),
        "is on rows 0 and 11",
    ),
    "missing ids": (
        _parquet({"id": lambda ids: ids[:-2], "v": _floats(ROWS - 2)}),
        ("--id-column", "id"),
        "2 of the 12 ids of dataset 'd' have no row",
    ),
    "a null id": (
        _parquet({"id": lambda ids: [None, *ids[1:]], "v": _floats(ROWS)}),
        ("--id-column", "id"),
        "row 0 of column 'id' has no id (null)",
    ),
    "no such id column": (
        _parquet({"v": _floats(ROWS)}),
        ("--id-column", "nope"),
        "no column 'nope'",
    ),
    "lists of two lengths": (
        _parquet({"v": lambda _ids: pa.array([[1.0] * 8] * 4 + [[1.0] * 7] + [[1.0] * 8] * 7)}),
        (),
        "row 4 of column 'v' has 7 values, not 8",
    ),
    "an empty list row": (
        _parquet({"v": lambda _ids: pa.array([[1.0] * 8] * 3 + [None] + [[1.0] * 8] * 8)}),
        (),
        "row 3 of column 'v' is empty (null)",
    ),
    "two list columns": (
        _parquet({"a": _floats(ROWS), "b": _floats(ROWS)}),
        (),
        "several list columns (a, b)",
    ),
    "a text column among numbers": (
        _parquet({"id": lambda ids: ids, **{f"x{i}": [1.0] * ROWS for i in range(8)}}),
        (),
        "column 'id' holds string, not floating-point numbers",
    ),
    "an integer tensor": (
        _safetensors({"v": np.ones((ROWS, 8), np.int64)}),
        (),
        "the tensor 'v' holds I64 values",
    ),
    "ids tensor of another length": (
        _safetensors({"v": GOOD, "ids": np.arange(5)}),
        (),
        "has 5 ids for 12 rows",
    ),
    "a cut safetensors file": (
        lambda path, _ids: (
            save_file({"v": GOOD}, path.with_suffix(".safetensors")),
            path.with_suffix(".safetensors").write_bytes(
                path.with_suffix(".safetensors").read_bytes()[:-10]
            ),
            path.with_suffix(".safetensors"),
        )[-1],
        (),
        "does not fit in the file",
    ),
    **{
        f"a safetensors header with {what}": (
            _safetensors_header({"dtype": "F32", "shape": [ROWS, 8], **entry}),
            (),
            f"not a readable safetensors file (its header: {says}",
        )
        for what, entry, says in (
            ("three offsets", {"data_offsets": [0, 16, 5]}, "data_offsets [0, 16, 5]"),
            ("text offsets", {"data_offsets": ["0", 384]}, "data_offsets ['0', 384]"),
            ("negative offsets", {"data_offsets": [-8, 376]}, "data_offsets [-8, 376]"),
            ("a negative shape", {"shape": [-12, 8], "data_offsets": [0, 384]}, "shape [-12, 8]"),
            ("no offsets", {}, "'data_offsets'"),
        )
    },
}


@pytest.fixture
def small(tmp_path) -> Workspace:
    ws = Workspace(tmp_path / "ws")
    ws.import_dataset(demo_file(tmp_path / "d.jsonl", ROWS), name="d")
    return ws


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_file_is_refused_with_one_line_and_nothing_changes(small, tmp_path, capsys, case):
    make, flags, says = BAD_FILES[case]
    path = make(tmp_path / "bad", record_ids(small, "d"))
    before = snapshot(small.root)
    got = run_main(
        capsys, "features-import", "d", str(path), *flags, "--workspace", str(small.root)
    )
    assert_user_error(got, says)
    assert snapshot(small.root) == before and feature_sets(small, "d") == []


def test_missing_files_folders_and_datasets_in_a_subprocess(cli, small, tmp_path):
    env = {"PRISM_WORKSPACE": str(small.root)}
    assert_user_error(
        cli("features-import", "d", str(tmp_path / "nope.npy"), env=env), "no such file"
    )
    assert_user_error(cli("features-import", "d", str(tmp_path), env=env), "is a folder")
    np.save(tmp_path / "x.npy", GOOD)
    assert_user_error(cli("features-import", "nope", str(tmp_path / "x.npy"), env=env), "'nope'")
    assert feature_sets(small, "d") == []


def test_a_bad_row_far_into_the_file_leaves_nothing_behind(tmp_path, monkeypatch):
    """Blocks of 8 rows: chunks are written before the NaN of row 50 is read; none stays."""
    monkeypatch.setattr(vectorfiles, "BLOCK_BYTES", 8 * 4 * 8)
    big = Workspace(tmp_path / "big")
    big.import_dataset(demo_file(tmp_path / "b.jsonl", 64), name="b")
    x = np.ones((64, 8), np.float32)
    x[50, 0] = np.nan
    np.save(tmp_path / "x.npy", x)
    before = snapshot(big.root)
    with pytest.raises(UserError, match="row 50 holds NaN"):
        import_features(big, "b", tmp_path / "x.npy")
    assert snapshot(big.root) == before and feature_sets(big, "b") == []
    x[50, 0] = 1.0
    np.save(tmp_path / "x.npy", x)
    fs = import_features(big, "b", tmp_path / "x.npy")
    assert fs.chunk_rows == 8 and fs.n_chunks == 8 and np.array_equal(fs.matrix(), x)


def test_an_import_does_not_replace_what_a_running_computation_holds(two_workspaces, tmp_path):
    a, b, fs = two_workspaces
    out = tmp_path / "f.safetensors"
    write_features_file(a.dataset("d"), fs, out)
    from core.features import _exclusive

    folder = b.dataset("d").path.parent / "features" / fs.key
    folder.mkdir(parents=True)
    with _exclusive(folder), pytest.raises(UserError, match="another process"):
        import_features(b, "d", out)
    assert feature_sets(b, "d") == []


# --- a large file, read in blocks --------------------------------------------------------------------

MEASURE = """
import json, sys, tracemalloc
import pyarrow as pa
from core.features import import_features
from core.workspace import Workspace
ws = Workspace(sys.argv[1])
import_features(ws, "warm", sys.argv[2])  # one-time costs (pyarrow's compute registry...)
peaks = {}
tracemalloc.start()
for path in sys.argv[3:]:
    tracemalloc.reset_peak()
    id_column = "id" if path.endswith(".parquet") else None
    import_features(ws, "d", path, id_column=id_column)
    peaks[path.rsplit(".", 1)[1]] = tracemalloc.get_traced_memory()[1]
peaks["arrow"] = pa.default_memory_pool().max_memory()
print(json.dumps(peaks))
"""


def _files(folder: Path, rows: int, dim: int = 64) -> tuple[list[str], int]:
    """A workspace with dataset d of `rows` rows and its vectors as .npy (dataset order),
    .parquet and .safetensors (shuffled, with ids); returns the paths and the matrix's bytes."""
    folder.mkdir()
    ws = Workspace(folder / "ws")
    with open(folder / "d.jsonl", "w") as f:
        f.writelines(
            json.dumps({"id": str(i), "question": f"q{i}", "answer": f"a{i}"}) + "\n"
            for i in range(rows)
        )
    ws.import_dataset(folder / "d.jsonl", name="d")
    ws.import_dataset(
        write_jsonl(folder / "w.jsonl", [{"question": "q", "answer": "a"}]), name="warm"
    )
    np.save(folder / "warm.npy", np.ones((1, dim), np.float32))
    x = np.random.default_rng(0).standard_normal((rows, dim)).astype(np.float32)
    order = np.random.default_rng(1).permutation(rows)
    np.save(folder / "v.npy", x)
    values = pa.FixedSizeListArray.from_arrays(pa.array(x[order].ravel()), dim)
    pq.write_table(pa.table({"id": [str(i) for i in order], "v": values}), folder / "v.parquet")
    save_file({"v": x[order], "ids": order.astype(np.int64)}, folder / "v.safetensors")
    paths = [str(folder / f"v.{s}") for s in ("npy", "parquet", "safetensors")]
    return [str(ws.root), str(folder / "warm.npy"), *paths], x.nbytes


def test_a_large_file_is_read_in_blocks(tmp_path):
    """Peak memory (Python's traced allocations, pyarrow's pool) of importing 100k and 200k
    rows x 64 float32 (25.6 and 51.2 MB) in fresh processes: doubling the file adds almost
    nothing, where reading it whole would add its size."""
    peaks, sizes = [], []
    for rows in (100_000, 200_000):
        args, size = _files(tmp_path / str(rows), rows)
        done = subprocess.run(
            [sys.executable, "-c", MEASURE, *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=HANG_SECONDS,
        )
        assert done.returncode == 0, done.stderr
        peaks.append(json.loads(done.stdout))
        sizes.append(size)
    added = sizes[1] - sizes[0]
    for kind in ("npy", "parquet", "safetensors"):
        grew = peaks[1][kind] + peaks[1]["arrow"] - peaks[0][kind] - peaks[0]["arrow"]
        assert grew < added / 4, (kind, peaks)
    assert peaks[1]["npy"] < sizes[1] / 2  # a block, not the matrix
