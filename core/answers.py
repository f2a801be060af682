"""Answers: extraction from solutions, equivalence, and the majority vote.

Math (default): the final answer is the last \\boxed{...} of a solution; two answers are
the same when math-verify says they are mathematically equivalent. math-verify's own
timeouts use signal.alarm, which only works in the main thread, so it runs with them off
in a separate worker process that is given `timeout` seconds per comparison and replaced
when it hangs; a comparison that times out counts as "not equal".

Labels (non-math data): the answer is the text after the last "Answer:" (or the last
line); two answers are the same when they match after case and spacing are folded.
"""

from __future__ import annotations

import logging
import multiprocessing
import re
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Protocol


def last_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} (or \\fbox{...}), braces balanced; None if none."""
    for match in reversed(list(re.finditer(r"\\(?:boxed|fbox)\s*\{", text))):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    content = text[start:i].strip()
                    return content or None
    return None


def _normalise_label(text: str) -> str:
    return " ".join(text.strip().strip(".").casefold().split())


class Verifier(Protocol):
    name: str

    def extract(self, solution: str) -> str | None: ...

    def same(self, a: str, b: str) -> bool: ...


class LabelAgreement:
    """Exact label agreement, for classification-style or short-answer data."""

    name = "label"

    def extract(self, solution: str) -> str | None:
        found = re.findall(r"answer\s*[:：]\s*(.+)", solution, flags=re.IGNORECASE)
        text = (
            found[-1]
            if found
            else next((line for line in reversed(solution.splitlines()) if line.strip()), "")
        )
        return _normalise_label(text) or None

    def same(self, a: str, b: str) -> bool:
        return _normalise_label(a) == _normalise_label(b)


def _math_equal(a: str, b: str) -> bool:
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    gold = parse(f"\\boxed{{{a}}}", parsing_timeout=None)
    target = parse(f"\\boxed{{{b}}}", parsing_timeout=None)
    return bool(gold and target and verify(gold, target, timeout_seconds=None))


class MathEquivalence:
    """Mathematical equivalence through math-verify, safely off the main thread."""

    name = "math"

    def __init__(self, timeout: float = 5.0):
        self.timeout = timeout
        self._pool: ProcessPoolExecutor | None = None

    def extract(self, solution: str) -> str | None:
        return last_boxed(solution)

    def same(self, a: str, b: str) -> bool:
        if _normalise_label(a) == _normalise_label(b):
            return True
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn")
            )
        future = self._pool.submit(_math_equal, a, b)
        try:
            return future.result(timeout=self.timeout)
        except FutureTimeout:
            self.close(kill=True)  # the worker may be stuck in sympy: start a fresh one next time
            return False
        except Exception:  # an answer math-verify cannot read: not equal
            return False

    def close(self, kill: bool = False) -> None:
        if self._pool is not None:
            if kill:
                for process in list(getattr(self._pool, "_processes", {}).values()):
                    process.kill()
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


@dataclass
class Vote:
    """The outcome for one problem: the majority answer and which solutions hold it."""

    answers: list[str | None]
    majority: str | None
    agreeing: list[int]
    reason: str | None  # why there is no usable majority, else None

    @property
    def counts(self) -> dict[str, int]:
        groups: dict[str, int] = {}
        for a in self.answers:
            groups[a or "(none)"] = groups.get(a or "(none)", 0) + 1
        return groups


def majority_vote(solutions: Sequence[str], verifier: Verifier) -> Vote:
    """Group the solutions' answers by equivalence; the majority needs more than half of
    all solutions. No answer at all, or no majority, is a reason to drop the problem."""
    answers = [verifier.extract(s) for s in solutions]
    classes: list[list[int]] = []
    for i, answer in enumerate(answers):
        if answer is None:
            continue
        for members in classes:
            if verifier.same(answers[members[0]], answer):
                members.append(i)
                break
        else:
            classes.append([i])
    if not classes:
        return Vote(answers, None, [], "no answer")
    best = max(classes, key=len)
    if len(best) * 2 <= len(solutions):
        return Vote(answers, None, [], "no majority")
    return Vote(answers, answers[best[0]], best, None)


def verifier_named(name: str) -> Verifier:
    if name == "math":
        return MathEquivalence()
    if name == "label":
        return LabelAgreement()
    raise ValueError(f"unknown verifier {name!r}: use math or label")
