"""Time and memory of the main cell, phase by phase, in a fresh process with an empty cache.

    python benchmarks/llm_main_cell.py                       # the README's main cell
    python benchmarks/llm_main_cell.py --keep-cache          # warm: the converted model kept
    python benchmarks/llm_main_cell.py -- --defense-opt trigger_level=word   # more eval options

Runs ``recguard eval --attack badrec --defense p-scanner`` (plus any options after ``--``)
as a child process whose cache folder is a fresh temporary one (so the GGUF conversion,
the scanner's training and every fit happen), then prints the wall time, the child's peak
resident memory, and the seconds of each phase read from the record: model load, SASRec
and fine-tuning of each fitted row, the scanner's training, and the answering of each row.

The child's progress lines (stderr) are echoed with its resident memory sampled every
0.2 s: each line shows the peak since the line before, so the log says which phase
holds the memory, and a table of the peak per phase closes the report.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PERIODIC = (" steps, ", " steps: ", "%|")   # a fit's periodic line or a tqdm bar: no new phase


def rss_mib(pid: int) -> float:
    """Resident memory of a live process in MiB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class MemoryLog:
    """Echoes a child's stderr lines, each with the child's peak RSS since the line before,
    and keeps the peak of each phase (a phase runs from a non-periodic line to the next)."""

    def __init__(self, pid: int):
        self.pid = pid
        self.peak_since_line = 0.0
        self.phase = "start-up"
        self.phase_peaks: dict[str, float] = {}
        self.lock = threading.Lock()
        self.done = threading.Event()

    def sample(self) -> None:
        while not self.done.wait(0.2):
            mib = rss_mib(self.pid)
            with self.lock:
                self.peak_since_line = max(self.peak_since_line, mib)
                self.phase_peaks[self.phase] = max(self.phase_peaks.get(self.phase, 0.0), mib)

    def echo(self, stream) -> None:
        for line in stream:
            line = line.rstrip("\n")
            with self.lock:
                peak, self.peak_since_line = self.peak_since_line, rss_mib(self.pid)
                if line and not any(mark in line for mark in PERIODIC):
                    self.phase = line.split(" ", 1)[-1][:90]   # without its clock time
            print(f"[peak {peak:5.0f} MiB] {line}", file=sys.stderr, flush=True)


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
        with open(Path(work) / "record.json", "w+") as out:
            child = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.PIPE, text=True)
            memory = MemoryLog(child.pid)
            sampler = threading.Thread(target=memory.sample, daemon=True)
            sampler.start()
            memory.echo(child.stderr)
            returncode = child.wait()
            memory.done.set()
            wall = time.perf_counter() - start
            if returncode != 0:
                sys.exit(f"the cell failed (exit {returncode})")
            out.seek(0)
            record = json.load(out)
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"command: recguard eval --attack badrec --defense p-scanner {' '.join(args.extra)}")
    print(f"protocol {record['spec']['protocol']['name']}, cache "
          f"{'kept' if args.keep_cache else 'empty'}: {wall:.1f} s wall, peak RSS {peak_mib:.0f} MiB")
    print("| phase | seconds |\n|---|---|")
    for phase, seconds in phases(record):
        print(f"| {phase} | {seconds:.1f} |")
    print("| phase (from its progress line) | peak RSS MiB |\n|---|---|")
    for phase, mib in memory.phase_peaks.items():
        print(f"| {phase} | {mib:.0f} |")
    for condition in record["conditions"]:
        metrics = {k: round(v["mean"], 4) for k, v in record["metrics"][condition].items()}
        print(f"{condition}: {metrics}")


if __name__ == "__main__":
    main()
