"""Every public dataset in ../shared/data imports, from the CLI and from the Data page.

Skipped when ../shared is not beside the repository. Row counts must equal the files'.
"""

from __future__ import annotations

import pytest

from tests.app_driver import DataPage

# file, mapping flags (empty: detected), what the first record's prompt starts with
CASES = [
    ("gsm8k/train.jsonl", {}, "Natalia sold clips"),
    ("gsm8k/test.jsonl", {}, "Janet"),
    ("math-benchmarks/minerva_math.jsonl", {}, "Each of the two Magellan"),
    (
        "math-benchmarks/olympiadbench.jsonl",
        {"response": "{solution}\\n\\nFinal answer: {final_answer}"},
        "Xenia",
    ),
    ("math-benchmarks/college_math.jsonl", {}, "Simplify"),
    (
        "math-benchmarks/svamp.jsonl",
        {"prompt": "{Body} {Question}", "response": "Answer"},
        "There are 87 oranges",
    ),
    (
        "math-benchmarks/asdiv.jsonl",
        {"prompt": "{body} {question}", "response": "answer"},
        "Seven red apples",
    ),
    (
        "math-benchmarks/aqua.jsonl",
        {"prompt": "{question}\\n{options}", "response": "rationale"},
        "A car is",
    ),
    ("math-benchmarks/amc23.jsonl", {}, "Cities $A$ and $B$"),
    ("math-benchmarks/aime24.jsonl", {}, "Every morning Aya"),
    (
        "math-benchmarks/sat_math.jsonl",
        {"prompt": "{question}\\n{options}", "response": "Answer"},
        "The graph",
    ),
]


def lines_in(path) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def full_mapping(flags: dict[str, str]) -> dict[str, str]:
    if "response" in flags and "prompt" not in flags:
        return {"prompt": "question", **flags}
    return flags


@pytest.mark.parametrize(("name", "flags", "start"), CASES, ids=[c[0] for c in CASES])
def test_cli_imports_every_file(cli, workspace_dir, shared_data, name, flags, start):
    path = shared_data / name
    args = [a for k, v in full_mapping(flags).items() for a in (f"--{k}", v.replace("\\n", "\n"))]
    r = cli("import", str(path), "--name", "x", *args, "--json")
    assert r.code == 0, r.err
    assert r.json["rows"] == lines_in(path) and r.json["skipped"] == 0

    from core.records import iter_records
    from core.workspace import Workspace

    first = next(iter_records(Workspace(workspace_dir).dataset("x").path))
    assert first.prompt.startswith(start)
    assert first.response.strip()


@pytest.mark.parametrize(("name", "flags", "start"), CASES, ids=[c[0] for c in CASES])
def test_data_page_imports_every_file(tmp_path, shared_data, name, flags, start):
    path = shared_data / name
    page = DataPage(tmp_path / "ws")
    page.use_path(path)
    page.map(**full_mapping(flags))
    assert page.preview()["prompt"][0].startswith(start)
    page.import_as("x")
    assert page.datasets()["x"] == lines_in(path)


def test_asdiv_detected_mapping_points_at_its_body(cli, shared_data):
    """Detected, the prompt is asdiv's `question` alone ("How many apples are in the
    basket?"); the report says `body` is left out and how to include it."""
    r = cli("validate", str(shared_data / "math-benchmarks/asdiv.jsonl"))
    assert r.code == 0, r.err
    assert (
        "note: field 'body' looks like part of the prompt but is not in it (the prompt is only "
        "'question'); to include it, use a prompt template like {body} {question}\n"
        '  (on the command line: --prompt "{body} {question}")\n'
    ) in r.out
