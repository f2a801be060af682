"""Settings declared once. Each field of a settings dataclass (config.ProxySpec,
FeatureConfig, Runtime; synthesis.SynthesisSettings; llm.LLMSettings) is declared with
`setting(default, help=..., ...)`: its default, its help text, its allowed range (a `Bound`,
checked by `check_bounds`), its choices, and its command-line flag where that is not the
field's name (`--problems` for problems_per_prompt). The CLI adds its flags from these
fields and the pages take their widgets' defaults, bounds and help from them: nothing is
restated elsewhere.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any

from core.errors import OutOfRange


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


def setting(
    default: Any = MISSING,
    *,
    help: str,
    flag: str | None = None,
    choices: tuple[str, ...] | None = None,
    **bound: Any,
) -> Any:
    """A settings dataclass field: its default, `help` (lower case, no full stop: it is
    the CLI's help and the widget's tooltip), `flag` when the CLI flag is not the field's
    name, `choices` for a text setting with fixed values, and a Bound from `low`, `high`,
    `above`, `unit` for a number (None is always allowed)."""
    metadata: dict[str, Any] = {"help": help}
    if flag:
        metadata["flag"] = flag
    if choices:
        metadata["choices"] = choices
    if bound:
        metadata["bound"] = Bound(**bound)
    return field(default=default, metadata=metadata)


def field_of(settings: type, name: str) -> Field:
    """The dataclass field `name` of `settings` (a KeyError names a missing one)."""
    found = {f.name: f for f in fields(settings)}
    return found[name]


def bound_of(settings: type, name: str) -> Bound:
    """The field's allowed range (no limits when it declares none)."""
    return field_of(settings, name).metadata.get("bound", Bound())


def help_of(settings: type, name: str) -> str:
    return field_of(settings, name).metadata["help"]


def choices_of(settings: type, name: str) -> tuple[str, ...] | None:
    return field_of(settings, name).metadata.get("choices")


def flag_of(settings: type, name: str) -> str:
    """The field's CLI flag: declared, or `--` and the name with dashes (--max-length)."""
    return field_of(settings, name).metadata.get("flag") or "--" + name.replace("_", "-")


def flat_name(settings: type, name: str) -> str:
    """The field's name among other settings' (its flag without dashes: `proxy` for
    ProxySpec.name): the CLI's argument name and the key of saved settings."""
    return flag_of(settings, name).lstrip("-").replace("-", "_")


def default_of(settings: type, name: str) -> Any:
    """The field's default value (MISSING for a field that must be given)."""
    return field_of(settings, name).default


def kind_of(settings: type, name: str) -> type:
    """The field's value type: bool, int or float, else str (None aside)."""
    annotation = str(field_of(settings, name).type).replace(" | None", "")
    return {"bool": bool, "int": int, "float": float}.get(annotation, str)


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
