"""Per-epoch training time of each during-fit defense relative to its plain backbone.

    python benchmarks/defense_epoch_time.py [--backbones mf,lightgcn] [--defenses apr,pamacf]
        [--protocol pamacf] [--epochs 10] [--repeats 2]

Fits on ML-100K's training split (seed 0) with adversarial training from the
first epoch, so every timed epoch carries the defense's cost; reports the
median seconds per epoch over the repeats and the ratio to the plain backbone.
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="mf,lightgcn")
    parser.add_argument("--defenses", default="apr,pamacf")
    parser.add_argument("--protocol", default="pamacf")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    from recguard.components import DefenseContext, FitContext, FitHooks
    from recguard.config import build_config
    from recguard.data.prepare import prepare, preprocess
    from recguard.plugins import get_host

    host = get_host()
    protocol = host.protocols.get(args.protocol)
    raw = host.datasets.get("ml-100k").load(None, host.datasets.get("ml-100k").Config())
    train = prepare(preprocess(raw, protocol), protocol, 0).train
    print(f"ML-100K {args.protocol} training split: {train.n_users} users, {len(train)} interactions; "
          f"{args.epochs} epochs, median of {args.repeats}")
    print(f"| backbone | defense | s / epoch | x plain |\n|---|---|---|---|")
    for name in args.backbones.split(","):
        cls = host.backbones.get(name)
        backbone = cls(build_config(cls.Config, {"epochs": str(args.epochs)}, name))
        plain = None
        for defense_name in ["none"] + args.defenses.split(","):
            times = []
            for _ in range(args.repeats):
                hooks = FitHooks()
                if defense_name != "none":
                    dcls = host.defenses.get(defense_name)
                    defense = dcls(build_config(dcls.Config, {"adv_start": "0"}, defense_name))
                    hooks = defense.during_fit(train, DefenseContext(0, protocol, backbone))
                start = time.perf_counter()
                backbone.fit(train, FitContext(seed=0, hooks=hooks))
                times.append((time.perf_counter() - start) / args.epochs)
            per_epoch = statistics.median(times)
            plain = plain or per_epoch
            print(f"| {name} | {defense_name} | {per_epoch:.3f} | {per_epoch / plain:.2f} |")


if __name__ == "__main__":
    main()
