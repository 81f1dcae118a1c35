"""Sweeps: grids of cells from a TOML spec (`spec`), expanded and checked before any work
(`grid`), content-addressed records (`address`), run on local processes or a Ray cluster
(`executors`, `worker`) by one loop that skips finished cells and retries failed ones
once (`run`), and summary tables from records alone (`table`). docs/sweeps.md describes
the format and the commands.

A sweep cell runs through `recguard.pipeline.run_cell`, as `recguard eval` does; the CLI
(`recguard sweep`, `recguard table`) calls this package. The spec, grid and table modules
import no torch, nor does anything here at import time.
"""

from __future__ import annotations

from pathlib import Path

from recguard.errors import RecguardError, unknown
from recguard.sweep.grid import Cell, Refused, expand, select
from recguard.sweep.spec import SweepSpec, read_spec


def load_sweep(path: str | Path, skip_incompatible: bool = False, groups: tuple[str, ...] = (),
               where: dict[str, list[str]] | None = None) -> tuple[SweepSpec, list[Cell], list[Refused]]:
    """Read, expand and check a spec (only ``groups`` of it, when named; only the cells
    `select` keeps for ``where``). Impossible cells are refused with their line unless
    ``skip_incompatible`` (then they are returned, to be reported)."""
    spec = read_spec(path)
    if groups:
        names = [g.name for g in spec.groups]
        for name in groups:
            if name not in names:
                raise unknown(f"group in {spec.path}", name, names)
        spec.groups = [g for g in spec.groups if g.name in groups]
    cells, refused = expand(spec)
    if refused and not skip_incompatible:
        first = refused[0]
        more = f" ({len(refused)} impossible cells in all)" if len(refused) > 1 else ""
        raise RecguardError(f"{spec.path}:{first.line}: [{first.group}] {first.label}: {first.reason}"
                            f"{more}; exclude them in the spec or pass --skip-incompatible")
    if not cells:
        raise RecguardError(f"{spec.path}: no cell to run (every cell is excluded or impossible)")
    if where:
        cells = select(cells, where)
        if not cells:
            wanted = " ".join(f"{k}={','.join(v)}" for k, v in where.items())
            raise RecguardError(f"{spec.path}: no cell matches --where {wanted}")
    return spec, cells, refused


__all__ = ["Cell", "Refused", "SweepSpec", "expand", "load_sweep", "read_spec"]
