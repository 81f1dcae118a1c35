"""Optimisation attacks against heuristics: T-HR@50 of MF, and each attack's time and peak memory.

    python benchmarks/optimisation_attacks.py run OUT [--attacks a,b] [--ml1m FOLDER] [--seeds 0-2]
        [--ml1m-opt dp:retrain_every=10]
    python benchmarks/optimisation_attacks.py table OUT

``run`` does two things per attack:

1. the cell ``recguard eval --attack A --budget 0.01 --seeds 0-2`` (MF on ML-100K,
   protocol apt: 5 unpopular targets; 1% = 9 fake users), whose record goes to
   OUT/records/;
2. the attack alone, on seed 0, in a fresh process per attack and dataset (ML-100K
   and, with ``--ml1m``, the ML-1M-sized folder of ``benchmarks/scaled_movielens.py``
   or ML-1M itself): wall seconds of ``poison`` and the process's peak resident set
   size before and after it (``ru_maxrss`` is a high-water mark: the data loading's
   peak is the baseline, so the attack's own peak is the "after" when it is larger).
   Results go to OUT/cost.jsonl.

``table`` renders both as Markdown.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ATTACKS = ("random", "bandwagon", "dp", "rev", "pga", "tna", "aush")
BUDGET = "0.01"


def probe(attack: str, dataset: str, data_path: str | None, budget: str,
          options: dict[str, str] | None = None) -> dict:
    """Time and peak memory of one attack's ``poison`` on seed 0 (run in a fresh process)."""
    from recguard.data.prepare import prepare
    from recguard.pipeline.cell import load
    from recguard.pipeline.kinds.ranking import attack_context
    from recguard.plan import CellSpec, make_plan

    plan = make_plan(CellSpec(dataset=dataset, data_path=data_path, attack=attack,
                              attack_options=options or {}, protocol_options={"budget": budget},
                              seeds=(0,)))
    _, data = load(plan)
    prepared = prepare(data, plan.protocol, 0)
    ctx = attack_context(plan, prepared, 0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    poisoned = plan.attack.poison(prepared.train, ctx)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"attack": attack, "options": options or {}, "dataset": dataset,
            "users": int(prepared.train.n_users),
            "items": int(prepared.train.n_items), "ratings": int(len(prepared.train)),
            "fake_users": int(poisoned.n_fake), "seconds": round(seconds, 2),
            "rss_before_mib": round(before), "rss_after_mib": round(after)}


def run(out: Path, attacks: list[str], ml1m: str | None, seeds: str,
        ml1m_options: dict[str, list[str]]) -> None:
    from recguard.plugins import get_host

    registered = set(get_host().attacks.names())
    missing = [a for a in attacks if a not in registered]
    if missing:
        print(f"not registered, skipped: {', '.join(missing)}")
    attacks = [a for a in attacks if a in registered]
    out.mkdir(parents=True, exist_ok=True)
    for attack in attacks:
        folder = out / "records" / attack
        if not any(folder.glob("*.json")):
            start = time.perf_counter()
            subprocess.run(["recguard", "eval", "--attack", attack, "--budget", BUDGET, "--seeds", seeds,
                            "-q", "--output", str(folder)], check=True, stdout=subprocess.DEVNULL)
            print(f"{attack}: cell in {time.perf_counter() - start:.0f} s", flush=True)
    datasets = [("ml-100k", None)] + ([("ml-1m", ml1m)] if ml1m else [])
    with open(out / "cost.jsonl", "a") as log:
        for dataset, path in datasets:
            for attack in attacks:
                command = [sys.executable, __file__, "probe", attack, dataset, "--budget", BUDGET]
                command += ["--data-path", path] if path else []
                if path:   # e.g. dp retrains its surrogate every m fake users at this size
                    command += [arg for opt in ml1m_options.get(attack, []) for arg in ("-o", opt)]
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode:
                    line = {"attack": attack, "dataset": dataset,
                            "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
                else:
                    line = json.loads(done.stdout.strip().splitlines()[-1])
                log.write(json.dumps(line) + "\n")
                log.flush()
                print(line, flush=True)


def table(out: Path) -> str:
    from recguard.cli.render import fmt
    from recguard.records import read_record

    lines = [f"MF on ML-100K, protocol apt, budget {BUDGET} (9 fake users), 5 unpopular targets; "
             "T-HR@50 and HR@50 under attack (mean ± std over seeds), attack seconds per seed "
             "(mean, from the records).", "",
             "| attack | knowledge | seeds | T-HR@50 | HR@50 | attack s |", "|---|---|---|---|---|---|"]
    for attack in ATTACKS:
        paths = sorted((out / "records" / attack).glob("*.json"))
        if not paths:
            continue
        record = read_record(paths[-1])
        attacked = record["metrics"]["attacked"]
        seconds = record["timings"].get("attack_seconds", [])
        lines.append(f"| {attack} | {record['spec']['attack']['knowledge']} | {len(record['spec']['seeds'])} | "
                     f"{fmt(attacked['T-HR@50'])} | {fmt(attacked['HR@50'])} | "
                     f"{sum(seconds) / max(len(seconds), 1):.1f} |")
    cost = out / "cost.jsonl"
    if cost.exists():
        lines += ["", "The attack alone on seed 0, in a fresh process: seconds of `poison` and the "
                  "process's peak RSS before (data loaded) and after it.", "",
                  "| dataset | users x items, ratings | attack | fake users | seconds | peak RSS before | after |",
                  "|---|---|---|---|---|---|---|"]
        latest = {}   # the last probe of each (dataset, attack, options), datasets then attacks in order
        for raw in cost.read_text().splitlines():
            row = json.loads(raw)
            latest[(row["dataset"], row["attack"], json.dumps(row.get("options", {})))] = row
        rank = {a: i for i, a in enumerate(ATTACKS)}
        for key in sorted(latest, key=lambda k: (k[0] != "ml-100k", k[0], rank.get(k[1], len(rank)), k[2])):
            row = latest[key]
            if "error" in row:
                lines.append(f"| {row['dataset']} | | {row['attack']} | | failed: {row['error']} | | |")
                continue
            options = " ".join(f"{k}={v}" for k, v in row.get("options", {}).items())
            name = f"{row['attack']} ({options})" if options else row["attack"]
            lines.append(f"| {row['dataset']} | {row['users']} x {row['items']}, {row['ratings']} | "
                         f"{name} | {row['fake_users']} | {row['seconds']} | "
                         f"{row['rss_before_mib']} MiB | {row['rss_after_mib']} MiB |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run")
    p_run.add_argument("out", type=Path)
    p_run.add_argument("--attacks", default=",".join(ATTACKS))
    p_run.add_argument("--ml1m", default=None, help="ML-1M folder (or the scaled stand-in)")
    p_run.add_argument("--seeds", default="0-2")
    p_run.add_argument("--ml1m-opt", action="append", default=[], metavar="ATTACK:KEY=VALUE",
                       help="an attack option for the ML-1M-sized probe only")
    p_table = sub.add_parser("table")
    p_table.add_argument("out", type=Path)
    p_probe = sub.add_parser("probe")
    p_probe.add_argument("attack")
    p_probe.add_argument("dataset")
    p_probe.add_argument("--data-path", default=None)
    p_probe.add_argument("--budget", default=BUDGET)
    p_probe.add_argument("-o", dest="options", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    if args.command == "run":
        per_attack: dict[str, list[str]] = {}
        for text in args.ml1m_opt:
            attack, _, option = text.partition(":")
            per_attack.setdefault(attack, []).append(option)
        run(args.out, [a for a in args.attacks.split(",") if a], args.ml1m, args.seeds, per_attack)
    elif args.command == "table":
        print(table(args.out))
    else:
        options = dict(o.split("=", 1) for o in args.options)
        print(json.dumps(probe(args.attack, args.dataset, args.data_path, args.budget, options)))


if __name__ == "__main__":
    main()
