"""The one exception type that means "the user's input is wrong", not "the code is wrong".

Everything in core/ raises `UserError` for bad input (a malformed file, a missing field, an
unknown dataset, an unreachable endpoint). Its message is one line that names what is wrong
and where, written for the person at the keyboard. The CLI prints it as `error: ...` and
exits 2; the app shows it with st.error. Any other exception is an internal fault.
"""

from __future__ import annotations


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
