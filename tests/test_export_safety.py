"""Nothing the user owns is deleted or overwritten silently: export targets, modes, temporary
files of killed writers, and every numeric flag range-checked before any work."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import charts
from core import curation, synthesis
from core.demo import demo_rows
from core.errors import UserError
from core.export import MARKER, export_curated
from core.features import compute_features
from core.files import TargetExists, atomic_write, clean_stale_temps, temp_path
from core.llm import LLMSettings
from core.workspace import Workspace
from tests.conftest import assert_user_error, write_jsonl
from tests.fake_llm import FakeLLM
from tests.test_synthesis import CONFIG, TINY

ROWS = [
    {"question": f"What is {i} + {i}?", "answer": f"{i} + {i} = {2 * i}\n#### {2 * i}"}
    for i in range(12)
]


@pytest.fixture
def ws(tmp_path) -> Workspace:
    ws = Workspace(tmp_path / "ws")
    ws.import_dataset(write_jsonl(tmp_path / "d.jsonl", ROWS), name="d")
    return ws


def dead_pid() -> int:
    """The id of a process that has ended."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


# --- folders ----------------------------------------------------------------------------------


def test_hf_export_never_touches_a_folder_of_other_files(ws, tmp_path, cli):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("my notes")
    with pytest.raises(UserError, match=r"other files in it.*nothing was written"):
        export_curated(ws, "d", notes, format="hf", overwrite=True)
    assert snapshot(notes) == {"todo.txt": b"my notes"}

    before = snapshot(ws.root / "datasets")  # the workspace itself as the target, from the CLI
    r = cli("export", "d", "--format", "hf", "--out", str(ws.root), "--overwrite")
    assert_user_error(r, str(ws.root))
    assert snapshot(ws.root / "datasets") == before and [d.name for d in ws.datasets()] == ["d"]
    assert ws.db_path.exists()


def test_hf_export_into_an_empty_folder_then_over_its_own_export(ws, tmp_path):
    import datasets

    out = tmp_path / "out"
    out.mkdir()
    assert export_curated(ws, "d", out, format="hf")["rows"] == 12  # an empty folder is free
    assert json.loads((out / MARKER).read_text())["rows"] == 12
    assert len(datasets.load_from_disk(str(out))) == 12

    curation.remove_rows(ws, "d", [0, 1], "by hand")
    with pytest.raises(TargetExists, match="exists; nothing was written"):
        export_curated(ws, "d", out, format="hf")
    assert len(datasets.load_from_disk(str(out))) == 12
    export_curated(ws, "d", out, format="hf", overwrite=True)
    assert len(datasets.load_from_disk(str(out))) == 10
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # nothing left aside

    (out / "mine.txt").write_text("added by the user")  # no longer only what the export wrote
    with pytest.raises(UserError, match="other files in it"):
        export_curated(ws, "d", out, format="hf", overwrite=True)
    assert (out / "mine.txt").read_text() == "added by the user"


def test_the_workspace_storage_is_never_a_target(ws):
    for target in (ws.db_path, ws.dataset("d").path, ws.root / "datasets" / "x.jsonl"):
        with pytest.raises(UserError, match="workspace's own storage"):
            export_curated(ws, "d", target, overwrite=True)
    assert [d.rows for d in ws.datasets()] == [12]


# --- files ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("ws")
def test_an_existing_file_is_replaced_only_when_asked_and_keeps_its_mode(tmp_path, cli):
    target = tmp_path / "o.jsonl"
    target.write_text("the user's file\n")
    target.chmod(0o640)
    r = cli("export", "d", "--out", str(target))
    assert_user_error(r, str(target), "--overwrite")
    assert target.read_text() == "the user's file\n"

    r = cli("export", "d", "--out", str(target), "--overwrite", "--json")
    assert r.code == 0 and r.json["rows"] == 12
    assert len(target.read_text().splitlines()) == 12
    assert stat.S_IMODE(target.stat().st_mode) == 0o640

    umask = os.umask(0o022)
    os.umask(umask)
    fresh = tmp_path / "new.jsonl"
    assert cli("export", "d", "--out", str(fresh)).code == 0
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~umask  # not a private 0600

    np_out = tmp_path / "f.npy"
    np_out.write_bytes(b"precious")
    r = cli("embed", "d", "--proxy", "tiny-random", "--dim", "64", "--out", str(np_out))
    assert_user_error(r, str(np_out), "--overwrite")
    assert np_out.read_bytes() == b"precious"


def test_stale_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    target = tmp_path / "o.jsonl"
    dead = dead_pid()
    stale = tmp_path / f".o.jsonl.{dead}.0123abcd.part"
    stale.write_bytes(b"x" * 1000)
    stale_folder = tmp_path / f".hf.{dead}.89abcdef.part"
    (stale_folder / "inner").mkdir(parents=True)
    live = temp_path(target)  # this process's: in use
    live.write_bytes(b"mine")
    unrelated = tmp_path / ".o.jsonl.notes.part"
    unrelated.write_text("not ours")
    aside = tmp_path / f".kept.{dead}.0badcafe.old"  # a replaced folder moved aside, then a kill
    aside.mkdir()
    (aside / "data.arrow").write_text("old export")

    atomic_write(target, b"new\n")  # any writer cleans up beside its target
    assert target.read_bytes() == b"new\n"
    assert not stale.exists() and not stale_folder.exists()
    assert live.exists() and unrelated.exists()
    assert (tmp_path / "kept" / "data.arrow").read_text() == "old export"  # put back
    assert clean_stale_temps(tmp_path) == 0


@pytest.mark.usefixtures("ws")
def test_a_killed_export_is_cleaned_by_the_next_one(tmp_path, cli):
    target = tmp_path / "o.jsonl"
    leftover = tmp_path / f".o.jsonl.{dead_pid()}.00000000.part"
    leftover.write_bytes(b"half an export")
    assert cli("export", "d", "--out", str(target)).code == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# --- ranges -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["embed", "d", "--dim", "1000000000000"], "--dim"),
        (["embed", "d", "--dim", "1e12"], "--dim"),
        (["embed", "d", "--dim", "0"], "--dim"),
        (["embed", "d", "--max-length", "4"], "--max-length"),
        (["embed", "d", "--seed", "-1"], "--seed"),
        (["embed", "d", "--chunk-rows", "0"], "--chunk-rows"),
        (["embed", "d", "--batch-size", "-2"], "--batch-size"),
        (["score", "d", "--bootstrap", "-1"], "--bootstrap"),
        (["score", "d", "--redundant", "-5"], "--redundant"),
        (["score", "d", "--by", "cluster", "--k", "nan"], "--k"),
        (["score", "d", "--by", "cluster", "--k", "inf"], "--k"),
        (["map", "d", "--k", "0"], "--k"),
        (["map", "d", "--k", "-4"], "--k"),
        (["map", "d", "--k", "2.5"], "--k"),
        (["map", "d", "--sparse-below", "500"], "--sparse-below"),
        (["map", "d", "--sparse-below", "0"], "--sparse-below"),
        (["compare", "d", "d", "--repeats", "0"], "--repeats"),
        (["score", "d", "--q", "nan"], "--q"),
        (["duplicates", "d", "--threshold", "5"], "--threshold"),
        (["duplicates", "d", "--threshold", "-1"], "--threshold"),
        (["curate", "d", "--remove-redundant", "-3"], "--remove-redundant"),
        (["curate", "d", "--remove-rows", "3,999"], "--remove-rows"),
        (["validate", "x.jsonl", "--limit", "0"], "--limit"),
    ],
)
def test_out_of_range_flags_exit_2_naming_the_flag_and_change_nothing(ws, cli, args, flag):
    before = snapshot(ws.root / "datasets")
    assert_user_error(cli(*args), flag)
    assert snapshot(ws.root / "datasets") == before
    assert curation.removed(ws, "d") == {} and curation.summary(ws, "d")["rows"] == len(ROWS)


def test_resolve_names_the_groups_there_are(tmp_path, cli):
    rows = [*ROWS, ROWS[0], ROWS[1]]  # two groups of exact duplicates
    assert cli("import", str(write_jsonl(tmp_path / "r.jsonl", rows)), "--name", "r").code == 0
    r = cli("duplicates", "r", "--text-only", "--resolve", "99999")
    assert_user_error(r, "--resolve 99999", "groups 0 to 1", "nothing was removed")
    r = cli("duplicates", "r", "--text-only", "--resolve", "1", "--json")
    assert r.code == 0 and r.json["resolved"] == 1


# --- what the export says -----------------------------------------------------------------------


def test_answer_formats_by_source():
    assert curation.answer_format("5 + 5 = 10\n#### 10") == "'#### N'"
    assert curation.answer_format("so \\boxed{27}.") == "'\\boxed{...}'"
    assert curation.answer_format("The answer is 4.") == "another form"
    same = {"seed": Counter({"'#### N'": 5}), "synthetic": Counter({"'#### N'": 2})}
    assert curation.answer_format_note(same) is None
    assert curation.answer_format_note({"seed": same["seed"], "synthetic": Counter()}) is None


def test_mixed_answer_formats_are_noted_in_the_summary_and_the_export(tmp_path, cli):
    rows = [
        {
            "question": r["question"],
            "answer": re.sub(r"The answer is \\boxed\{(.*)\}\.", r"#### \1", r["answer"]),
        }
        for r in demo_rows(80, seed=3)
    ]
    assert all("####" in r["answer"] for r in rows)
    ws = Workspace(tmp_path / "ws")
    ws.import_dataset(write_jsonl(tmp_path / "g.jsonl", rows), name="g")
    compute_features(ws, "g", proxy=TINY, config=CONFIG)
    with FakeLLM() as llm:  # its solutions end in \boxed{}
        run_id = synthesis.create_run(
            ws,
            "g",
            llm=LLMSettings(base_url=llm.url, model="fake"),
            settings=synthesis.SynthesisSettings(target=3, rounds=1),
            proxy=TINY,
            config=CONFIG,
        )
        synthesis.run_synthesis(ws, run_id)
    assert curation.summary(ws, "g")["by_source"].get("synthetic")
    (note,) = curation.summary(ws, "g")["notes"]
    assert "seed answers mostly end in '#### N' (80 of 80)" in note and "\\boxed{...}" in note
    assert export_curated(ws, "g", tmp_path / "o.jsonl")["warnings"] == [note]
    r = cli("export", "g", "--out", str(tmp_path / "c.jsonl"), "--workspace", str(ws.root))
    assert r.code == 0 and f"warning: {note}" in r.err


def test_cluster_sizes_are_drawn_in_numeric_order():
    figure = charts.cluster_sizes({"0": 5, "1": 3, "10": 2, "2": 7})
    assert list(figure.layout.xaxis.categoryarray) == ["0", "1", "2", "10"]
    assert list(figure.data[0].y) == [5, 3, 7, 2]


def test_redundant_refuses_a_count_below_one(ws):
    fs = compute_features(ws, "d", proxy=TINY, config=CONFIG)
    from core.diversity import redundant

    assert len(redundant(ws, "d", fs, limit=3)) == 3
    with pytest.raises(UserError, match="at least 1, not -3"):
        redundant(ws, "d", fs, limit=-3)  # once removed all but 3 rows


def test_a_dataset_that_vanishes_mid_command_is_a_clear_error(ws, cli):
    compute_features(ws, "d", proxy=TINY, config=CONFIG)
    ws.dataset("d").path.unlink()  # as if another process deleted it while this one read it
    args = ("score", "d", "--proxy", "tiny-random", "--dim", "256", "--redundant", "2")
    assert_user_error(cli(*args), "vanished while this ran", "run it again")
