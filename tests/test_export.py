"""Curation and export: round trips byte for byte, readers, atomic writes, provenance."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from core import curation, synthesis
from core.config import FeatureConfig, ProxySpec
from core.encoders import GradientFeatures
from core.errors import UserError
from core.export import export
from core.features import compute_features
from core.llm import LLMSettings
from core.records import Mapping, iter_records
from core.workspace import Workspace
from tests.conftest import HANG_SECONDS, REPO, assert_user_error, write_jsonl
from tests.fake_llm import FakeLLM
from tests.test_synthesis import CONFIG, TINY, seeded  # noqa: F401 - the seeded workspace fixture
from tests.test_workspace import big_jsonl

HARD = [
    {
        "id": "u1",
        "question": "Ünïcödé: ∑_{i=1}^{n} i = \\frac{n(n+1)}{2} — 🙂 «ok»?",
        "answer": "Yes:\n\n  $x^2$\r\n\ttab",
    },
    {
        "id": "u2",
        "question": "Line one\nLine two\n\n",
        "answer": '\\boxed{\\{1,2\\}} and "quotes" and \\\\ slashes',
    },
    {"id": "u3", "question": "Long " + "word " * 200_000, "answer": "ok " * 50_000},
    {"id": "u4", "question": "<script>alert(1)</script>", "answer": "<img src=x onerror=alert(2)>"},
]


@pytest.fixture
def ws(tmp_path) -> Workspace:
    ws = Workspace(tmp_path / "ws")
    ws.import_dataset(
        write_jsonl(tmp_path / "hard.jsonl", HARD),
        name="hard",
        mapping=Mapping(prompt="question", response="answer", id="id"),
    )
    return ws


@pytest.mark.parametrize("form", ["messages", "prompt-response"])
def test_export_then_import_gives_the_same_records(ws, tmp_path, form):
    out = tmp_path / f"out-{form}.jsonl"
    result = export(curation.curated_records(ws, "hard"), out, format=form)
    assert result == {"rows": 4, "path": str(out), "format": form}
    back, _ = ws.import_dataset(out, name=f"back-{form}")
    original = [(r.id, r.prompt, r.response) for r in iter_records(ws.dataset("hard").path)]
    again = [(r.id, r.prompt, r.response) for r in iter_records(back.path)]
    assert again == original  # unicode, newlines, \r, tabs, LaTeX, 1 MB texts: byte for byte


def test_readers_read_the_exports(ws, tmp_path):
    import datasets

    export(curation.curated_records(ws, "hard"), tmp_path / "m.jsonl", format="messages")
    ds = datasets.load_dataset(
        "json",
        data_files=str(tmp_path / "m.jsonl"),
        split="train",
        cache_dir=str(tmp_path / "cache"),
    )
    assert ds.num_rows == 4 and ds[0]["messages"][1]["content"] == HARD[0]["answer"]
    assert ds[0]["source"] == "seed"
    export(curation.curated_records(ws, "hard"), tmp_path / "p.parquet", format="parquet")
    table = datasets.load_dataset(
        "parquet",
        data_files=str(tmp_path / "p.parquet"),
        split="train",
        cache_dir=str(tmp_path / "cache2"),
    )
    assert table["prompt"][1] == HARD[1]["question"]
    export(curation.curated_records(ws, "hard"), tmp_path / "folder", format="hf")
    disk = datasets.load_from_disk(str(tmp_path / "folder"))
    assert disk.num_rows == 4 and disk[3]["response"] == HARD[3]["answer"]
    export(
        curation.curated_records(ws, "hard"),
        tmp_path / "folder",
        format="hf",
        provenance=False,
        overwrite=True,
    )  # replaced
    assert set(datasets.load_from_disk(str(tmp_path / "folder")).column_names) == {
        "id",
        "prompt",
        "response",
        "messages",
    }
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_without_provenance(ws, tmp_path):
    export(
        curation.curated_records(ws, "hard"),
        tmp_path / "x.jsonl",
        format="prompt-response",
        provenance=False,
    )
    row = json.loads((tmp_path / "x.jsonl").read_text().splitlines()[0])
    assert set(row) == {"id", "prompt", "response"}


def test_a_failed_write_leaves_the_target_as_it_was(ws, tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("the previous export\n")

    def rows():
        yield from list(curation.curated_records(ws, "hard"))[:2]
        raise OSError(28, "No space left on device")

    with pytest.raises(UserError, match=r"No space left on device.*nothing was changed"):
        export(rows(), target, overwrite=True)
    assert target.read_text() == "the previous export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "hard.jsonl",
        "out.jsonl",
        "ws",
    ]  # no temporary left


def test_a_killed_export_leaves_no_partial_file(tmp_path):
    env = {**os.environ, "PRISM_WORKSPACE": str(tmp_path / "ws"), "PYTHONPATH": str(REPO)}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "core",
            "import",
            str(big_jsonl(tmp_path / "big.jsonl", 400_000)),
            "--name",
            "big",
        ],
        env=env,
        cwd=REPO,
        check=True,
    )
    target = tmp_path / "out" / "big.jsonl"
    target.parent.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "core", "export", "big", "--out", str(target)],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + HANG_SECONDS
    while time.time() < deadline:
        parts = list(target.parent.glob(".big.jsonl.*.part"))
        if parts and parts[0].stat().st_size > 1_000_000:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert parts, "the export never started writing"
    assert not target.exists()  # only the hidden temporary, never a half file at the target


def test_curation_removals_groups_and_summary(tmp_path):
    ws = Workspace(tmp_path / "ws")
    rows = [{"question": f"Q{i}: what is {i} + {i}?", "answer": f"{2 * i}"} for i in range(30)]
    rows += [
        dict(rows[3]),
        {"question": " q3: WHAT is 3 +  3? ", "answer": "6"},
        dict(rows[7]),
    ]  # 3 repeats
    ws.import_dataset(write_jsonl(tmp_path / "d.jsonl", rows), name="d")
    groups = curation.duplicate_groups(ws, "d")
    assert [(g["rows"], g["kind"]) for g in groups] == [([3, 30, 31], "exact"), ([7, 32], "exact")]
    assert curation.resolve_group(ws, "d", groups[0]) == 2
    assert curation.resolve_group(ws, "d", groups[1], keep=32) == 1
    with pytest.raises(UserError, match="not in this group"):
        curation.resolve_group(ws, "d", groups[1], keep=0)
    assert curation.removed(ws, "d") == {
        30: "exact duplicate of row 3",
        31: "exact duplicate of row 3",
        7: "exact duplicate of row 32",
    }
    assert curation.duplicate_groups(ws, "d") == []  # resolved groups are gone
    ws.save_selection("d", "drop-me", [0, 1])
    curation.remove_rows(ws, "d", ws.selection("d", "drop-me")["rows"], "selection drop-me")
    s = curation.summary(ws, "d")
    assert s["rows"] == 33 - 5 and s["by_source"] == {"seed": 28} and s["removed"] == 5
    assert s["removed_by_reason"] == {"exact duplicate": 3, "selection drop-me": 2}
    assert curation.restore_rows(ws, "d", [0]) == 1 and curation.restore_rows(ws, "d") == 4
    assert curation.summary(ws, "d")["rows"] == 33
    with pytest.raises(UserError, match="choose from seed, synthetic"):
        list(curation.curated_records(ws, "d", include=("seeds",)))


def test_the_summary_reads_no_record_and_the_removals_once_per_change(tmp_path, monkeypatch):
    ws = Workspace(tmp_path / "ws")
    rows = [{"question": f"Q{i}: what is {i} + {i}?", "answer": f"#### {2 * i}"} for i in range(30)]
    ws.import_dataset(write_jsonl(tmp_path / "d.jsonl", rows), name="d")
    clusters = np.arange(30) % 4
    first = curation.summary(ws, "d", clusters=clusters)
    assert first["by_cluster"] == {"0": 8, "1": 8, "2": 7, "3": 7} and first["removed"] == 0

    def no_reading(*_args, **_kwargs):
        raise AssertionError("the records were read")

    monkeypatch.setattr(curation.pq, "ParquetFile", no_reading)
    monkeypatch.setattr(curation, "iter_records", no_reading)
    reads = []
    removed_reasons = ws.catalogue.removed_reasons
    monkeypatch.setattr(
        ws.catalogue, "removed_reasons", lambda i: reads.append(i) or removed_reasons(i)
    )
    assert curation.summary(ws, "d", clusters=clusters, include=("seed",)) == first
    curation.remove_rows(ws, "d", [0, 4, 5], "by hand")
    curation.remove_rows(ws, "d", [5], "exact duplicate of row 1")
    after = curation.summary(ws, "d", clusters=clusters, include=("seed",))
    assert after["by_source"] == {"seed": 27} and after["removed"] == 3
    assert after["by_cluster"] == {"0": 6, "1": 7, "2": 7, "3": 7}
    assert after["removed_by_reason"] == {"by hand": 2, "exact duplicate": 1}
    assert curation.summary(ws, "d", clusters=clusters, include=("seed",)) == after
    assert len(reads) == 1  # once per change of the removals
    curation.restore_rows(ws, "d", [0])
    assert curation.summary(ws, "d", clusters=clusters, include=("seed",))["removed"] == 2
    assert len(reads) == 2


def test_similar_pairs_are_the_upper_triangle_above_the_threshold(monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sims = x @ x.T
    brute = {(i, j) for i in range(50) for j in range(i + 1, 50) if sims[i, j] > 0.5}
    assert brute
    for block in (1, 7, 4096):
        found = curation.similar_pairs(x, 0.5, block=block)
        assert len(found) == len(set(found)) and set(found) == brute
    monkeypatch.setattr(curation, "SIMS_BYTES", 4 * 50 * 10)  # room for 10 rows of products
    bands: list[int] = []
    assert set(curation.similar_pairs(x, 0.5, on_progress=lambda d, _t: bands.append(d))) == brute
    assert bands == [10, 20, 30, 40, 50]


def test_gradient_near_duplicates(tmp_path):
    ws = Workspace(tmp_path / "ws")
    rows = [
        {"question": f"Q{i}: what is {i} times {i + 1}?", "answer": f"{i * (i + 1)}"}
        for i in range(20)
    ]
    ws.import_dataset(write_jsonl(tmp_path / "d.jsonl", rows), name="d")
    fs = compute_features(ws, "d", proxy=TINY, config=FeatureConfig(dim=64))
    strict = curation.duplicate_groups(ws, "d", fs, threshold=0.9999)
    loose = curation.duplicate_groups(ws, "d", fs, threshold=0.0)
    assert (
        strict == []
        and len(loose) == 1
        and loose[0]["kind"] == "gradient"
        and len(loose[0]["rows"]) == 20
    )
    x = fs.matrix() / np.linalg.norm(fs.matrix(), axis=1, keepdims=True)
    cosines = (x @ x.T)[np.triu_indices(20, 1)]
    middle = float(np.quantile(cosines, 0.97))  # a threshold that splits the rows into groups
    seen: list[tuple[int, int | None]] = []
    banded = curation.duplicate_groups(
        ws, "d", fs, threshold=middle, block=3, on_progress=lambda d, t: seen.append((d, t))
    )
    assert banded == curation.duplicate_groups(ws, "d", fs, threshold=middle)  # one band
    assert seen[-1] == (20, 20) and len(seen) == 7  # bands of 3 rows
    pairs = {(i, j) for i, j in zip(*np.triu_indices(20, 1), strict=True) if x[i] @ x[j] > middle}
    grouped = [set(g["rows"]) for g in banded]
    assert pairs and all(any({i, j} <= g for g in grouped) for i, j in pairs)
    assert 1 < sum(len(g) for g in grouped) < 20


def planted_near_duplicates(n: int = 3000, d: int = 32, pairs: int = 60, seed: int = 0):
    """Unit rows around 12 centres of uneven sizes, with `pairs` near-duplicates (cosine
    about 0.99 with an earlier row) and 10 exact copies planted."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((12, d))
    which = rng.choice(12, n, p=rng.dirichlet(np.full(12, 0.5)))
    x = centres[which] + 0.6 * rng.standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    copies = rng.choice(n, 2 * pairs + 20, replace=False)
    originals, near, exact = copies[:pairs], copies[pairs : 2 * pairs], copies[2 * pairs :]
    x[near] = x[originals] + 0.02 * rng.standard_normal((pairs, d))
    x[exact[:10]] = x[exact[10:]]
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_candidate_pairs_find_the_same_pairs_as_all_pairs(monkeypatch):
    x = planted_near_duplicates()
    exact = set(curation.similar_pairs(x, 0.98))
    assert len(exact) >= 70  # the planted pairs, and the few close by chance
    monkeypatch.setattr(curation, "SPLIT_ROWS", 300)  # large cells are split again
    seen: list[tuple[int, int | None]] = []
    found = curation.candidate_pairs(
        x, 0.98, cell_rows=100, on_progress=lambda d, t: seen.append((d, t))
    )
    assert found.dtype == np.int64 and (found[:, 0] < found[:, 1]).all()
    assert {tuple(p) for p in found.tolist()} == exact  # recall 1.0, and nothing else
    assert seen[-1] == (1000, 1000) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    # and from a workspace's feature set: the same groups as the search of all pairs
    loose = curation.candidate_pairs(x, 0.5, cell_rows=100)
    truth = set(curation.similar_pairs(x, 0.5))
    assert {tuple(p) for p in loose.tolist()} <= truth and len(loose) > 0.5 * len(truth)


def test_duplicate_groups_search_candidate_pairs_beyond_the_exact_size(tmp_path, monkeypatch):
    ws = Workspace(tmp_path / "ws")
    rows = [
        {"question": f"Q{i}: what is {i} times {i + 1}?", "answer": f"{i * (i + 1)}"}
        for i in range(40)
    ]
    ws.import_dataset(write_jsonl(tmp_path / "d.jsonl", rows), name="d")
    fs = compute_features(ws, "d", proxy=TINY, config=FeatureConfig(dim=64))
    x = fs.matrix() / np.linalg.norm(fs.matrix(), axis=1, keepdims=True)
    middle = float(np.quantile((x @ x.T)[np.triu_indices(40, 1)], 0.98))
    curation.remove_rows(ws, "d", [5], "by hand")
    every = curation.duplicate_groups(ws, "d", fs, threshold=middle)
    assert every and all(5 not in g["rows"] for g in every)
    monkeypatch.setattr(curation, "CELL_ROWS", 8)
    monkeypatch.setattr(curation, "EXACT_PAIRS_ROWS", 10)
    assert curation.pair_search(ws, "d") == "candidate pairs"
    assert curation.duplicate_groups(ws, "d", fs, threshold=middle) == every


def synthetic_run(source, folder, *, proxy=TINY, api_key=None) -> tuple[Workspace, str]:
    """A copy of the seeded workspace with one finished run (4 wanted) by `gen-7b`."""
    shutil.copytree(source, folder)
    ws = Workspace(folder)
    with FakeLLM() as llm:
        run_id = synthesis.create_run(
            ws,
            "demo",
            llm=LLMSettings(base_url=llm.url, model="gen-7b"),
            settings=synthesis.SynthesisSettings(target=4, rounds=1),
            proxy=proxy,
            config=CONFIG,
        )
        synthesis.run_synthesis(ws, run_id, api_key=api_key)
    return ws, run_id


def test_synthetic_rows_carry_provenance_and_never_the_key(seeded, tmp_path):  # noqa: F811
    secret = "sk-export-SECRET-42"
    ws, run_id = synthetic_run(seeded, tmp_path / "ws", api_key=secret)
    out = tmp_path / "curated.jsonl"
    export(curation.curated_records(ws, "demo"), out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    synthetic = [r for r in rows if r["source"] == "synthetic"]
    assert len(rows) == 360 + len(synthetic) and synthetic
    for r in synthetic:
        assert r["run"] == run_id and r["round"] == 1 and r["generator"] == "gen-7b"
        assert (
            r["exemplar_ids"]
            and isinstance(r["cluster"], int)
            and json.loads(r["votes"])["agreeing"] >= 2
        )
    assert secret not in out.read_text()
    fs = compute_features(ws, "demo", proxy=TINY, config=CONFIG)
    before = curation.curated_g_vendi(ws, "demo", fs, include=("seed",))
    assert curation.curated_g_vendi(ws, "demo", fs) >= before


def test_curated_g_vendi_keeps_the_pinned_proxy_revision(seeded, tmp_path, monkeypatch):  # noqa: F811
    """The synthetic samples of a run with a pinned proxy are in the feature set's space
    already: curated G-Vendi takes their stored features, loading no (unpinned) proxy."""
    pinned = ProxySpec(TINY.name, revision="pinned-v1")
    ws, _ = synthetic_run(seeded, tmp_path / "ws", proxy=pinned)
    assert synthesis.synthetic_records(ws, "demo")  # the run accepted samples
    fs = compute_features(ws, "demo", proxy=pinned, config=CONFIG)

    def no_model(*_args, **_kwargs):
        raise AssertionError("a proxy was loaded again")

    monkeypatch.setattr(GradientFeatures, "open", no_model)
    assert curation.curated_g_vendi(ws, "demo", fs) > 0


def test_cli(cli, tmp_path):
    assert (
        cli(
            "import",
            str(write_jsonl(tmp_path / "d.jsonl", HARD[:2] + HARD[3:])),
            "--name",
            "d",
            "--id",
            "id",
        ).code
        == 0
    )
    r = cli("export", "d", "--out", str(tmp_path / "o.jsonl"), "--json")
    assert r.code == 0 and r.json == {
        "rows": 3,
        "path": str(tmp_path / "o.jsonl"),
        "format": "messages",
    }
    r = cli("curate", "d", "--remove-rows", "0", "--json")
    assert r.json["rows"] == 2 and r.json["removed"] == 1
    r = cli("export", "d", "--out", str(tmp_path / "o.jsonl"), "--overwrite", "--json")
    assert r.json["rows"] == 2
    assert cli("curate", "d", "--restore", "--json").json["removed"] == 0
    r = cli("duplicates", "d", "--text-only", "--json")
    assert r.code == 0 and r.json["groups"] == []
    assert_user_error(cli("export", "d", "--out", str(tmp_path / "none" / "o.jsonl")), "no folder")
    assert_user_error(
        cli("export", "d", "--out", str(tmp_path / "o.jsonl"), "--include", "seeds"),
        "seed, synthetic",
    )
    assert_user_error(
        cli(
            "export",
            "d",
            "--out",
            str(tmp_path / "o.jsonl"),
            "--include",
            "synthetic",
            "--overwrite",
        ),
        "nothing to export",
        "not touched",
    )
    # the last good export (2 rows after the removal) is still there
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == 2
    assert_user_error(
        cli("export", "d", "--out", str(tmp_path / "o.jsonl"), "--format", "xml"), "invalid choice"
    )
