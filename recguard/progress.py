"""Progress reporting: silent by default, rich bars on a terminal, plain lines in a log."""

from __future__ import annotations

import inspect
import sys
import time
from datetime import datetime
from typing import Callable, TextIO

# update(done, total, **info): info is optional and may hold e.g. loss=0.42
Update = Callable[..., None]


class Progress:
    """Silent progress: the pipeline calls these; the CLI passes `progress_for(quiet)`."""

    def start_cell(self, total_fits: int, title: str) -> None:
        pass

    def start_fit(self, label: str) -> Update:
        """Begin a fit; the returned callback receives (done, total) and optional keyword info
        such as ``loss=``."""
        return lambda done, total, **info: None

    def end_fit(self) -> None:
        pass

    def skip(self, label: str) -> None:
        """A fit taken from the cache."""

    def start_phase(self, label: str) -> Update:
        """Work before a fit that belongs to its step of the cell (a defense's preparation:
        detecting users, encoding them with an LLM): shown as a fit is, not counted."""
        return self.start_fit(label)

    def end_phase(self) -> None:
        self.end_fit()

    def close(self) -> None:
        pass


def _loss_text(info: dict) -> str:
    return f"loss {info['loss']:.3f}" if info.get("loss") is not None else ""


class RichProgress(Progress):
    """Two bars on stderr: the cell's fits, and the steps of the running fit (with its loss)."""

    def __init__(self):
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bars, TextColumn,
                                   TimeElapsedColumn)

        self.bars = Bars(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                         TimeElapsedColumn(), console=Console(stderr=True), transient=True)
        self.cell = None
        self.fit = None

    def start_cell(self, total_fits: int, title: str) -> None:
        self.bars.start()
        self.cell = self.bars.add_task(title, total=total_fits)

    def start_fit(self, label: str) -> Update:
        self.fit = self.bars.add_task(label, total=None)

        def update(done: int, total: int, **info) -> None:
            loss = _loss_text(info)
            self.bars.update(self.fit, completed=done, total=total,
                             description=f"{label} · {loss}" if loss else label)
        return update

    def end_fit(self) -> None:
        self.end_phase()
        if self.cell is not None:
            self.bars.advance(self.cell)

    def end_phase(self) -> None:
        if self.fit is not None:
            self.bars.remove_task(self.fit)
            self.fit = None

    def skip(self, label: str) -> None:
        if self.cell is not None:
            self.bars.advance(self.cell)

    def close(self) -> None:
        self.bars.stop()


class LogProgress(Progress):
    """Plain, timestamped lines for a log: one per phase and, while a fit runs, one at most
    every ``interval`` seconds (besides its first and last update)."""

    def __init__(self, stream: TextIO | None = None, interval: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        self.stream = stream or sys.stderr
        self.interval = interval
        self.clock = clock
        self.label: str | None = None
        self.started = 0.0

    def _say(self, text: str) -> None:
        self.stream.write(f"{datetime.now():%H:%M:%S} {text}\n")
        self.stream.flush()

    def start_cell(self, total_fits: int, title: str) -> None:
        self._say(f"{title}: {total_fits} fits")

    def start_fit(self, label: str) -> Update:
        self.label, self.started = label, self.clock()
        self._say(f"{label}: started")
        last_said: float | None = None

        def update(done: int, total: int, **info) -> None:
            nonlocal last_said
            now = self.clock()
            if last_said is not None and done != total and now - last_said < self.interval:
                return
            last_said = now
            parts = [f"{done}/{total} steps", _loss_text(info), f"{now - self.started:.0f} s elapsed"]
            self._say(f"{label}: " + ", ".join(p for p in parts if p))
        return update

    def end_fit(self) -> None:
        if self.label is not None:
            self._say(f"{self.label}: done in {self.clock() - self.started:.1f} s")
            self.label = None

    def skip(self, label: str) -> None:
        self._say(f"{label}: skipped")


def progress_for(quiet: bool) -> Progress:
    """The CLI's and the benchmarks' choice: nothing when quiet, bars on a terminal, plain
    lines otherwise (stderr sent to a file)."""
    if quiet:
        return Progress()
    return RichProgress() if sys.stderr.isatty() else LogProgress()


def taking_info(update: Callable) -> Update:
    """``update`` if it accepts any keyword info, else a wrapper that passes only the info it
    names: older callbacks take (done, total) only."""
    try:
        parameters = inspect.signature(update).parameters.values()
    except (TypeError, ValueError):   # no signature to read (some builtins): pass it as is
        return update
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return update
    names = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return lambda done, total, **info: update(done, total, **{k: v for k, v in info.items() if k in names})
