"""The one exception type that means "the user's input is wrong", not "the code is wrong".

Everything in core/ raises `UserError` for bad input (a malformed file, a missing field, an
unknown dataset, an unreachable endpoint). Its message is one line that names what is wrong
and where, written for the person at the keyboard. The CLI prints it as `error: ...` and
exits 2; the app shows it with st.error. Any other exception is an internal fault.
"""


class UserError(Exception):
    """Bad input: the message says what and where, on one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(message.split()))


class Cancelled(Exception):
    """Raised from a progress callback to stop a long job; nothing half-done is kept."""


def check_within(label: str, value: float | None, bounds: tuple[float, float]) -> None:
    """Raise a UserError naming `label` when `value` (None: not set) is outside `bounds`."""
    low, high = bounds
    if value is not None and not low <= value <= high:
        raise UserError(f"{label} must be between {low:,} and {high:,}, not {value:,}")


def check_at_least(limits: tuple[tuple[str, float, float], ...]) -> None:
    """Raise a UserError naming the first (label, value, lowest allowed) whose value is too low."""
    for label, value, low in limits:
        if value < low:
            raise UserError(f"{label} must be at least {low}, not {value}")
