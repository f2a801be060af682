"""The prompt templates of the synthesis loop, in one place, and parsing their replies.

Templates use str.format placeholders ({exemplars}, {count}, {n} to generate; {problem} to
solve); a literal brace is doubled. A workspace may keep edited templates (the
Synthesize page edits them); the defaults follow docs/method.md section 3.
"""

from __future__ import annotations

import json
import re
import string

from core.errors import UserError

MARKER = "[[Problem]]"
TEMPLATES_KEY = "prompt_templates"

DEFAULT_TEMPLATES = {
    "generate": (
        "You are writing new problems for a training dataset of math word problems.\n\n"
        "Here are {count} example problems from one region of the dataset:\n\n"
        "{exemplars}\n\n"
        "Write {n} new problems that are similar to these examples or harder. Each problem must be "
        "self-contained, solvable, and have a single final answer. Do not solve them.\n\n"
        "Give each new problem after a line containing only " + MARKER + "."
    ),
    "solve": (
        "Solve the following problem. Reason step by step, then give the final answer "
        "in \\boxed{{}}.\n\n{problem}"
    ),
}
REQUIRED = {"generate": {"exemplars", "n"}, "solve": {"problem"}}


def check_template(name: str, template: str) -> str:
    """A UserError naming the problem when a template lacks a placeholder or breaks format."""
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as e:
        raise UserError(f"the {name} template: {e}; write a literal brace as {{{{ or }}}}") from e
    missing = REQUIRED[name] - fields
    if missing:
        raise UserError(
            f"the {name} template needs {', '.join('{' + m + '}' for m in sorted(missing))}"
        )
    unknown = fields - REQUIRED[name] - {"count"}
    if unknown:
        raise UserError(
            f"the {name} template has unknown placeholders: {', '.join(sorted(unknown))}"
        )
    return template


def load_templates(ws) -> dict[str, str]:
    """The workspace's templates (edited ones where there are), else the defaults."""
    saved = json.loads(ws.get_meta(TEMPLATES_KEY) or "{}")
    return {name: saved.get(name, default) for name, default in DEFAULT_TEMPLATES.items()}


def save_templates(ws, templates: dict[str, str]) -> None:
    for name, template in templates.items():
        check_template(name, template)
    ws.set_meta(TEMPLATES_KEY, json.dumps(templates))


def generation_prompt(template: str, exemplars: list[str], n: int) -> str:
    blocks = "\n\n".join(
        f"Example {i}:\n{text.strip()}" for i, text in enumerate(exemplars, start=1)
    )
    return template.format(exemplars=blocks, count=len(exemplars), n=n)


def solve_prompt(template: str, problem: str) -> str:
    return template.format(problem=problem)


def normalise_text(text: str) -> str:
    """The text with case and white space folded: what counts as "the same text"."""
    return " ".join(text.lower().split())


def parse_problems(reply: str) -> list[str]:
    """The problems of a generation reply: each after a line that is only the marker; text
    before the first marker is ignored; empty and repeated problems are dropped."""
    parts = re.split(rf"^[ \t]*{re.escape(MARKER)}[ \t]*$", reply, flags=re.MULTILINE)
    seen, out = set(), []
    for part in parts[1:]:
        text = part.strip()
        key = normalise_text(text)
        if text and key not in seen:
            seen.add(key)
            out.append(text)
    return out
