"""A sweep's progress: a rich bar of cells done / running / failed with an ETA on a
terminal, one line per started and per finished cell in a log."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TextIO


class SweepProgress:
    """Silent; the CLI picks `sweep_progress_for`."""

    def start(self, total: int, skipped: int) -> None:
        self.total, self.done, self.failed, self.running = total, skipped, 0, 0

    def note(self, text: str) -> None:
        """A line about the sweep itself (where it runs)."""

    def started(self, label: str) -> None:
        self.running += 1

    def finished(self, label: str, seconds: float) -> None:
        self.running -= 1
        self.done += 1

    def failed_once(self, label: str, error: str, retrying: bool) -> None:
        self.running -= 1
        if not retrying:
            self.failed += 1

    def close(self) -> None:
        pass


class LogSweepProgress(SweepProgress):
    """One timestamped line per started, finished or failed cell (an LLM cell runs for
    minutes: the log says which)."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr

    def _say(self, text: str) -> None:
        self.stream.write(f"{datetime.now():%H:%M:%S} {text}\n")
        self.stream.flush()

    def start(self, total: int, skipped: int) -> None:
        super().start(total, skipped)
        self._say(f"sweep: {total} cells, {skipped} already done, {total - skipped} to run")

    def note(self, text: str) -> None:
        self._say(text)

    def started(self, label: str) -> None:
        super().started(label)
        self._say(f"[{self.done}/{self.total}] {label}: started")

    def finished(self, label: str, seconds: float) -> None:
        super().finished(label, seconds)
        self._say(f"[{self.done}/{self.total}] {label}: done in {seconds:.1f} s")

    def failed_once(self, label: str, error: str, retrying: bool) -> None:
        super().failed_once(label, error, retrying)
        what = "failed, retrying once" if retrying else "failed"
        self._say(f"[{self.done}/{self.total}] {label}: {what}: {error}")


class RichSweepProgress(SweepProgress):
    """One bar over the cells; its text counts the running and failed ones."""

    def __init__(self, console=None):
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self.console = console or Console(stderr=True)
        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                             console=self.console)
        self.task = None

    def _refresh(self) -> None:
        self.bars.update(self.task, completed=self.done,
                         description=f"cells · {self.running} running · {self.failed} failed")

    def start(self, total: int, skipped: int) -> None:
        super().start(total, skipped)
        self.bars.start()
        self.task = self.bars.add_task("cells", total=total)
        self._refresh()

    def note(self, text: str) -> None:
        self.bars.console.print(text, markup=False, highlight=False)

    def started(self, label: str) -> None:
        super().started(label)
        self._refresh()

    def finished(self, label: str, seconds: float) -> None:
        super().finished(label, seconds)
        self._refresh()

    def failed_once(self, label: str, error: str, retrying: bool) -> None:
        super().failed_once(label, error, retrying)
        what = "failed, retrying once" if retrying else "failed"
        self.bars.console.print(f"{label}: {what}: {error}", style="red", markup=False,
                                highlight=False)
        self._refresh()

    def close(self) -> None:
        self.bars.stop()


def sweep_progress_for(quiet: bool) -> SweepProgress:
    if quiet:
        return SweepProgress()
    return RichSweepProgress() if sys.stderr.isatty() else LogSweepProgress()
