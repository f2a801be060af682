"""Malformed input through the CLI: exit 2 and one `error:` line, or a clear skip report.

Every case also checks that a failed import leaves the workspace exactly as it was.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from pathlib import Path

import pytest

from core.workspace import Workspace
from tests.conftest import assert_user_error, write_jsonl

GOOD = [{"question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(1, 6)]


@pytest.fixture
def seeded(cli, tmp_path, workspace_dir):
    """A workspace that already holds one dataset; returns a function that checks it is intact."""
    path = write_jsonl(tmp_path / "seed.jsonl", GOOD)
    assert cli("import", str(path), "--name", "seed").code == 0
    before = sorted(workspace_dir.joinpath("datasets").iterdir())

    def intact() -> None:
        ws = Workspace(workspace_dir)
        assert [(d.name, d.rows) for d in ws.datasets()] == [("seed", 5)]
        assert sorted(workspace_dir.joinpath("datasets").iterdir()) == before
        assert list(workspace_dir.joinpath("tmp").iterdir()) == []

    return intact


def test_bad_json_on_one_line_is_skipped_and_reported(cli, tmp_path):
    path = tmp_path / "d.jsonl"
    lines = [json.dumps(r) for r in GOOD]
    lines[2] = '{"question": "oops" "answer": 1}'
    path.write_text("\n".join(lines) + "\n")
    r = cli("import", str(path), "--name", "d", "--json")
    assert r.code == 0, r.err
    assert r.json["rows"] == 4 and r.json["skipped"] == 1
    skip = r.json["report"]["skips"][0]
    assert skip["where"] == "line 3" and skip["reason"].startswith("invalid JSON (Expecting ','")


def test_truncated_jsonl_skips_the_cut_line(cli, tmp_path):
    path = tmp_path / "d.jsonl"
    text = "".join(json.dumps(r) + "\n" for r in GOOD)
    path.write_text(text[: len(text) - 12])  # cut inside the last object
    r = cli("validate", str(path), "--json")
    assert r.code == 0 and r.json["kept"] == 4
    assert r.json["skips"][0]["where"] == "line 5"


def test_truncated_gzip_keeps_the_complete_lines(cli, tmp_path, workspace_dir):
    """A gzip cut short (an interrupted download): the complete lines before the cut are
    kept, the cut is reported as a skipped row, and a half line is never read as a row."""
    rows = [{"question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(1000)]
    path = gzipped_and_cut(tmp_path / "d.jsonl.gz", rows, 0.5)
    readable = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(path.read_bytes())
    complete = readable.count(b"\n")
    assert 0 < complete < 1000 and not readable.endswith(b"\n")
    r = cli("import", str(path), "--name", "x", "--json")
    assert r.code == 0, r.err
    assert r.json["rows"] == complete and r.json["skipped"] == 1
    assert r.json["report"]["skips"] == [
        {
            "where": f"line {complete + 1}",
            "reason": "cut off: the gzip data ends early (the file is truncated); "
            "the rest of the file is lost",
        }
    ]
    assert Workspace(workspace_dir).dataset("x").rows == complete


def test_binary_garbage(cli, tmp_path, seeded):
    path = tmp_path / "d.jsonl"
    path.write_bytes(bytes(range(256)) * 40)
    assert_user_error(cli("import", str(path), "--name", "x"), str(path), "binary", "offset 0")
    seeded()


def test_wrong_encoding_rows_are_named_and_encoding_flag_fixes_them(cli, tmp_path):
    path = tmp_path / "latin.jsonl"
    rows = [*GOOD, {"question": "Café crème?", "answer": "très bien"}]
    path.write_bytes(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("latin-1")
    )
    r = cli("validate", str(path), "--json")
    assert r.code == 0 and r.json["kept"] == 5
    assert r.json["skips"] == [
        {
            "where": "line 6",
            "reason": "bytes that are not valid UTF-8 (0xe9 at character 18); "
            "save the file as UTF-8 or give its encoding",
        }
    ]
    r = cli("validate", str(path), "--encoding", "latin-1", "--json")
    assert r.code == 0 and r.json["kept"] == 6


def test_all_rows_in_a_wrong_encoding_fail(cli, tmp_path):
    path = tmp_path / "latin.jsonl"
    rows = [{"question": f"Café {i}?", "answer": "é"} for i in range(3)]
    path.write_bytes(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("latin-1")
    )
    assert_user_error(
        cli("import", str(path)), str(path), "all 3 rows were skipped", "line 1", "UTF-8"
    )


def test_utf16_with_bom_reads(cli, tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes("".join(json.dumps(r) + "\n" for r in GOOD).encode("utf-16"))
    r = cli("validate", str(path), "--json")
    assert r.code == 0 and r.json["kept"] == 5


def test_empty_and_blank_files(cli, tmp_path, seeded):
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "blank.csv").write_text("\n\n  \n")
    assert_user_error(cli("import", str(tmp_path / "empty.jsonl")), "empty.jsonl", "empty")
    assert_user_error(cli("import", str(tmp_path / "blank.csv")), "blank.csv", "no data")
    seeded()


def test_header_only_csv_has_no_rows(cli, tmp_path):
    (tmp_path / "h.csv").write_text("question,answer\n")
    assert_user_error(cli("validate", str(tmp_path / "h.csv")), "h.csv", "no rows")


def test_missing_fields(cli, tmp_path, seeded):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": 1}] * 3)
    assert_user_error(
        cli("import", str(path)),
        str(path),
        "line 1",
        "no prompt field found among: text, label",
        "map the prompt and the response",
    )
    line = assert_user_error(cli("import", str(path), "--prompt", "text", "--response", "answer"))
    assert (
        "all 3 rows were skipped" in line
        and "line 1: field 'answer' not found (fields: text, label)" in line
    )
    seeded()


def test_json_array_given_as_jsonl_reads_with_a_note(cli, tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(GOOD))
    r = cli("validate", str(path), "--json")
    assert r.code == 0 and r.json["kept"] == 5 and r.json["format"] == "json"
    assert "JSON array" in r.json["notes"][0]


def test_unclosed_json_array(cli, tmp_path, seeded):
    path = tmp_path / "d.json"
    path.write_text(json.dumps(GOOD)[:-40])
    assert_user_error(cli("import", str(path)), str(path), "item 5", "invalid JSON")
    seeded()


def test_duplicate_ids(cli, tmp_path, seeded):
    rows = [{"uid": f"u{i % 3}", **r} for i, r in enumerate(GOOD)]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    assert_user_error(
        cli("import", str(path), "--id", "uid"),
        str(path),
        "line 4",
        "duplicate id 'u0'",
        "field 'uid'",
        "line 1",
    )
    seeded()


def test_a_50_mb_single_line(cli, tmp_path, seeded):
    path = tmp_path / "huge.jsonl"
    with open(path, "w") as f:
        f.write('{"question": "')
        f.write("x" * (50 * 2**20))
        f.write('", "answer": "1"}\n')
    line = assert_user_error(
        cli("import", str(path)), str(path), "line 1", "over the 16 MB limit per row"
    )
    assert "50.0 MB" in line
    seeded()


def test_a_50_mb_line_among_good_ones_is_skipped(cli, tmp_path):
    path = tmp_path / "huge.jsonl"
    with open(path, "w") as f:
        f.write(json.dumps(GOOD[0]) + "\n")
        f.write('{"question": "' + "y" * (50 * 2**20) + '", "answer": "1"}\n')
        f.write(json.dumps(GOOD[1]) + "\n")
    r = cli("validate", str(path), "--json")
    assert r.code == 0 and r.json["kept"] == 2
    assert r.json["skips"][0]["where"] == "line 2"


def test_csv_with_bom_and_odd_delimiter(cli, tmp_path):
    text = "question|answer\n" + "".join(f"{r['question']}|{r['answer']}\n" for r in GOOD)
    path = tmp_path / "d.csv"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    r = cli("import", str(path), "--json")
    assert r.code == 0 and r.json["rows"] == 5, r.err
    assert r.json["report"]["mapping"]["prompt"] == "question"


def test_csv_row_with_the_wrong_number_of_fields(cli, tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('question,answer\n"a",1\n"b",2,extra\n"c",3\n')
    r = cli("validate", str(path), "--json")
    assert r.code == 0 and r.json["kept"] == 2
    assert r.json["skips"] == [{"where": "line 3", "reason": "has 3 fields, the header has 2"}]


def test_missing_file_and_bad_usage(cli, tmp_path):
    assert_user_error(cli("validate", str(tmp_path / "nope.jsonl")), "nope.jsonl", "no such file")
    assert_user_error(cli("import"), "required: path")
    assert_user_error(cli("validate", "x.jsonl", "--prompt", "q"), "response")
    assert_user_error(cli("validate", "x.jsonl", "--limit", "0"), "--limit")
    assert_user_error(cli("frobnicate"), "invalid choice")


def test_bad_template(cli, tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", GOOD)
    assert_user_error(
        cli("validate", str(path), "--prompt", "{question", "--response", "answer"), "template"
    )


def test_bad_dataset_names_and_taken_names(cli, tmp_path, seeded):
    path = write_jsonl(tmp_path / "d.jsonl", GOOD)
    assert_user_error(cli("import", str(path), "--name", "../evil"), "dataset name")
    assert_user_error(cli("import", str(path), "--name", "seed"), "'seed' exists")
    seeded()


def test_workspace_that_is_a_file(cli, tmp_path):
    bad = tmp_path / "file"
    bad.write_text("x")
    assert_user_error(cli("datasets", "--workspace", str(bad)), "workspace", str(bad))


def test_corrupt_catalogue(cli, tmp_path):
    ws = tmp_path / "ws2"
    ws.mkdir()
    (ws / "workspace.sqlite").write_bytes(b"this is not sqlite" * 100)
    assert_user_error(cli("datasets", "--workspace", str(ws)), "not a usable catalogue")


def test_no_traceback_for_a_directory_given_as_file(cli, tmp_path):
    (tmp_path / "folder").mkdir()
    assert_user_error(
        cli("import", str(tmp_path / "folder")), "not a Hugging Face save_to_disk folder"
    )


def test_parquet_garbage(cli, tmp_path):
    path = tmp_path / "d.parquet"
    path.write_bytes(b"PAR1" + b"\x00\x01" * 100)
    assert_user_error(cli("validate", str(path)), str(path), "Parquet")


def test_help_exits_zero(cli):
    r = cli("import", "--help")
    assert r.code == 0 and "--prompt" in r.out


def test_paths_with_a_tilde_or_spaces(cli, tmp_path):
    folder = tmp_path / "my data"
    folder.mkdir()
    path = write_jsonl(folder / "a b.jsonl", GOOD)
    r = cli("import", str(path), "--json")
    assert r.code == 0 and r.json["dataset"] == "a-b"
    assert Path(r.json["report"]["source"]).name == "a b.jsonl"


# --- files that are not what they seem, through both verbs -----------------------------------

VERBS = ["validate", "import"]
DEEP = '{"question": "q", "answer": "a", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
NESTED_500 = '{"question": "q", "answer": "a", "x": ' + "[" * 500 + "]" * 500 + "}"


def lines_with(tmp_path: Path, name: str, *bad: str) -> Path:
    """GOOD as JSONL with the `bad` lines after the second row."""
    lines = [json.dumps(r) for r in GOOD]
    path = tmp_path / name
    path.write_text("\n".join([*lines[:2], *bad, *lines[2:]]) + "\n")
    return path


def kept_and_skips(cli, verb: str, path: Path) -> tuple[int, list[dict]]:
    r = cli(verb, str(path), "--json")
    assert r.code == 0, r.err
    report = r.json if verb == "validate" else r.json["report"]
    return report["kept"], report["skips"]


@pytest.mark.parametrize("verb", VERBS)
def test_deeply_nested_rows_are_skipped(cli, tmp_path, verb):
    path = lines_with(tmp_path, "deep.jsonl", DEEP, NESTED_500)
    kept, skips = kept_and_skips(cli, verb, path)
    assert kept == 5
    assert skips == [
        {"where": "line 3", "reason": "nested more than 100 levels deep"},
        {"where": "line 4", "reason": "nested more than 100 levels deep"},
    ]


@pytest.mark.parametrize("verb", VERBS)
def test_deeply_nested_items_of_a_json_array_are_skipped(cli, tmp_path, verb):
    items = [json.dumps(r) for r in GOOD]
    path = tmp_path / "deep.json"
    path.write_text("[" + ",\n".join([*items[:2], DEEP, NESTED_500, *items[2:]]) + "]")
    kept, skips = kept_and_skips(cli, verb, path)
    assert kept == 5
    assert [s["where"] for s in skips] == ["item 3", "item 4"]
    assert {s["reason"] for s in skips} == {"nested more than 100 levels deep"}


def test_a_deeply_nested_json_document_fails_clearly(cli, tmp_path):
    path = tmp_path / "doc.json"
    path.write_text('{"data": [' + ", ".join([*map(json.dumps, GOOD), DEEP]) + "]}")
    assert_user_error(cli("validate", str(path)), str(path), "nested more than 100 levels")


@pytest.mark.parametrize("verb", VERBS)
@pytest.mark.parametrize("form", ["jsonl", "json"])
def test_a_number_too_long_to_read_skips_its_row(cli, tmp_path, verb, form):
    """Python reads at most 4300 digits of an integer; a longer one skips its row."""
    rows = [json.dumps(r) for r in GOOD]
    huge = '{"question": "q", "answer": "a", "n": ' + "1" * 5000 + "}"
    lines = [*rows[:2], huge, *rows[2:]]
    path = tmp_path / f"d.{form}"
    path.write_text("\n".join(lines) + "\n" if form == "jsonl" else "[" + ",\n".join(lines) + "]")
    kept, skips = kept_and_skips(cli, verb, path)
    where = "line 3" if form == "jsonl" else "item 3"
    assert kept == 5 and skips == [{"where": where, "reason": "a number of over 4300 digits"}]


@pytest.mark.parametrize("verb", VERBS)
def test_a_lone_surrogate_skips_its_row(cli, tmp_path, verb):
    """A JSON escape of half a UTF-16 pair is not Unicode text: the row is skipped (not
    repaired), like a row with bytes that are not UTF-8. A whole pair is an emoji and reads."""
    path = lines_with(
        tmp_path,
        "s.jsonl",
        '{"question": "half \\ud800 pair", "answer": "1"}',
        '{"question": "a whole pair \\ud83d\\ude00", "answer": "1"}',
    )
    kept, skips = kept_and_skips(cli, verb, path)
    assert kept == 6
    assert skips == [
        {
            "where": "line 3",
            "reason": "text with a lone UTF-16 surrogate (\\ud800), which is not Unicode",
        }
    ]


@pytest.mark.parametrize("verb", VERBS)
def test_unknown_or_binary_encoding(cli, tmp_path, verb):
    path = write_jsonl(tmp_path / "d.jsonl", GOOD)
    assert_user_error(
        cli(verb, str(path), "--encoding", "no-such-codec"), "'no-such-codec'", "unknown"
    )
    assert_user_error(cli(verb, str(path), "--encoding", "hex"), "'hex'", "not a text encoding")


@pytest.mark.skipif(os.geteuid() == 0, reason="root passes every permission check")
@pytest.mark.parametrize("verb", VERBS)
def test_a_file_in_a_folder_without_search_permission(cli, tmp_path, verb):
    folder = tmp_path / "locked"
    folder.mkdir()
    path = write_jsonl(folder / "d.jsonl", GOOD)
    folder.chmod(0o600)  # readable, not searchable
    try:
        assert_user_error(cli(verb, str(path)), str(path), "permission denied")
    finally:
        folder.chmod(0o700)


@pytest.mark.parametrize("verb", VERBS)
def test_a_fifo_is_refused_without_waiting(cli, tmp_path, verb, seeded):
    os.mkfifo(tmp_path / "pipe.jsonl")
    assert_user_error(
        cli(verb, str(tmp_path / "pipe.jsonl")), "pipe.jsonl", "named pipe", "not a regular file"
    )
    seeded()


@pytest.mark.parametrize("verb", VERBS)
def test_a_character_device_is_refused(cli, verb):
    assert_user_error(cli(verb, "/dev/zero"), "/dev/zero", "character device", "not a regular file")


@pytest.mark.parametrize("verb", VERBS)
def test_symlink_loop_and_dangling_symlink(cli, tmp_path, verb):
    (tmp_path / "loop.jsonl").symlink_to(tmp_path / "loop.jsonl")
    assert_user_error(cli(verb, str(tmp_path / "loop.jsonl")), "loop.jsonl", "symbolic link loop")
    (tmp_path / "dangling.jsonl").symlink_to(tmp_path / "gone.jsonl")
    assert_user_error(
        cli(verb, str(tmp_path / "dangling.jsonl")), "dangling.jsonl", "gone.jsonl", "missing"
    )


def gzipped_and_cut(path: Path, rows: list[dict], keep: float) -> Path:
    data = gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode())
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.mark.parametrize("verb", VERBS)
def test_a_small_truncated_gzip(cli, tmp_path, verb, workspace_dir):
    """Its complete lines are read; with none complete, the error says it is truncated."""
    path = gzipped_and_cut(tmp_path / "small.jsonl.gz", GOOD, 0.8)
    readable = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(path.read_bytes())
    assert 0 < readable.count(b"\n") < 5
    kept, skips = kept_and_skips(cli, verb, path)
    assert kept == readable.count(b"\n") and skips[0]["reason"].startswith("cut off")
    one = gzipped_and_cut(tmp_path / "one.jsonl.gz", GOOD[:1], 0.8)
    assert_user_error(cli(verb, str(one)), str(one), "the file is truncated")
    names = [d.name for d in Workspace(workspace_dir).datasets()]
    assert names == (["small"] if verb == "import" else [])


def test_a_full_disk_while_importing(tmp_path, workspace_dir):
    """Writing the records fails (a full disk): one UserError, the workspace as it was."""
    import pyarrow.parquet as pq

    from core.errors import UserError

    ws = Workspace(workspace_dir)
    path = write_jsonl(tmp_path / "d.jsonl", GOOD)

    def full(_self, *_args, **_kwargs):
        raise OSError(28, "No space left on device")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pq.ParquetWriter, "write_table", full)
        with pytest.raises(UserError, match=r"d\.jsonl: .*failed \(No space left on device\)"):
            ws.import_dataset(path, name="d")
    assert ws.datasets() == [] and list((workspace_dir / "tmp").iterdir()) == []
