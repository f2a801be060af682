"""The CLI's contract on good input: JSON shapes, verbs, the progress bar on a terminal."""

from __future__ import annotations

import json

from core.demo import DEMO_FILE
from tests.conftest import REPO, assert_user_error, write_jsonl
from tests.test_workspace import big_jsonl

ROWS = [{"question": f"q{i}", "answer": f"a{i}", "topic": "t"} for i in range(12)]


def test_validate_does_not_touch_the_workspace(cli, tmp_path, workspace_dir):
    r = cli("validate", str(write_jsonl(tmp_path / "d.jsonl", ROWS)), "--json")
    assert r.code == 0
    assert (r.json["rows_read"], r.json["kept"], r.json["skipped"]) == (12, 12, 0)
    assert r.json["mapping"] == {
        "prompt": "question",
        "response": "answer",
        "messages": None,
        "id": None,
    }
    assert not workspace_dir.exists()
    human = cli("validate", str(tmp_path / "d.jsonl"))
    assert "12 rows read, 12 kept, 0 skipped" in human.out
    assert (
        "mapping: prompt <- question, response <- answer (detected: prompt, response)" in human.out
    )


def test_import_datasets_rename_delete_json(cli, tmp_path):
    path = write_jsonl(tmp_path / "my-set.jsonl", ROWS)
    r = cli("import", str(path), "--json")
    assert r.code == 0
    assert {k: r.json[k] for k in ("dataset", "rows", "skipped")} == {
        "dataset": "my-set",
        "rows": 12,
        "skipped": 0,
    }
    r = cli("datasets", "--json")
    assert [{k: d[k] for k in ("name", "rows")} for d in r.json["datasets"]] == [
        {"name": "my-set", "rows": 12}
    ]
    assert cli("rename", "my-set", "other", "--json").json == {"renamed": "my-set", "to": "other"}
    assert_user_error(cli("delete", "my-set"), "no dataset named 'my-set'", "other")
    assert cli("delete", "other").code == 0
    assert cli("datasets", "--json").json["datasets"] == []


def test_mapping_flags(cli, tmp_path):
    rows = [{"Body": "Ann has 2 cats.", "Question": "How many legs?", "Answer": 8.0, "ID": "x1"}]
    path = write_jsonl(tmp_path / "s.jsonl", rows)
    r = cli(
        "import",
        str(path),
        "--prompt",
        "{Body} {Question}",
        "--response",
        "Answer",
        "--id",
        "ID",
        "--json",
    )
    assert r.code == 0, r.err
    from core.records import iter_records
    from core.workspace import Workspace

    record = next(iter_records(Workspace(tmp_path / "ws").dataset("s").path))
    assert (record.id, record.prompt, record.response) == (
        "x1",
        "Ann has 2 cats. How many legs?",
        "8",
    )


def test_limit_flag(cli, tmp_path):
    r = cli("import", str(write_jsonl(tmp_path / "d.jsonl", ROWS)), "--limit", "5", "--json")
    assert r.json["rows"] == 5


def test_demo_verb(cli, tmp_path):
    r = cli("demo", "--json")
    assert r.json == {"dataset": "demo", "rows": 360}
    out = tmp_path / "demo.jsonl"
    assert cli("demo", "--out", str(out)).code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 360 and rows[0]["answer"].endswith("}.")
    assert out.read_bytes() == DEMO_FILE.read_bytes()  # the data file, as it is


def test_progress_bar_on_a_terminal(cli, tmp_path):
    """A large import shows a tqdm bar on stderr when stderr is a terminal; stdout stays clean."""
    path = big_jsonl(tmp_path / "big.jsonl", 300_000)
    r = cli("import", str(path), "--name", "big", "--json", terminal=True)
    assert r.code == 0, r.err
    assert r.json["rows"] == 300_000
    assert "importing big:" in r.err and "%|" in r.err


def test_demo_out_a_folder_or_in_a_missing_folder(cli, tmp_path):
    out = tmp_path / "out"
    (out / "folder").mkdir(parents=True)
    assert_user_error(cli("demo", "--out", str(out / "folder")), "folder", "is a folder")
    assert_user_error(
        cli("demo", "--out", str(out / "missing" / "demo.jsonl")), "no folder", "missing"
    )
    assert [p.name for p in out.iterdir()] == ["folder"]  # no .part left behind
    assert list((out / "folder").iterdir()) == []


def test_default_names(cli, tmp_path):
    """A split file takes its folder's name too; the name keeps to the allowed characters."""
    (tmp_path / "gsm8k").mkdir()
    path = write_jsonl(tmp_path / "gsm8k" / "test.jsonl", ROWS)
    assert cli("import", str(path), "--json").json["dataset"] == "gsm8k-test"
    r = cli(
        "import",
        "test.jsonl",
        "--workspace",
        str(tmp_path / "other"),
        "--json",
        cwd=tmp_path / "gsm8k",
        env={"PYTHONPATH": str(REPO)},
    )
    assert r.json["dataset"] == "gsm8k-test"
    path = write_jsonl(tmp_path / "Café crème.v2.jsonl", ROWS)
    assert cli("import", str(path), "--json").json["dataset"] == "Cafe-creme"
