"""Progress reporting: a silent default and a rich progress bar for the terminal."""

from __future__ import annotations

from typing import Callable


class Progress:
    """Silent progress: the pipeline calls these; the CLI passes `RichProgress`."""

    def start_cell(self, total_fits: int, title: str) -> None:
        pass

    def start_fit(self, label: str) -> Callable[[int, int], None]:
        """Begin a fit; the returned callback receives (done epochs, total epochs)."""
        return lambda done, total: None

    def end_fit(self) -> None:
        pass

    def skip(self, label: str) -> None:
        """A fit taken from the cache."""

    def close(self) -> None:
        pass


class RichProgress(Progress):
    """Two bars on stderr: the cell's fits, and the epochs of the running fit."""

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

    def start_fit(self, label: str) -> Callable[[int, int], None]:
        self.fit = self.bars.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            self.bars.update(self.fit, completed=done, total=total)
        return update

    def end_fit(self) -> None:
        if self.fit is not None:
            self.bars.remove_task(self.fit)
            self.fit = None
        if self.cell is not None:
            self.bars.advance(self.cell)

    def skip(self, label: str) -> None:
        if self.cell is not None:
            self.bars.advance(self.cell)

    def close(self) -> None:
        self.bars.stop()
