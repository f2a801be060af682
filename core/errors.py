"""The one exception type that means "the user's input is wrong", not "the code is wrong".

Everything in core/ raises `UserError` for bad input (a malformed file, a missing field, an
unknown dataset, an unreachable endpoint). Its message is one line that names what is wrong
and where, written for the person at the keyboard. The CLI prints it as `error: ...` and
exits 2; the app shows it with st.error. Any other exception is an internal fault.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any


class UserError(Exception):
    """Bad input: the message says what and where, on one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(message.split()))


class Cancelled(Exception):
    """Raised from a progress callback to stop a long job; nothing half-done is kept."""


class OutOfRange(UserError):
    """A setting outside its allowed range. `field` is the setting's name, `problem` the
    rest of the message ("must be at least 1, not 0"), so that a caller can name the
    setting its own way (the CLI by its flag)."""

    def __init__(self, field: str, problem: str):
        self.field, self.problem = field, problem
        super().__init__(f"{field.replace('_', ' ')} {problem}")


@dataclass(frozen=True)
class Bound:
    """The allowed values of a number setting: finite, at least `low` (more than `low` when
    `above`) and at most `high`; `unit` is said after the limits ("seconds")."""

    low: float | None = None
    high: float | None = None
    above: bool = False
    unit: str = ""

    def problem(self, value: float) -> str | None:
        """Why `value` is not allowed ("must be more than 0 seconds, not 0"), or None."""
        fits = (
            math.isfinite(value)
            and (self.low is None or (value > self.low if self.above else value >= self.low))
            and (self.high is None or value <= self.high)
        )
        if fits:
            return None
        limits = []
        if self.low is not None:
            limits.append(f"{'more than' if self.above else 'at least'} {_number(self.low)}")
        if self.high is not None:
            limits.append(f"at most {_number(self.high)}")
        said = " and ".join(limits) + (f" {self.unit}" if self.unit else "")
        if not math.isfinite(value):
            said = f"a finite number ({said})" if limits else "a finite number"
        return f"must be {said}, not {_number(value)}"


def bounded(default: Any, **bound: Any) -> Any:
    """A dataclass field with a `Bound` (checked by `check_bounds`; None is always allowed)."""
    return field(default=default, metadata={"bound": Bound(**bound)})


def bound_of(cls: type, name: str) -> Bound:
    """The Bound of a settings dataclass's field, e.g. for a widget's min_value."""
    return next(f.metadata["bound"] for f in fields(cls) if f.name == name)


def check_bounds(settings: Any) -> None:
    """Raise OutOfRange for the first field of a dataclass that is outside its Bound."""
    for f in fields(settings):
        value = getattr(settings, f.name)
        bound = f.metadata.get("bound")
        problem = bound.problem(value) if bound and value is not None else None
        if problem:
            raise OutOfRange(f.name, problem)


def _number(value: float) -> str:
    """0 rather than 0.0; nan and inf as themselves."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
