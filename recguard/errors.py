"""The exception type the CLI turns into a one-line message, and the warning it shows as one."""

from __future__ import annotations

import difflib
import sys
import warnings
from typing import Iterable


class RecguardError(Exception):
    """A user-facing error: bad input, an unknown name, an impossible combination.

    The CLI prints ``error: <message>`` on stderr and exits with status 2; no
    traceback is shown. Messages are one line and say what would work instead.
    """


class RecguardWarning(UserWarning):
    """A user-facing warning: the work goes on, but probably not as the user meant (a setting
    that runs far slower here than the default would). Raised with ``warnings.warn``; the CLI
    and a sweep's local workers print it as ``warning: <message>`` on stderr (`show_warning`;
    once per place and message, Python's default)."""


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` for recguard's processes (the CLI, a sweep's workers): a
    `RecguardWarning` as one ``warning: <message>`` line on stderr, any other warning as
    Python shows it."""
    if issubclass(category, RecguardWarning):
        text = f"warning: {message}\n"
    else:
        text = warnings.formatwarning(message, category, filename, lineno, line)
    (file or sys.stderr).write(text)


class OptionError(RecguardError):
    """A bad ``key=value`` option of one component: ``role`` is what `build_config` was told
    it configures ("attack", "backbone", "protocol", ...), ``key`` the option (None when the
    options are wrong together). A sweep spec uses them to name the line of the options."""

    def __init__(self, message: str, role: str, key: str | None = None):
        super().__init__(message)
        self.role = role
        self.key = key


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, stripped ('' when it has none): what a
    one-line report of a foreign exception can quote."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A ' (did you mean ...?)' suffix for an unknown name, or '' if nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    if not close:
        lowered = {c.lower(): c for c in choices}
        close = [lowered[name.lower()]] if name.lower() in lowered else []
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def unknown(kind: str, name: str, choices: Iterable[str]) -> RecguardError:
    """An 'unknown <kind>' error naming the suggestions and every accepted choice."""
    choices = sorted(choices)
    listing = ", ".join(choices) if choices else "none registered"
    return RecguardError(f"unknown {kind} {name!r}{did_you_mean(name, choices)}; available: {listing}")
