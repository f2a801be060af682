"""Tests for core.demo: the data file (core/demo.jsonl) is well formed, balanced and correct,
and the samples taken from it are deterministic and balanced too."""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections import Counter
from fractions import Fraction
from itertools import product
from statistics import mean

import pytest

from core.demo import DEMO_FILE, all_rows, demo_rows, ensure_demo
from core.proxy import TINY_VERSION
from core.records import iter_records
from core.workspace import Workspace

KEYS = {"id", "question", "answer", "final", "family", "difficulty"}
LEVELS = ("easy", "medium", "hard")
FINAL_RE = re.compile(r"(0|[1-9]\d*)(\.\d?[1-9])?|[1-9]\d*/[1-9]\d*")
MONEY = r"\$(\d[\d,]*(?:\.\d\d)?)"
NUM = r"(\d+(?:\.\d+)?)"


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return all_rows()


@pytest.fixture(scope="module")
def families(rows: list[dict]) -> list[str]:
    return sorted({r["family"] for r in rows})


def _lines(row: dict) -> list[str]:
    return row["answer"].split("\n")


def _assert_balanced(sample: list[dict], families: list[str]) -> None:
    """Family counts differ by at most one, and so do the levels within each family."""
    per_family = Counter(r["family"] for r in sample)
    counts = [per_family[f] for f in families]
    assert max(counts) - min(counts) <= 1, per_family
    for family in families:
        levels = Counter(r["difficulty"] for r in sample if r["family"] == family)
        counts = [levels[level] for level in LEVELS]
        assert max(counts) - min(counts) <= 1, (family, levels)


# ---------------------------------------------------------------------------
# The data file
# ---------------------------------------------------------------------------


def test_count_ids_and_fields(rows: list[dict]) -> None:
    assert len(rows) == 360
    assert [r["id"] for r in rows] == [f"demo-{i:04d}" for i in range(360)]
    assert all(set(r) == KEYS for r in rows)
    assert all(isinstance(r[k], str) for r in rows for k in KEYS)


def test_file_is_one_compact_json_object_a_line() -> None:
    """The form `json.dumps(row, ensure_ascii=False)` gives, so that an edit diffs as the
    lines it changes."""
    text = DEMO_FILE.read_text(encoding="utf-8")
    assert text.endswith("\n") and "\r" not in text
    for line in text.splitlines():
        assert line == json.dumps(json.loads(line), ensure_ascii=False)


def test_families_and_difficulties_balanced(rows: list[dict], families: list[str]) -> None:
    assert len(families) == 13
    assert {r["difficulty"] for r in rows} == set(LEVELS)
    _assert_balanced(rows, families)
    overall = Counter(r["difficulty"] for r in rows)
    assert max(overall.values()) - min(overall.values()) <= len(families)


def test_rows_are_shuffled(rows: list[dict], families: list[str]) -> None:
    first = [r["family"] for r in rows[: len(families)]]
    assert len(set(first)) < len(families)  # not one of each family in turn
    assert [r["family"] for r in rows] != sorted(r["family"] for r in rows)


def test_answer_ends_with_boxed_final(rows: list[dict]) -> None:
    for row in rows:
        lines = _lines(row)
        assert 2 <= len(lines) <= 6, row
        assert lines[-1] == f"The answer is \\boxed{{{row['final']}}}.", row
        assert all(line.strip() for line in lines), row
        assert FINAL_RE.fullmatch(row["final"]), row
        if "/" in row["final"]:
            value = Fraction(row["final"])
            assert row["final"] == f"{value.numerator}/{value.denominator}", row
            assert value.denominator != 1, row


def test_questions_unique(rows: list[dict]) -> None:
    questions = [r["question"] for r in rows]
    assert len(set(questions)) == len(questions)
    assert all(q.strip().endswith("?") or q.strip().endswith(")") for q in questions)


def test_hard_solutions_are_longer(rows: list[dict], families: list[str]) -> None:
    for family in [None, *families]:
        lengths = {
            level: mean(
                len(_lines(r))
                for r in rows
                if r["difficulty"] == level and family in (None, r["family"])
            )
            for level in LEVELS
        }
        assert lengths["hard"] > lengths["medium"] > lengths["easy"], family


def test_an_edit_of_the_file_comes_with_a_new_tiny_proxy_version() -> None:
    """The tiny proxies' tokenizer is trained on this file's text, so an edit changes the
    features of tiny-random; the feature cache keys on TINY_VERSION (core/proxy.py), which
    must change with it. Update both pins together."""
    digest = hashlib.sha256(DEMO_FILE.read_bytes()).hexdigest()
    assert (TINY_VERSION, digest) == (
        2,
        "f8684553cea91aec9733a77b1eb73f7d1702efe11f6ef3df507b782b924688cb",
    )


def test_ensure_demo_imports_the_file_once(tmp_path) -> None:
    ws = Workspace(tmp_path / "ws")
    info = ensure_demo(ws)
    assert (info.name, info.rows, info.source) == ("demo", 360, "built-in demo (core/demo.jsonl)")
    records = list(iter_records(info.path))
    assert [(r.id, r.prompt, r.response) for r in records] == [
        (row["id"], row["question"], row["answer"]) for row in all_rows()
    ]
    row = all_rows()[0]
    assert records[0].meta == {k: row[k] for k in ("final", "family", "difficulty")}
    assert ensure_demo(ws) == info  # already there: nothing imported again
    ws.delete_dataset("demo")
    assert ensure_demo(ws) is None  # deleted on purpose: stays deleted
    again = ensure_demo(ws, force=True)
    assert again.rows == 360 and again.fingerprint == info.fingerprint


# ---------------------------------------------------------------------------
# Samples: demo_rows
# ---------------------------------------------------------------------------


def test_all_rows_returns_copies() -> None:
    first = all_rows()
    first[0]["question"] = "changed"
    assert all_rows()[0]["question"] != "changed"


def test_sample_count_and_rows(rows: list[dict]) -> None:
    by_id = {r["id"]: r for r in rows}
    sample = demo_rows(50)
    assert len(sample) == 50 and len({r["id"] for r in sample}) == 50
    assert all(by_id[r["id"]] == r for r in sample)  # rows of the file, unchanged
    assert demo_rows(0) == []
    whole = demo_rows()
    assert sorted(r["id"] for r in whole) == [r["id"] for r in rows]
    assert [r["id"] for r in whole] != [r["id"] for r in rows]  # shuffled
    for n in (-1, 361):
        with pytest.raises(ValueError, match="the demo has 360 rows"):
            demo_rows(n)


def test_sample_deterministic_for_a_seed() -> None:
    assert demo_rows(seed=3) == demo_rows(seed=3)
    assert demo_rows(80, seed=11) == demo_rows(80, seed=11)


def test_different_seed_gives_different_rows() -> None:
    a, b = demo_rows(100), demo_rows(100, seed=1)
    assert len({r["id"] for r in a} & {r["id"] for r in b}) < 60


def test_global_random_state_untouched() -> None:
    random.seed(1234)
    state = random.getstate()
    demo_rows(100, seed=5)
    assert random.getstate() == state


@pytest.mark.parametrize("n", [1, 13, 20, 50, 120, 200, 355, 360])
def test_samples_are_balanced(n: int, families: list[str]) -> None:
    for seed in (0, 7):
        _assert_balanced(demo_rows(n, seed=seed), families)


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


def test_answers_rederived_from_question_text(rows: list[dict]) -> None:
    hits: Counter[int] = Counter()
    for row in rows:
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
