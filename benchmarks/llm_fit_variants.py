"""Time and peak memory of one LLaRA fit under several precisions and micro-batch sizes.

    python benchmarks/llm_fit_variants.py
    python benchmarks/llm_fit_variants.py --variant "b8=train_batch_size=8" --protocol llara-cpu

Each variant runs the benign `llara-cpu` cell (no attack: one fine-tuning of LLaRA on the
preset's 64 windows, 8 test requests) in its own child process with the result cache off,
and reports its wall time, the fine-tuning seconds from the record and the child's peak
resident memory. The default variants are the ones `docs/main_cell.md`'s "Speed and memory"
compares: float32 weights under bf16 autocast (`dtype=mixed`) against bf16 weights, in
steps of 4 samples against micro-batches of 2 accumulated twice (the same 4 per step).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_VARIANTS = (
    "mixed, 4 per step=dtype=mixed,train_batch_size=4,grad_accum=1",
    "bf16, 4 per step=dtype=bfloat16,train_batch_size=4,grad_accum=1",
    "mixed, 2 x 2=dtype=mixed,train_batch_size=2,grad_accum=2",
    "bf16, 2 x 2=dtype=bfloat16,train_batch_size=2,grad_accum=2",
)


def run_variant(label: str, options: list[str], protocol: str, work: Path) -> dict:
    out = work / label.replace(" ", "_").replace(",", "")
    command = [sys.executable, "-m", "recguard", "eval", "--backbone", "llara", "--attack", "none",
               "--protocol", protocol, "--protocol-opt", "n_test_samples=8", "--no-cache", "-q",
               "--output", str(out)]
    for option in options:
        command += ["--backbone-opt", option]
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{label}: the cell failed")
    record = json.loads(next(out.glob("*.json")).read_text())
    seconds = record["notes"]["clean"][0]["seconds"]
    return {"variant": label, "wall": wall, "train": seconds.get("train", float("nan")),
            "peak_mib": usage.ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", action="append", default=[],
                        help="LABEL=key=value,key=value (backbone options); repeatable")
    parser.add_argument("--protocol", default="llara-cpu")
    args = parser.parse_args()
    print("| variant | wall s | fine-tuning s | peak RSS MiB |\n|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory(prefix="recguard-fit-") as work:
        for spec in args.variant or DEFAULT_VARIANTS:
            label, _, options = spec.partition("=")
            row = run_variant(label, [o for o in options.split(",") if o], args.protocol, Path(work))
            print(f"| {row['variant']} | {row['wall']:.1f} | {row['train']:.1f} | "
                  f"{row['peak_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
