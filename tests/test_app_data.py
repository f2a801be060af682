"""The Data page through streamlit's AppTest: demo on first start, upload, mapping, report, import."""

from __future__ import annotations

import gzip
import json
import os
import re
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

from core.workspace import Workspace
from tests.app_driver import App, DataPage, visible

ROWS = [
    {"question": f"What is {i} squared?", "answer": f"{i * i}", "level": i % 3} for i in range(8)
]
JSONL = "".join(json.dumps(r) + "\n" for r in ROWS).encode()


def test_first_start_shows_the_demo(tmp_path):
    app = App(tmp_path / "ws")
    assert app.at.sidebar.selectbox(key="sidebar_active").value == "demo"
    page = DataPage(tmp_path / "ws")
    assert page.datasets() == {"demo": 360}
    assert [t.value for t in page.at.title] == ["Data"]


def test_deleted_demo_stays_deleted(tmp_path):
    App(tmp_path / "ws")
    ws = Workspace(tmp_path / "ws")
    ws.delete_dataset("demo")
    page = DataPage(tmp_path / "ws")
    assert page.datasets() == {}


def test_upload_preview_and_import(tmp_path):
    page = DataPage(tmp_path / "ws")
    page.upload("squares.jsonl", JSONL)
    preview = page.preview()
    assert list(preview["prompt"][:2]) == ["What is 0 squared?", "What is 1 squared?"]
    assert "Fields in the file: question, answer, level" in page.texts("caption")
    page.import_as("squares")
    assert page.datasets() == {"demo": 360, "squares": 8}
    assert any("Imported 8 rows as **squares**" in s for s in page.texts("success"))
    info = Workspace(tmp_path / "ws").dataset("squares")
    assert info.source == "squares.jsonl"  # the uploaded name, not where the server kept it
    # the new dataset is the active one (AppTest drops the sidebar after st.rerun; read the state)
    assert Workspace(tmp_path / "ws").get_meta("active_dataset") == "squares"


def test_template_mapping_updates_the_preview(tmp_path):
    page = DataPage(tmp_path / "ws")
    page.upload("squares.csv", b"q,a,n\nWhat is two,2,1\nWhat is three,3,2\n")
    page.map(prompt="{q}? (#{n})", response="a")
    assert list(page.preview()["prompt"]) == ["What is two? (#1)", "What is three? (#2)"]
    assert any("prompt <- {q}? (#{n}), response <- a" in c for c in page.texts("caption"))


def test_chat_messages_mapping(tmp_path):
    rows = [
        {"chat": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    ]
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps(rows[0]) + "\n")
    page = DataPage(tmp_path / "ws")
    page.use_path(path)
    assert page.errors() and "no prompt field found among: chat" in page.errors()[0]
    assert "--" not in page.errors()[0]  # no command-line flags on the page
    page.at.toggle[0].set_value(True)
    page.run()
    page.map(messages="chat")
    assert list(page.preview()["response"]) == ["hello"]


def test_validate_shows_the_report_with_skips(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(
        JSONL.decode() + "{broken\n" + json.dumps({"question": "", "answer": "x"}) + "\n"
    )
    page = DataPage(tmp_path / "ws")
    page.use_path(path)
    page.button("Validate the whole file").click()
    page.run()
    metrics = {m.label: m.value for m in page.at.metric}
    assert metrics == {"Rows read": "10", "Kept": "8", "Skipped": "2", "Exact duplicates": "0"}
    assert "2 rows skipped" in page.at.warning[0].value
    skips = next(d.value for d in page.at.dataframe if "reason" in d.value.columns)
    assert list(skips["where"]) == ["line 9", "line 10"]
    assert Workspace(tmp_path / "ws").datasets()[0].name == "demo"  # validating imports nothing


def test_bad_source_shows_an_error_not_a_traceback(tmp_path):
    page = DataPage(tmp_path / "ws")
    page.use_path(tmp_path / "missing.jsonl")
    assert page.errors() == [f"{tmp_path / 'missing.jsonl'}: no such file or folder"]
    page.upload("junk.jsonl", bytes(range(256)) * 10)
    assert "looks like a binary file" in page.errors()[0]


def test_taken_name_is_refused_and_nothing_changes(tmp_path):
    page = DataPage(tmp_path / "ws")
    page.upload("demo.jsonl", JSONL)
    page.import_as("demo")
    assert any("'demo' exists" in e for e in page.errors())
    assert page.datasets() == {"demo": 360}
    page.import_as("demo", replace=True)
    assert page.datasets() == {"demo": 8}


def test_rename_and_delete(tmp_path):
    page = DataPage(tmp_path / "ws")
    page.at.text_input(key="manage_new_name").set_value("renamed")
    page.run()
    page.button("Rename").click()
    page.run()
    assert page.datasets() == {"renamed": 360}
    page.at.checkbox(key="manage_confirm").check()
    page.run()
    page.button("Delete").click()
    page.run()
    assert page.datasets() == {}


def test_file_and_field_names_show_as_text(tmp_path):
    """A file name and a field name that are Markdown (an image, a code-span break-out, a
    link) show as typed wherever they appear: never rendered, never a request elsewhere."""
    name = "![px](http://127.0.0.1:9/p.png).jsonl"
    field = "`q` ![x](http://localhost:9/y-png) <a href='http://localhost:9'>z</a>"  # no dots: a dotted path
    rows = [{field: f"What is {i} + 1?", "answer": str(i + 1)} for i in range(4)]
    page = DataPage(tmp_path / "ws")
    page.upload(name, "".join(json.dumps(r) + "\n" for r in rows).encode())
    page.map(prompt=field, response="answer")
    page.import_as("tricky")
    shown = [
        *(c.value for c in page.at.caption),
        *(c.value for c in page.at.sidebar.caption),
        *(m.value for m in page.at.markdown),
        *(s.value for s in page.at.success),
    ]
    assert any(name in visible(s) for s in shown)  # the file name, as the dataset's source
    assert any(field in visible(s) for s in shown)  # the field name, in the mapping
    for markdown in shown:
        assert not re.search(r"(?<!\\)!\\?\[|(?<!\\)<a |(?<!\\)`q", markdown), markdown


def test_files_that_are_not_what_they_seem_show_errors(tmp_path):
    """A pipe, a device, a symlink loop: st.error, never a traceback or a hang; rows nested
    too deep or with a lone surrogate are skipped in the preview with their reason."""
    os.mkfifo(tmp_path / "pipe.jsonl")
    (tmp_path / "loop.jsonl").symlink_to(tmp_path / "loop.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        JSONL.decode()
        + '{"question": "x", "answer": "y", "z": '
        + "[" * 50_000
        + "]" * 50_000
        + "}\n"
        + '{"question": "half \\udc00", "answer": "y"}\n'
    )
    page = DataPage(tmp_path / "ws")
    for path, needle in (
        (tmp_path / "pipe.jsonl", "is a named pipe (FIFO), not a regular file"),
        ("/dev/zero", "is a character device, not a regular file"),
        (tmp_path / "loop.jsonl", "a symbolic link loop"),
    ):
        page.use_path(path)
        assert any(needle in e for e in page.errors()), page.errors()
    page.use_path(bad)
    page.map(prompt="question")  # the preview reads the first rows only: map, then validate
    page.button("Validate the whole file").click()
    page.run()
    skips = next(d.value for d in page.at.dataframe if "reason" in d.value.columns)
    assert list(skips["reason"]) == [
        "nested more than 100 levels deep",
        "text with a lone UTF-16 surrogate (\\udc00), which is not Unicode",
    ]


def test_a_hub_dataset_offline_is_one_error_without_flags(tmp_path):
    page = DataPage(tmp_path / "ws")
    page.at.segmented_control(key="source_kind").set_value("Hugging Face dataset")
    page.run()
    page.at.text_input(key="hub_name").set_value("someone/no-such-dataset")
    page.run()
    [error] = page.errors()
    assert error.startswith("someone/no-such-dataset: cannot load this Hugging Face dataset")
    assert "offline mode" in error and "--" not in error


def test_the_text_encoding_can_be_given(tmp_path):
    rows = [{"question": "Café crème?", "answer": "très bien"}, *ROWS[:2]]
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("latin-1")
    page = DataPage(tmp_path / "ws")
    page.upload("latin.jsonl", data)
    assert "not valid UTF-8" in page.texts("warning")[0]
    assert "give its encoding" in page.texts("warning")[0]
    page.at.text_input(key="source_encoding").set_value("latin-1")
    page.run()
    assert list(page.preview()["prompt"]) == ["Café crème?", *(r["question"] for r in ROWS[:2])]
    page.at.text_input(key="source_encoding").set_value("no-such-codec")
    page.run()
    assert any("encoding 'no-such-codec' is unknown" in e for e in page.errors())


def test_a_field_left_out_of_the_prompt_is_pointed_out(tmp_path):
    row = {"body": "Seven red apples are in the basket.", "question": "How many?", "answer": "7"}
    page = DataPage(tmp_path / "ws")
    page.upload("asdiv.jsonl", (json.dumps(row) + "\n").encode())
    [info] = page.texts("info")
    assert info.endswith("to include it, use a prompt template like {body} {question}")
    page.map(prompt="{body} {question}")
    assert list(page.preview()["prompt"]) == ["Seven red apples are in the basket. How many?"]
    assert not page.at.info


def test_a_split_file_is_named_after_its_folder(tmp_path):
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "test.jsonl").write_bytes(JSONL)
    page = DataPage(tmp_path / "ws")
    page.use_path(tmp_path / "gsm8k" / "test.jsonl")
    [name] = [w.value for w in page.at.text_input if (w.key or "").startswith("name_")]
    assert name == "gsm8k-test"


def test_first_start_says_it_imports_the_demo(tmp_path, monkeypatch):
    """The demo is imported inside a spinner saying so (AppTest keeps no spinner: record them)."""
    root, spun = tmp_path / "ws", []
    real = st.spinner

    @contextmanager
    def spinner(text: str, *args, **kwargs):
        before = root.exists() and Workspace(root).has_dataset("demo")
        with real(text, *args, **kwargs):
            yield
        spun.append((text, before, Workspace(root).has_dataset("demo")))

    monkeypatch.setattr(st, "spinner", spinner)
    App(root)
    assert ("Importing the demo dataset (first start only)...", False, True) in spun


def test_unreadable_paths_show_errors(tmp_path, monkeypatch):
    """A folder without permission (simulated: the tests may run as root) and a gzip cut
    before its first line: st.error naming the problem, no traceback."""
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "d.jsonl").write_bytes(JSONL)
    data = gzip.compress(JSONL)
    (tmp_path / "cut.jsonl.gz").write_bytes(data[: len(data) // 3])
    page = DataPage(tmp_path / "ws")
    real_stat = Path.stat

    def stat(self, **kw):
        if self.parent.name == "locked":
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, **kw)

    monkeypatch.setattr(Path, "stat", stat)
    page.use_path(tmp_path / "locked" / "d.jsonl")
    assert any("d.jsonl: permission denied" in e for e in page.errors()), page.errors()
    page.use_path(tmp_path / "cut.jsonl.gz")
    assert any("the file is truncated" in e for e in page.errors()), page.errors()


def test_a_file_changed_on_disk_is_previewed_anew(tmp_path):
    """The preview is cached per source and file version: the same path rewritten shows
    its new rows (a stale cache would show the old ones)."""
    path = tmp_path / "d.jsonl"
    path.write_bytes(JSONL)
    page = DataPage(tmp_path / "ws")
    page.use_path(path)
    assert list(page.preview()["prompt"][:1]) == ["What is 0 squared?"]
    rows = [{"question": f"What is {i} cubed?", "answer": f"{i**3}"} for i in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    page.run()
    assert list(page.preview()["prompt"]) == [r["question"] for r in rows]
