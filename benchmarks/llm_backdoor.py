"""BadRec and the backdoor defenses on LLM recommenders: run the cells, or render their records.

    python benchmarks/llm_backdoor.py run --backbone llara --levels char,word,sentence \
        --positions end,random --defenses p-scanner,rd,llmsi,onion,paraphraser,strip,rpd,cos \
        --seeds 0 --output results/llm-backdoor
    python benchmarks/llm_backdoor.py table results/llm-backdoor

One cell per (trigger level, position, defense). The Benign and BadRec rows are shared by
every defense of a (level, position) through the result cache, and the poisoned model is
kept in memory between the defenses of one process, so each is fine-tuned once. ``table``
prints the paper's Table 2 layout: per backbone and trigger level, the rows Benign, BadRec
and each defense, with the End and Random positions side by side.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from recguard.cli.render import fmt

COLUMNS = {"choose": ["Valid", "H@1", "A-Valid", "ASR", "Score"],
           "yes_no": ["AUC", "ASR", "Score"]}
SCAN_COLUMNS = ["Scan-Precision", "Scan-Recall"]
# the paper's row order (Table 2); others after, by name
ROW_ORDER = ["Benign", "BadRec", "rd", "llmsi", "onion", "strip", "rpd", "cos", "paraphraser", "p-scanner"]


def run(args: argparse.Namespace) -> None:
    from recguard.pipeline import FittedModels, run_cell
    from recguard.plan import CellSpec, make_plan
    from recguard.progress import progress_for
    from recguard.records import write_record

    seeds = tuple(int(s) for s in args.seeds.split(","))
    backbone_options = dict(o.split("=", 1) for o in args.backbone_opt)
    protocol_options = dict(o.split("=", 1) for o in args.protocol_opt)
    fitted = FittedModels(size=2)     # the clean and the poisoned model, across the grid
    for level in args.levels.split(","):
        for position in args.positions.split(","):
            for defense in args.defenses.split(","):
                name, _, options = defense.partition(":")
                spec = CellSpec(backbone=args.backbone, backbone_options=backbone_options,
                                attack="badrec",
                                attack_options={"trigger_level": level, "position": position},
                                defense=name,
                                defense_options=dict(o.split("=", 1) for o in options.split(";") if o),
                                protocol=args.protocol, protocol_options=protocol_options,
                                seeds=seeds)
                record = run_cell(make_plan(spec), progress_for(quiet=False), fitted=fitted)
                record["notes"]["benchmark_label"] = defense
                path = write_record(record, args.output)
                print(f"{args.backbone} / {level} / {position} / {defense}: {path}", flush=True)


def table(args: argparse.Namespace) -> None:
    records = [json.loads(p.read_text()) for p in sorted(Path(args.folder).glob("*.json"))]
    groups: dict[tuple[str, str], list[dict]] = {}
    for record in records:
        spec = record["spec"]
        groups.setdefault((spec["backbone"]["name"], spec["attack"]["config"]["trigger_level"]),
                          []).append(record)
    for (backbone, level), group in sorted(groups.items()):
        task = group[0]["spec"]["protocol"]["llm_task"]
        columns = COLUMNS[task] + SCAN_COLUMNS
        seeds = sorted({s for r in group for s in r["spec"]["seeds"]})
        print(f"\n### {backbone}, {level}-level trigger (ML-100K, `{group[0]['spec']['protocol']['name']}` "
              f"protocol, seeds {', '.join(map(str, seeds))})\n")
        positions = sorted({r["spec"]["attack"]["config"]["position"] for r in group})
        header = " | ".join(f"{c} ({p})" for p in positions for c in columns)
        print(f"| row | {header} |")
        print("|---" * (1 + len(columns) * len(positions)) + "|")
        rows: dict[str, dict[str, dict]] = {}
        for record in group:
            position = record["spec"]["attack"]["config"]["position"]
            metrics = record["metrics"]
            rows.setdefault("Benign", {})[position] = metrics["clean"]
            rows.setdefault("BadRec", {})[position] = metrics["attacked"]
            if "attacked+defense" in metrics:
                label = record["notes"].get("benchmark_label", record["spec"]["defense"]["name"])
                rows.setdefault(label, {})[position] = metrics["attacked+defense"]
        order = sorted(rows, key=lambda r: (ROW_ORDER.index(r) if r in ROW_ORDER else len(ROW_ORDER), r))
        for label in order:
            by_position = rows[label]
            cells = [fmt(by_position.get(p, {}).get(c), missing="/") for p in positions for c in columns]
            print(f"| {label} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    runner = sub.add_parser("run")
    runner.add_argument("--backbone", default="llara")
    runner.add_argument("--backbone-opt", action="append", default=[])
    runner.add_argument("--protocol", default=None, help="default: the backbone's (llara-cpu, tallrec)")
    runner.add_argument("--protocol-opt", action="append", default=[])
    runner.add_argument("--levels", default="char,word,sentence")
    runner.add_argument("--positions", default="end,random")
    runner.add_argument("--defenses", default="p-scanner,rd,llmsi,onion,paraphraser",
                        help="comma-separated; options as name:key=value;key=value")
    runner.add_argument("--seeds", default="0")
    runner.add_argument("--output", default="results/llm-backdoor")
    render = sub.add_parser("table")
    render.add_argument("folder")
    args = parser.parse_args()
    run(args) if args.command == "run" else table(args)


if __name__ == "__main__":
    main()
