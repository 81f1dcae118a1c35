"""One row per option setting of a component, from a folder of records (e.g. a sweep over
`defense_options`): the mean ± std over seeds (as `recguard table`) of the chosen metrics in each condition.

    python benchmarks/option_ablation.py results/sweeps/fidelity --component defense \
        --metric T-HR@50 --metric HR@50

Rows are keyed by the options that vary among the records of each attack x budget x
component name (`recguard.sweep.table.varying_options`, which `recguard table` labels its
rows by too); this script also picks any metric and condition of the records.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from recguard.records import aggregate   # the mean and (sample) std every record and table uses
from recguard.sweep.table import varying_options


def load(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--component", default="defense", choices=["backbone", "attack", "defense"])
    parser.add_argument("--metric", action="append", default=[])
    parser.add_argument("--seeds", default=None, help="only records of these seeds, e.g. 0,1,2")
    parser.add_argument("--condition", default=None,
                        help="default: attacked+defense where present, else attacked")
    args = parser.parse_args()
    metrics = args.metric or ["T-HR@50"]
    records = load(args.folder)
    if args.seeds:
        wanted = {int(x) for x in args.seeds.split(",")}
        records = [r for r in records if set(r["spec"]["seeds"]) <= wanted]
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        spec = r["spec"]
        groups[(spec["protocol"]["name"], spec["backbone"]["name"], spec["attack"]["name"],
                spec["protocol"]["budget"], spec[args.component]["name"])].append(r)
    print("| protocol | backbone | attack | budget | " + args.component + " | options | seeds | "
          + " | ".join(metrics) + " |")
    print("|---" * (7 + len(metrics)) + "|")
    for (protocol, backbone, attack, budget, name), rows in sorted(groups.items(), key=str):
        configs = [r["spec"][args.component].get("config") or {} for r in rows]
        keys = varying_options(configs)
        variants: dict[str, list[dict]] = defaultdict(list)
        for r, c in zip(rows, configs):
            variants[", ".join(f"{k}={c.get(k)}" for k in keys) or "defaults"].append(r)
        for label, rs in sorted(variants.items()):
            condition = args.condition or ("attacked+defense" if "attacked+defense" in rs[0]["metrics"]
                                           else "attacked")
            cells = []
            for m in metrics:
                if any(m not in r["metrics"].get(condition, {}) for r in rs):
                    cells.append("/")           # not a metric or condition of these records
                    continue
                stat = aggregate([s for r in rs for s in r["metrics"][condition][m]["per_seed"]])
                cells.append(f"{stat['mean']:.4f} ± {stat['std']:.4f}")
            seeds = sorted(s for r in rs for s in r["spec"]["seeds"])
            print(f"| {protocol} | {backbone} | {attack} | {budget} | {name} | {label} | "
                  f"{','.join(map(str, seeds))} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
