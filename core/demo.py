"""Demo data: varied math word problems with worked, verified solutions.

``demo_rows`` builds a deterministic set of grade-school to competition-style word problems,
spread evenly over problem families and difficulty levels. Every family has several story
templates, and the difficulty level changes the problem itself (more steps, bigger numbers,
an extra condition). All answers are computed in code from the generated numbers with exact
arithmetic (``fractions.Fraction``), so the worked solutions are correct by construction.

Only private ``random.Random`` instances are used; the global random state is never touched.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from fractions import Fraction
from itertools import product
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import UserError
from core.files import atomic_write

if TYPE_CHECKING:
    from core.workspace import DatasetInfo, Workspace

Number = int | Fraction
Problem = tuple[str, list[str], str]  # question, solution steps (without last line), final
Template = Callable[[random.Random, str], Problem]

DIFFICULTIES: tuple[str, ...] = ("easy", "medium", "hard")
_MAX_TRIES = 500

NAMES = (
    "Ava", "Ben", "Chloe", "Diego", "Emma", "Farah", "Gabe", "Hana", "Ivan", "Jada",
    "Kenji", "Lena", "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tariq",
    "Uma", "Victor", "Wen", "Ximena", "Yusuf", "Zoe", "Liam", "Mia", "Noah", "Sofia",
    "Arjun", "Leila", "Kofi", "Ines", "Marek", "Aiko",
)  # fmt: skip


# ---------------------------------------------------------------------------
# Formatting helpers
# ---------------------------------------------------------------------------


def _clean(x: Number) -> bool:
    """True if ``x`` has at most two decimal places."""
    return (Fraction(x) * 100).denominator == 1


def _num(x: Number) -> str:
    """Format an exact number: "42", "12.5" (at most 2 decimals) or "3/7" in lowest terms."""
    x = Fraction(x)
    if x.denominator == 1:
        return str(x.numerator)
    if not _clean(x):
        return f"{x.numerator}/{x.denominator}"
    sign = "-" if x < 0 else ""
    whole, cents = divmod(abs(x.numerator) * 100 // x.denominator, 100)
    return f"{sign}{whole}.{cents:02d}".rstrip("0")


def _frac(x: Number) -> str:
    """Format an exact number as an integer or a fraction in lowest terms."""
    x = Fraction(x)
    return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"


def _money(x: Number) -> str:
    """Format a dollar amount: "$1,200" or "$12.50"."""
    x = Fraction(x)
    if not _clean(x):
        raise ValueError(f"not a whole number of cents: {x}")
    if x.denominator == 1:
        return f"${x.numerator:,}"
    whole, cents = divmod(x.numerator * 100 // x.denominator, 100)
    return f"${whole:,}.{cents:02d}"


def _plural(n: Number, singular: str, plural: str | None = None) -> str:
    """A count with the right noun form, e.g. "1 senior" or "3 seniors"."""
    word = singular if n == 1 else (plural or singular + "s")
    return f"{_num(n)} {word}"


def _hours(x: Number) -> str:
    """A number of hours, e.g. "1 hour" or "2.5 hours"."""
    return _plural(x, "hour")


def _ratio(num: int, den: int) -> str:
    """A probability as "num/den", followed by its lowest terms when they differ."""
    reduced = _frac(Fraction(num, den))
    return f"{num}/{den}" if reduced == f"{num}/{den}" else f"{num}/{den} = {reduced}"


def _factorize(n: int) -> dict[int, int]:
    """Prime factorization of ``n`` as {prime: exponent}."""
    factors: dict[int, int] = {}
    p = 2
    while p * p <= n:
        while n % p == 0:
            factors[p] = factors.get(p, 0) + 1
            n //= p
        p += 1
    if n > 1:
        factors[n] = factors.get(n, 0) + 1
    return factors


def _factor_str(n: int) -> str:
    """Prime factorization written out, e.g. "2^2 × 3 × 5"."""
    parts = [f"{p}^{e}" if e > 1 else str(p) for p, e in sorted(_factorize(n).items())]
    return " × ".join(parts)


def _fact_str(n: int) -> str:
    """Factorial written out, e.g. "4! = 4 × 3 × 2 × 1 = 24"."""
    return f"{n}! = {' × '.join(str(k) for k in range(n, 0, -1))} = {math.factorial(n)}"


def _name(rng: random.Random) -> str:
    return rng.choice(NAMES)


def _halves(rng: random.Random, lo: int, hi: int) -> Fraction:
    """A random multiple of 1/2 between ``lo`` and ``hi``."""
    return Fraction(rng.randint(2 * lo, 2 * hi), 2)


# ---------------------------------------------------------------------------
# Shopping totals
# ---------------------------------------------------------------------------

_GOODS = (
    ("notebooks", 2, 6), ("pens", 1, 3), ("apples", 1, 2), ("muffins", 2, 4),
    ("candles", 3, 8), ("pairs of socks", 2, 5), ("comic books", 3, 9),
    ("bags of rice", 4, 12), ("plant pots", 3, 10), ("packs of batteries", 2, 6),
)  # fmt: skip
_VENUES = ("zoo", "science museum", "aquarium", "water park", "planetarium", "botanical garden")
_PACK_GOODS = ("stickers", "pencils", "balloons", "paper cups", "markers", "tennis balls")


def _shop_basket(rng: random.Random, level: str) -> Problem:
    """Buying several items, with a coupon and change at the hard level."""
    name = _name(rng)
    (item1, lo1, hi1), (item2, lo2, hi2) = rng.sample(_GOODS, 2)
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    p, q = _halves(rng, lo1, hi1), _halves(rng, lo2, hi2)
    cost1, cost2 = a * p, b * q
    if level == "easy":
        question = f"{name} buys {a} {item1} at {_money(p)} each. How much does {name} spend?"
        return question, [f"{a} × {_money(p)} = {_money(cost1)}"], _num(cost1)
    total = cost1 + cost2
    steps = [
        f"{item1.capitalize()}: {a} × {_money(p)} = {_money(cost1)}",
        f"{item2.capitalize()}: {b} × {_money(q)} = {_money(cost2)}",
        f"Total: {_money(cost1)} + {_money(cost2)} = {_money(total)}",
    ]
    if level == "medium":
        question = (
            f"At the market, {name} picks up {a} {item1} priced at {_money(p)} each and "
            f"{b} {item2} priced at {_money(q)} each. What is the total cost?"
        )
        return question, steps, _num(total)
    coupon = rng.randint(2, 6)
    after = total - coupon
    bill = next(v for v in (20, 50, 100, 200, 500) if v > after)
    change = bill - after
    question = (
        f"{name} buys {a} {item1} at {_money(p)} each and {b} {item2} at {_money(q)} each, "
        f"uses a coupon for {_money(coupon)} off the whole order, and pays with a "
        f"{_money(bill)} bill. How much change does {name} get back?"
    )
    steps += [
        f"After the coupon: {_money(total)} - {_money(coupon)} = {_money(after)}",
        f"Change: {_money(bill)} - {_money(after)} = {_money(change)}",
    ]
    return question, steps, _num(change)


def _shop_tickets(rng: random.Random, level: str) -> Problem:
    """Entrance tickets for a group, with senior discounts and parking at the hard level."""
    name, venue = _name(rng), rng.choice(_VENUES)
    adult = 2 * rng.randint(5, 16)
    child = rng.randint(4, adult // 2 + 3)
    if level == "easy":
        k = rng.randint(2, 6)
        cost = k * adult
        bill = next(v for v in (20, 50, 100, 200) if v > cost)
        question = (
            f"Tickets to the {venue} cost {_money(adult)} each. {name} buys {k} tickets "
            f"and pays with a {_money(bill)} bill. How much change does {name} receive?"
        )
        steps = [
            f"Cost: {k} × {_money(adult)} = {_money(cost)}",
            f"Change: {_money(bill)} - {_money(cost)} = {_money(bill - cost)}",
        ]
        return question, steps, _num(bill - cost)
    a, c = rng.randint(2, 6), rng.randint(2, 8)
    adults, children = a * adult, c * child
    steps = [
        f"Adults: {a} × {_money(adult)} = {_money(adults)}",
        f"Children: {c} × {_money(child)} = {_money(children)}",
    ]
    if level == "medium":
        total = adults + children
        question = (
            f"At the {venue}, an adult ticket costs {_money(adult)} and a child ticket costs "
            f"{_money(child)}. A group of {a} adults and {c} children visits. "
            f"How much do they pay for tickets in total?"
        )
        steps.append(f"Total: {_money(adults)} + {_money(children)} = {_money(total)}")
        return question, steps, _num(total)
    s, parking = rng.randint(1, 4), rng.randint(5, 15)
    senior = Fraction(adult, 2)
    seniors = s * senior
    total = adults + children + seniors + parking
    question = (
        f"The {venue} charges {_money(adult)} per adult and {_money(child)} per child, and "
        f"seniors pay half the adult price. {name} brings {a} adults, {c} children and "
        f"{_plural(s, 'senior')}, and also pays {_money(parking)} for parking. What is the total cost?"
    )
    steps += [
        f"Senior price: {_money(adult)} ÷ 2 = {_money(senior)}",
        f"Seniors: {s} × {_money(senior)} = {_money(seniors)}",
        f"Total: {_money(adults)} + {_money(children)} + {_money(seniors)} + "
        f"{_money(parking)} = {_money(total)}",
    ]
    return question, steps, _num(total)


def _shop_packs(rng: random.Random, level: str) -> Problem:
    """Buying goods sold in packs, with leftover single items at the hard level."""
    name, item = _name(rng), rng.choice(_PACK_GOODS)
    k = rng.choice((4, 5, 6, 8, 10, 12))
    price = _halves(rng, 3, 15)
    if level == "easy":
        j = rng.randint(2, 9)
        question = f"A pack of {k} {item} costs {_money(price)}. How much do {j} packs cost?"
        return question, [f"{j} × {_money(price)} = {_money(j * price)}"], _num(j * price)
    if level == "medium":
        packs = rng.randint(3, 12)
        need = packs * k
        question = (
            f"{item.capitalize()} come in boxes of {k}, and each box costs {_money(price)}. "
            f"{name} needs exactly {need} {item} for a school event. How much will the boxes cost?"
        )
        steps = [
            f"Boxes needed: {need} ÷ {k} = {packs}",
            f"Cost: {packs} × {_money(price)} = {_money(packs * price)}",
        ]
        return question, steps, _num(packs * price)
    while True:
        single = Fraction(rng.randint(2, 8), 4)
        if single * k > price:
            break
        price = _halves(rng, 3, 15)
    need = rng.randint(3, 12) * k + rng.randint(1, k - 1)
    packs, rest = divmod(need, k)
    total = packs * price + rest * single
    question = (
        f"A shop sells {item} in packs of {k} for {_money(price)} or individually for "
        f"{_money(single)} each. {name} needs exactly {need} {item}, buys as many packs as "
        f"possible and the rest individually. How much does {name} spend?"
    )
    steps = [
        f"{need} ÷ {k} = {packs} packs with {rest} left over",
        f"Packs: {packs} × {_money(price)} = {_money(packs * price)}",
        f"Singles: {rest} × {_money(single)} = {_money(rest * single)}",
        f"Total: {_money(packs * price)} + {_money(rest * single)} = {_money(total)}",
    ]
    return question, steps, _num(total)


# ---------------------------------------------------------------------------
# Percentages and discounts
# ---------------------------------------------------------------------------

_BIG_ITEMS = (
    "bicycle", "jacket", "tablet", "desk lamp", "pair of boots", "backpack", "guitar",
    "coffee maker", "tent", "camera", "bookshelf", "watch",
)  # fmt: skip
_GROUPS = (
    ("at a school", "students", "ride the bus", "walk", "are driven by family"),
    ("in a library", "books", "are novels", "are biographies", "are reference books"),
    ("in an orchard", "trees", "are apple trees", "are pear trees", "are cherry trees"),
    ("in a parking lot", "vehicles", "are cars", "are vans", "are motorcycles"),
    ("in a survey", "people", "prefer tea", "prefer coffee", "prefer juice"),
    ("at a summer camp", "campers", "choose swimming", "choose hiking", "choose crafts"),
)
_TOWNS = ("Millbrook", "Cedar Falls", "Port Ellis", "Riverside", "Oakdale", "Fairhaven")


def _pct_sale(rng: random.Random, level: str) -> Problem:
    """Sale prices: one discount, discount plus tax, or two discounts plus tax."""
    name, item = _name(rng), rng.choice(_BIG_ITEMS)
    while True:
        price = 20 * rng.randint(2, 30)
        d = rng.choice((10, 15, 20, 25, 30, 40, 50))
        off = Fraction(price * d, 100)
        sale = price - off
        steps = [
            f"Discount: {d}% of {_money(price)} = {_money(off)}",
            f"Sale price: {_money(price)} - {_money(off)} = {_money(sale)}",
        ]
        if level == "easy":
            question = (
                f"A {item} is priced at {_money(price)}. During a sale it is marked {d}% off. "
                f"What is the sale price?"
            )
            return question, steps, _num(sale)
        t = rng.choice((5, 6, 8, 10))
        factor = Fraction(100 + t, 100)
        if level == "medium":
            total = sale * factor
            question = (
                f"{name} wants a {item} priced at {_money(price)}. It is {d}% off this week, "
                f"and {t}% sales tax is added to the discounted price. How much does {name} pay?"
            )
            steps.append(f"With tax: {_money(sale)} × {_num(factor)} = {_money(total)}")
            return question, steps, _num(total)
        d2 = rng.choice((5, 10, 20, 25))
        off2 = sale * d2 / 100
        sale2 = sale - off2
        total = sale2 * factor
        if not (_clean(off2) and _clean(total)):
            continue
        question = (
            f"A {item} costs {_money(price)}. The store takes {d}% off, then a member coupon "
            f"takes another {d2}% off the reduced price, and finally {t}% sales tax is added. "
            f"What does {name} pay for the {item}?"
        )
        steps += [
            f"Coupon: {d2}% of {_money(sale)} = {_money(off2)}",
            f"After coupon: {_money(sale)} - {_money(off2)} = {_money(sale2)}",
            f"With tax: {_money(sale2)} × {_num(factor)} = {_money(total)}",
        ]
        return question, steps, _num(total)


def _pct_groups(rng: random.Random, level: str) -> Problem:
    """Percent of a group, then percent of the remainder."""
    place, items, verb1, verb2, verb3 = rng.choice(_GROUPS)
    while True:
        n = 20 * rng.randint(5, 60)
        p = rng.choice(range(10, 75, 5))
        first = n * p // 100
        if level == "easy":
            question = f"Of the {n} {items} {place}, {p}% {verb1}. How many {items} {verb1}?"
            return question, [f"{p}% of {n} = {n} × {p} ÷ 100 = {first}"], _num(first)
        rest = n - first
        q = rng.choice(range(10, 95, 5))
        second = Fraction(rest * q, 100)
        if second.denominator != 1:
            continue
        steps = [
            f"{p}% of {n} = {first}",
            f"Remaining: {n} - {first} = {rest}",
            f"{q}% of {rest} = {second}",
        ]
        if level == "medium":
            question = (
                f"Of the {n} {items} {place}, {p}% {verb1}, and {q}% of the remaining "
                f"{items} {verb2}. How many {items} {verb2}?"
            )
            return question, steps, _num(second)
        third = rest - second
        if third == first:
            continue
        diff = abs(first - third)
        question = (
            f"Of the {n} {items} {place}, {p}% {verb1}. Of the rest, {q}% {verb2} and the "
            f"others {verb3}. What is the difference between the number of {items} that "
            f"{verb1} and the number that {verb3}?"
        )
        big, small = max(first, third), min(first, third)
        steps += [f"Others: {rest} - {second} = {third}", f"Difference: {big} - {small} = {diff}"]
        return question, steps, _num(diff)


def _pct_change(rng: random.Random, level: str) -> Problem:
    """Percent change: single change, two-year population change, three-day stock change."""
    while True:
        if level == "easy":
            item = rng.choice(_BIG_ITEMS)
            old = 20 * rng.randint(2, 40)
            p = rng.choice(range(5, 55, 5))
            up = rng.random() < 0.5
            new = old + old * p // 100 if up else old - old * p // 100
            verb, noun = ("went up", "increase") if up else ("dropped", "decrease")
            question = (
                f"The price of a {item} {verb} from {_money(old)} to {_money(new)}. "
                f"By what percent did the price {noun}?"
            )
            diff = abs(new - old)
            steps = [
                f"Change: {_money(max(old, new))} - {_money(min(old, new))} = {_money(diff)}",
                f"Percent: {diff} ÷ {old} × 100 = {p}%",
            ]
            return question, steps, _num(p)
        if level == "medium":
            town = rng.choice(_TOWNS)
            n = 100 * rng.randint(20, 300)
            p, q = rng.randint(2, 20), rng.randint(2, 20)
            grows = rng.random() < 0.6
            f1 = Fraction(100 + p, 100)
            f2 = Fraction(100 + q, 100) if grows else Fraction(100 - q, 100)
            n1 = n * f1
            n2 = n1 * f2
            if n1.denominator != 1 or n2.denominator != 1:
                continue
            second = f"grew by {q}%" if grows else f"fell by {q}%"
            question = (
                f"The population of {town} was {n:,}. It grew by {p}% in the first year and "
                f"{second} in the second year. What was the population after two years?"
            )
            steps = [
                f"After year 1: {n} × {_num(f1)} = {n1}",
                f"After year 2: {n1} × {_num(f2)} = {n2}",
            ]
            return question, steps, _num(n2)
        name = _name(rng)
        start = 10 * rng.randint(2, 30)
        p, q, r = rng.choice((10, 20, 25, 50)), rng.choice((10, 20, 25)), rng.choice((5, 10, 20))
        prices = [Fraction(start)]
        for factor in (Fraction(100 + p, 100), Fraction(100 - q, 100), Fraction(100 + r, 100)):
            prices.append(prices[-1] * factor)
        end = prices[-1]
        pct = (end - start) / start * 100
        if end <= start or not all(_clean(x) for x in [*prices, pct]):
            continue
        question = (
            f"{name} buys a share for {_money(start)}. Its price rises {p}% on Monday, falls "
            f"{q}% on Tuesday, and rises {r}% on Wednesday. By what percent is the share's "
            f"price higher on Wednesday than the purchase price?"
        )
        steps = [
            f"Monday: {_money(start)} × {_num(Fraction(100 + p, 100))} = {_money(prices[1])}",
            f"Tuesday: {_money(prices[1])} × {_num(Fraction(100 - q, 100))} = {_money(prices[2])}",
            f"Wednesday: {_money(prices[2])} × {_num(Fraction(100 + r, 100))} = {_money(end)}",
            f"Gain: {_money(end)} - {_money(start)} = {_money(end - start)}",
            f"Percent: {_num(end - start)} ÷ {start} × 100 = {_num(pct)}%",
        ]
        return question, steps, _num(pct)


# ---------------------------------------------------------------------------
# Rates: speed, distance, time
# ---------------------------------------------------------------------------

_VEHICLES = ("car", "bus", "train", "truck", "motorbike", "delivery van")
_PLACES = ("library", "park", "school", "market", "beach", "stadium", "museum")


def _rate_trip(rng: random.Random, level: str) -> Problem:
    """Distance from speed and time, or a two-leg trip (total time / average speed)."""
    vehicle = rng.choice(_VEHICLES)
    if level == "easy":
        v, t = 10 * rng.randint(4, 12), _halves(rng, 2, 6)
        question = (
            f"A {vehicle} travels at a steady {v} km/h for {_hours(t)}. "
            f"How far does it travel, in kilometers?"
        )
        return question, [f"Distance = {v} × {_num(t)} = {_num(v * t)} km"], _num(v * t)
    while True:
        v1, v2 = rng.sample(range(30, 130, 10), 2)
        t1, t2 = _halves(rng, 1, 4), _halves(rng, 1, 4)
        d1, d2 = v1 * t1, v2 * t2
        steps = [
            f"First part: {_num(d1)} ÷ {v1} = {_hours(t1)}",
            f"Second part: {_num(d2)} ÷ {v2} = {_hours(t2)}",
        ]
        if level == "medium":
            question = (
                f"A {vehicle} drives {_num(d1)} km at {v1} km/h and then {_num(d2)} km at "
                f"{v2} km/h. How many hours does the whole trip take?"
            )
            steps.append(f"Total: {_num(t1)} + {_num(t2)} = {_hours(t1 + t2)}")
            return question, steps, _num(t1 + t2)
        avg = (d1 + d2) / (t1 + t2)
        if not _clean(avg):
            continue
        question = (
            f"A {vehicle} drives {_num(d1)} km at {v1} km/h and then {_num(d2)} km at "
            f"{v2} km/h. What is its average speed for the whole trip, in km/h?"
        )
        steps += [
            f"Total distance: {_num(d1)} + {_num(d2)} = {_num(d1 + d2)} km",
            f"Total time: {_num(t1)} + {_num(t2)} = {_hours(t1 + t2)}",
            f"Average speed: {_num(d1 + d2)} ÷ {_num(t1 + t2)} = {_num(avg)} km/h",
        ]
        return question, steps, _num(avg)


def _rate_two_trains(rng: random.Random, level: str) -> Problem:
    """Time from distance and speed, trains meeting, or a faster train catching up."""
    if level == "easy":
        name = _name(rng)
        v, t = rng.randint(8, 25), _halves(rng, 1, 5)
        d = v * t
        question = (
            f"{name} cycles {_num(d)} km at a steady {v} km/h. How many hours does the ride take?"
        )
        return question, [f"Time = {_num(d)} ÷ {v} = {_hours(t)}"], _num(t)
    if level == "medium":
        v1, v2 = rng.sample(range(40, 130, 5), 2)
        t = _halves(rng, 1, 5)
        d = (v1 + v2) * t
        question = (
            f"Two trains start {_num(d)} km apart and travel toward each other on parallel "
            f"tracks, one at {v1} km/h and the other at {v2} km/h. "
            f"After how many hours do they meet?"
        )
        steps = [
            f"Closing speed: {v1} + {v2} = {v1 + v2} km/h",
            f"Time: {_num(d)} ÷ {v1 + v2} = {_hours(t)}",
        ]
        return question, steps, _num(t)
    while True:
        v1, head_hours, catch = 10 * rng.randint(4, 10), rng.randint(1, 3), rng.randint(1, 5)
        gap = v1 * head_hours
        if gap % catch:
            continue
        v2 = v1 + gap // catch
        dist = v2 * catch
        question = (
            f"A freight train leaves a station at {v1} km/h. {_hours(head_hours)} later an "
            f"express train leaves the same station on a parallel track in the same direction "
            f"at {v2} km/h. How many kilometers from the station does the express catch up?"
        )
        steps = [
            f"Head start: {v1} × {head_hours} = {gap} km",
            f"Closing speed: {v2} - {v1} = {v2 - v1} km/h",
            f"Time to catch up: {gap} ÷ {v2 - v1} = {_hours(catch)}",
            f"Distance: {v2} × {catch} = {dist} km",
        ]
        return question, steps, _num(dist)


def _rate_minutes(rng: random.Random, level: str) -> Problem:
    """Everyday trips measured in minutes."""
    name, place = _name(rng), rng.choice(_PLACES)
    while True:
        if level == "easy":
            v, m = rng.randint(3, 6), rng.choice((15, 20, 30, 40, 45, 50, 90))
            hours = Fraction(m, 60)
            d = v * hours
            if not _clean(d):
                continue
            question = (
                f"{name} walks to the {place} at {v} km/h and the walk takes {m} minutes. "
                f"How many kilometers away is the {place}?"
            )
            steps = [
                f"Time: {m} ÷ 60 = {_hours(hours)}",
                f"Distance: {v} × {_frac(hours)} = {_num(d)} km",
            ]
            return question, steps, _num(d)
        if level == "medium":
            d = rng.randint(3, 12)
            v1, v2 = rng.sample((10, 12, 15, 18, 20, 24, 30), 2)
            m1, m2 = Fraction(d * 60, v1), Fraction(d * 60, v2)
            if not (_clean(m1) and _clean(m2)):
                continue
            question = (
                f"{name} bikes {d} km to the {place} at {v1} km/h and returns along the same "
                f"road at {v2} km/h. How many minutes does the round trip take?"
            )
            steps = [
                f"There: {d} ÷ {v1} × 60 = {_num(m1)} minutes",
                f"Back: {d} ÷ {v2} × 60 = {_num(m2)} minutes",
                f"Total: {_num(m1)} + {_num(m2)} = {_num(m1 + m2)} minutes",
            ]
            return question, steps, _num(m1 + m2)
        v1, v2 = rng.choice((4, 5, 6)), rng.choice((12, 15, 18, 20))
        d1, d2 = _halves(rng, 1, 3), rng.randint(2, 10)
        wait = rng.randint(2, 9)
        m1, m2 = d1 * 60 / v1, d2 * Fraction(60, v2)
        if not (_clean(m1) and _clean(m2)):
            continue
        total_d = d1 + d2
        total = m1 + m2 + wait
        question = (
            f"The trip from {name}'s home to the {place} is {_num(total_d)} km. {name} walks "
            f"the first {_num(d1)} km at {v1} km/h, waits {wait} minutes at a crossing, and "
            f"cycles the rest at {v2} km/h. How many minutes does the whole trip take?"
        )
        steps = [
            f"Cycling distance: {_num(total_d)} - {_num(d1)} = {d2} km",
            f"Walking: {_num(d1)} ÷ {v1} × 60 = {_num(m1)} minutes",
            f"Cycling: {d2} ÷ {v2} × 60 = {_num(m2)} minutes",
            f"Total: {_num(m1)} + {wait} + {_num(m2)} = {_num(total)} minutes",
        ]
        return question, steps, _num(total)


# ---------------------------------------------------------------------------
# Work and rates
# ---------------------------------------------------------------------------

_CONTAINERS = ("water tank", "pool", "fish pond", "rain barrel", "cistern")
_PRODUCTS = ("bottles", "toy cars", "bolts", "cookies", "T-shirts", "notebooks")
_JOBS = ("paint a fence", "tile a kitchen floor", "weed a garden", "wash the team bus")


def _work_pipes(rng: random.Random, level: str) -> Problem:
    """Filling tanks with one hose, two pipes, or two pipes and a drain."""
    container = rng.choice(_CONTAINERS)
    if level == "easy":
        r, t = rng.randint(5, 40), rng.randint(6, 60)
        question = (
            f"A hose fills a {r * t}-liter {container} at {r} liters per minute. "
            f"How many minutes does it take to fill it from empty?"
        )
        return question, [f"Time = {r * t} ÷ {r} = {t} minutes"], _num(t)
    while True:
        a, b = rng.sample(range(2, 13), 2)
        ra, rb = Fraction(1, a), Fraction(1, b)
        steps = [f"Pipe A fills 1/{a} of the {container} per hour", f"Pipe B fills 1/{b} per hour"]
        if level == "medium":
            both = ra + rb
            question = (
                f"Pipe A can fill a {container} in {a} hours and pipe B can fill it in {b} "
                f"hours. How many hours does it take to fill it with both pipes open?"
            )
            steps += [
                f"Together: 1/{a} + 1/{b} = {_frac(both)} per hour",
                f"Time: 1 ÷ {_frac(both)} = {_hours(1 / both)}",
            ]
            return question, steps, _num(1 / both)
        c = rng.randint(3, 20)
        net = ra + rb - Fraction(1, c)
        if net <= 0 or c in (a, b):
            continue
        question = (
            f"Pipe A can fill a {container} in {a} hours and pipe B in {b} hours, while a "
            f"drain empties a full {container} in {c} hours. If both pipes and the drain are "
            f"open, how many hours does it take to fill the empty {container}?"
        )
        steps += [
            f"The drain empties 1/{c} per hour",
            f"Net rate: 1/{a} + 1/{b} - 1/{c} = {_frac(net)} per hour",
            f"Time: 1 ÷ {_frac(net)} = {_hours(1 / net)}",
        ]
        return question, steps, _num(1 / net)


def _work_people(rng: random.Random, level: str) -> Problem:
    """Workers sharing a job: inverse proportion, two people together, one leaving early."""
    if level == "easy":
        while True:
            w, d, w2 = rng.randint(2, 12), rng.randint(2, 20), rng.randint(2, 16)
            if w != w2 and (w * d) % w2 == 0:
                break
        question = (
            f"It takes {w} workers {d} days to build a stone wall. Working at the same rate, "
            f"how many days would {w2} workers need?"
        )
        steps = [f"Work: {w} × {d} = {w * d} worker-days", f"Days: {w * d} ÷ {w2} = {w * d // w2}"]
        return question, steps, _num(w * d // w2)
    first, second = rng.sample(NAMES, 2)
    job = rng.choice(_JOBS)
    while True:
        a, b = rng.sample(range(2, 16), 2)
        ra, rb = Fraction(1, a), Fraction(1, b)
        both = ra + rb
        if level == "medium":
            question = (
                f"{first} can {job} in {a} hours, and {second} can do it in {b} hours. "
                f"How many hours will it take them working together?"
            )
            steps = [
                f"Rates: 1/{a} and 1/{b} of the job per hour",
                f"Together: 1/{a} + 1/{b} = {_frac(both)} per hour",
                f"Time: 1 ÷ {_frac(both)} = {_hours(1 / both)}",
            ]
            return question, steps, _num(1 / both)
        t = rng.randint(1, 4)
        done = t * both
        if done >= 1:
            continue
        left = 1 - done
        question = (
            f"{first} can {job} in {a} hours, and {second} can do it in {b} hours. They work "
            f"together for {_hours(t)}, then {first} leaves. How many more hours does {second} "
            f"need to finish the job alone?"
        )
        steps = [
            f"Rates: 1/{a} and 1/{b} of the job per hour",
            f"Together: 1/{a} + 1/{b} = {_frac(both)} per hour",
            f"Done in {_hours(t)}: {t} × {_frac(both)} = {_frac(done)}",
            f"Left: 1 - {_frac(done)} = {_frac(left)}",
            f"{second}'s time: {_frac(left)} ÷ 1/{b} = {_hours(left * b)}",
        ]
        return question, steps, _num(left * b)


def _work_machines(rng: random.Random, level: str) -> Problem:
    """Factory machines producing items at given rates."""
    item = rng.choice(_PRODUCTS)
    r1, r2 = rng.sample(range(20, 200, 5), 2)
    if level == "easy":
        h = rng.randint(2, 12)
        question = (
            f"A machine makes {r1} {item} per hour. How many {item} does it make in {h} hours?"
        )
        return question, [f"{r1} × {h} = {r1 * h}"], _num(r1 * h)
    if level == "medium":
        t = _halves(rng, 1, 8)
        need = (r1 + r2) * t
        question = (
            f"Machine A makes {r1} {item} per hour and machine B makes {r2} {item} per hour. "
            f"Working together, how many hours do they need to make {_num(need)} {item}?"
        )
        steps = [
            f"Combined rate: {r1} + {r2} = {r1 + r2} per hour",
            f"Time: {_num(need)} ÷ {r1 + r2} = {_hours(t)}",
        ]
        return question, steps, _num(t)
    h, t = rng.randint(1, 5), _halves(rng, 1, 6)
    alone = r1 * h
    together = (r1 + r2) * t
    need = alone + together
    question = (
        f"An order calls for {_num(need)} {item}. Machine A, which makes {r1} {item} per hour, "
        f"works alone for {_hours(h)}; then machine B, which makes {r2} per hour, joins it. "
        f"How many hours after machine A started is the order finished?"
    )
    steps = [
        f"A alone: {r1} × {h} = {alone}",
        f"Remaining: {_num(need)} - {alone} = {_num(together)}",
        f"Combined rate: {r1} + {r2} = {r1 + r2} per hour",
        f"Time together: {_num(together)} ÷ {r1 + r2} = {_hours(t)}",
        f"Total: {h} + {_num(t)} = {_hours(h + t)}",
    ]
    return question, steps, _num(h + t)


# ---------------------------------------------------------------------------
# Area and perimeter
# ---------------------------------------------------------------------------

_TRIPLES = ((3, 4, 5), (5, 12, 13), (8, 15, 17), (7, 24, 25), (20, 21, 29), (9, 40, 41))
_PLOTS = ("vegetable garden", "playground", "patio", "parking area", "flower bed", "lawn")


def _geo_rectangle(rng: random.Random, level: str) -> Problem:
    """Rectangular plots: area, fencing with a gate, or a surrounding path."""
    plot = rng.choice(_PLOTS)
    length, width = rng.randint(6, 40), rng.randint(4, 25)
    if level == "easy":
        question = (
            f"A rectangular {plot} is {length} m long and {width} m wide. "
            f"What is its area in square meters?"
        )
        return question, [f"Area = {length} × {width} = {length * width} m²"], _num(length * width)
    if level == "medium":
        cost, gate = _halves(rng, 4, 15), rng.randint(1, 4)
        perimeter = 2 * (length + width)
        fence = perimeter - gate
        question = (
            f"A rectangular {plot} measures {length} m by {width} m. Fencing costs "
            f"{_money(cost)} per meter, and a {gate} m gate opening needs no fencing. "
            f"How much does the fencing cost?"
        )
        steps = [
            f"Perimeter: 2 × ({length} + {width}) = {perimeter} m",
            f"Fencing: {perimeter} - {gate} = {fence} m",
            f"Cost: {fence} × {_money(cost)} = {_money(fence * cost)}",
        ]
        return question, steps, _num(fence * cost)
    path, price = rng.randint(1, 3), rng.randint(8, 40)
    outer_l, outer_w = length + 2 * path, width + 2 * path
    area = outer_l * outer_w - length * width
    question = (
        f"A rectangular pool is {length} m long and {width} m wide. A path {path} m wide runs "
        f"all the way around the outside of it. Tiling the path costs {_money(price)} per square "
        f"meter. How much does it cost to tile the path?"
    )
    steps = [
        f"Outer size: ({length} + 2 × {path}) by ({width} + 2 × {path}) = {outer_l} by {outer_w} m",
        f"Outer area: {outer_l} × {outer_w} = {outer_l * outer_w} m²",
        f"Path area: {outer_l * outer_w} - {length} × {width} = {area} m²",
        f"Cost: {area} × {_money(price)} = {_money(area * price)}",
    ]
    return question, steps, _num(area * price)


def _geo_triangle(rng: random.Random, level: str) -> Problem:
    """Triangles: area, right-triangle perimeter, altitude to the hypotenuse."""
    if level == "easy":
        thing = rng.choice(("sail", "garden bed", "pennant", "roof gable", "kite panel"))
        base, height = rng.randint(4, 30), rng.randint(3, 24)
        area = Fraction(base * height, 2)
        question = (
            f"A triangular {thing} has a base of {base} cm and a height of {height} cm. "
            f"What is its area in square centimeters?"
        )
        return question, [f"Area = {base} × {height} ÷ 2 = {_num(area)} cm²"], _num(area)
    a, b, c = rng.choice(_TRIPLES)
    k = rng.randint(1, 6)
    a, b, c = (a * k, b * k, c * k) if rng.random() < 0.5 else (b * k, a * k, c * k)
    steps = [
        f"Hypotenuse² = {a}² + {b}² = {a * a} + {b * b} = {c * c}",
        f"Hypotenuse = √{c * c} = {c}",
    ]
    if level == "medium":
        question = (
            f"A ramp forms a right triangle: it rises {a} dm over a horizontal run of {b} dm. "
            f"What is the perimeter of this triangle, in decimeters?"
        )
        steps.append(f"Perimeter: {a} + {b} + {c} = {a + b + c} dm")
        return question, steps, _num(a + b + c)
    area = Fraction(a * b, 2)
    alt = 2 * area / c
    question = (
        f"A right triangle has legs of length {a} and {b}. What is the length of the altitude "
        f"drawn from the right angle to the hypotenuse?"
    )
    steps += [
        f"Area = {a} × {b} ÷ 2 = {_num(area)}",
        f"Altitude = 2 × area ÷ hypotenuse = {_num(2 * area)} ÷ {c} = {_num(alt)}",
    ]
    return question, steps, _num(alt)


def _geo_room(rng: random.Random, level: str) -> Problem:
    """Squares and rooms: side from perimeter, carpeting, and painting walls."""
    if level == "easy":
        thing = rng.choice(("tile", "napkin", "photo frame", "garden plot", "chessboard"))
        side = rng.randint(3, 40)
        question = (
            f"A square {thing} has a perimeter of {4 * side} cm. What is its area in square "
            f"centimeters?"
        )
        steps = [f"Side: {4 * side} ÷ 4 = {side} cm", f"Area: {side} × {side} = {side * side} cm²"]
        return question, steps, _num(side * side)
    name = _name(rng)
    length, width = rng.randint(9, 24), rng.randint(8, 18)
    if level == "medium":
        price, fee = _halves(rng, 2, 6), 5 * rng.randint(4, 20)
        area = length * width
        question = (
            f"{name}'s bedroom is {length} ft by {width} ft. Carpet costs {_money(price)} per "
            f"square foot plus a flat installation fee of {_money(fee)}. How much will "
            f"carpeting the whole floor cost?"
        )
        steps = [
            f"Area: {length} × {width} = {area} sq ft",
            f"Carpet: {area} × {_money(price)} = {_money(area * price)}",
            f"Total: {_money(area * price)} + {_money(fee)} = {_money(area * price + fee)}",
        ]
        return question, steps, _num(area * price + fee)
    height, cover = rng.choice((8, 9, 10)), rng.choice((100, 150, 200, 250, 300, 350))
    door, window = 3 * 7, rng.choice((3, 4, 5)) * rng.choice((3, 4))
    perimeter = 2 * (length + width)
    walls = perimeter * height
    paint = walls - door - window
    cans = -(-paint // cover)
    question = (
        f"{name} is painting the four walls of a room that is {length} ft long, {width} ft wide "
        f"and {height} ft high. There is a 3 ft by 7 ft door and a window with an area of "
        f"{window} sq ft that will not be painted. One can of paint covers {cover} sq ft and "
        f"paint is sold only in whole cans. How many cans must {name} buy for one coat?"
    )
    steps = [
        f"Perimeter: 2 × ({length} + {width}) = {perimeter} ft",
        f"Wall area: {perimeter} × {height} = {walls} sq ft",
        f"Subtract door and window: {walls} - {door} - {window} = {paint} sq ft",
        f"Cans: {paint} ÷ {cover} = {_num(Fraction(paint, cover))}, rounded up to {cans}",
    ]
    return question, steps, _num(cans)


# ---------------------------------------------------------------------------
# Linear equations
# ---------------------------------------------------------------------------


def _eq_number(rng: random.Random, level: str) -> Problem:
    """Find an unknown number, or consecutive integers with a given sum."""
    while True:
        x = rng.randint(2, 40)
        if level == "easy":
            a, b = rng.randint(2, 9), rng.randint(3, 60)
            c = a * x + b
            who = _name(rng)
            if rng.random() < 0.5:
                question = (
                    f"When a number is multiplied by {a} and then {b} is added, the result is "
                    f"{c}. What is the number?"
                )
            else:
                question = (
                    f"{who} thinks of a number, multiplies it by {a}, and adds {b}. The result "
                    f"is {c}. What number did {who} start with?"
                )
            steps = [
                f"Undo the addition: {c} - {b} = {c - b}",
                f"Undo the multiplication: {c - b} ÷ {a} = {x}",
            ]
            return question, steps, _num(x)
        if level == "medium":
            a, c = sorted(rng.sample(range(2, 10), 2))
            b = rng.randint(1, 40)
            d = (c - a) * x - b
            if d <= 0:
                continue
            question = (
                f"{a} times a number plus {b} equals {c} times the same number minus {d}. "
                f"What is the number?"
            )
            steps = [
                f"{a}x + {b} = {c}x - {d}",
                f"{b} + {d} = {c}x - {a}x, so {b + d} = {c - a}x",
                f"x = {b + d} ÷ {c - a} = {x}",
            ]
            return question, steps, _num(x)
        k = rng.choice((3, 4, 5))
        kind, gap = rng.choice(
            (("consecutive even", 2), ("consecutive odd", 2), ("consecutive", 1))
        )
        if kind == "consecutive even":
            x += x % 2
        elif kind == "consecutive odd":
            x += 1 - x % 2
        x += 10 * rng.randint(0, 8)
        offset = gap * k * (k - 1) // 2
        total = k * x + offset
        largest = x + gap * (k - 1)
        terms = " + ".join(["n"] + [f"(n + {gap * i})" for i in range(1, k)])
        question = f"The sum of {k} {kind} integers is {total}. What is the largest of them?"
        steps = [
            f"{terms} = {total}",
            f"{k}n + {offset} = {total}, so {k}n = {total - offset}",
            f"n = {total - offset} ÷ {k} = {x}",
            f"Largest: {x} + {gap * (k - 1)} = {largest}",
        ]
        return question, steps, _num(largest)


def _eq_ages(rng: random.Random, level: str) -> Problem:
    """Age puzzles."""
    older, younger = rng.sample(NAMES, 2)
    while True:
        if level == "easy":
            b, m, y = rng.randint(3, 15), rng.randint(2, 5), rng.randint(2, 12)
            question = (
                f"{older} is {m} times as old as {younger}, who is {b}. "
                f"How old will {older} be in {y} years?"
            )
            steps = [
                f"{older} now: {m} × {b} = {m * b}",
                f"In {y} years: {m * b} + {y} = {m * b + y}",
            ]
            return question, steps, _num(m * b + y)
        if level == "medium":
            b, k = rng.randint(5, 40), rng.randint(2, 30)
            s = 2 * b + k
            question = (
                f"{older} is {k} years older than {younger}. The sum of their ages is {s}. "
                f"How old is {older}?"
            )
            steps = [
                f"{younger} + ({younger} + {k}) = {s}, so 2 × {younger} = {s} - {k} = {s - k}",
                f"{younger} = {s - k} ÷ 2 = {b}",
                f"{older} = {b} + {k} = {b + k}",
            ]
            return question, steps, _num(b + k)
        b, m, y = rng.randint(3, 15), rng.randint(3, 7), rng.randint(2, 30)
        n, rem = divmod(m * b + y, b + y)
        if rem or not 2 <= n < m:
            continue
        question = (
            f"{older} is {m} times as old as {younger}. In {y} years, {older} will be {n} times "
            f"as old as {younger}. How old is {older} now?"
        )
        steps = [
            f"Let {younger}'s age be x, so {older} is {m}x",
            f"In {y} years: {m}x + {y} = {n}(x + {y}) = {n}x + {n * y}",
            f"{m - n}x = {n * y} - {y} = {n * y - y}",
            f"x = {n * y - y} ÷ {m - n} = {b}",
            f"{older}: {m} × {b} = {m * b}",
        ]
        return question, steps, _num(m * b)


def _eq_money(rng: random.Random, level: str) -> Problem:
    """Savings goals, ticket sales and coin jars."""
    name = _name(rng)
    while True:
        if level == "easy":
            have, save, weeks = rng.randint(5, 80), rng.randint(4, 25), rng.randint(3, 20)
            goal = have + save * weeks
            question = (
                f"{name} has {_money(have)} saved and adds {_money(save)} every week. After how "
                f"many weeks will {name} have {_money(goal)}?"
            )
            steps = [
                f"Still needed: {_money(goal)} - {_money(have)} = {_money(goal - have)}",
                f"Weeks: {goal - have} ÷ {save} = {weeks}",
            ]
            return question, steps, _num(weeks)
        if level == "medium":
            event = rng.choice(("school play", "concert", "charity match", "talent show"))
            p, q = rng.randint(8, 25), rng.randint(3, 7)
            x, y = rng.randint(20, 200), rng.randint(20, 200)
            n, rev = x + y, p * x + q * y
            question = (
                f"A {event} sold {n} tickets. Adult tickets cost {_money(p)} and student tickets "
                f"cost {_money(q)}. Ticket sales totaled {_money(rev)}. How many adult tickets "
                f"were sold?"
            )
            steps = [
                f"Let a be adult tickets: {p}a + {q}({n} - a) = {rev}",
                f"{p - q}a = {rev} - {q} × {n} = {rev - q * n}",
                f"a = {rev - q * n} ÷ {p - q} = {x}",
            ]
            return question, steps, _num(x)
        nickels, extra, j = rng.randint(2, 20), rng.randint(1, 12), rng.randint(1, 3)
        per = 15 + 25 * j
        value = per * nickels + 10 * extra
        count = nickels + (nickels + extra) + j * nickels
        times = "as many" if j == 1 else f"{('twice', 'three times')[j - 2]} as many"
        question = (
            f"A jar holds only nickels, dimes and quarters. There are {extra} more dimes than "
            f"nickels and {times} quarters as nickels. The coins are worth {_money(Fraction(value, 100))} "
            f"in total. How many coins are in the jar?"
        )
        steps = [
            f"Let n be the nickels: dimes = n + {extra}, quarters = {j}n",
            f"Value in cents: 5n + 10(n + {extra}) + 25 × {j}n = {per}n + {10 * extra}",
            f"{per}n = {value} - {10 * extra} = {value - 10 * extra}, so n = {nickels}",
            f"Coins: {nickels} + {nickels + extra} + {j * nickels} = {count}",
        ]
        return question, steps, _num(count)


# ---------------------------------------------------------------------------
# Ratios and proportions
# ---------------------------------------------------------------------------

_PAIRS = (
    ("boys", "girls", "class"), ("cats", "dogs", "shelter"), ("red cars", "blue cars", "lot"),
    ("fiction books", "nonfiction books", "box"), ("tulips", "roses", "garden"),
)  # fmt: skip


def _ratio_share(rng: random.Random, level: str) -> Problem:
    """Ratios of groups and sharing money in a ratio."""
    while True:
        a, b = rng.sample(range(1, 10), 2)
        if math.gcd(a, b) == 1:
            break
    if level == "easy":
        x_name, y_name, place = rng.choice(_PAIRS)
        part = rng.randint(2, 15)
        question = (
            f"In a {place}, the ratio of {x_name} to {y_name} is {a}:{b}. There are "
            f"{b * part} {y_name}. How many {x_name} are there?"
        )
        steps = [
            f"One part: {b * part} ÷ {b} = {part}",
            f"{x_name.capitalize()}: {a} × {part} = {a * part}",
        ]
        return question, steps, _num(a * part)
    first, second, third = rng.sample(NAMES, 3)
    if level == "medium":
        part = rng.randint(3, 60)
        total = (a + b) * part
        question = (
            f"{first} and {second} share {_money(total)} in the ratio {a}:{b}. "
            f"How much does {second} receive?"
        )
        steps = [
            f"Total parts: {a} + {b} = {a + b}",
            f"One part: {_money(total)} ÷ {a + b} = {_money(part)}",
            f"{second}: {b} × {_money(part)} = {_money(b * part)}",
        ]
        return question, steps, _num(b * part)
    a, c = sorted(rng.sample(range(1, 13), 2), reverse=True)
    part = rng.randint(2, 40)
    diff = (a - c) * part
    parts = a + b + c
    question = (
        f"{first}, {second} and {third} share some prize money in the ratio {a}:{b}:{c}. "
        f"{first} receives {_money(diff)} more than {third}. How much prize money is there in total?"
    )
    steps = [
        f"Difference in parts: {a} - {c} = {a - c}",
        f"One part: {_money(diff)} ÷ {a - c} = {_money(part)}",
        f"Total parts: {a} + {b} + {c} = {parts}",
        f"Total: {parts} × {_money(part)} = {_money(parts * part)}",
    ]
    return question, steps, _num(parts * part)


def _ratio_scale(rng: random.Random, level: str) -> Problem:
    """Scaling a recipe, map scales, and changing a mixture's ratio."""
    while True:
        if level == "easy":
            food = rng.choice(("pancakes", "cookies", "muffins", "bread rolls", "waffles"))
            cups, s = Fraction(rng.randint(3, 8), 2), rng.choice((6, 8, 10, 12, 16, 20, 24))
            s2 = rng.choice((4, 6, 8, 10, 12, 18, 30, 36, 40, 48))
            need = cups * Fraction(s2, s)
            if s2 == s or not _clean(need):
                continue
            question = (
                f"A recipe uses {_num(cups)} cups of flour to make {s} {food}. How many cups of "
                f"flour are needed to make {s2} {food}?"
            )
            steps = [
                f"Scale factor: {s2} ÷ {s} = {_num(Fraction(s2, s))}",
                f"Flour: {_num(cups)} × {_num(Fraction(s2, s))} = {_plural(need, 'cup')}",
            ]
            return question, steps, _num(need)
        if level == "medium":
            u, k, x = rng.choice((1, 2, 4, 5)), rng.choice((5, 10, 20, 25, 50)), rng.randint(3, 30)
            v = rng.choice((40, 50, 60, 75, 80, 100))
            real = Fraction(x * k, u)
            hours = real / v
            if not (_clean(real) and _clean(hours)):
                continue
            question = (
                f"On a map, {u} cm represents {k} km. Two towns are {x} cm apart on the map. How "
                f"many hours does a bus averaging {v} km/h take to travel between them?"
            )
            steps = [
                f"1 cm represents {k} ÷ {u} = {_num(Fraction(k, u))} km",
                f"Real distance: {x} × {_num(Fraction(k, u))} = {_num(real)} km",
                f"Time: {_num(real)} ÷ {v} = {_hours(hours)}",
            ]
            return question, steps, _num(hours)
        name = _name(rng)
        drink, x1, x2 = rng.choice(
            (
                ("fruit punch", "juice", "soda"),
                ("lemonade", "lemon syrup", "water"),
                ("paint mix", "white paint", "blue paint"),
            )
        )
        a, b = rng.randint(1, 5), rng.randint(1, 5)
        c = b + rng.randint(1, 4)
        part = rng.randint(1, 6)
        total = (a + b) * part
        new_y = Fraction(a * part * c, a)
        added = new_y - b * part
        if math.gcd(a, b) != 1 or math.gcd(a, c) != 1:
            continue
        question = (
            f"{name} has {total} liters of {drink} made from {x1} and {x2} in the ratio {a}:{b}. "
            f"How many liters of {x2} must be added to make the ratio {a}:{c}?"
        )
        steps = [
            f"One part: {total} ÷ ({a} + {b}) = {_plural(part, 'liter')}",
            f"{x1.capitalize()}: {a} × {part} = {a * part} L; {x2}: {b} × {part} = {b * part} L",
            f"Needed {x2}: {a * part} × {c} ÷ {a} = {_num(new_y)} L",
            f"Add: {_num(new_y)} - {b * part} = {_num(added)} liters",
        ]
        return question, steps, _num(added)


def _ratio_rates(rng: random.Random, level: str) -> Problem:
    """Unit prices, worker-hours, and a ratio that changes when people join."""
    while True:
        if level == "easy":
            item = rng.choice(("pencils", "oranges", "stamps", "postcards", "bagels"))
            k, unit = rng.randint(2, 12), _halves(rng, 1, 4)
            k2 = rng.randint(2, 30)
            if k2 == k:
                continue
            question = f"{k} {item} cost {_money(k * unit)}. At the same price, how much do {k2} {item} cost?"
            steps = [
                f"One costs {_money(k * unit)} ÷ {k} = {_money(unit)}",
                f"{k2} × {_money(unit)} = {_money(k2 * unit)}",
            ]
            return question, steps, _num(k2 * unit)
        if level == "medium":
            w, h, per = rng.randint(2, 8), rng.randint(2, 6), rng.randint(2, 9)
            w2, h2 = rng.randint(2, 12), rng.randint(2, 8)
            boxes = w * h * per
            question = (
                f"{w} workers pack {boxes} boxes in {h} hours. At the same rate, how many boxes "
                f"can {w2} workers pack in {h2} hours?"
            )
            steps = [
                f"Per worker per hour: {boxes} ÷ ({w} × {h}) = {per} boxes",
                f"Worker-hours: {w2} × {h2} = {w2 * h2}",
                f"Boxes: {w2 * h2} × {per} = {w2 * h2 * per}",
            ]
            return question, steps, _num(w2 * h2 * per)
        x_name, y_name, _ = rng.choice(_PAIRS)
        a, b = rng.randint(1, 6), rng.randint(1, 6)
        t, k = rng.randint(2, 12), rng.randint(2, 20)
        new = Fraction(a * t + k, b * t)
        c, d = new.numerator, new.denominator
        if math.gcd(a, b) != 1 or c > 12 or d > 12 or b * c - a * d <= 0:
            continue
        members = (a + b) * t + k
        question = (
            f"At a club, the ratio of {x_name} to {y_name} is {a}:{b}. After {k} more {x_name} "
            f"join, the ratio becomes {c}:{d}. How many members does the club have now?"
        )
        steps = [
            f"Before: {x_name} = {a}t, {y_name} = {b}t",
            f"({a}t + {k}) ÷ {b}t = {c}/{d}, so {d}({a}t + {k}) = {c} × {b}t",
            f"{d * a}t + {d * k} = {c * b}t, so {c * b - d * a}t = {d * k}",
            f"t = {d * k} ÷ {c * b - d * a} = {t}",
            f"Members now: {a + b} × {t} + {k} = {members}",
        ]
        return question, steps, _num(members)


# ---------------------------------------------------------------------------
# Combinatorics
# ---------------------------------------------------------------------------

_WORDS = (
    "LEVEL", "BANANA", "BALLOON", "COFFEE", "PEPPER", "LETTER", "COOKIE", "TOFFEE", "ADDRESS",
    "SUCCESS", "GIRAFFE", "PUZZLE", "TATTOO", "KAYAK", "RADAR", "CHEESE", "ERASER", "PARROT",
)  # fmt: skip


def _comb_outfits(rng: random.Random, level: str) -> Problem:
    """Multiplication principle: outfits, menus, committees."""
    name = _name(rng)
    if level == "easy":
        x_word, y_word = rng.choice(
            (
                ("shirts", "pairs of pants"),
                ("hats", "scarves"),
                ("sandwich fillings", "kinds of bread"),
            )
        )
        x, y = rng.randint(3, 12), rng.randint(2, 9)
        question = (
            f"{name} has {x} {x_word} and {y} {y_word}. How many different combinations of "
            f"one from each can {name} make?"
        )
        return question, [f"{x} × {y} = {x * y}"], _num(x * y)
    if level == "medium":
        soups, mains, desserts, drinks = (rng.randint(2, 6) for _ in range(4))
        sides = soups + desserts
        question = (
            f"A café lunch special is one main dish, plus either a soup or a dessert (not "
            f"both), plus a drink. There are {soups} soups, {mains} main dishes, {desserts} "
            f"desserts and {drinks} drinks. How many different lunch specials are possible?"
        )
        steps = [
            f"Soup or dessert: {soups} + {desserts} = {sides} choices",
            f"Specials: {mains} × {sides} × {drinks} = {mains * sides * drinks}",
        ]
        return question, steps, _num(mains * sides * drinks)
    men, women, k = rng.randint(3, 8), rng.randint(2, 7), rng.randint(3, 4)
    total, no_women = math.comb(men + women, k), math.comb(men, k)
    good = total - no_women
    question = (
        f"A committee of {k} is chosen from {men} men and {women} women, and then one committee "
        f"member is named chair. If the committee must include at least one woman, how many "
        f"ways can the committee and its chair be chosen?"
    )
    steps = [
        f"All committees: C({men + women}, {k}) = {total}",
        f"Committees with no women: C({men}, {k}) = {no_women}",
        f"With at least one woman: {total} - {no_women} = {good}",
        f"Choose a chair: {good} × {k} = {good * k}",
    ]
    return question, steps, _num(good * k)


def _comb_arrange(rng: random.Random, level: str) -> Problem:
    """Arrangements: distinct objects, words with repeated letters, people kept apart."""
    name = _name(rng)
    if level == "easy":
        n = rng.randint(4, 8)
        things = rng.choice(("books", "trophies", "plants", "photos", "model cars"))
        question = (
            f"{name} wants to arrange {n} different {things} in a row on a shelf. "
            f"In how many different orders can they be arranged?"
        )
        return question, [_fact_str(n)], _num(math.factorial(n))
    if level == "medium":
        word = rng.choice(_WORDS)
        counts = {ch: word.count(ch) for ch in sorted(set(word))}
        repeats = {ch: c for ch, c in counts.items() if c > 1}
        denom = math.prod(math.factorial(c) for c in repeats.values())
        result = math.factorial(len(word)) // denom
        desc = ", ".join(f"{ch} appears {c} times" for ch, c in repeats.items())
        question = (
            f"{name} rearranges the letters of the word {word}. How many different "
            f"arrangements of all its letters are possible (including {word} itself)?"
        )
        steps = [
            f"{word} has {len(word)} letters; {desc}",
            f"{len(word)}! = {math.factorial(len(word))}",
            f"Divide by repeats: {math.factorial(len(word))} ÷ {denom} = {result}",
        ]
        return question, steps, _num(result)
    n = rng.randint(5, 8)
    a, b = rng.sample([x for x in NAMES if x != name], 2)
    total = math.factorial(n)
    together = 2 * math.factorial(n - 1)
    question = (
        f"{n} friends, including {a} and {b}, line up in a row for a photo. If {a} and {b} "
        f"refuse to stand next to each other, how many different line-ups are possible?"
    )
    steps = [
        f"All line-ups: {n}! = {total}",
        f"Treat {a} and {b} as one block: {n - 1}! = {math.factorial(n - 1)}",
        f"The block can be ordered 2 ways: 2 × {math.factorial(n - 1)} = {together}",
        f"Apart: {total} - {together} = {total - together}",
    ]
    return question, steps, _num(total - together)


def _comb_choose(rng: random.Random, level: str) -> Problem:
    """Choices: unordered picks, ordered officer roles, teams with a restriction."""
    name = _name(rng)
    if level == "easy":
        n, k = rng.randint(5, 14), rng.choice((2, 2, 3))
        question = (
            f"An ice cream shop offers {n} flavors. {name} wants a cup with {k} different "
            f"flavors, and the order of the scoops does not matter. How many choices are there?"
        )
        if k == 2:
            step = f"C({n}, 2) = {n} × {n - 1} ÷ 2 = {math.comb(n, 2)}"
        else:
            step = f"C({n}, 3) = {n} × {n - 1} × {n - 2} ÷ 6 = {math.comb(n, 3)}"
        return question, [step], _num(math.comb(n, k))
    if level == "medium":
        n = rng.randint(6, 20)
        club = rng.choice(("chess club", "drama club", "robotics team", "book club"))
        question = (
            f"The {club} has {n} members. In how many ways can it choose a president, a vice "
            f"president and a treasurer, if no one may hold two roles?"
        )
        steps = [
            f"Choices: {n} for president, {n - 1} for vice president, {n - 2} for treasurer",
            f"{n} × {n - 1} × {n - 2} = {n * (n - 1) * (n - 2)}",
        ]
        return question, steps, _num(n * (n - 1) * (n - 2))
    n, k = rng.randint(7, 12), rng.randint(3, 5)
    a, b = rng.sample([x for x in NAMES if x != name], 2)
    total, both = math.comb(n, k), math.comb(n - 2, k - 2)
    good = total - both
    question = (
        f"A coach picks a team of {k} from {n} players, including {a} and {b}, and then names "
        f"one team member captain. {a} and {b} cannot both be on the team. "
        f"How many ways are there to pick the team and its captain?"
    )
    steps = [
        f"All teams: C({n}, {k}) = {total}",
        f"Teams with both {a} and {b}: C({n - 2}, {k - 2}) = {both}",
        f"Allowed teams: {total} - {both} = {good}",
        f"Choose a captain: {good} × {k} = {good * k}",
    ]
    return question, steps, _num(good * k)


# ---------------------------------------------------------------------------
# Probability
# ---------------------------------------------------------------------------

_COLORS = ("red", "blue", "green", "yellow", "white", "purple", "orange")
_BAGS = (
    ("bag", "marbles", "marble"),
    ("jar", "jelly beans", "jelly bean"),
    ("box", "buttons", "button"),
)


def _prob_marbles(rng: random.Random, level: str) -> Problem:
    """Drawing colored objects, with and without replacement."""
    container, plural, single = rng.choice(_BAGS)
    c1, c2, c3 = rng.sample(_COLORS, 3)
    r, b, g = rng.randint(2, 12), rng.randint(2, 12), rng.randint(1, 12)
    t = r + b + g
    intro = f"A {container} holds {r} {c1}, {b} {c2} and {g} {c3} {plural}."
    p = Fraction(r, t)
    steps = [f"Total: {r} + {b} + {g} = {t}", f"P({c1}) = {_ratio(r, t)}"]
    if level == "easy":
        question = f"{intro} One {single} is drawn at random. What is the probability it is {c1}?"
        return question, steps, _frac(p)
    if level == "medium":
        question = (
            f"{intro} A {single} is drawn at random, put back, and a second {single} is drawn. "
            f"What is the probability that both are {c1}?"
        )
        steps.append(f"Both {c1}: {_frac(p)} × {_frac(p)} = {_frac(p * p)}")
        return question, steps, _frac(p * p)
    first = Fraction(r, t) * Fraction(b, t - 1)
    second = Fraction(b, t) * Fraction(r, t - 1)
    question = (
        f"{intro} Two {plural} are drawn at random without replacement. What is the "
        f"probability that one is {c1} and the other is {c2}?"
    )
    steps = [
        f"Total: {r} + {b} + {g} = {t}",
        f"{c1} then {c2}: {r}/{t} × {b}/{t - 1} = {_frac(first)}",
        f"{c2} then {c1}: {b}/{t} × {r}/{t - 1} = {_frac(second)}",
        f"Either order: {_frac(first)} + {_frac(second)} = {_frac(first + second)}",
    ]
    return question, steps, _frac(first + second)


def _prob_dice(rng: random.Random, level: str) -> Problem:
    """Dice: one die above a value, two dice with a given sum, sum-or-doubles."""
    if level == "easy":
        sides = rng.choice((6, 8, 10, 12, 20))
        k = rng.randint(1, sides - 2)
        p = Fraction(sides - k, sides)
        question = (
            f"A fair {sides}-sided die numbered 1 to {sides} is rolled. What is the probability "
            f"of rolling a number greater than {k}?"
        )
        steps = [
            f"Numbers greater than {k}: {sides} - {k} = {sides - k}",
            f"P = {_ratio(sides - k, sides)}",
        ]
        return question, steps, _frac(p)
    rolls = list(product(range(1, 7), repeat=2))
    if level == "medium":
        s = rng.randint(3, 11)
        hits = [(x, y) for x, y in rolls if x + y == s]
        p = Fraction(len(hits), 36)
        question = (
            f"Two fair six-sided dice are rolled. What is the probability that the sum is {s}?"
        )
        steps = [
            f"Pairs with sum {s}: {', '.join(f'({x}, {y})' for x, y in hits)} ({len(hits)} outcomes)",
            "Total outcomes: 6 × 6 = 36",
            f"P = {_ratio(len(hits), 36)}",
        ]
        return question, steps, _frac(p)
    s = rng.randint(7, 11)
    big = sum(1 for x, y in rolls if x + y >= s)
    both = sum(1 for x, y in rolls if x + y >= s and x == y)
    either = big + 6 - both
    question = (
        f"Two fair six-sided dice are rolled. What is the probability that the sum is at least "
        f"{s} or the two dice show the same number?"
    )
    steps = [
        f"Sum at least {s}: {big} outcomes",
        "Doubles: 6 outcomes",
        f"Both (doubles with sum at least {s}): {both} outcomes",
        f"Either: {big} + 6 - {both} = {either} outcomes",
        f"P = {_ratio(either, 36)}",
    ]
    return question, steps, _frac(Fraction(either, 36))


def _prob_numbers(rng: random.Random, level: str) -> Problem:
    """Picking a whole number at random and asking about divisibility."""
    name = _name(rng)
    n = rng.randint(20, 150)
    intro = f"{name} picks a whole number at random from 1 to {n}."
    if level == "easy":
        k = rng.randint(3, 12)
        p = Fraction(n // k, n)
        question = f"{intro} What is the probability that it is a multiple of {k}?"
        steps = [f"Multiples of {k}: {n} ÷ {k} → {n // k}", f"P = {_ratio(n // k, n)}"]
        return question, steps, _frac(p)
    a, b = rng.sample(range(2, 10), 2)
    lcm = math.lcm(a, b)
    if level == "medium":
        p = Fraction(n // lcm, n)
        question = f"{intro} What is the probability that it is divisible by both {a} and {b}?"
        steps = [
            f"Divisible by both means divisible by lcm({a}, {b}) = {lcm}",
            f"Multiples of {lcm} up to {n}: {n // lcm}",
            f"P = {_ratio(n // lcm, n)}",
        ]
        return question, steps, _frac(p)
    ca, cb, cab = n // a, n // b, n // lcm
    neither = n - (ca + cb - cab)
    p = Fraction(neither, n)
    question = f"{intro} What is the probability that it is divisible by neither {a} nor {b}?"
    steps = [
        f"Multiples of {a}: {ca}; multiples of {b}: {cb}",
        f"Multiples of both (of {lcm}): {cab}",
        f"Divisible by {a} or {b}: {ca} + {cb} - {cab} = {ca + cb - cab}",
        f"Neither: {n} - {ca + cb - cab} = {neither}",
        f"P = {_ratio(neither, n)}",
    ]
    return question, steps, _frac(p)


# ---------------------------------------------------------------------------
# Number theory
# ---------------------------------------------------------------------------


def _nt_gcd_lcm(rng: random.Random, level: str) -> Problem:
    """GCD (identical kits), LCM (buses), and a remainder puzzle with a lower bound."""
    name = _name(rng)
    if level == "easy":
        while True:
            g, x, y = rng.randint(2, 12), rng.randint(2, 9), rng.randint(2, 9)
            if x != y and math.gcd(x, y) == 1:
                break
        t1, t2 = rng.sample(("pencils", "erasers", "stickers", "candies", "markers", "badges"), 2)
        question = (
            f"{name} has {g * x} {t1} and {g * y} {t2} and wants to make identical gift bags "
            f"using all of them, with nothing left over. What is the greatest number of bags "
            f"{name} can make?"
        )
        steps = [
            f"{g * x} = {_factor_str(g * x)}; {g * y} = {_factor_str(g * y)}",
            f"gcd({g * x}, {g * y}) = {g}",
        ]
        return question, steps, _num(g)
    if level == "medium":
        a, b = rng.sample(range(6, 46), 2)
        lcm = math.lcm(a, b)
        question = (
            f"Bus A leaves the depot every {a} minutes and bus B every {b} minutes. Both leave "
            f"together at 6:00 a.m. How many minutes later do they next leave together?"
        )
        steps = [
            f"{a} = {_factor_str(a)}; {b} = {_factor_str(b)}",
            f"lcm({a}, {b}) = {lcm}",
        ]
        return question, steps, _num(lcm)
    while True:
        a, b, c = sorted(rng.sample(range(2, 13), 3))
        lcm = math.lcm(a, b, c)
        r = rng.randint(1, a - 1) if a > 2 else 1
        low = rng.randint(lcm + 1, 4 * lcm)
        k = (low - r) // lcm + 1
        if lcm <= 400:
            break
    answer = lcm * k + r
    question = (
        f"{name} has more than {low} marbles. When they are shared equally among {a}, {b} or "
        f"{c} children, there are always {r} left over. What is the smallest number of marbles "
        f"{name} could have?"
    )
    steps = [
        f"{a} = {_factor_str(a)}; {b} = {_factor_str(b)}; {c} = {_factor_str(c)}",
        f"lcm({a}, {b}, {c}) = {lcm}",
        f"The count has the form {lcm}k + {r}",
        f"Need {lcm}k + {r} > {low}, so the smallest k is {k}",
        f"{lcm} × {k} + {r} = {answer}",
    ]
    return question, steps, _num(answer)


def _nt_remainders(rng: random.Random, level: str) -> Problem:
    """Remainders, counting multiples, and units digits of powers."""
    if level == "easy":
        name, d = _name(rng), rng.choice((6, 10, 12, 18, 24, 30))
        n = rng.randint(d + 1, 40 * d)
        q, r = divmod(n, d)
        if r == 0:
            n, r = n + 1, 1
        question = (
            f"{name} packs {n} eggs into cartons that hold {d} eggs each, filling as many "
            f"cartons as possible. How many eggs are left over?"
        )
        steps = [f"{d} × {q} = {d * q}", f"Left over: {n} - {d * q} = {r}"]
        return question, steps, _num(r)
    if level == "medium":
        n = rng.randint(100, 1000)
        a, b = rng.sample(range(2, 13), 2)
        lcm = math.lcm(a, b)
        question = f"How many whole numbers from 1 to {n} are divisible by {a} but not by {b}?"
        steps = [
            f"Multiples of {a}: {n} ÷ {a} → {n // a}",
            f"Multiples of both (of lcm {lcm}): {n} ÷ {lcm} → {n // lcm}",
            f"{n // a} - {n // lcm} = {n // a - n // lcm}",
        ]
        return question, steps, _num(n // a - n // lcm)
    base, exp = rng.choice((2, 3, 7, 8, 12, 13, 17, 18, 27)), rng.randint(20, 400)
    cycle = []
    value = base % 10
    while value not in cycle:
        cycle.append(value)
        value = value * base % 10
    length = len(cycle)
    pos = exp % length or length
    question = f"What is the units digit of ${base}^{{{exp}}}$?"
    steps = [
        f"Units digits of {base}^1, {base}^2, ...: {', '.join(map(str, cycle))}, then repeat",
        f"The pattern repeats every {length}",
        f"{exp} ÷ {length} leaves remainder {exp % length}, so use position {pos}",
        f"The units digit is {cycle[pos - 1]}",
    ]
    return question, steps, _num(cycle[pos - 1])


def _nt_divisors(rng: random.Random, level: str) -> Problem:
    """Next multiple, number of divisors, and sum of divisors."""
    if level == "easy":
        n, d = rng.randint(50, 2000), rng.randint(7, 40)
        q, r = divmod(n, d)
        question = f"What is the smallest number greater than {n} that is divisible by {d}?"
        steps = [f"{n} ÷ {d} = {q} remainder {r}", f"Next multiple: {d} × {q + 1} = {d * (q + 1)}"]
        return question, steps, _num(d * (q + 1))
    primes = rng.sample((2, 3, 5, 7, 11), 2 if level == "medium" else 3)
    while True:
        exps = [rng.randint(1, 4) for _ in primes]
        n = math.prod(p**e for p, e in zip(primes, exps, strict=True))
        if 24 <= n <= 20000:
            break
    if level == "medium":
        count = math.prod(e + 1 for e in exps)
        question = rng.choice(
            (
                f"How many positive divisors does {n} have?",
                f"{_name(rng)} wants to arrange {n} chairs in a rectangular grid with at least "
                f"one row. How many different grids (rows × columns) are possible?",
            )
        )
        steps = [
            f"{n} = {_factor_str(n)}",
            f"Number of divisors: {' × '.join(f'({e} + 1)' for e in exps)} = {count}",
        ]
        return question, steps, _num(count)
    parts = sorted(zip(primes, exps, strict=True))
    sums = [sum(p**i for i in range(e + 1)) for p, e in parts]
    total = math.prod(sums)
    question = f"What is the sum of all positive divisors of {n}?"
    steps = [f"{n} = {_factor_str(n)}"]
    steps += [
        f"{p}^{e}: {' + '.join(str(p**i) for i in range(e + 1))} = {s}"
        for (p, e), s in zip(parts, sums, strict=True)
    ]
    steps.append(f"Sum: {' × '.join(map(str, sums))} = {total}")
    return question, steps, _num(total)


# ---------------------------------------------------------------------------
# Sequences and series
# ---------------------------------------------------------------------------


def _seq_arithmetic(rng: random.Random, level: str) -> Problem:
    """Arithmetic sequences: n-th term, sum of terms, and solving for the number of terms."""
    a, d = rng.randint(8, 30), rng.randint(2, 6)
    venue = rng.choice(("theater", "stadium section", "lecture hall", "concert hall"))
    if level == "easy":
        n = rng.randint(5, 30)
        question = (
            f"A {venue} has {a} seats in the first row, and each row has {d} more seats than the "
            f"row in front of it. How many seats are in row {n}?"
        )
        last = a + (n - 1) * d
        return (
            question,
            [f"Row {n}: {a} + ({n} - 1) × {d} = {a} + {(n - 1) * d} = {last}"],
            _num(last),
        )
    if level == "medium":
        n = rng.randint(8, 30)
        last = a + (n - 1) * d
        total = n * (a + last) // 2
        question = (
            f"A {venue} has {n} rows. The first row has {a} seats and each row has {d} more "
            f"seats than the one before. How many seats are there in total?"
        )
        steps = [
            f"Last row: {a} + {n - 1} × {d} = {last}",
            "Sum = rows × (first + last) ÷ 2",
            f"= {n} × ({a} + {last}) ÷ 2 = {total}",
        ]
        return question, steps, _num(total)
    name = _name(rng)
    a, d = rng.randint(3, 20), rng.randint(1, 5)
    a = max(a, d + 1)
    n = rng.randint(6, 30)
    total = n * (2 * a + (n - 1) * d) // 2
    lin = 2 * a - d
    disc = lin * lin + 8 * d * total
    root = math.isqrt(disc)
    question = (
        f"{name} saves {_money(a)} in the first week and each week saves {_money(d)} more than "
        f"the week before. After how many weeks will {name}'s total savings be exactly "
        f"{_money(total)}?"
    )
    steps = [
        f"After n weeks: n/2 × (2 × {a} + (n - 1) × {d}) = {total}",
        f"Multiply out: {d}n² + {lin}n - {2 * total} = 0",
        f"Discriminant: {lin}² + 8 × {d} × {total} = {disc} = {root}²",
        f"n = (-{lin} + {root}) ÷ (2 × {d}) = {n}",
    ]
    return question, steps, _num(n)


def _seq_geometric(rng: random.Random, level: str) -> Problem:
    """Geometric growth, geometric sums, and a bouncing ball."""
    if level == "easy":
        a, r, h = rng.randint(2, 50) * 10, rng.choice((2, 3)), rng.randint(2, 6)
        verb = "doubles" if r == 2 else "triples"
        question = (
            f"A colony starts with {a} bacteria and {verb} every hour. "
            f"How many bacteria are there after {h} hours?"
        )
        return question, [f"{a} × {r}^{h} = {a} × {r**h} = {a * r**h}"], _num(a * r**h)
    if level == "medium":
        name = _name(rng)
        a, r, n = rng.randint(1, 20), rng.choice((2, 3)), rng.randint(4, 8)
        total = a * (r**n - 1) // (r - 1)
        word = "twice" if r == 2 else "three times"
        question = (
            f"{name} saves {_money(a)} in the first month, and each month after that saves "
            f"{word} as much as the month before. How much has {name} saved after {n} months?"
        )
        steps = [
            f"Geometric series with first term {a}, ratio {r}, {n} terms",
            f"Sum = {a} × ({r}^{n} - 1) ÷ ({r} - 1)",
            f"= {a} × ({r**n} - 1) ÷ {r - 1} = {total}",
        ]
        return question, steps, _num(total)
    ratio = rng.choice(
        (Fraction(1, 2), Fraction(3, 4), Fraction(2, 3), Fraction(3, 5), Fraction(4, 5))
    )
    hits = rng.choice((3, 4))
    height = ratio.denominator ** (hits - 1) * rng.randint(1, 3)
    rebounds = [height * ratio**i for i in range(1, hits)]
    up = sum(rebounds)
    total = height + 2 * up
    question = (
        f"A ball is dropped from a height of {height} m. Each time it lands it bounces back up "
        f"to {_frac(ratio)} of the height it fell from. How many meters has the ball traveled "
        f"when it hits the ground for the {('third', 'fourth')[hits - 3]} time?"
    )
    steps = [
        f"Rebound heights: {', '.join(_num(x) for x in rebounds)} m",
        f"Sum of rebounds: {' + '.join(_num(x) for x in rebounds)} = {_num(up)} m",
        f"Each rebound is traveled up and down: 2 × {_num(up)} = {_num(2 * up)} m",
        f"Total: {height} + {_num(2 * up)} = {_num(total)} m",
    ]
    return question, steps, _num(total)


def _seq_integer_sums(rng: random.Random, level: str) -> Problem:
    """Sums of consecutive integers and of multiples."""
    if level == "easy":
        n = rng.randint(10, 200)
        question = rng.choice(
            (
                f"What is the sum of the whole numbers from 1 to {n}?",
                f"{_name(rng)} stacks cans in a triangle: 1 can in the top row, 2 in the next, "
                f"and so on, with {n} cans in the bottom row. How many cans are there in all?",
            )
        )
        return question, [f"{n} × {n + 1} ÷ 2 = {n * (n + 1) // 2}"], _num(n * (n + 1) // 2)
    k, n = rng.randint(3, 15), rng.randint(100, 1000)
    m = n // k
    multiples = k * m * (m + 1) // 2
    if level == "medium":
        question = f"What is the sum of all the multiples of {k} from {k} up to {n}?"
        steps = [
            f"Number of multiples: {n} ÷ {k} → {m}",
            f"Sum = {k} × (1 + 2 + ... + {m}) = {k} × {m} × {m + 1} ÷ 2",
            f"= {multiples}",
        ]
        return question, steps, _num(multiples)
    whole = n * (n + 1) // 2
    question = f"What is the sum of the whole numbers from 1 to {n} that are NOT multiples of {k}?"
    steps = [
        f"Sum of 1 to {n}: {n} × {n + 1} ÷ 2 = {whole}",
        f"Multiples of {k} up to {n}: {n} ÷ {k} → {m}",
        f"Their sum: {k} × {m} × {m + 1} ÷ 2 = {multiples}",
        f"Answer: {whole} - {multiples} = {whole - multiples}",
    ]
    return question, steps, _num(whole - multiples)


# ---------------------------------------------------------------------------
# Unit conversion
# ---------------------------------------------------------------------------

_LENGTHS = (
    ("feet", "inches", 12), ("yards", "feet", 3), ("meters", "centimeters", 100),
    ("kilometers", "meters", 1000), ("miles", "feet", 5280),
)  # fmt: skip


def _unit_length(rng: random.Random, level: str) -> Problem:
    """Length conversions: simple, laps to kilometers, and a fuel-cost trip."""
    name = _name(rng)
    while True:
        if level == "easy":
            big, small, factor = rng.choice(_LENGTHS)
            x = rng.randint(2, 60) if factor < 1000 else _halves(rng, 2, 12)
            thing = rng.choice(("rope", "hiking trail", "ribbon", "fence", "hallway"))
            question = f"A {thing} is {_num(x)} {big} long. How long is it in {small}?"
            return (
                question,
                [f"{_num(x)} × {factor} = {_num(x * factor)} {small}"],
                _num(x * factor),
            )
        if level == "medium":
            lap, laps = rng.choice((200, 250, 400, 500)), rng.randint(3, 30)
            km = Fraction(lap * laps, 1000)
            question = (
                f"A running track is {lap} meters around. {name} runs {laps} laps. "
                f"How many kilometers does {name} run?"
            )
            steps = [f"{laps} × {lap} = {lap * laps} m", f"{lap * laps} ÷ 1000 = {_num(km)} km"]
            return question, steps, _num(km)
        use, miles = rng.choice((5, 6, 7, 8, 10)), 5 * rng.randint(2, 40)
        price = Fraction(rng.randint(120, 220), 100)
        km = 2 * miles * Fraction(8, 5)
        liters = km * use / 100
        cost = liters * price
        if not (_clean(liters) and _clean(cost)):
            continue
        question = (
            f"{name}'s car uses {use} liters of fuel per 100 km. {name} drives to a city "
            f"{miles} miles away and back. Fuel costs {_money(price)} per liter. Using "
            f"1 mile = 1.6 km, how much does the fuel for the round trip cost?"
        )
        steps = [
            f"Round trip: 2 × {miles} = {2 * miles} miles",
            f"In km: {2 * miles} × 1.6 = {_num(km)} km",
            f"Fuel: {_num(km)} × {use} ÷ 100 = {_num(liters)} liters",
            f"Cost: {_num(liters)} × {_money(price)} = {_money(cost)}",
        ]
        return question, steps, _num(cost)


def _unit_time(rng: random.Random, level: str) -> Problem:
    """Time conversions: hours to seconds, daily leaks, printing jobs."""
    while True:
        if level == "easy":
            h = rng.randint(2, 24)
            event = rng.choice(("bike race", "road trip", "study session", "movie marathon"))
            question = f"A {event} lasts {h} hours. How many seconds is that?"
            steps = [f"{h} × 60 = {h * 60} minutes", f"{h * 60} × 60 = {h * 3600} seconds"]
            return question, steps, _num(h * 3600)
        if level == "medium":
            drip, days = rng.randint(2, 15), rng.randint(2, 30)
            ml = 1440 * days * drip
            question = (
                f"A leaky faucet drips {drip} milliliters of water every minute. How many liters "
                f"of water does it waste in {days} days?"
            )
            steps = [
                f"Minutes: {days} × 24 × 60 = {1440 * days}",
                f"Water: {1440 * days} × {drip} = {ml} mL",
                f"{ml} ÷ 1000 = {_num(Fraction(ml, 1000))} liters",
            ]
            return question, steps, _num(Fraction(ml, 1000))
        boxes, reams, speed = (
            rng.randint(1, 6),
            rng.choice((5, 8, 10)),
            rng.choice((20, 25, 30, 40, 50)),
        )
        sheets = boxes * reams * 500
        minutes = Fraction(sheets, speed)
        hours = minutes / 60
        if not (_clean(minutes) and _clean(hours)):
            continue
        question = (
            f"A printer prints {speed} pages per minute. How many hours does it take to print "
            f"on every sheet in {_plural(boxes, 'box', 'boxes')} of paper, if each box holds {reams} reams of "
            f"500 sheets and each sheet is printed on one side?"
        )
        steps = [
            f"Reams: {boxes} × {reams} = {boxes * reams}",
            f"Sheets: {boxes * reams} × 500 = {sheets}",
            f"Minutes: {sheets} ÷ {speed} = {_num(minutes)}",
            f"Hours: {_num(minutes)} ÷ 60 = {_num(hours)}",
        ]
        return question, steps, _num(hours)


def _unit_volume(rng: random.Random, level: str) -> Problem:
    """Metric volume and mass: liters to mL, portions of rice, filling a tank."""
    name = _name(rng)
    while True:
        if level == "easy":
            liters = _halves(rng, 2, 12)
            vessel = rng.choice(("jug", "water bottle", "cooking pot", "watering can"))
            question = f"A {vessel} holds {_num(liters)} liters. How many milliliters is that?"
            return (
                question,
                [f"{_num(liters)} × 1000 = {_num(liters * 1000)} mL"],
                _num(liters * 1000),
            )
        if level == "medium":
            kg, grams = _halves(rng, 1, 10), rng.choice((50, 75, 80, 100, 125, 150, 200, 250))
            total = kg * 1000
            if (total / grams).denominator != 1:
                continue
            food = rng.choice(("rice", "flour", "oats", "lentils"))
            question = (
                f"A bag of {food} weighs {_num(kg)} kg. {name} divides it into portions of "
                f"{grams} g each. How many portions does {name} get?"
            )
            steps = [
                f"{_num(kg)} kg = {_num(total)} g",
                f"{_num(total)} ÷ {grams} = {_num(total / grams)}",
            ]
            return question, steps, _num(total / grams)
        a, b, c = 10 * rng.randint(3, 12), 10 * rng.randint(2, 6), 10 * rng.randint(2, 6)
        full = rng.choice((Fraction(1, 4), Fraction(1, 2), Fraction(1, 3), Fraction(2, 5)))
        rate = rng.choice((2, 4, 5, 6, 8, 10))
        liters = Fraction(a * b * c, 1000)
        rest = liters * (1 - full)
        minutes = rest / rate
        if not (_clean(rest) and _clean(minutes)):
            continue
        question = (
            f"A fish tank measures {a} cm by {b} cm by {c} cm and is already {_frac(full)} full. "
            f"Water flows in at {rate} liters per minute. How many minutes does it take to fill "
            f"the tank? (1 liter = 1000 cm³)"
        )
        steps = [
            f"Volume: {a} × {b} × {c} = {a * b * c} cm³",
            f"In liters: {a * b * c} ÷ 1000 = {_num(liters)} L",
            f"Still empty: {_num(liters)} × (1 - {_frac(full)}) = {_num(rest)} L",
            f"Time: {_num(rest)} ÷ {rate} = {_num(minutes)} minutes",
        ]
        return question, steps, _num(minutes)


# ---------------------------------------------------------------------------
# Simple interest
# ---------------------------------------------------------------------------


def _int_savings(rng: random.Random, level: str) -> Problem:
    """Simple interest earned, resulting balance, and two accounts combined."""
    name = _name(rng)
    p, r, t = 100 * rng.randint(5, 100), rng.randint(2, 9), rng.randint(2, 10)
    yearly = p * r // 100
    steps = [
        f"Interest per year: {_money(p)} × {r}% = {_money(yearly)}",
        f"Over {t} years: {_money(yearly)} × {t} = {_money(yearly * t)}",
    ]
    if level == "easy":
        question = (
            f"{name} deposits {_money(p)} in a savings account that pays {r}% simple interest "
            f"per year. How much interest does it earn in {t} years?"
        )
        return question, steps, _num(yearly * t)
    if level == "medium":
        question = (
            f"{name} deposits {_money(p)} in an account paying {r}% simple interest per year. "
            f"What is the balance after {t} years?"
        )
        steps.append(f"Balance: {_money(p)} + {_money(yearly * t)} = {_money(p + yearly * t)}")
        return question, steps, _num(p + yearly * t)
    p2, r2 = 100 * rng.randint(5, 100), rng.randint(2, 9)
    yearly2 = p2 * r2 // 100
    interest = (yearly + yearly2) * t
    balance = p + p2 + interest
    question = (
        f"{name} puts {_money(p)} into an account paying {r}% simple interest per year and "
        f"{_money(p2)} into another paying {r2}%. What is the combined balance of both accounts "
        f"after {t} years?"
    )
    steps = [
        f"First account per year: {_money(p)} × {r}% = {_money(yearly)}",
        f"Second account per year: {_money(p2)} × {r2}% = {_money(yearly2)}",
        f"Interest over {t} years: ({_money(yearly)} + {_money(yearly2)}) × {t} = {_money(interest)}",
        f"Balance: {_money(p)} + {_money(p2)} + {_money(interest)} = {_money(balance)}",
    ]
    return question, steps, _num(balance)


def _int_loans(rng: random.Random, level: str) -> Problem:
    """Finding a rate, time to reach a goal, or equal monthly loan payments."""
    name = _name(rng)
    while True:
        p, r, t = 100 * rng.randint(5, 120), rng.randint(2, 12), rng.randint(2, 8)
        yearly = p * r // 100
        if level == "easy":
            question = (
                f"A deposit of {_money(p)} earned {_money(yearly * t)} in simple interest over "
                f"{t} years. What was the annual interest rate, in percent?"
            )
            steps = [
                f"Interest per year: {_money(yearly * t)} ÷ {t} = {_money(yearly)}",
                f"Rate: {yearly} ÷ {p} × 100 = {r}%",
            ]
            return question, steps, _num(r)
        if level == "medium":
            goal = p + yearly * t
            question = (
                f"{name} invests {_money(p)} at {r}% simple interest per year. After how many "
                f"years will the balance reach {_money(goal)}?"
            )
            steps = [
                f"Interest needed: {_money(goal)} - {_money(p)} = {_money(goal - p)}",
                f"Interest per year: {_money(p)} × {r}% = {_money(yearly)}",
                f"Years: {goal - p} ÷ {yearly} = {t}",
            ]
            return question, steps, _num(t)
        owed = p + yearly * t
        months = 12 * t
        payment = Fraction(owed, months)
        if not _clean(payment):
            continue
        question = (
            f"{name} borrows {_money(p)} at {r}% simple interest per year for {t} years and "
            f"repays the loan plus interest in equal monthly payments. How much is each payment?"
        )
        steps = [
            f"Interest per year: {_money(p)} × {r}% = {_money(yearly)}",
            f"Total interest: {_money(yearly)} × {t} = {_money(yearly * t)}",
            f"Total owed: {_money(p)} + {_money(yearly * t)} = {_money(owed)}",
            f"Months: 12 × {t} = {months}",
            f"Payment: {_money(owed)} ÷ {months} = {_money(payment)}",
        ]
        return question, steps, _num(payment)


def _int_invest(rng: random.Random, level: str) -> Problem:
    """Interest for part of a year, principal needed, and splitting money between rates."""
    name = _name(rng)
    while True:
        if level == "easy":
            p, r, m = 100 * rng.randint(5, 100), rng.randint(2, 9), rng.choice((3, 4, 6, 8, 9))
            yearly = Fraction(p * r, 100)
            interest = yearly * m / 12
            if not _clean(interest):
                continue
            question = (
                f"{name} deposits {_money(p)} for {m} months at {r}% simple interest per year. "
                f"How much interest does the deposit earn?"
            )
            steps = [
                f"Interest per year: {_money(p)} × {r}% = {_money(yearly)}",
                f"For {m} months: {_money(yearly)} × {m}/12 = {_money(interest)}",
            ]
            return question, steps, _num(interest)
        if level == "medium":
            p, r, t = 100 * rng.randint(5, 100), rng.randint(2, 9), rng.randint(2, 10)
            yearly = p * r // 100
            question = (
                f"How much money must be invested at {r}% simple interest per year to earn "
                f"{_money(yearly * t)} in interest over {t} years?"
            )
            steps = [
                f"Interest per year: {_money(yearly * t)} ÷ {t} = {_money(yearly)}",
                f"Principal: {yearly} ÷ {r}% = {yearly} × 100 ÷ {r} = {_money(p)}",
            ]
            return question, steps, _num(p)
        r2, r1 = sorted(rng.sample(range(2, 10), 2))
        x, total = 100 * rng.randint(5, 60), 100 * rng.randint(70, 150)
        interest = Fraction(r1 * x + r2 * (total - x), 100)
        base = Fraction(r2 * total, 100)
        if not _clean(interest):
            continue
        question = (
            f"{name} invests {_money(total)}, part at {r1}% and the rest at {r2}% simple "
            f"interest per year. After one year the total interest is {_money(interest)}. "
            f"How much did {name} invest at {r1}%?"
        )
        steps = [
            f"Let x be the amount at {r1}%: {r1}% × x + {r2}% × ({_num(total)} - x) = {_num(interest)}",
            f"{r2}% of {_num(total)} = {_num(base)}",
            f"{r1 - r2}% × x = {_num(interest)} - {_num(base)} = {_num(interest - base)}",
            f"x = {_num(interest - base)} × 100 ÷ {r1 - r2} = {x}",
        ]
        return question, steps, _num(x)


# ---------------------------------------------------------------------------
# Registry and public API
# ---------------------------------------------------------------------------

_TEMPLATES: dict[str, tuple[Template, ...]] = {
    "shopping": (_shop_basket, _shop_tickets, _shop_packs),
    "percentages": (_pct_sale, _pct_groups, _pct_change),
    "rates": (_rate_trip, _rate_two_trains, _rate_minutes),
    "work": (_work_pipes, _work_people, _work_machines),
    "geometry": (_geo_rectangle, _geo_triangle, _geo_room),
    "equations": (_eq_number, _eq_ages, _eq_money),
    "ratios": (_ratio_share, _ratio_scale, _ratio_rates),
    "combinatorics": (_comb_outfits, _comb_arrange, _comb_choose),
    "probability": (_prob_marbles, _prob_dice, _prob_numbers),
    "number_theory": (_nt_gcd_lcm, _nt_remainders, _nt_divisors),
    "sequences": (_seq_arithmetic, _seq_geometric, _seq_integer_sums),
    "units": (_unit_length, _unit_time, _unit_volume),
    "interest": (_int_savings, _int_loans, _int_invest),
}

FAMILIES: tuple[str, ...] = tuple(_TEMPLATES)


def demo_rows(n: int = 360, *, seed: int = 0) -> list[dict]:
    """n varied grade-school-to-competition math word problems with worked solutions.

    Deterministic for a seed. Rows cycle round-robin over families and difficulties, are
    shuffled with ``random.Random(seed)``, and never repeat a question text.
    """
    if n < 0:
        raise ValueError("n must be non-negative")
    rng = random.Random(seed)
    slots = [
        (FAMILIES[i % len(FAMILIES)], DIFFICULTIES[(i // len(FAMILIES)) % len(DIFFICULTIES)])
        for i in range(n)
    ]
    rng.shuffle(slots)
    rows: list[dict] = []
    seen: set[str] = set()
    for index, (family, level) in enumerate(slots):
        for _ in range(_MAX_TRIES):
            question, steps, final = rng.choice(_TEMPLATES[family])(rng, level)
            if question not in seen:
                break
        else:
            raise RuntimeError(
                f"could not make a new {level} {family} question; n={n} is too large"
            )
        seen.add(question)
        lines = [*steps, f"The answer is \\boxed{{{final}}}."]
        rows.append(
            {
                "id": f"demo-{index:04d}",
                "question": question,
                "answer": "\n".join(lines),
                "final": final,
                "family": family,
                "difficulty": level,
            }
        )
    return rows


# ---------------------------------------------------------------------------
# The demo dataset in a workspace
# ---------------------------------------------------------------------------

DEMO_NAME = "demo"
DEMO_MAPPING = {"prompt": "question", "response": "answer", "id": "id"}


def write_jsonl(path: Path, *, n: int = 360, seed: int = 0) -> int:
    """Write the demo problems to a JSONL file; returns the number of rows.

    Written to a temporary file beside `path` and renamed into place: a failure leaves
    `path` as it was and nothing behind. UserError when `path` is a folder, its folder is
    missing, or the file cannot be written.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{path} is a folder; give a file name, like {path / 'demo.jsonl'}")
    if not path.parent.is_dir():
        raise UserError(f"{path}: no folder {path.parent}")
    rows = demo_rows(n, seed=seed)
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    try:
        atomic_write(path, text.encode("utf-8"))
    except OSError as e:
        raise UserError(f"{path}: cannot write the demo problems ({e.strerror or e})") from e
    return len(rows)


def ensure_demo(ws: Workspace, *, force: bool = False) -> DatasetInfo | None:
    """Import the demo as dataset `demo` the first time a workspace opens (or when `force`).

    A curator who deletes it does not get it back on the next start; `force` re-imports it.
    Returns the demo dataset, or None when it was deliberately removed.
    """
    if ws.has_dataset(DEMO_NAME):
        return ws.dataset(DEMO_NAME)
    if ws.get_meta("demo_seeded") and not force:
        return None
    from core.records import Mapping

    with ws.staging() as tmp:
        write_jsonl(tmp / "demo.jsonl")
        try:
            info, _ = ws.import_dataset(
                tmp / "demo.jsonl",
                name=DEMO_NAME,
                mapping=Mapping(**DEMO_MAPPING),
                label="built-in demo (core/demo.py)",
            )
        except UserError:  # another process imported it a moment ago
            info = ws.dataset(DEMO_NAME)
    ws.set_meta("demo_seeded", "1")
    return info
