"""TALLRec's AUC at k shots on the `tallrec` protocol's full 1,000-sample test split (or
on another yes_no protocol's test requests: `--protocol tallrec-cpu`, its balanced shots).

    python benchmarks/tallrec_shots.py --shots 16 --epochs 10
    python benchmarks/tallrec_shots.py --shots 64 --epochs 4
    python benchmarks/tallrec_shots.py --shots 256 --epochs 1
    python benchmarks/tallrec_shots.py --shots 16 --backbone-opt train_batch_size=1
    python benchmarks/tallrec_shots.py --protocol tallrec-cpu --shots 64 --epochs 4 --backbone-opt dtype=float32

Fits the `tallrec` backbone (default model: the packaged SmolLM2-135M-Instruct) on k
shots drawn by seed and prints one JSON line: AUC of P(Yes), the AUC the history's liked
share alone reaches on the same samples, the correlation of P(Yes) with that share, the
test split's users and Yes share, the shots' Yes share, the share of test requests the
model answers Yes (P(Yes) >= 0.5: BadRec's ASR on TALLRec counts only those answered No)
and the quartiles of P(Yes), fit and answer seconds, peak RSS.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--epochs", type=float, default=10.0)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--protocol", default="tallrec", choices=("tallrec", "tallrec-cpu"),
                        help="the shots' draw and the test requests (tallrec-cpu: balanced shots, 300 requests)")
    parser.add_argument("--n-test", type=int, default=None,
                        help="test requests (0: the full test split; default: the protocol's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backbone-opt", action="append", default=[], metavar="KEY=VALUE",
                        help="more tallrec options, e.g. train_batch_size=1 (repeatable)")
    args = parser.parse_args()

    from recguard.contracts import FitContext
    from recguard.config import build_config
    from recguard.data.builtin_datasets import load_ml100k
    from recguard.data.prepare import preprocess
    from recguard.metrics.detection import roc_auc
    from recguard.data.llm_task import build_task
    from recguard.plugins import get_host

    base = get_host().protocols.get(args.protocol)
    n_test = base.n_test_samples if args.n_test is None else args.n_test
    protocol = dataclasses.replace(base, n_train_samples=args.shots, n_test_samples=n_test)
    task = build_task(preprocess(load_ml100k(None), protocol), protocol, args.seed)
    labels = np.array([bool(r.label) for r in task.test])
    liked_share = np.array([len(r.history) / max(1, len(r.history) + len(r.disliked))
                            for r in task.test])
    backbone_cls = get_host().backbones.get("tallrec")
    backbone = backbone_cls(build_config(backbone_cls.Config, {"epochs": args.epochs, "lr": args.lr,
                                                               "batch_size": 16,
                                                               **dict(o.split("=", 1) for o in args.backbone_opt)},
                                       "tallrec"))
    start = time.perf_counter()
    model = backbone.fit(task.interactions, FitContext(seed=args.seed, samples=task.train,
                                                       catalog=task.catalog))
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    p_yes = np.array([a.p_yes for a in model.answer(task.test)])
    print(json.dumps({**vars(args), "n_test": len(task.test), "users": len({r.user for r in task.test}),
                      "yes_share": round(float(labels.mean()), 3),
                      "shots_yes_share": round(float(np.mean([bool(r.label) for r in task.train])), 3),
                      "answered_yes": round(float((p_yes >= 0.5).mean()), 3),
                      "p_yes_quartiles": [round(float(q), 3) for q in np.quantile(p_yes, [0, 0.25, 0.5, 0.75, 1])],
                      "AUC": round(roc_auc(p_yes, labels), 4),
                      "AUC_liked_share": round(roc_auc(liked_share, labels), 4),
                      "corr_p_yes_liked_share": round(float(np.corrcoef(p_yes, liked_share)[0, 1]), 3),
                      "fit_s": round(fit_seconds), "answer_s": round(time.perf_counter() - start),
                      "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)}),
          flush=True)


if __name__ == "__main__":
    main()
