"""CF defenses against heuristic attacks: one Markdown table per protocol and backbone.

    python benchmarks/cf_defenses.py --backbones mf --defenses apr,pamacf \
        --protocols pamacf,apt --attacks random,bandwagon,average --budgets 0.01,0.03

Every cell runs seeds 0,1,2 (by default) with clean / attacked / clean+defense /
attacked+defense conditions; the undefended conditions are shared between
defenses through the result cache. Cells a protocol refuses (e.g. `average` on
implicit data) are listed, not run.
"""

from __future__ import annotations

import argparse

from recguard.cli.render import fmt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="mf")
    parser.add_argument("--defenses", default="apr,pamacf")
    parser.add_argument("--protocols", default="pamacf,apt")
    parser.add_argument("--attacks", default="random,bandwagon,average")
    parser.add_argument("--budgets", default="0.01,0.03")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--output", default="results/cf-defenses")
    args = parser.parse_args()

    from recguard.errors import RecguardError
    from recguard.pipeline import run_cell
    from recguard.plan import CellSpec, make_plan
    from recguard.progress import progress_for
    from recguard.records import write_record

    seeds = tuple(int(s) for s in args.seeds.split(","))
    for protocol in args.protocols.split(","):
        for backbone in args.backbones.split(","):
            rows, header = [], None
            for attack in args.attacks.split(","):
                for budget in args.budgets.split(","):
                    shown_undefended = False
                    for defense in args.defenses.split(","):
                        spec = CellSpec(backbone=backbone, attack=attack, defense=defense,
                                        protocol=protocol, seeds=seeds,
                                        protocol_options={"budget": budget})
                        try:
                            plan = make_plan(spec)
                        except RecguardError as refused:
                            print(f"{protocol} / {backbone} / {attack} / {defense}: refused: {refused}")
                            continue
                        record = run_cell(plan, progress_for(quiet=False))
                        write_record(record, args.output)
                        metrics = record["metrics"]
                        header = header or list(metrics["clean"])
                        labels = [("clean", "none (clean)"), ("attacked", "none")] if not shown_undefended else []
                        labels += [("clean+defense", f"{defense} (clean)"), ("attacked+defense", defense)]
                        shown_undefended = True
                        for condition, label in labels:
                            rows.append([attack, budget, label] + [fmt(metrics[condition].get(n))
                                                                   for n in header])
            if not rows:
                continue
            print(f"\n### {backbone} on ML-100K, protocol `{protocol}`, seeds {args.seeds}\n")
            print("| attack | budget | defense | " + " | ".join(header) + " |")
            print("|---" * (3 + len(header)) + "|")
            for row in rows:
                print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
