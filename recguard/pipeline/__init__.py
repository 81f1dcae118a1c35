"""The pipeline: one loop over a cell's seeds and conditions (`cell`), with the task kind
chosen from the protocol (`kinds`: ranking, choose, yes_no), the conditions
(`conditions`), the cell cache (`cache`) and record assembly (`record`).

It builds on the core only; the CLI, the leaderboard's verification and the benchmarks
call it. Plugins never do: what they need of it comes to them as arguments.
"""

from recguard.pipeline.cache import FittedModels
from recguard.pipeline.cell import run_cell
from recguard.pipeline.record import planned_spec

__all__ = ["FittedModels", "planned_spec", "run_cell"]
