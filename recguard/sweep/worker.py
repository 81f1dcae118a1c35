"""What runs a cell on a worker: the cell's spec (names and option strings) in, its record
out. The worker plans the cell and runs it through `run_cell`, the function `recguard eval`
calls, so a sweep's record is the record `recguard eval` writes; the parent writes it."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any


@dataclass
class Outcome:
    """A finished attempt: the record, or a one-line error."""

    record: dict | None
    error: str | None
    seconds: float


def one_line(exc: BaseException) -> str:
    from recguard.errors import RecguardError, first_line

    text = first_line(exc)
    if isinstance(exc, RecguardError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def run_cell_spec(spec: dict[str, Any]) -> dict:
    """Plan and run one cell; raises what `recguard eval` would."""
    from recguard.pipeline import run_cell
    from recguard.plan import make_plan
    from recguard.sweep.grid import spec_from_dict

    return run_cell(make_plan(spec_from_dict(spec)), use_cache=True)


def attempt(spec: dict[str, Any]) -> Outcome:
    """`run_cell_spec`, with any failure caught as its one-line message (what crosses a
    process boundary is then always plain data)."""
    start = time.perf_counter()
    try:
        record = run_cell_spec(spec)
    except Exception as exc:  # one cell's failure is reported, not raised: the sweep goes on
        return Outcome(None, one_line(exc), time.perf_counter() - start)
    return Outcome(record, None, time.perf_counter() - start)


def ray_attempt(spec: dict[str, Any]) -> Outcome:
    """`attempt` as a Ray task. Its record's environment also names the Ray node that ran it
    (the GPU Ray gave the task is in ``cuda_visible_devices``, which Ray sets): on a cluster
    that is the one trace of which machine produced a number."""
    import ray

    outcome = attempt(spec)
    if outcome.record is not None:
        outcome.record["environment"]["ray_node_id"] = ray.get_runtime_context().get_node_id()
    return outcome


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def thread_cap(threads: int) -> int:
    """``threads``, or the lower cap ``OMP_NUM_THREADS`` already sets."""
    current = os.environ.get(THREAD_VARIABLES[0], "")
    return min(threads, int(current)) if current.isdigit() and int(current) > 0 else threads


def limit_threads(threads: int) -> None:
    """Cap torch's (and BLAS's) threads in this worker: N cells at once share the cores.
    Set before torch is imported, which reads these at start-up."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
