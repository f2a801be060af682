"""Reading every format into records, every mapping form, and the validation report."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.errors import UserError
from core.records import (
    Mapping,
    compile_field,
    detect_mapping,
    iter_records,
    preview,
    render_value,
    stage,
)
from core.sources import open_source
from core.workspace import Workspace
from tests.conftest import write_jsonl

ROWS = [
    {"id": "a", "question": "What is 1+1?", "answer": "2", "topic": "add"},
    {"id": "b", "question": "What is 2*3?", "answer": "6", "topic": "mul"},
    {"id": "c", "question": "Ünïcödé π?", "answer": "$\\pi$\nline two", "topic": "const"},
]


def load(path: Path, mapping: Mapping | None = None, **kw) -> tuple[list, object]:
    out = path.parent / (path.name + ".records.parquet")
    report = stage(
        open_source(path, **{k: v for k, v in kw.items() if k in ("split", "encoding")}),
        mapping,
        out,
        limit=kw.get("limit"),
    )
    return list(iter_records(out)), report


def triples(records) -> list[tuple[str, str, str]]:
    return [(r.id, r.prompt, r.response) for r in records]


EXPECTED = [(r["id"], r["question"], r["answer"]) for r in ROWS]


# --- formats -----------------------------------------------------------------------------------


def test_jsonl(tmp_path):
    records, report = load(write_jsonl(tmp_path / "d.jsonl", ROWS))
    assert triples(records) == EXPECTED
    assert report.format == "jsonl" and report.rows_read == 3 and report.kept == 3
    assert records[2].meta == {"topic": "const"}
    assert [r.origin_row for r in records] == [1, 2, 3]
    assert {r.source for r in records} == {"seed"}


def test_jsonl_gz_and_gz_without_suffix(tmp_path):
    data = "".join(json.dumps(r) + "\n" for r in ROWS).encode()
    (tmp_path / "d.jsonl.gz").write_bytes(gzip.compress(data))
    (tmp_path / "d.bin").write_bytes(gzip.compress(data))
    for name in ("d.jsonl.gz", "d.bin"):
        records, report = load(tmp_path / name)
        assert triples(records) == EXPECTED
        assert "gzip-compressed" in report.notes


def test_json_array_streams_items(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps(ROWS, indent=2, ensure_ascii=False), encoding="utf-8")
    records, report = load(path)
    assert triples(records) == EXPECTED and report.format == "json"


def test_json_array_larger_than_the_read_chunk(tmp_path):
    rows = [{"question": f"q{i} " + "x" * 3000, "answer": str(i)} for i in range(1000)]  # ~3 MB
    path = tmp_path / "big.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    records, _ = load(path)
    assert [r.response for r in records] == [str(i) for i in range(1000)]
    assert records[-1].prompt == rows[-1]["question"]


def test_json_document_with_one_list(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"version": 1, "data": ROWS}, indent=1), encoding="utf-8")
    records, _ = load(path)
    assert triples(records) == EXPECTED


def test_csv_tsv_bom_and_delimiters(tmp_path):
    header = "id,question,answer,topic\n"
    body = "".join(f'{r["id"]},"{r["question"]}","{r["answer"]}",{r["topic"]}\n' for r in ROWS)
    (tmp_path / "d.csv").write_text(header + body, encoding="utf-8")
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + (header + body).encode())
    (tmp_path / "semi.csv").write_text((header + body).replace(",", ";"), encoding="utf-8")
    tsv = header.replace(",", "\t") + "".join(
        f'{r["id"]}\t{r["question"]}\t"{r["answer"]}"\t{r["topic"]}\n' for r in ROWS
    )
    (tmp_path / "d.tsv").write_text(tsv, encoding="utf-8")
    for name in ("d.csv", "bom.csv", "semi.csv", "d.tsv"):
        records, report = load(tmp_path / name)
        assert triples(records) == EXPECTED, name
        assert report.mapping["id"] == "id", name  # the BOM did not stick to the first column name


def test_parquet(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    records, report = load(path)
    assert triples(records) == EXPECTED and report.format == "parquet"


def test_hf_save_to_disk_dataset_and_dict(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(ROWS)
    ds.save_to_disk(str(tmp_path / "one"))
    records, report = load(tmp_path / "one")
    assert triples(records) == EXPECTED and report.format == "hf-disk"

    dd = datasets.DatasetDict({"train": ds, "test": ds.select([0])})
    dd.save_to_disk(str(tmp_path / "dict"))
    with pytest.raises(UserError, match="choose a split, one of: train, test"):
        open_source(tmp_path / "dict")
    records, _ = load(tmp_path / "dict", split="test")
    assert triples(records) == EXPECTED[:1]


def test_hub_name_offline_says_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        UserError, match=r"cannot load this Hugging Face dataset.*save_to_disk folder"
    ):
        open_source("nobody-has/this-dataset-xyz", split="train")


HUB_ROWS = 1000


@pytest.fixture
def hub(monkeypatch):
    """A hub dataset `someone/big` (one split, train, of HUB_ROWS rows) served on this
    machine: `datasets.load_dataset` is replaced by one that records how it was called and
    builds the dataset from a generator that counts the rows pulled from it."""
    datasets = pytest.importorskip("datasets")
    from core import hub as core_hub

    monkeypatch.setattr(core_hub, "unreachable", lambda: None)
    monkeypatch.setattr(core_hub, "offline_mode", lambda: False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    fake = SimpleNamespace(calls=[], pulled=[], fail_at=None)

    def rows():
        for i in range(HUB_ROWS):
            if i == fake.fail_at:
                raise RuntimeError("connection reset by peer\nmore detail")
            fake.pulled.append(i)
            yield {"question": f"q{i}", "answer": f"a{i}"}

    def load_dataset(path, name=None, *, split=None, streaming=False):
        fake.calls.append({"path": path, "name": name, "split": split, "streaming": streaming})
        if streaming:
            ds = datasets.IterableDataset.from_generator(rows)
            return ds if split else datasets.IterableDatasetDict({"train": ds})
        ds = datasets.Dataset.from_list(list(rows()))  # the whole split, fetched first
        return ds if split else datasets.DatasetDict({"train": ds})

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return fake


def load_hub(tmp_path: Path, limit: int | None = None) -> tuple[list, object]:
    """`someone/big` staged as the CLI's `validate` does, with `limit`."""
    out = tmp_path / "hub.records.parquet"
    report = stage(open_source("someone/big", limit=limit), None, out, limit=limit)
    return list(iter_records(out)), report


def test_a_hub_import_with_a_limit_streams_only_those_rows(hub, tmp_path):
    info, report = Workspace(tmp_path / "ws").import_dataset("someone/big", name="big", limit=25)
    assert hub.calls == [{"path": "someone/big", "name": None, "split": None, "streaming": True}]
    assert len(hub.pulled) == 25  # not the split's 1000
    assert info.rows == 25 and report.rows_read == 25
    assert [r.prompt for r in iter_records(info.path)] == [f"q{i}" for i in range(25)]
    assert report.notes[:2] == ["split train", "streamed: at most 25 rows fetched"]


def test_the_cli_import_and_validate_stream_with_limit(hub, tmp_path, capsys):
    from core.__main__ import main

    ws = ["--workspace", str(tmp_path / "ws")]
    assert main(["validate", "someone/big", "--split", "train", "--limit", "7", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kept"] == 7
    assert main(["import", "someone/big", "--name", "big", "--limit", "5", *ws, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 5
    assert [c["streaming"] for c in hub.calls] == [True, True]
    assert hub.calls[0]["split"] == "train" and len(hub.pulled) == 7 + 5


def test_a_hub_import_without_a_limit_or_offline_is_not_streamed(hub, tmp_path, monkeypatch):
    records, report = load_hub(tmp_path)
    assert len(records) == HUB_ROWS and hub.calls[-1]["streaming"] is False
    from core import hub as core_hub

    monkeypatch.setattr(core_hub, "offline_mode", lambda: True)  # the local cache: no stream
    records, report = load_hub(tmp_path, limit=25)
    assert len(records) == 25 and hub.calls[-1]["streaming"] is False
    assert not any("streamed" in note for note in report.notes)


def test_a_stream_that_breaks_is_one_error_naming_the_row(hub, tmp_path):
    hub.fail_at = 3
    with pytest.raises(UserError) as caught:
        load_hub(tmp_path, limit=10)
    assert str(caught.value) == ("someone/big: row 4: unreadable data (connection reset by peer)")


def test_plain_folder_is_refused(tmp_path):
    with pytest.raises(UserError, match="not a Hugging Face save_to_disk folder"):
        open_source(tmp_path)


# --- mapping forms -------------------------------------------------------------------------------


def test_template_dotted_path_and_literal_braces(tmp_path):
    rows = [
        {
            "Body": "Tom has 3 apples.",
            "Question": "How many?",
            "meta": {"sol": {"text": "3"}},
            "n": 7,
        }
    ]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    mapping = Mapping(prompt="{Body} {Question} {{not a field}}\\n#{n}", response="meta.sol.text")
    records, report = load(path, mapping)
    assert records[0].prompt == "Tom has 3 apples. How many? {not a field}\n#7"
    assert records[0].response == "3"
    assert records[0].meta == {}  # every field was used by the mapping
    assert report.detected == []


def test_template_errors_are_user_errors():
    with pytest.raises(UserError, match="empty"):
        compile_field("{} x")
    with pytest.raises(UserError, match="literal brace"):
        compile_field("{open")


def test_value_rendering_is_predictable():
    assert render_value(None) == ""
    assert render_value(float("nan")) == ""
    assert render_value(34.0) == "34"
    assert render_value(-0.5) == "-0.5"
    assert render_value(7) == "7"
    assert render_value(True) == "true"
    assert render_value(["A) 1", "B) 2", 3.0]) == "A) 1\nB) 2\n3"
    assert render_value({"b": 1, "a": [1, 2]}) == '{"b": 1, "a": [1, 2]}'


def test_numbers_lists_and_nulls_from_files(tmp_path):
    rows = [{"q": "Pick one", "options": ["A)1", "B)2"], "ans": 2.0, "note": None}]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    records, _ = load(path, Mapping(prompt="{q}\\n{options}{note}", response="ans"))
    assert records[0].prompt == "Pick one\nA)1\nB)2"
    assert records[0].response == "2"


def test_messages_role_content_sharegpt_and_json_text(tmp_path):
    chat = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": [{"type": "text", "text": "4"}]},
    ]
    sharegpt = [{"from": "human", "value": "Name a prime"}, {"from": "gpt", "value": "7"}]
    rows = [
        {"messages": chat},
        {"messages": json.dumps(sharegpt)},
        {"messages": [{"role": "user", "content": "x"}]},
    ]
    records, report = load(write_jsonl(tmp_path / "c.jsonl", rows))
    assert report.mapping["messages"] == "messages" and report.detected == ["messages"]
    assert [(r.prompt, r.response) for r in records] == [("2+2?", "4"), ("Name a prime", "7")]
    assert records[0].messages[0] == {"role": "system", "content": "Be brief."}
    assert records[1].messages == [
        {"role": "user", "content": "Name a prime"},
        {"role": "assistant", "content": "7"},
    ]
    assert report.skips == [{"where": "line 3", "reason": "field 'messages': no assistant message"}]


def test_conversations_field_is_detected(tmp_path):
    rows = [{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}]
    _, report = load(write_jsonl(tmp_path / "c.jsonl", rows))
    assert report.mapping["messages"] == "conversations"


def test_detection_order_and_case():
    assert detect_mapping(["Body", "Question", "Answer"]) == Mapping(
        prompt="Question", response="Answer"
    )
    # a worked solution is preferred to a bare answer; question before problem
    assert detect_mapping(["problem", "question", "answer", "solution", "id"]) == Mapping(
        prompt="question", response="solution", id="id"
    )
    alpaca = detect_mapping(["instruction", "input", "output"])
    assert alpaca.prompt == "{instruction}\\n\\n{input}" and alpaca.response == "output"
    with pytest.raises(UserError, match="no response field found among: question, topic"):
        detect_mapping(["question", "topic"])


def test_given_fields_win_over_detection():
    m = detect_mapping(
        ["question", "answer", "rationale"], Mapping(prompt="question", response="rationale")
    )
    assert m == Mapping(prompt="question", response="rationale")


def test_mapping_needs_both_sides():
    with pytest.raises(UserError, match="both a prompt and a response"):
        Mapping(prompt="q")
    with pytest.raises(UserError, match="not both"):
        Mapping(prompt="q", response="a", messages="m")


# --- the report --------------------------------------------------------------------------------


def test_report_counts_skips_duplicates_and_lengths(tmp_path):
    rows = [{"question": f"q{i}", "answer": "a" * (i + 1)} for i in range(30)]
    rows[3]["answer"] = "   "
    rows[5]["question"] = ""
    rows[7] = {"question": "q1", "answer": "aa"}  # repeats row 2 exactly
    del rows[9]["answer"]
    lines = [json.dumps(r) for r in rows]
    lines[11] = '{"question": "broken",'
    lines.insert(0, "")  # a blank line is not a row
    lines += ['["not", "an", "object"]'] * 25
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines) + "\n")
    _, report = load(path)
    assert report.rows_read == 55
    assert report.kept == 26 and report.skipped == 29
    assert report.skip_reasons == {
        "empty response": 1,
        "empty prompt": 1,
        "field 'answer' not found": 1,
        "invalid JSON": 1,
        "is an array, not a JSON object": 25,
    }
    assert len(report.skips) == 20  # the first 20 are listed, all are counted
    assert report.skips[0] == {"where": "line 5", "reason": "empty response (answer)"}
    assert report.skips[3]["where"] == "line 13" and report.skips[3]["reason"].startswith(
        "invalid JSON"
    )
    assert report.duplicates == 1
    assert report.duplicate_examples == [{"where": "line 9", "first": "line 3"}]
    assert report.response_chars["max"] == 30 and report.response_chars["min"] == 1
    text = "\n".join(report.lines())
    assert "55 rows read, 26 kept, 29 skipped" in text and "... and 9 more" in text


def test_limit_reads_at_most_n_rows(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"q": str(i), "a": str(i)} for i in range(100)])
    records, report = load(path, Mapping(prompt="q", response="a"), limit=10)
    assert len(records) == 10 and report.rows_read == 10


def test_preview_reads_only_the_first_rows(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"q": str(i), "a": str(i)} for i in range(100)])
    records, report = preview(open_source(path), Mapping(prompt="q", response="a"), rows=5)
    assert [r.prompt for r in records] == ["0", "1", "2", "3", "4"] and report.rows_read == 5


def test_fingerprint_follows_content(tmp_path):
    a = load(write_jsonl(tmp_path / "a.jsonl", ROWS))[1].fingerprint
    b = load(write_jsonl(tmp_path / "b.jsonl", ROWS))[1].fingerprint
    changed = [dict(r) for r in ROWS]
    changed[1]["answer"] = "7"
    c = load(write_jsonl(tmp_path / "c.jsonl", changed))[1].fingerprint
    assert a == b != c


def test_mapped_duplicate_ids_fail_naming_both_rows(tmp_path):
    rows = [
        {"k": "x", "q": "1", "a": "1"},
        {"k": "y", "q": "2", "a": "2"},
        {"k": "x", "q": "3", "a": "3"},
    ]
    with pytest.raises(UserError, match=r"line 3: duplicate id 'x' \(field 'k'\), first at line 1"):
        load(write_jsonl(tmp_path / "d.jsonl", rows), Mapping(prompt="q", response="a", id="k"))


def test_detected_id_that_repeats_falls_back_to_row_numbers(tmp_path):
    rows = [{"id": 1, "q": "a", "a": "b"}, {"id": 1, "q": "c", "a": "d"}]
    records, report = load(
        write_jsonl(tmp_path / "d.jsonl", rows), Mapping(prompt="q", response="a")
    )
    assert [r.id for r in records] == ["1", "2"]
    assert report.mapping["id"] is None and "repeats values" in report.notes[0]


def test_unicode_newlines_and_latex_survive_byte_for_byte(tmp_path):
    text = "∑_{i=1}^n i = \\frac{n(n+1)}{2}\r\n\ttabs\u2028sep 🙂 \x00nul"
    records, _ = load(write_jsonl(tmp_path / "d.jsonl", [{"question": text, "answer": text}]))
    assert records[0].prompt == text and records[0].response == text


def test_preview_skips_rows_nested_too_deep_or_with_a_lone_surrogate(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"question": "x", "answer": "y", "z": ' + "[" * 5000 + "]" * 5000 + "}\n"
        '{"question": "half \\ud800", "answer": "y"}\n'
        '{"question": "'
        + "{[" * 200
        + '", "answer": "brackets in text are not nesting"}\n'
        + "".join(json.dumps(r) + "\n" for r in ROWS)
    )
    records, report = preview(open_source(path), None, rows=5)
    assert [r.prompt for r in records] == ["{[" * 200, ROWS[0]["question"], ROWS[1]["question"]]
    assert report.skips == [
        {"where": "line 1", "reason": "nested more than 100 levels deep"},
        {
            "where": "line 2",
            "reason": "text with a lone UTF-16 surrogate (\\ud800), which is not Unicode",
        },
    ]


def test_a_path_that_cannot_be_looked_at(tmp_path, monkeypatch):
    """What a folder without search permission does to a non-root user, simulated (the
    tests may run as root, which passes every permission check)."""
    (tmp_path / "locked").mkdir()
    path = write_jsonl(tmp_path / "locked" / "d.jsonl", ROWS)
    real_stat = Path.stat

    def stat(self, **kw):
        if self.parent.name == "locked":
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, **kw)

    monkeypatch.setattr(Path, "stat", stat)
    with pytest.raises(UserError, match=r"d\.jsonl: permission denied"):
        open_source(path)


# --- fields left out of a detected prompt --------------------------------------------------------

ASDIV = {
    "body": "Seven red apples and two green apples are in the basket.",
    "question": "How many apples are in the basket?",
    "solution_type": "Addition",
    "answer": "9 (apples)",
    "formula": "7+2=9",
}


def hint_of(tmp_path, rows: list[dict], mapping: Mapping | None = None) -> tuple:
    _, report = preview(open_source(write_jsonl(tmp_path / "h.jsonl", rows)), mapping)
    return report.prompt_hint, report.prompt_template, report.notes


def test_a_context_field_left_out_of_the_prompt_is_noted(tmp_path):
    note, template, notes = hint_of(tmp_path, [ASDIV])
    assert note == (
        "field 'body' looks like part of the prompt but is not in it (the prompt is only "
        "'question'); to include it, use a prompt template like {body} {question}"
    )
    assert template == "{body} {question}" and notes == [note]
    records, _ = preview(open_source(tmp_path / "h.jsonl"), Mapping(template, "answer"))
    assert records[0].prompt == f"{ASDIV['body']} {ASDIV['question']}"


def test_choices_go_after_the_question_and_several_fields_are_named(tmp_path):
    row = {"passage_text": "A long passage about apples and pears.", **ASDIV, "options": ["9", "5"]}
    note, template, _ = hint_of(tmp_path, [row])
    assert template == "{passage_text} {body} {question}\\n{options}"
    assert note.startswith("fields 'passage_text', 'body', 'options' look like part of the prompt")


@pytest.mark.parametrize(
    "row",
    [
        {**ASDIV, "body": "short"},  # too short to be a context
        {**ASDIV, "body": ASDIV["question"]},  # already in the prompt
        {**ASDIV, "body": None},
        {"instruction": "Add these numbers together.", "input": "2 and 3", "output": "5"},
        {k: v for k, v in ASDIV.items() if k != "body"},
    ],
    ids=["short", "in-prompt", "null", "alpaca", "none"],
)
def test_no_note_when_nothing_is_left_out(tmp_path, row):
    assert hint_of(tmp_path, [row]) == (None, None, [])


def test_no_note_for_a_prompt_the_user_chose(tmp_path):
    assert hint_of(tmp_path, [ASDIV], Mapping("question", "answer")) == (None, None, [])
