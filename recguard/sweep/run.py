"""The sweep loop: skip the cells whose record exists, submit the others to an executor,
retry a failed cell once, write each record as it arrives (atomically, at its content
address) and report what failed at the end. Stopped at any point, a re-run resumes: what
was written is complete and found, what was in flight runs again."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from recguard.errors import RecguardError
from recguard.files import loads_json
from recguard.records import write_record
from recguard.sweep.address import Addresser, record_path
from recguard.sweep.grid import Cell
from recguard.sweep.progress import SweepProgress

ATTEMPTS = 2   # a failed cell is retried once


@dataclass
class SweepResult:
    cells: list[Cell]
    paths: list[Path]
    skipped: int = 0
    ran: int = 0
    failures: list[tuple[Cell, str]] = field(default_factory=list)

    def records(self) -> list[dict]:
        """The records of every finished cell (skipped or run now)."""
        return [loads_json(p.read_text()) for p in self.paths if p.exists()]


def cell_paths(cells: list[Cell], output: Path, addresser: Addresser | None = None) -> list[Path]:
    addresser = addresser or Addresser()
    return [record_path(output, addresser, cell) for cell in cells]


def run_sweep(cells: list[Cell], output: str | Path, executor, progress: SweepProgress | None = None,
              paths: list[Path] | None = None) -> SweepResult:
    """Run the cells without a record under ``output``; a KeyboardInterrupt stops the
    executor's workers and propagates (every record written so far stays)."""
    output = Path(output)
    progress = progress or SweepProgress()
    paths = paths or cell_paths(cells, output)
    result = SweepResult(cells, paths)
    queue = deque(i for i, path in enumerate(paths) if not path.exists())
    result.skipped = len(cells) - len(queue)
    progress.start(len(cells), result.skipped)
    if not queue:
        progress.close()
        return result
    attempts = [0] * len(cells)
    in_flight = 0
    try:
        executor.start()
        progress.note(f"running on {executor.description}")
        while queue or in_flight:
            while queue and in_flight < executor.slots:
                i = queue.popleft()
                executor.submit(i, cells[i].to_spec(), cells[i].plan.prefers_gpu)
                progress.started(cells[i].label)
                in_flight += 1
            i, outcome = executor.next_done()
            in_flight -= 1
            attempts[i] += 1
            error = outcome.error
            if outcome.record is not None:
                try:
                    write_record(outcome.record, output, paths[i].name)
                except RecguardError as exc:
                    error = str(exc)
            if error is None:
                result.ran += 1
                progress.finished(cells[i].label, outcome.seconds)
                continue
            retrying = attempts[i] < ATTEMPTS
            progress.failed_once(cells[i].label, error, retrying)
            if retrying:
                queue.append(i)
            else:
                result.failures.append((cells[i], error))
    except BaseException:
        executor.close(cancel=True)
        raise
    finally:
        progress.close()
    executor.close()
    return result


def estimate_seconds(cells: list[Cell], paths: list[Path], slots: int) -> float | None:
    """Wall seconds left, from the finished records' times (the same backbone and defense
    where there are some, else all): None before any cell has finished. Rough: a cell whose
    undefended conditions are cached takes less than the first."""
    done: dict[tuple[str, str], list[float]] = {}
    for cell, path in zip(cells, paths):
        if path.exists():
            seconds = loads_json(path.read_text())["timings"]["total_seconds"]
            done.setdefault(_kind(cell), []).append(seconds)
    if not done:
        return None
    every = [s for times in done.values() for s in times]
    left = sum(_mean(done.get(_kind(c), every)) for c, p in zip(cells, paths) if not p.exists())
    return left / max(1, slots)


def _kind(cell: Cell) -> tuple[str, str]:
    return cell.plan.backbone.name, cell.plan.defense.name


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)
