"""P-Scanner's scanner alone: how often it flags ML-100K titles with and without each
Table 7 trigger (BadRec), at the end and at a random position.

    python benchmarks/pscanner_detection.py                       # the defaults
    python benchmarks/pscanner_detection.py --opt lr=2e-3 --opt epochs=2
    python benchmarks/pscanner_detection.py --opt n_items=768 --opt false_alarm=0.2

Trains the scanner (or loads it from the cache: `prepare_scanner`), draws ``--n`` catalog
titles (LLaRA's style), and prints one JSON line: the share of benign titles flagged, the
share flagged with each trigger level x position, the AUC of P(Yes) between the triggered
and the benign titles (threshold-free: scanners that flag more of everything compare
here), the benign P(Yes) 90th / 95th percentiles, the training notes' seconds and the
peak RSS. With ``false_alarm`` among the options, the threshold is the defense's calibrated
one (`scan_threshold`), printed as ``threshold``. ``--false-alarms 0.1,0.2,...`` adds a
Markdown table: for each share, the threshold `calibrated_threshold` would set (that share of
the defender's own synthetic benign titles flagged) and the share of clean and of triggered
catalog titles it flags, so one trained scanner's operating points read in one run:

    python benchmarks/pscanner_detection.py --false-alarms 0.1,0.2,0.3,0.35,0.4
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opt", action="append", default=[], help="p-scanner option key=value")
    parser.add_argument("--n", type=int, default=300, help="catalog titles to scan")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--false-alarms", default="",
                        help="comma-separated shares of synthetic benign titles to flag: a table "
                             "of the thresholds they set and what each flags")
    args = parser.parse_args()

    from recguard.config import build_config, parse_options
    from recguard.data.builtin_datasets import load_ml100k
    from recguard.kit.lm.triggers import insert_trigger
    from recguard.data.llm_task import llara_title
    from recguard.kit.lm.prompts import load_prompt
    from recguard.kit.lm.generation import yes_probability
    from recguard.metrics.detection import roc_auc
    from recguard_badrec.triggers import TABLE7_TRIGGERS
    from recguard_pscanner.defense import PScannerDefense, plan_of, scan_threshold
    from recguard_pscanner.scanner import (SCAN_PROMPT, calibration_scores, prepare_scanner,
                                           scan_prompts, threshold_flagging)

    cfg = build_config(PScannerDefense.Config, parse_options(args.opt, "p-scanner"), "p-scanner")
    start = time.perf_counter()
    scanner, tokenizer, notes = prepare_scanner(plan_of(cfg), args.seed, log=lambda line: None)
    threshold = scan_threshold(cfg, scanner, tokenizer, args.seed)
    rng = np.random.default_rng(args.seed)
    titles = [llara_title(str(t)) for t in rng.choice(load_ml100k(None).item_text, args.n, replace=False)]
    template = load_prompt("recguard_pscanner", SCAN_PROMPT)

    def p_yes(texts):
        return yes_probability(scanner, tokenizer, scan_prompts(tokenizer, template, texts),
                               batch_size=cfg.scan_batch)

    benign = p_yes(titles)
    out = {"options": args.opt, "threshold": round(threshold, 4),
           "benign_flagged": round(float((benign > threshold).mean()), 3),
           "benign_p90": round(float(np.quantile(benign, 0.9)), 3),
           "benign_p95": round(float(np.quantile(benign, 0.95)), 3)}
    scores = {}
    for level, trigger in TABLE7_TRIGGERS.items():
        for position in ("end", "random"):
            p = scores[f"{level} {position}"] = p_yes(
                [insert_trigger(t, trigger, position, rng) for t in titles])
            out[f"{level}-{position}"] = round(float((p > threshold).mean()), 3)
            triggered = np.r_[np.ones(len(p), bool), np.zeros(len(benign), bool)]
            out[f"auc-{level}-{position}"] = round(roc_auc(np.r_[p, benign], triggered), 3)
    out.update(training_seconds=notes.get("seconds_train"), cache=notes.get("cache"),
               seconds=round(time.perf_counter() - start),
               peak_rss_gb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2))
    print(json.dumps(out), flush=True)
    if args.false_alarms:
        shares = [float(s) for s in args.false_alarms.split(",")]
        calibration = calibration_scores(scanner, tokenizer, plan_of(cfg), args.seed,
                                         cfg.n_calibration)
        print(operating_points(shares, benign, scores,
                               lambda share: threshold_flagging(calibration, share)), flush=True)


def operating_points(shares, benign, scores: dict, threshold_for) -> str:
    """Markdown: per share of synthetic benign titles flagged (0: Eq. 9's 0.5), its threshold
    and the share of the clean and of each triggered set of catalog titles above it."""
    head = "| false_alarm | threshold | clean flagged | " + " | ".join(scores) + " |"
    rows = [head, "|" + "---|" * (3 + len(scores))]
    for share in [0.0, *shares]:
        cut = 0.5 if share == 0 else threshold_for(share)
        flagged = [f"{(p > cut).mean():.2f}" for p in (benign, *scores.values())]
        rows.append(f"| {share:g} | {cut:.3f} | " + " | ".join(flagged) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
