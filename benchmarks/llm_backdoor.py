"""The paper's Table 2 layout of BadRec and the backdoor defenses, from records.

    recguard sweep benchmarks/sweeps/llm_backdoor.toml [--group G] [--where KEY=V ...]
    python benchmarks/llm_backdoor.py results/sweeps/llm_backdoor [--where KEY=V ...]

One table per backbone (with the options that tell its variants apart), protocol and
trigger level: the rows Benign and BadRec (shared by the defenses of a trigger), then each
defense (with the options that tell its variants apart), the End and Random positions
side by side. `recguard table` gives the same numbers in the sweep's general layout.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from recguard.cli.render import fmt
from recguard.records import read_record
from recguard.sweep.table import variant_labels

COLUMNS = {"choose": ["Valid", "H@1", "A-Valid", "ASR", "Score"],
           "yes_no": ["AUC", "ASR", "Score"]}
SCAN_COLUMNS = ["Scan-Precision", "Scan-Recall"]
# the paper's row order (Table 2); others after, by name
ROW_ORDER = ["Benign", "BadRec", "rd", "llmsi", "onion", "strip", "rpd", "cos", "paraphraser", "p-scanner"]


def matches(record: dict, where: dict[str, str]) -> bool:
    """``where`` holds for the record: each key an attack option (trigger_level, position)
    or a role's name (backbone, defense)."""
    spec = record["spec"]
    for key, value in where.items():
        have = (spec[key]["name"] if key in ("backbone", "attack", "defense")
                else spec["attack"]["config"].get(key))
        if str(have) != value:
            return False
    return True


def _row_rank(label: str) -> tuple[int, str]:
    """The paper's order; a variant ("p-scanner false_alarm=0.2") ranks with its name."""
    name = label.split(" ")[0]
    return (ROW_ORDER.index(name) if name in ROW_ORDER else len(ROW_ORDER)), label


def render(records: list[dict]) -> str:
    backbones = variant_labels(records, "backbone")
    defenses = variant_labels(records, "defense")
    groups: dict[tuple[str, str, str], list[tuple[dict, str]]] = {}
    for record, backbone, defense in zip(records, backbones, defenses):
        spec = record["spec"]
        key = (backbone, spec["protocol"]["name"], spec["attack"]["config"]["trigger_level"])
        groups.setdefault(key, []).append((record, defense))
    out = []
    for (backbone, protocol, level), group in sorted(groups.items()):
        task = group[0][0]["spec"]["protocol"]["llm_task"]
        columns = COLUMNS[task] + SCAN_COLUMNS
        seeds = sorted({s for r, _ in group for s in r["spec"]["seeds"]})
        out.append(f"\n### {backbone}, {level}-level trigger (ML-100K, `{protocol}` protocol, "
                   f"seeds {', '.join(map(str, seeds))})\n")
        positions = sorted({r["spec"]["attack"]["config"]["position"] for r, _ in group})
        header = " | ".join(f"{c} ({p})" for p in positions for c in columns)
        out.append(f"| row | {header} |")
        out.append("|---" * (1 + len(columns) * len(positions)) + "|")
        rows: dict[str, dict[str, dict]] = {}
        for record, defense in group:
            position = record["spec"]["attack"]["config"]["position"]
            metrics = record["metrics"]
            rows.setdefault("Benign", {})[position] = metrics["clean"]
            rows.setdefault("BadRec", {})[position] = metrics["attacked"]
            if "attacked+defense" in metrics:
                rows.setdefault(defense, {})[position] = metrics["attacked+defense"]
        for label in sorted(rows, key=_row_rank):
            by_position = rows[label]
            cells = [fmt(by_position.get(p, {}).get(c), missing="/") for p in positions for c in columns]
            out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="folders of records (a sweep's --output)")
    parser.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                        help="only the records with this trigger_level, position, backbone, "
                             "attack or defense (repeatable)")
    args = parser.parse_args()
    where = dict(pair.split("=", 1) for pair in args.where)
    records = [read_record(p) for folder in args.folders for p in sorted(Path(folder).glob("*.json"))]
    records = [r for r in records if r["spec"]["attack"]["name"] == "badrec" and matches(r, where)]
    if not records:
        raise SystemExit("no BadRec records there")
    print(render(records), end="")


if __name__ == "__main__":
    main()
