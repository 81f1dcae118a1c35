"""Sweep one defense option on validation seeds (other targets, other splits than the test seeds).

    python benchmarks/tune_defense.py --defense apr --option eps --values 0.01,0.03,0.1,0.3 \
        --backbone mf --protocol apt --attack average --budget 0.03 --seeds 100,101,102

Reported results use seeds 0, 1, 2; tuning on seeds 100+ draws other target
items and another random hold-out, so no test target informs the choice. For
each value: the defended model's accuracy without an attack (the protocol's
first metric) and under the attack (target metrics), mean ± std over the seeds,
next to the undefended values.
"""

from __future__ import annotations

import argparse

from recguard.cli.render import fmt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--defense", required=True)
    parser.add_argument("--option", required=True)
    parser.add_argument("--values", required=True, help="comma-separated values of the option")
    parser.add_argument("--backbone", default="mf")
    parser.add_argument("--protocol", default="apt")
    parser.add_argument("--attack", default="average")
    parser.add_argument("--budget", default="0.03")
    parser.add_argument("--seeds", default="100,101,102")
    parser.add_argument("--defense-opt", action="append", default=[], help="fixed key=value options")
    args = parser.parse_args()

    from recguard.pipeline import run_cell
    from recguard.plan import CellSpec, make_plan
    from recguard.progress import progress_for

    fixed = dict(o.split("=", 1) for o in args.defense_opt)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    rows = []
    for value in args.values.split(","):
        spec = CellSpec(backbone=args.backbone, attack=args.attack, defense=args.defense,
                        protocol=args.protocol, seeds=seeds, protocol_options={"budget": args.budget},
                        defense_options={**fixed, args.option: value})
        metrics = run_cell(make_plan(spec), progress_for(quiet=False))["metrics"]
        names = list(metrics["clean"])
        accuracy, targets = names[0], [n for n in names if n.startswith("T-")]
        if not rows:
            rows.append(["none", fmt(metrics["clean"][accuracy])]
                        + [fmt(metrics["attacked"][n]) for n in targets])
        rows.append([f"{args.option}={value}", fmt(metrics["clean+defense"][accuracy])]
                    + [fmt(metrics["attacked+defense"][n]) for n in targets])
    print(f"\n{args.defense} on {args.backbone}, protocol {args.protocol}, {args.attack} "
          f"{args.budget}, validation seeds {args.seeds}\n")
    print(f"| setting | {accuracy} (no attack) | " + " | ".join(f"{n} (attacked)" for n in targets) + " |")
    print("|---" * (2 + len(targets)) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
