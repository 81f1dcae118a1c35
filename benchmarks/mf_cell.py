"""Time one MF cell on ML-100K: clean + attacked, one seed, default epochs.

    python benchmarks/mf_cell.py [--repeats 3] [--attack average] [--protocol apt]

Each repeat runs the whole cell in a fresh process state except for the
prepared-data cache (warm after the first repeat, as for a user's second run);
the result cache is off, so both conditions are fitted every time.
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--attack", default="average")
    parser.add_argument("--protocol", default="apt")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    started = time.perf_counter()
    import torch  # noqa: F401  (import cost reported apart from the cell)

    from recguard.pipeline import run_cell
    from recguard.plan import CellSpec, make_plan

    import_seconds = time.perf_counter() - started
    rows = []
    for _ in range(args.repeats):
        plan = make_plan(CellSpec(attack=args.attack, protocol=args.protocol, seeds=(args.seed,)))
        start = time.perf_counter()
        record = run_cell(plan, use_cache=False)
        total = time.perf_counter() - start
        fits = record["timings"]["fit_seconds"]
        rows.append((total, fits["clean"][0], fits["attacked"][0]))

    print(f"MF cell on ML-100K, protocol {args.protocol}, attack {args.attack}, seed {args.seed}, "
          f"torch threads {torch.get_num_threads()} (MF trains on 1)")
    print(f"import torch + recguard: {import_seconds:.2f} s")
    print(f"{'repeat':>6} {'cell s':>8} {'fit clean s':>12} {'fit attacked s':>15}")
    for i, (total, clean, attacked) in enumerate(rows):
        print(f"{i:>6} {total:>8.2f} {clean:>12.2f} {attacked:>15.2f}")
    print(f"median cell: {statistics.median(r[0] for r in rows):.2f} s")


if __name__ == "__main__":
    main()
