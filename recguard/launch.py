"""Which process of a data-parallel launch this one is.

`torchrun` and `accelerate launch` start one process per GPU, each running the same
command, and give each its ``RANK`` (0 .. WORLD_SIZE - 1). Under them every process runs
the whole cell: the LLM fine-tunes are data-parallel (the trainer joins the launch's process
group), the rest is repeated. Rank 0 alone reports: progress, record, leaderboard entry.
"""

from __future__ import annotations

import os


def launch_rank() -> int:
    """This process's ``RANK`` under a data-parallel launch; 0 when there is none."""
    value = os.environ.get("RANK", "").strip()
    return int(value) if value.isdigit() else 0


def is_main_process() -> bool:
    return launch_rank() == 0
