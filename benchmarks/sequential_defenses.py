"""Sequential backbones under LLM4Dec and LoRec: run the cells, or render their records.

    python benchmarks/sequential_defenses.py run --backbone sasrec \
        --defenses none,llm4dec:mode=hard,llm4dec:mode=soft,lorec \
        --attacks random,bandwagon --budget 0.01 --seeds 0,1,2 \
        --defense-opt llm_dtype=bfloat16 --output results/sequential-defenses
    python benchmarks/sequential_defenses.py table results/sequential-defenses

A defense is ``name`` or ``name:key=value,key=value``; ``--defense-opt`` applies to
every defense whose configuration has that option (e.g. the LLM's dtype). Cells use
the `lorec` protocol (leave-one-out, 5 unpopular targets); clean and attacked
conditions are shared between defenses, and a defended clean fit between attacks,
through the result cache, so two processes (e.g. one per backbone) can share work.
`table` prints one Markdown table per backbone: the undefended rows, then each
defense's attacked+defense row, with detection AUC and the mean final weight of the
fake and of the genuine users (mean ± sample std over seeds).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from recguard.cli.render import fmt

COLUMNS = ["HR@10", "NDCG@10", "T-HR@50", "T-NDCG@50", "RC-HR@10", "Detect-AUC",
           "Weight-fake", "Weight-genuine"]


def parse_defense(text: str) -> tuple[str, dict[str, str]]:
    name, _, options = text.partition(":")
    pairs = [o.split("=", 1) for o in options.split(",") if o]
    return name, {k: v for k, v in pairs}


def label_of(name: str, options: dict) -> str:
    return name if not options else f"{name} ({', '.join(f'{k}={v}' for k, v in options.items())})"


def run(args: argparse.Namespace) -> None:
    from recguard.pipeline import run_cell
    from recguard.plan import CellSpec, make_plan
    from recguard.plugins import get_host
    from recguard.progress import progress_for
    from recguard.records import write_record

    shared = dict(o.split("=", 1) for o in args.defense_opt)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    for attack in args.attacks.split(","):
        for text in args.defenses.split(","):
            name, options = parse_defense(text)
            spec = CellSpec(backbone=args.backbone, attack=attack, defense=name, protocol="lorec",
                            seeds=seeds, protocol_options={"budget": args.budget},
                            backbone_options=dict(o.split("=", 1) for o in args.backbone_opt))
            fields = get_host().defenses.get(name).Config.__dataclass_fields__
            spec.defense_options = {**{k: v for k, v in shared.items() if k in fields}, **options}
            record = run_cell(make_plan(spec), progress_for(quiet=False))
            record["notes"]["benchmark_label"] = label_of(name, options)
            path = write_record(record, args.output)
            print(f"{args.backbone} / {attack} / {label_of(name, options)}: {path}")


def table(args: argparse.Namespace) -> None:
    records = [json.loads(p.read_text()) for p in sorted(Path(args.folder).glob("*.json"))]
    by_backbone: dict[str, list[dict]] = {}
    for record in records:
        by_backbone.setdefault(record["spec"]["backbone"]["name"], []).append(record)
    for backbone, group in by_backbone.items():
        seeds = sorted({tuple(r["spec"]["seeds"]) for r in group})
        print(f"\n### {backbone} on ML-100K (`lorec` protocol, budget "
              f"{group[0]['spec']['protocol']['budget']}, seeds {', '.join(map(str, seeds))})\n")
        print("| attack | defense | " + " | ".join(COLUMNS) + " |")
        print("|---" * (2 + len(COLUMNS)) + "|")
        rows: list[tuple[str, str, dict]] = []
        seen_undefended = set()
        for record in sorted(group, key=lambda r: r["spec"]["attack"]["name"]):
            attack = record["spec"]["attack"]["name"]
            metrics = record["metrics"]
            label = record["notes"].get("benchmark_label", record["spec"]["defense"]["name"])
            if attack not in seen_undefended:
                seen_undefended.add(attack)
                rows.append((attack, "none (clean)", metrics["clean"]))
                rows.append((attack, "none", metrics["attacked"]))
            if "attacked+defense" in metrics:
                rows.append((attack, label, metrics["attacked+defense"]))
        for attack, label, metrics in rows:
            print(f"| {attack} | {label} | " + " | ".join(fmt(metrics.get(c), missing="") for c in COLUMNS) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    runner = sub.add_parser("run")
    runner.add_argument("--backbone", default="sasrec")
    runner.add_argument("--backbone-opt", action="append", default=[])
    runner.add_argument("--defenses", default="none,llm4dec:mode=hard,llm4dec:mode=soft,lorec")
    runner.add_argument("--defense-opt", action="append", default=[])
    runner.add_argument("--attacks", default="random,bandwagon")
    runner.add_argument("--budget", default="0.01")
    runner.add_argument("--seeds", default="0,1,2")
    runner.add_argument("--output", default="results/sequential-defenses")
    render = sub.add_parser("table")
    render.add_argument("folder")
    args = parser.parse_args()
    run(args) if args.command == "run" else table(args)


if __name__ == "__main__":
    main()
