"""A sweep's progress: one line per started, finished or failed cell in a log; a bar with running
and failed counts on a terminal."""

import io

from recguard.sweep.progress import LogSweepProgress, RichSweepProgress


def test_log_lines_count_the_cells():
    stream = io.StringIO()
    log = LogSweepProgress(stream)
    log.start(4, 1)
    log.note("running on local")
    for label in ("a", "b", "c"):
        log.started(label)
    log.finished("a", 2.5)
    log.failed_once("b", "ValueError: no", retrying=True)
    log.failed_once("c", "ValueError: no", retrying=False)
    lines = [line.split(" ", 1)[1] for line in stream.getvalue().splitlines()]
    assert lines == ["sweep: 4 cells, 1 already done, 3 to run", "running on local",
                     "[1/4] a: started", "[1/4] b: started", "[1/4] c: started",
                     "[2/4] a: done in 2.5 s", "[2/4] b: failed, retrying once: ValueError: no",
                     "[2/4] c: failed: ValueError: no"]
    assert (log.done, log.running, log.failed) == (2, 0, 1)


def test_the_bar_shows_running_and_failed_cells():
    from rich.console import Console

    out = io.StringIO()
    bar = RichSweepProgress(Console(file=out, force_terminal=True, width=120))
    bar.start(3, 0)
    bar.started("x [not markup]")
    bar.started("y")
    bar.failed_once("x [not markup]", "RuntimeError: [red] stays text", retrying=False)
    assert bar.bars.tasks[0].description == "cells · 1 running · 1 failed"
    bar.finished("y", 1.0)
    bar.close()
    text = out.getvalue()
    assert "x [not markup]: failed: RuntimeError: [red] stays text" in text
    assert bar.bars.tasks[0].completed == 1
