"""Time and memory of the main cell, phase by phase, in a fresh process with an empty cache.

    python benchmarks/llm_main_cell.py                       # the README's main cell
    python benchmarks/llm_main_cell.py --keep-cache          # warm: the converted model kept
    python benchmarks/llm_main_cell.py -- --defense-opt trigger_level=word   # more eval options

Runs ``recguard eval --attack badrec --defense p-scanner`` (plus any options after ``--``)
as a child process whose cache folder is a fresh temporary one (so the GGUF conversion,
the scanner's training and every fit happen), then prints the wall time, the child's peak
resident memory, and the seconds of each phase read from the record: model load, SASRec
and fine-tuning of each fitted row, the scanner's training, and the answering of each row.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def phases(record: dict) -> list[tuple[str, float]]:
    """(phase, seconds) in the order the cell ran them, from the record's notes."""
    rows = {"clean": "Benign", "attacked": "BadRec"}
    out = []
    for condition in record["conditions"]:
        for seed_notes in record["notes"].get(condition, []):
            row = rows.get(condition, record["spec"]["defense"]["name"])
            for phase, seconds in seed_notes.get("seconds", {}).items():
                out.append((f"{row}: {phase}", seconds))
            scanner = seed_notes.get("p-scanner", {}).get("training", {})
            if "seconds_train" in scanner:
                out.append((f"{row}: scanner training ({scanner.get('cache', '?')})",
                            scanner["seconds_train"]))
            if "seconds_scan" in seed_notes.get("p-scanner", {}):
                out.append((f"{row}: scanning titles", seed_notes["p-scanner"]["seconds_scan"]))
            if "answer_seconds_with_defense" in seed_notes:
                out.append((f"{row}: answering behind the defense",
                            seed_notes["answer_seconds_with_defense"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep-cache", action="store_true",
                        help="use the normal cache folder (converted model, scanner) instead of a fresh one")
    parser.add_argument("--output", default=None,
                        help="folder for the cell's JSON record (default: a temporary one)")
    parser.add_argument("extra", nargs="*", help="more `recguard eval` options, after --")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="recguard-bench-") as work:
        env = dict(os.environ)
        if not args.keep_cache:
            env["RECGUARD_CACHE"] = str(Path(work) / "cache")
        command = [sys.executable, "-m", "recguard", "eval", "--attack", "badrec", "--defense",
                   "p-scanner", "--json", "--output", args.output or str(Path(work) / "results"), *args.extra]
        start = time.perf_counter()
        done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"the cell failed (exit {done.returncode})")
        record = json.loads(done.stdout)
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"command: recguard eval --attack badrec --defense p-scanner {' '.join(args.extra)}")
    print(f"protocol {record['spec']['protocol']['name']}, cache "
          f"{'kept' if args.keep_cache else 'empty'}: {wall:.1f} s wall, peak RSS {peak_mib:.0f} MiB")
    print("| phase | seconds |\n|---|---|")
    for phase, seconds in phases(record):
        print(f"| {phase} | {seconds:.1f} |")
    for condition in record["conditions"]:
        metrics = {k: round(v["mean"], 4) for k, v in record["metrics"][condition].items()}
        print(f"{condition}: {metrics}")


if __name__ == "__main__":
    main()
