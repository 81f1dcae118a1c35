"""BadRec's ASR and the model's H@1 against the poisoning rate and the number of training
samples: run the cells, print their table, draw the plot.

    python benchmarks/llm_poison_curve.py run --protocol llara-cpu \
        --rates 0.005,0.01,0.02,0.05,0.1 --train-samples 64,256 --output results/poison-curve
    python benchmarks/llm_poison_curve.py table results/poison-curve
    python benchmarks/llm_poison_curve.py plot results/poison-curve --png docs/poison_curve.png

One cell per (training samples, rate), each the undefended BadRec cell (Benign and BadRec
rows). Within one number of training samples the clean model is fine-tuned once and shared
by every rate (``FittedModels``). ``--deadline-s`` starts no new cell after that many
seconds, so a run on a lent machine ends inside its lease with what it finished.
``plot`` needs matplotlib.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def run(args: argparse.Namespace) -> None:
    from recguard.pipeline import FittedModels, run_cell
    from recguard.plan import CellSpec, make_plan
    from recguard.progress import progress_for
    from recguard.records import write_record

    started = time.monotonic()
    backbone_options = dict(o.split("=", 1) for o in args.backbone_opt)
    attack_options = dict(o.split("=", 1) for o in args.attack_opt)
    fitted = FittedModels(size=2)
    for n_train in args.train_samples.split(","):
        for rate in args.rates.split(","):
            if args.deadline_s and time.monotonic() - started > args.deadline_s:
                print(f"deadline of {args.deadline_s} s reached: stopping before "
                      f"n_train_samples={n_train}, PR={rate}", flush=True)
                return
            protocol_options = dict(o.split("=", 1) for o in args.protocol_opt)
            protocol_options.update(n_train_samples=n_train, budget=rate)
            spec = CellSpec(backbone=args.backbone, backbone_options=backbone_options,
                            attack="badrec", attack_options=attack_options,
                            protocol=args.protocol, protocol_options=protocol_options,
                            seeds=(args.seed,))
            record = run_cell(make_plan(spec), progress_for(quiet=False), fitted=fitted)
            path = write_record(record, args.output)
            print(f"n_train_samples={n_train} PR={rate}: {path} "
                  f"({time.monotonic() - started:.0f} s since start)", flush=True)


def points(folder: str) -> list[dict]:
    """One row per record: training samples, PR, poisoned samples and both rows' mean metrics."""
    rows = []
    for path in sorted(Path(folder).glob("*.json")):
        record = json.loads(path.read_text())
        protocol = record["spec"]["protocol"]
        mean = {condition: {name: value["mean"] for name, value in metrics.items()}
                for condition, metrics in record["metrics"].items()}
        rows.append({"n_train": protocol["n_train_samples"], "rate": protocol["budget"],
                     "n_poisoned": record["counts"]["fake_users"],
                     "benign": mean["clean"], "badrec": mean["attacked"]})
    return sorted(rows, key=lambda r: (r["n_train"], r["rate"]))


def table(args: argparse.Namespace) -> None:
    print("| training samples | PR | poisoned | Benign H@1 | Benign ASR | BadRec Valid | "
          "BadRec H@1 | BadRec ASR |")
    print("|---" * 8 + "|")
    for r in points(args.folder):
        b, p = r["benign"], r["badrec"]
        print(f"| {r['n_train'] or 'all'} | {r['rate']:g} | {r['n_poisoned']} | "
              f"{b['H@1']:.3f} | {b['ASR']:.3f} | {p['Valid']:.3f} | {p['H@1']:.3f} | "
              f"{p['ASR']:.3f} |")


def plot(args: argparse.Namespace) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = points(args.folder)
    # the rates run from 0.5% to 80%: equally spaced points, labelled with their rate,
    # read better than a log axis, on which 70 and 80 run into each other
    ticks = sorted({100 * r["rate"] for r in rows})
    fig, (ax_asr, ax_hit) = plt.subplots(1, 2, figsize=(9, 3.6), sharex=True)
    for n_train in sorted({r["n_train"] for r in rows}):
        line = [r for r in rows if r["n_train"] == n_train]
        at = [ticks.index(100 * r["rate"]) for r in line]
        label = f"{n_train or 'all'} training samples"
        ax_asr.plot(at, [r["badrec"]["ASR"] for r in line], marker="o", label=label)
        ax_asr.plot(at, [r["benign"]["ASR"] for r in line], linestyle=":", color="grey")
        for x, r in zip(at, line):     # how many poisoned samples each rate gave
            ax_asr.annotate(str(r["n_poisoned"]), (x, r["badrec"]["ASR"]), fontsize=7,
                            textcoords="offset points", xytext=(0, 6), ha="center")
        ax_hit.plot(at, [r["badrec"]["H@1"] for r in line], marker="o", label=label)
        ax_hit.plot(at, [r["benign"]["H@1"] for r in line], linestyle=":", color="grey")
    ax_asr.set(xlabel="poisoning rate (%)", ylim=(0, 1.02),
               ylabel="ASR (labels: poisoned samples)")
    ax_hit.set(xlabel="poisoning rate (%)", ylabel="H@1",
               ylim=(0, max(0.3, 1.2 * max(r[k]["H@1"] for r in rows for k in ("benign", "badrec")))))
    for ax in (ax_asr, ax_hit):
        ax.set_xticks(range(len(ticks)), [f"{t:g}" for t in ticks])
    ax_hit.plot([], [], linestyle=":", color="grey", label="benign model")
    ax_asr.legend(fontsize=8)
    ax_hit.legend(fontsize=8)
    fig.suptitle(args.title, fontsize=10)
    fig.tight_layout()
    fig.savefig(args.png, dpi=120)
    print(f"wrote {args.png}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    runner = sub.add_parser("run")
    runner.add_argument("--backbone", default="llara")
    runner.add_argument("--backbone-opt", action="append", default=[])
    runner.add_argument("--attack-opt", action="append", default=[])
    runner.add_argument("--protocol", default="llara-cpu")
    runner.add_argument("--protocol-opt", action="append", default=[])
    runner.add_argument("--rates", default="0.005,0.01,0.02,0.05,0.1")
    runner.add_argument("--train-samples", default="64")
    runner.add_argument("--seed", type=int, default=0)
    runner.add_argument("--deadline-s", type=float, default=0.0)
    runner.add_argument("--output", default="results/poison-curve")
    render = sub.add_parser("table")
    render.add_argument("folder")
    drawing = sub.add_parser("plot")
    drawing.add_argument("folder")
    drawing.add_argument("--png", default="docs/poison_curve.png")
    drawing.add_argument("--title", default="BadRec on LLaRA (SmolLM2-135M), ML-100K")
    args = parser.parse_args()
    {"run": run, "table": table, "plot": plot}[args.command](args)


if __name__ == "__main__":
    main()
