"""Seconds per served user of the RVD defense: local (touched rows) vs generic (snapshot/restore).

    python benchmarks/rvd_speed.py [--backbone mf] [--protocol apt] [--epochs 1,5]
        [--serve-batch 1,16] [--users 0] [--repeats 1]

Fits the backbone once on ML-100K's training split (seed 0), then serves every
genuine user (943; --users N serves the first N) through RVD with each path,
fine-tuning epochs and serve batch; reports seconds per served user (the
defense's own timing note, neighbour search included), the undefended
scoring time per user (Table 6's "Origin") and the largest score difference
from the generic path relative to the largest score (the paths must agree).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="mf")
    parser.add_argument("--protocol", default="apt")
    parser.add_argument("--epochs", default="1,5", help="fine-tuning epochs to time (comma list)")
    parser.add_argument("--serve-batch", default="1,16", help="local path: jobs trained together")
    parser.add_argument("--users", type=int, default=0, help="serve the first N users (0: all)")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    from recguard.contracts import DefenseContext, FitContext
    from recguard.config import build_config
    from recguard.data.prepare import prepare, preprocess
    from recguard.kit.cf.finetune_restore import supports_local
    from recguard.plugins import get_host

    host = get_host()
    protocol = host.protocols.get(args.protocol)
    dataset = host.datasets.get("ml-100k")
    train = prepare(preprocess(dataset.load(None, dataset.Config()), protocol), protocol, 0).train
    backbone = host.backbones.get(args.backbone)()
    start = time.perf_counter()
    model = backbone.fit(train, FitContext(seed=0))
    fit_seconds = time.perf_counter() - start
    users = np.arange(train.n_users if args.users <= 0 else min(args.users, train.n_users))
    rvd = host.defenses.get("rvd")
    print(f"ML-100K {args.protocol}: {train.n_users} users, {len(train)} training rows; "
          f"{args.backbone} fitted in {fit_seconds:.1f} s; serving {len(users)} users, "
          f"best of {args.repeats}")
    print("| epochs | path | serve batch | s / user | origin s / user | max |diff| / max |score| vs generic |")
    print("|---|---|---|---|---|---|")
    for epochs in [int(e) for e in args.epochs.split(",")]:
        runs = [("generic", 1)]
        if supports_local(model):
            runs += [("local", int(b)) for b in args.serve_batch.split(",")]
        reference = None
        for path, batch in runs:
            best, scores, origin = None, None, None
            for _ in range(args.repeats):
                config = build_config(rvd.Config, {"epochs": str(epochs), "path": path,
                                                   "serve_batch": str(batch)}, "rvd")
                ctx = DefenseContext(seed=0, protocol=protocol, backbone=backbone)
                scores = rvd(config).at_inference(model, train, ctx).score(users)
                if best is None or ctx.notes["seconds_per_user"] < best:
                    best, origin = ctx.notes["seconds_per_user"], ctx.notes["base_seconds_per_user"]
            reference = scores if reference is None else reference
            diff = float(np.abs(scores - reference).max() / max(np.abs(reference).max(), 1e-12))
            print(f"| {epochs} | {path} | {batch if path == 'local' else '-'} | {best:.4f} | "
                  f"{origin:.6f} | {diff:.2e} |", flush=True)


if __name__ == "__main__":
    main()
