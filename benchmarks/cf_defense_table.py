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

DEFENSE_ORDER = ["none", "apr", "pamacf", "apt", "apt-rand", "rvd"]


def fmt(stat: dict | None, std: bool = True) -> str:
    if not stat or stat.get("mean") is None:
        return "n/a"
    return f"{stat['mean']:.4f} ± {stat['std']:.4f}" if std else f"{stat['mean']:.4f}"


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


def ordered(names) -> list[str]:
    return sorted(set(names), key=lambda d: (DEFENSE_ORDER.index(d) if d in DEFENSE_ORDER else 99, d))


def compact(cells: dict, protocol: str, backbone: str) -> list[str]:
    mine = {k: v for k, v in cells.items() if k[0] == protocol and k[1] == backbone}
    attacks = sorted({(k[2], k[3]) for k in mine}, key=lambda a: (a[0], a[1]))
    defenses = ordered(k[4] for k in mine)
    some = next(iter(mine.values()))
    accuracy = list(some["metrics"]["clean"])[0]
    seeds = ",".join(map(str, some["spec"]["seeds"]))
    lines = [f"#### {backbone}, protocol `{protocol}`, seeds {seeds}: {accuracy} without attack, "
             f"T-HR@50 under attack",
             "", "| defense | " + accuracy + " | " + " | ".join(f"{a} {b:g}" for a, b in attacks) + " |",
             "|---" * (2 + len(attacks)) + "|"]
    for defense in ["none"] + [d for d in defenses if d != "none"]:
        def cell(attack, budget, condition):
            record = mine.get((protocol, backbone, attack, budget, defense)) if defense != "none" else \
                next((r for (p, b, a, bu, d), r in mine.items() if (a, bu) == (attack, budget)), None)
            return None if record is None else record["metrics"][condition]

        condition_clean = "clean" if defense == "none" else "clean+defense"
        condition_attacked = "attacked" if defense == "none" else "attacked+defense"
        clean = next((cell(a, b, condition_clean) for a, b in attacks if cell(a, b, condition_clean)), None)
        row = [defense, fmt(clean[accuracy]) if clean else "n/a"]
        for a, b in attacks:
            m = cell(a, b, condition_attacked)
            row.append(fmt(m["T-HR@50"]) if m else "–")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def full(cells: dict, protocol: str, backbone: str) -> list[str]:
    """Every metric: accuracy metrics without attack, target metrics under attack."""
    mine = {k: v for k, v in cells.items() if k[0] == protocol and k[1] == backbone}
    names = list(next(iter(mine.values()))["metrics"]["clean"])
    accuracy = [n for n in names if not n.startswith("T-")]
    targets = [n for n in names if n.startswith("T-")]
    lines = [f"#### {backbone}, protocol `{protocol}`: every metric (accuracy without attack, "
             f"target metrics under attack)", "",
             "| attack | budget | defense | " + " | ".join(accuracy + targets) + " |",
             "|---" * (3 + len(names)) + "|"]
    rank = {d: i for i, d in enumerate(DEFENSE_ORDER)}
    by_cell: dict = {}
    for (_, _, attack, budget, defense), record in mine.items():
        by_cell.setdefault((attack, budget), {})[defense] = record
    for (attack, budget), records in sorted(by_cell.items()):
        rows = [("none", next(iter(records.values())), "clean", "attacked")]
        rows += [(d, records[d], "clean+defense", "attacked+defense")
                 for d in sorted(records, key=lambda d: rank.get(d, 99)) if d != "none"]
        for defense, record, quiet, attacked in rows:
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
