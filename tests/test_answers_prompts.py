"""Answer extraction, equivalence, the majority vote; the prompt templates and reply parsing."""

from __future__ import annotations

import os
import time

import pytest

from core.answers import LabelAgreement, MathEquivalence, last_boxed, majority_vote
from core.errors import UserError
from core.prompts import (
    DEFAULT_TEMPLATES,
    check_template,
    generation_prompt,
    load_templates,
    parse_problems,
    save_templates,
    solve_prompt,
)
from core.workspace import Workspace


@pytest.fixture(scope="module")
def math_eq():
    eq = MathEquivalence()
    yield eq
    eq.close()


def test_last_boxed():
    assert last_boxed(r"first \boxed{1} then \boxed{\frac{a}{b}}.") == r"\frac{a}{b}"
    assert last_boxed(r"\boxed{ \{1, 2\} }") == r"\{1, 2\}"
    assert last_boxed(r"\fbox{7}") == "7"
    assert last_boxed("no box here") is None and last_boxed(r"\boxed{}") is None
    assert last_boxed(r"\boxed{unclosed") is None


def test_math_equivalence(math_eq):
    assert math_eq.same(r"\frac{1}{2}", "0.5")
    assert math_eq.same("2x+2", "2(x+1)")
    assert math_eq.same(r"\sqrt{4}", "2")
    assert not math_eq.same("3", "4")
    assert not math_eq.same(r"\frac{", "x")  # unreadable: not equal, no crash


def test_a_hanging_comparison_times_out_and_recovers():
    """A comparison that truly hangs (sympy computing (10^10)!) is given up on after the
    timeout: the worker is killed, and a fresh one answers the next comparison."""
    eq = MathEquivalence(timeout=3)
    eq.same("1", "1.0")  # the worker is up: the clock below times the comparison only
    started = time.monotonic()
    assert eq.same("(10^{10})!", "3") is False
    assert time.monotonic() - started < 60 and eq._worker is None  # killed, not waited for
    assert eq.same(r"\frac{2}{4}", "0.5")  # a fresh worker next time
    eq.close()


def test_the_timeout_starts_once_the_worker_is_ready(tmp_path, monkeypatch):
    """A worker that takes longer to start than the comparison timeout (a loaded machine)
    still answers: its start-up is not counted against the comparison."""
    (tmp_path / "sitecustomize.py").write_text("import time\ntime.sleep(5)\n")
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    eq = MathEquivalence(timeout=3)
    try:
        assert eq.same("1", "1.0")
        assert eq.same("2x+2", "2(x+1)")
    finally:
        eq.close()


def test_majority_vote(math_eq):
    agree = majority_vote([r"... \boxed{1/2}", r"... \boxed{0.5}", r"... \boxed{3}"], math_eq)
    assert agree.majority == "1/2" and agree.agreeing == [0, 1] and agree.reason is None
    assert (
        majority_vote([r"\boxed{1}", r"\boxed{2}", r"\boxed{3}"], math_eq).reason == "no majority"
    )
    assert majority_vote(["no", "answers", "here"], math_eq).reason == "no answer"
    assert (
        majority_vote([r"\boxed{1}", r"\boxed{1}", "x", "y"], math_eq).reason == "no majority"
    )  # 2 of 4 is not more than half
    assert majority_vote([r"\boxed{5}"], math_eq).majority == "5"


def test_label_agreement():
    labels = LabelAgreement()
    vote = majority_vote(
        ["I think so.\nAnswer: Entailment", "answer: entailment.", "neutral"], labels
    )
    assert vote.majority == "entailment" and vote.agreeing == [0, 1]
    assert labels.extract("only a line") == "only a line"


def test_parse_problems():
    reply = "Sure! Here you go.\n[[Problem]]\nA train goes 60 km.\n\n[[Problem]]  \n\n[[Problem]]\na train  goes 60 KM.\n[[Problem]]\nWhat is 3^4?"
    assert parse_problems(reply) == ["A train goes 60 km.", "What is 3^4?"]
    assert parse_problems("no markers at all") == []
    assert parse_problems("[[Problem]] inline markers are not lines") == []


def test_templates(tmp_path):
    for name, template in DEFAULT_TEMPLATES.items():
        assert check_template(name, template) == template
    with pytest.raises(UserError, match=r"needs \{exemplars\}"):
        check_template("generate", "Write {n} problems")
    with pytest.raises(UserError, match="unknown placeholders: topic"):
        check_template("solve", "Solve {problem} about {topic}")
    with pytest.raises(UserError, match="literal brace"):
        check_template("solve", "Solve {problem} in \\boxed{")
    prompt = generation_prompt(DEFAULT_TEMPLATES["generate"], ["What is 1+1?", "What is 2+2?"], 2)
    assert (
        "Example 1:\nWhat is 1+1?\n\nExample 2:\nWhat is 2+2?" in prompt
        and "Write 2 new problems" in prompt
    )
    assert solve_prompt(DEFAULT_TEMPLATES["solve"], "Q?").endswith("\\boxed{}.\n\nQ?")
    ws = Workspace(tmp_path / "ws")
    assert load_templates(ws) == DEFAULT_TEMPLATES
    save_templates(ws, {"solve": "Think, then answer in \\boxed{{}}: {problem}"})
    assert (
        load_templates(ws)["solve"].startswith("Think")
        and load_templates(ws)["generate"] == DEFAULT_TEMPLATES["generate"]
    )
    with pytest.raises(UserError):
        save_templates(ws, {"solve": "no placeholder"})
