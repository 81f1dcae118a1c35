"""Per-epoch training time of each during-fit defense relative to its plain backbone.

    python benchmarks/defense_epoch_time.py [--backbones mf,lightgcn]
        [--defenses apr,pamacf,apt,apt-rand] [--protocol apt] [--epochs 25] [--repeats 2]
        [--defense-opt KEY=VALUE ...]

Fits on ML-100K's training split (seed 0) and reports the median seconds per
epoch over the repeats and the ratio to the plain backbone. Adversarial
training (a defense with an ``adv_start`` option) starts at the first epoch, so
every timed epoch carries its cost; a defense with its own schedule (APT:
plain pre-training epochs, then ERM users every few epochs) keeps its defaults,
so its number is the average epoch of a default fit of ``--epochs`` epochs.
A defense that refuses the backbone is listed as refused. ``--defense-opt`` sets
an option of every defense that has it (e.g. ``llm_dtype=bfloat16`` for LoRec's
LLM, whose prompt embedding happens before the timed fit, in ``during_fit``).
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="mf,lightgcn")
    parser.add_argument("--defenses", default="apr,pamacf,apt,apt-rand")
    parser.add_argument("--protocol", default="apt")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--defense-opt", action="append", default=[])
    args = parser.parse_args()

    from recguard.compat import check_cell
    from recguard.contracts import DefenseContext, FitContext, FitHooks
    from recguard.config import build_config
    from recguard.errors import RecguardError
    from recguard.data.prepare import prepare, preprocess
    from recguard.plugins import get_host

    host = get_host()
    protocol = host.protocols.get(args.protocol)
    raw = host.datasets.get("ml-100k").load(None, host.datasets.get("ml-100k").Config())
    train = prepare(preprocess(raw, protocol), protocol, 0).train
    print(f"ML-100K {args.protocol} training split: {train.n_users} users, {len(train)} interactions; "
          f"{args.epochs} epochs, median of {args.repeats}")
    print("| backbone | defense | s / epoch | x plain |\n|---|---|---|---|")
    for name in args.backbones.split(","):
        cls = host.backbones.get(name)
        backbone = cls(build_config(cls.Config, {"epochs": str(args.epochs)}, name))
        # untimed warm-up: the first optimizer step imports torch._dynamo (~1.7 s)
        cls(build_config(cls.Config, {"epochs": "1"}, name)).fit(train, FitContext(seed=0))
        plain = None
        for defense_name in ["none"] + args.defenses.split(","):
            defense = None
            if defense_name != "none":
                dcls = host.defenses.get(defense_name)
                fields = dcls.Config.__dataclass_fields__
                options = {k: v for k, v in (o.split("=", 1) for o in args.defense_opt) if k in fields}
                if "adv_start" in fields:
                    options["adv_start"] = "0"
                defense = dcls(build_config(dcls.Config, options, defense_name))
                try:
                    check_cell(host, cls, host.attacks.get("none"), dcls, protocol)
                except RecguardError as refused:
                    print(f"| {name} | {defense_name} | refused: {refused} | |")
                    continue
            times = []
            for _ in range(args.repeats):
                hooks = FitHooks()
                if defense is not None:
                    hooks = defense.during_fit(train, DefenseContext(0, protocol, backbone))
                start = time.perf_counter()
                backbone.fit(train, FitContext(seed=0, hooks=hooks))
                times.append((time.perf_counter() - start) / args.epochs)
            per_epoch = statistics.median(times)
            plain = plain or per_epoch
            print(f"| {name} | {defense_name} | {per_epoch:.3f} | {per_epoch / plain:.2f} |")


if __name__ == "__main__":
    main()
