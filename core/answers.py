"""Answers: extraction from solutions, equivalence, and the majority vote.

Math (default): the final answer is the last \\boxed{...} of a solution; two answers are
the same when math-verify says they are mathematically equivalent. math-verify's own
timeouts use signal.alarm, which only works in the main thread, so it runs with them off
in a worker process (a plain subprocess, so no fork of a threaded server and no re-import
of the caller's main module) that is given `timeout` seconds per comparison and killed
when it hangs; a comparison that times out counts as "not equal". The clock starts once
the worker says it is ready (math-verify imported and warmed up), so a slow start on a
loaded machine is never taken for a hanging comparison.

Labels (non-math data): the answer is the text after the last "Answer:" (or the last
line); two answers are the same when they match after case and spacing are folded.
"""

from __future__ import annotations

import json
import logging
import re
import select
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from core.errors import UserError


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

    gold = parse(f"\\boxed{{{a}}}", parsing_timeout=None)
    target = parse(f"\\boxed{{{b}}}", parsing_timeout=None)
    return bool(gold and target and verify(gold, target, timeout_seconds=None))


STARTUP_TIMEOUT = 300.0  # seconds for a worker to get ready; only a broken install takes this


def _serve() -> None:
    """The worker process: "ready" once math-verify works (or "error: ..." if it cannot),
    then one JSON pair per line in, "1" or "0" per line out."""
    logging.disable(logging.CRITICAL)  # math-verify warns on every call that its timeouts are off
    try:
        _math_equal("1", "1")  # imports and warms up math-verify: the slow part of a start
    except Exception as e:
        sys.stdout.write(f"error: {type(e).__name__}: {e}\n")
        sys.stdout.flush()
        return
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for line in sys.stdin:
        try:
            a, b = json.loads(line)
            answer = _math_equal(a, b)
        except Exception:
            answer = False
        sys.stdout.write("1\n" if answer else "0\n")
        sys.stdout.flush()


class MathEquivalence:
    """Mathematical equivalence through math-verify, in a worker process with a timeout."""

    name = "math"

    def __init__(self, timeout: float = 10.0):
        self.timeout = timeout
        self._worker: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def extract(self, solution: str) -> str | None:
        return last_boxed(solution)

    def same(self, a: str, b: str) -> bool:
        if _normalise_label(a) == _normalise_label(b):
            return True
        with self._lock:  # one comparison at a time per worker
            worker = self._start()
            worker.stdin.write(json.dumps([a, b]) + "\n")
            worker.stdin.flush()
            ready, _, _ = select.select([worker.stdout], [], [], self.timeout)
            if not ready:  # stuck in sympy: kill it; a fresh one starts next time
                self.close()
                return False
            line = worker.stdout.readline()
            if not line:
                self.close()
                return False
            return line.strip() == "1"

    def _start(self) -> subprocess.Popen:
        """The worker, started (and waited for until it is ready) when there is none."""
        if self._worker is None or self._worker.poll() is not None:
            self._worker = subprocess.Popen(
                [sys.executable, "-c", "from core.answers import _serve; _serve()"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                cwd=str(Path(__file__).resolve().parents[1]),
            )
            ready, _, _ = select.select([self._worker.stdout], [], [], STARTUP_TIMEOUT)
            said = self._worker.stdout.readline().strip() if ready else ""
            if said != "ready":
                self.close()
                raise UserError(
                    "the math-verify worker did not start: "
                    + (said or f"no answer within {STARTUP_TIMEOUT:g} s")
                    + " (or use the label verifier)"
                )
        return self._worker

    def close(self) -> None:
        if self._worker is not None:
            self._worker.kill()
            self._worker.wait()
            self._worker = None


@dataclass
class Vote:
    """The outcome for one problem: the majority answer and which solutions hold it."""

    answers: list[str | None]
    majority: str | None
    agreeing: list[int]
    reason: str | None  # why there is no usable majority, else None


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
