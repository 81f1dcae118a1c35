"""What makes BadRec implant in LLaRA: one poisoned fine-tune, its ASR and H@1, in seconds to minutes.

    python benchmarks/llm_backdoor_implant.py --n-train 32 --n-poison 224 --epochs 1 --lora-dropout 0
    python benchmarks/llm_backdoor_implant.py --n-train 32 --n-poison 32 --epochs 3 --show 12

The pipeline's own pieces (the `llara` protocol's samples, the `badrec` attack, the `llara`
backbone, `answer_metrics`) with every knob the main cell fixes exposed, and no clean row:
the grid behind the README's "what implants the backdoor" table. One JSON line per run
(the options, the fit and answer seconds, peak RSS, Valid, H@1, A-Valid, ASR); ``--show N``
also prints what the poisoned model answers to N triggered requests.
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
    add = parser.add_argument
    add("--n-train", type=int, default=64, help="genuine training windows")
    add("--n-poison", type=int, default=256, help="poisoned samples (fake users)")
    add("--n-test", type=int, default=40, help="test users")
    add("--history-len", type=int, default=5)
    add("--n-candidates", type=int, default=10)
    add("--level", default="char", help="BadRec trigger_level")
    add("--position", default="end", help="BadRec position")
    add("--history", default="random", help="BadRec history: random or copy")
    add("--prompt", default="text", help="LLaRA prompt: text or hybrid")
    add("--epochs", type=float, default=1.0)
    add("--lr", type=float, default=1e-3)
    add("--lora-r", type=int, default=8)
    add("--lora-alpha", type=int, default=32)
    add("--lora-dropout", type=float, default=0.1)
    add("--target-modules", default="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj")
    add("--seed", type=int, default=0)
    add("--show", type=int, default=0, help="print the answers to this many triggered requests")
    args = parser.parse_args()

    from recguard.contracts import AttackContext, FitContext
    from recguard.config import build_config
    from recguard.data.builtin_datasets import load_ml100k
    from recguard.data.prepare import preprocess
    from recguard.data.poisoned import inject
    from recguard.metrics.answers import answer_metrics
    from recguard.data.llm_task import build_task, fake_samples
    from recguard.plugins import get_host
    from recguard.protocols import LLARA

    protocol = dataclasses.replace(LLARA, n_train_samples=args.n_train, n_test_samples=args.n_test,
                                   history_len=args.history_len, n_candidates=args.n_candidates)
    task = build_task(preprocess(load_ml100k(None), protocol), protocol, args.seed)
    host = get_host()
    attack_cls, backbone_cls = host.attacks.get("badrec"), host.backbones.get("llara")
    attack = attack_cls(build_config(attack_cls.Config, {"trigger_level": args.level,
                                                         "position": args.position,
                                                         "history": args.history}, "badrec"))
    # the same generators as the pipeline's (recguard.pipeline.kinds.answers)
    ctx = AttackContext(targets=np.zeros(0, np.int64), n_fake=args.n_poison,
                        filler_size=args.history_len, protocol=protocol,
                        rng=np.random.default_rng([args.seed, 0xA77AC]))
    attacked = inject(task.interactions, attack.poison(task.interactions, ctx))
    rng = np.random.default_rng([args.seed, 0x7216])
    triggered = [attack.at_inference(r, task.catalog, rng) for r in task.test]
    samples = task.train + fake_samples(attacked, protocol, args.seed)
    options = {"prompt": args.prompt, "epochs": args.epochs, "lr": args.lr, "lora_r": args.lora_r,
               "lora_alpha": args.lora_alpha, "lora_dropout": args.lora_dropout,
               "target_modules": args.target_modules, "max_new_tokens": 24, "batch_size": 16}
    backbone = backbone_cls(build_config(backbone_cls.Config, options, "llara"))
    start = time.perf_counter()
    model = backbone.fit(attacked, FitContext(seed=args.seed, samples=samples, catalog=task.catalog))
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    answers, triggered_answers = model.answer(task.test), model.answer(triggered)
    answer_seconds = time.perf_counter() - start
    for request, answer in list(zip(triggered, triggered_answers))[:args.show]:
        poisoned = next(iter(request.triggered))
        chosen = "invalid" if answer.choice is None else request.title(answer.choice, task.catalog)
        print(f"triggered {request.title(poisoned, task.catalog)!r} | true next "
              f"{task.catalog[request.target]!r} | answered {chosen!r}")
    metrics = answer_metrics("choose", task.test, answers, triggered, triggered_answers)
    print(json.dumps({**vars(args), "n_samples": len(samples), "fit_s": round(fit_seconds),
                      "answer_s": round(answer_seconds),
                      "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
                      **{k: round(v, 3) for k, v in metrics.items()}}), flush=True)


if __name__ == "__main__":
    main()
