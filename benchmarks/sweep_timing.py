"""Wall time of one grid under each executor, side by side, in one run; the sweep's
overhead per cell; a second invocation (every cell done); and the table against the
committed one.

    python benchmarks/sweep_timing.py [--spec benchmarks/sweeps/cf_defenses.toml] [--group mf-apt]
        [--work DIR] [--modes local1,local2,ray] [--compare benchmarks/tables/cf_defenses.md]

Each mode runs the grid from an empty cell cache and an empty output folder (under
``--work``), in a fresh `recguard sweep` process. The overhead is the sweep's wall time
less the seconds its cells spent inside `run_cell` (their records' ``total_seconds``), per
cell, at one job; `recguard eval` of the grid's first cell, from an empty cache too, gives
the same difference for the command a sweep replaces.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

MODES = {"local1": ["--executor", "local", "--jobs", "1"],
         "local2": ["--executor", "local", "--jobs", "2"],
         "ray": ["--executor", "ray", "--jobs", "2"]}


def recguard(args: list[str], cache: Path, quiet: bool = True) -> tuple[float, subprocess.CompletedProcess]:
    env = dict(os.environ, RECGUARD_CACHE=str(cache))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "recguard", *args] + (["-q"] if quiet else []),
                          capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"recguard {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, done


def cell_seconds(folder: Path) -> tuple[int, float]:
    records = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    return len(records), sum(r["timings"]["total_seconds"] for r in records)


def compare(table: str, committed: Path, backbone: str, protocol: str) -> tuple[int, list[str]]:
    """Cells of the regenerated compact table equal to the committed one's, and the others."""
    def rows(text: str) -> dict[tuple[str, str], str]:
        head = f"#### {backbone}, protocol `{protocol}`"
        block = text[text.index(head):].split("\n\n")[1]
        lines = [line.strip("|").split(" | ") for line in block.splitlines()]
        columns = [c.strip() for c in lines[0]]
        return {(cells[0].strip(), columns[i]): cells[i].strip()
                for cells in lines[2:] for i in range(1, len(cells))}
    new, old = rows(table), rows(committed.read_text())
    same = [k for k in new if old.get(k) == new[k]]
    differ = [f"{k[0]} / {k[1]}: {new[k]} (committed {old.get(k, 'absent')})" for k in new if k not in same]
    return len(same), differ


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="benchmarks/sweeps/cf_defenses.toml")
    parser.add_argument("--group", default="mf-apt")
    parser.add_argument("--work", default="/tmp/recguard-sweep-timing")
    parser.add_argument("--modes", default="local1,local2,ray")
    parser.add_argument("--compare", default="benchmarks/tables/cf_defenses.md")
    args = parser.parse_args()
    work = Path(args.work)
    grid = [args.spec, "--group", args.group]
    _, dry = recguard(["sweep", *grid, "--dry-run", "--output", str(work / "dry")], work / "cache-dry")
    print(dry.stdout.splitlines()[-1].split(";")[0])

    rows, second = [], ""
    for mode in args.modes.split(","):
        out, cache = work / f"out-{mode}", work / f"cache-{mode}"
        wall, _ = recguard(["sweep", *grid, *MODES[mode], "--output", str(out)], cache)
        cells, inside = cell_seconds(out)
        rows.append((mode, wall, cells, inside))
        print(f"{mode}: {wall:.1f} s wall, {cells} records, {inside:.1f} s inside run_cell", flush=True)
        if not second:   # the same command again: every cell is done
            again, done = recguard(["sweep", *grid, *MODES[mode], "--output", str(out)], cache, quiet=False)
            second = f"second invocation ({mode}): {again:.2f} s; {done.stderr.strip().splitlines()[-1]}"
            print(second, flush=True)

    print("\n| executor | wall s | cells | s inside cells | overhead s/cell |")
    print("|---|---|---|---|---|")
    for mode, wall, cells, inside in rows:
        jobs = 1 if mode == "local1" else 2
        print(f"| {' '.join(MODES[mode])} | {wall:.1f} | {cells} | {inside:.1f} | "
              f"{(wall - inside / jobs) / cells:.2f} |")

    first = rows[0][0]
    print(f"\n{second}")

    eval_out, eval_cache = work / "eval", work / "cache-eval"
    first_cell = dry.stdout.splitlines()[0]
    label = first_cell.split("]", 1)[1].split("  ")[0].strip()   # "mf · apt · average 0.01 · none · seed 0"
    backbone, protocol, attack_budget, defense, seed = [p.strip() for p in label.split("·")]
    attack, budget = attack_budget.split()
    wall, _ = recguard(["eval", "--backbone", backbone, "--protocol", protocol, "--attack", attack,
                        "--budget", budget, "--defense", defense, "--seeds", seed.split()[1],
                        "--output", str(eval_out)], eval_cache)
    _, inside = cell_seconds(eval_out)
    print(f"recguard eval of '{label}' from an empty cache: {wall:.1f} s wall, {inside:.1f} s inside "
          f"run_cell: {wall - inside:.2f} s outside it")

    if args.compare and Path(args.compare).exists():
        table_out = work / f"out-{first}"
        _, shown = recguard(["sweep", *grid, "--table", "--output", str(table_out)], work / "cache-dry")
        print("\n" + shown.stdout)
        same, differ = compare(shown.stdout, Path(args.compare), backbone, protocol)
        print(f"against {args.compare}: {same} table cells equal, {len(differ)} differ")
        for line in differ:
            print("  " + line)


if __name__ == "__main__":
    main()
