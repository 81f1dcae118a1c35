"""Render the CF-defense tables from result records (written by benchmarks/cf_defenses.py).

    python benchmarks/cf_defense_table.py results/cf-defenses [--full]

For each protocol and backbone: a compact table (rows: defenses; columns: the
unattacked accuracy of the defended model, then T-HR@50 under each attack and
budget), and with ``--full`` every metric per attack, budget and defense
(accuracy metrics without the attack, target metrics under it), mean ± sample
std over the seeds. When a cell was run more than once the newest record wins.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from recguard.cli.render import fmt

DEFENSE_ORDER = ["none", "apr", "pamacf", "apt", "apt-rand", "rvd"]


def load(folder: Path) -> dict:
    """(protocol, backbone, attack, budget, defense) -> the newest record of that cell."""
    cells: dict = {}
    for path in sorted(folder.glob("*.json")):
        record = json.loads(path.read_text())
        spec = record["spec"]
        key = (spec["protocol"]["name"], spec["backbone"]["name"], spec["attack"]["name"],
               float(spec["protocol"]["budget"]), spec["defense"]["name"])
        if key not in cells or record["created_at"] > cells[key]["created_at"]:
            cells[key] = record
    return cells


def by_cell(cells: dict, protocol: str, backbone: str) -> dict:
    """(attack, budget) -> {defense: (record, condition without attack, condition under it)},
    "none" first (its conditions are in every record of the cell), then `DEFENSE_ORDER`."""
    rank = {d: i for i, d in enumerate(DEFENSE_ORDER)}
    out: dict = {}
    for (p, b, attack, budget, defense), record in cells.items():
        if (p, b) == (protocol, backbone):
            row = out.setdefault((attack, budget), {"none": (record, "clean", "attacked")})
            if defense != "none":
                row[defense] = (record, "clean+defense", "attacked+defense")
    return {cell: dict(sorted(rows.items(), key=lambda kv: (rank.get(kv[0], 99), kv[0])))
            for cell, rows in sorted(out.items())}


def compact(cells: dict, protocol: str, backbone: str) -> list[str]:
    grid = by_cell(cells, protocol, backbone)
    attacks = list(grid)
    defenses = list(dict.fromkeys(d for rows in grid.values() for d in rows))
    some = next(iter(next(iter(grid.values())).values()))[0]
    accuracy = list(some["metrics"]["clean"])[0]
    seeds = ",".join(map(str, some["spec"]["seeds"]))
    lines = [f"#### {backbone}, protocol `{protocol}`, seeds {seeds}: {accuracy} without attack, "
             f"T-HR@50 under attack",
             "", "| defense | " + accuracy + " | " + " | ".join(f"{a} {b:g}" for a, b in attacks) + " |",
             "|---" * (2 + len(attacks)) + "|"]
    for defense in defenses:
        present = [grid[cell][defense] for cell in attacks if defense in grid[cell]]
        record, quiet, _ = present[0]
        row = [defense, fmt(record["metrics"][quiet][accuracy])]
        for cell in attacks:
            entry = grid[cell].get(defense)
            row.append(fmt(entry[0]["metrics"][entry[2]]["T-HR@50"]) if entry else "–")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def full(cells: dict, protocol: str, backbone: str) -> list[str]:
    """Every metric: accuracy metrics without attack, target metrics under attack."""
    grid = by_cell(cells, protocol, backbone)
    some = next(iter(next(iter(grid.values())).values()))[0]
    names = list(some["metrics"]["clean"])
    accuracy = [n for n in names if not n.startswith("T-")]
    targets = [n for n in names if n.startswith("T-")]
    lines = [f"#### {backbone}, protocol `{protocol}`: every metric (accuracy without attack, "
             f"target metrics under attack)", "",
             "| attack | budget | defense | " + " | ".join(accuracy + targets) + " |",
             "|---" * (3 + len(names)) + "|"]
    for (attack, budget), rows in grid.items():
        for defense, (record, quiet, attacked) in rows.items():
            m = record["metrics"]
            lines.append("| " + " | ".join([attack, f"{budget:g}", defense]
                                           + [fmt(m[quiet].get(n)) for n in accuracy]
                                           + [fmt(m[attacked].get(n)) for n in targets]) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--full", action="store_true", help="also every metric, per attack and defense")
    args = parser.parse_args()
    cells = load(args.folder)
    for protocol in sorted({k[0] for k in cells}):
        for backbone in sorted({k[1] for k in cells if k[0] == protocol}):
            print("\n".join(compact(cells, protocol, backbone)) + "\n")
            if args.full:
                print("\n".join(full(cells, protocol, backbone)) + "\n")


if __name__ == "__main__":
    main()
