"""Tests for core.demo: shape, determinism, balance, and correctness of the demo math problems."""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from fractions import Fraction
from itertools import product
from statistics import mean

import pytest

from core.demo import FAMILIES, demo_rows

KEYS = {"id", "question", "answer", "final", "family", "difficulty"}
LEVELS = ("easy", "medium", "hard")
FINAL_RE = re.compile(r"(0|[1-9]\d*)(\.\d?[1-9])?|[1-9]\d*/[1-9]\d*")
MONEY = r"\$(\d[\d,]*(?:\.\d\d)?)"
NUM = r"(\d+(?:\.\d+)?)"


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return demo_rows()


@pytest.fixture(scope="module")
def many_rows() -> list[dict]:
    return demo_rows(1300, seed=7)


def _lines(row: dict) -> list[str]:
    return row["answer"].split("\n")


def test_default_count_and_ids(rows: list[dict]) -> None:
    assert len(rows) == 360
    assert [r["id"] for r in rows] == [f"demo-{i:04d}" for i in range(360)]
    assert all(set(r) == KEYS for r in rows)


def test_requested_count() -> None:
    rows = demo_rows(50)
    assert len(rows) == 50
    assert [r["id"] for r in rows] == [f"demo-{i:04d}" for i in range(50)]
    assert demo_rows(0) == []


def test_deterministic_for_a_seed() -> None:
    assert demo_rows(seed=3) == demo_rows(seed=3)
    assert demo_rows(80, seed=11) == demo_rows(80, seed=11)


def test_different_seed_gives_different_questions(rows: list[dict]) -> None:
    other = demo_rows(seed=1)
    assert [r["question"] for r in rows] != [r["question"] for r in other]
    shared = {r["question"] for r in rows} & {r["question"] for r in other}
    assert len(shared) < 36


def test_global_random_state_untouched() -> None:
    random.seed(1234)
    state = random.getstate()
    demo_rows(100, seed=5)
    assert random.getstate() == state


def test_families_and_difficulties_balanced(rows: list[dict]) -> None:
    assert len(FAMILIES) >= 10
    assert len(set(FAMILIES)) == len(FAMILIES)
    per_family = Counter(r["family"] for r in rows)
    assert set(per_family) == set(FAMILIES)
    assert max(per_family.values()) - min(per_family.values()) <= 1
    for family in FAMILIES:
        levels = Counter(r["difficulty"] for r in rows if r["family"] == family)
        assert set(levels) == set(LEVELS), family
        assert max(levels.values()) - min(levels.values()) <= 1, family
    overall = Counter(r["difficulty"] for r in rows)
    assert max(overall.values()) - min(overall.values()) <= len(FAMILIES)


def test_rows_are_shuffled(rows: list[dict]) -> None:
    first = [r["family"] for r in rows[: len(FAMILIES)]]
    assert first != list(FAMILIES)


def test_answer_ends_with_boxed_final(many_rows: list[dict]) -> None:
    for row in [*demo_rows(), *many_rows]:
        lines = _lines(row)
        assert 2 <= len(lines) <= 6, row
        assert lines[-1] == f"The answer is \\boxed{{{row['final']}}}.", row
        assert all(line.strip() for line in lines), row
        assert FINAL_RE.fullmatch(row["final"]), row
        if "/" in row["final"]:
            value = Fraction(row["final"])
            assert row["final"] == f"{value.numerator}/{value.denominator}", row
            assert value.denominator != 1, row


def test_questions_unique(rows: list[dict], many_rows: list[dict]) -> None:
    for sample in (rows, many_rows, demo_rows(500, seed=2)):
        questions = [r["question"] for r in sample]
        assert len(set(questions)) == len(questions)
        assert all(q.strip().endswith("?") or q.strip().endswith(")") for q in questions)


def test_hard_solutions_are_longer(rows: list[dict], many_rows: list[dict]) -> None:
    for sample in (rows, many_rows):
        lengths = {
            level: mean(len(_lines(r)) for r in sample if r["difficulty"] == level)
            for level in LEVELS
        }
        assert lengths["hard"] > lengths["medium"] > lengths["easy"]
    for family in FAMILIES:
        easy = mean(
            len(_lines(r)) for r in many_rows if (r["family"], r["difficulty"]) == (family, "easy")
        )
        hard = mean(
            len(_lines(r)) for r in many_rows if (r["family"], r["difficulty"]) == (family, "hard")
        )
        assert hard > easy, family


# ---------------------------------------------------------------------------
# Independent re-derivation of answers from the numbers in the question text
# ---------------------------------------------------------------------------


def _n(text: str) -> Fraction:
    return Fraction(text.replace(",", ""))


def _pct(x: str) -> Fraction:
    return Fraction(int(x), 100)


def _dice(condition) -> Fraction:
    hits = sum(1 for a, b in product(range(1, 7), repeat=2) if condition(a, b))
    return Fraction(hits, 36)


def _sale(m: re.Match) -> Fraction:
    return _n(m[1]) * (1 - _pct(m[2]))


def _sale_tax(m: re.Match) -> Fraction:
    return _n(m[1]) * (1 - _pct(m[2])) * (1 + _pct(m[3]))


def _two_discounts_tax(m: re.Match) -> Fraction:
    return _n(m[1]) * (1 - _pct(m[2])) * (1 - _pct(m[3])) * (1 + _pct(m[4]))


def _trip_time(m: re.Match) -> Fraction:
    return _n(m[1]) / _n(m[2]) + _n(m[3]) / _n(m[4])


def _trip_avg(m: re.Match) -> Fraction:
    return (_n(m[1]) + _n(m[3])) / _trip_time(m)


def _interest(m: re.Match) -> Fraction:
    return _n(m[1]) * _pct(m[2]) * int(m[3])


def _balance(m: re.Match) -> Fraction:
    return _n(m[1]) + _interest(m)


def _two_accounts(m: re.Match) -> Fraction:
    t = int(m[5])
    return _n(m[1]) * (1 + _pct(m[2]) * t) + _n(m[3]) * (1 + _pct(m[4]) * t)


def _loan_payment(m: re.Match) -> Fraction:
    return _n(m[1]) * (1 + _pct(m[2]) * int(m[3])) / (12 * int(m[3]))


def _path_cost(m: re.Match) -> Fraction:
    length, width, path, price = _n(m[1]), _n(m[2]), _n(m[3]), _n(m[4])
    return ((length + 2 * path) * (width + 2 * path) - length * width) * price


CHECKS = [
    # (family, pattern, independent computation)
    (
        "percentages",
        rf"priced at {MONEY}\. During a sale it is marked (\d+)% off\.",
        _sale,
    ),
    (
        "percentages",
        rf"priced at {MONEY}\. It is (\d+)% off this week, and (\d+)% sales tax is added",
        _sale_tax,
    ),
    (
        "percentages",
        rf"costs {MONEY}\. The store takes (\d+)% off, then a member coupon takes another "
        rf"(\d+)% off the reduced price, and finally (\d+)% sales tax is added",
        _two_discounts_tax,
    ),
    (
        "rates",
        rf"travels at a steady (\d+) km/h for {NUM} hours\.",
        lambda m: _n(m[1]) * _n(m[2]),
    ),
    (
        "rates",
        rf"cycles {NUM} km at a steady (\d+) km/h\.",
        lambda m: _n(m[1]) / _n(m[2]),
    ),
    (
        "rates",
        rf"drives {NUM} km at (\d+) km/h and then {NUM} km at (\d+) km/h\. How many hours",
        _trip_time,
    ),
    (
        "rates",
        rf"drives {NUM} km at (\d+) km/h and then {NUM} km at (\d+) km/h\. What is its average",
        _trip_avg,
    ),
    (
        "rates",
        rf"start {NUM} km apart .* one at (\d+) km/h and the other at (\d+) km/h\.",
        lambda m: _n(m[1]) / (_n(m[2]) + _n(m[3])),
    ),
    (
        "interest",
        rf"deposits {MONEY} in a savings account that pays (\d+)% simple interest per year\. "
        rf"How much interest does it earn in (\d+) years\?",
        _interest,
    ),
    (
        "interest",
        rf"deposits {MONEY} in an account paying (\d+)% simple interest per year\. "
        rf"What is the balance after (\d+) years\?",
        _balance,
    ),
    (
        "interest",
        rf"puts {MONEY} into an account paying (\d+)% simple interest per year and {MONEY} "
        rf"into another paying (\d+)%\. What is the combined balance .* after (\d+) years\?",
        _two_accounts,
    ),
    (
        "interest",
        rf"borrows {MONEY} at (\d+)% simple interest per year for (\d+) years",
        _loan_payment,
    ),
    (
        "geometry",
        r"is (\d+) m long and (\d+) m wide\. What is its area",
        lambda m: _n(m[1]) * _n(m[2]),
    ),
    (
        "geometry",
        rf"pool is (\d+) m long and (\d+) m wide\. A path (\d+) m wide .* costs {MONEY} per",
        _path_cost,
    ),
    (
        "number_theory",
        r"units digit of \$(\d+)\^\{(\d+)\}\$",
        lambda m: Fraction(pow(int(m[1]), int(m[2]), 10)),
    ),
    (
        "probability",
        r"^Two fair six-sided dice are rolled\. What is the probability that the sum is (\d+)\?$",
        lambda m: _dice(lambda a, b: a + b == int(m[1])),
    ),
    (
        "probability",
        r"the sum is at least (\d+) or the two dice show the same number",
        lambda m: _dice(lambda a, b: a + b >= int(m[1]) or a == b),
    ),
    (
        "combinatorics",
        r"arrange (\d+) different .* in a row on a shelf",
        lambda m: Fraction(math.factorial(int(m[1]))),
    ),
]


def test_answers_rederived_from_question_text(many_rows: list[dict]) -> None:
    hits: Counter[int] = Counter()
    for row in [*many_rows, *demo_rows()]:
        for index, (family, pattern, compute) in enumerate(CHECKS):
            if row["family"] != family:
                continue
            match = re.search(pattern, row["question"])
            if match:
                assert Fraction(row["final"]) == compute(match), row
                hits[index] += 1
    missing = [CHECKS[i][1] for i in range(len(CHECKS)) if hits[i] == 0]
    assert not missing, missing
    assert len({CHECKS[i][0] for i in hits}) >= 3
