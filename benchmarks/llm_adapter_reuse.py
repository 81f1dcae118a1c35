"""What reusing a saved LoRA adapter saves: the main cell's poisoned LLaRA model, wrapped by
two defenses in two separate `recguard eval` processes (as two sweep cells would be).

    python benchmarks/llm_adapter_reuse.py [--defenses rd,llmsi] [-- extra eval options]

Runs, in a fresh ``RECGUARD_CACHE`` (the converted base model is linked in from the user's
cache, so no run pays for the GGUF conversion), ``recguard eval --attack badrec --defense D``
for each defense in turn (and, with ``--refit``, the first defense again with
``--no-cache``). The first process fine-tunes the benign and the poisoned model and saves
their adapters; the next ones find both undefended results cached but must wrap the
poisoned model in their defense, so they load the poisoned adapter instead of fine-tuning
again, and answer the attacked requests with it once more. Prints one JSON line per run:
wall seconds, the attacked fit's seconds and phases (``train`` when fine-tuned,
``load_adapter`` when reused), the attacked row (which must equal across the processes)
and the defended row.
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


def run_eval(defense: str, cache: Path, out: Path, extra: list[str], no_cache: bool) -> dict:
    env = {**os.environ, "RECGUARD_CACHE": str(cache)}
    command = [sys.executable, "-m", "recguard", "eval", "--attack", "badrec", "--defense", defense,
               "--seeds", "0", "--output", str(out), "-q", *extra] + (["--no-cache"] if no_cache else [])
    before = set(out.glob("*.json"))
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"recguard eval --defense {defense} failed:\n{done.stderr[-2000:]}")
    (path,) = set(out.glob("*.json")) - before
    record = json.loads(path.read_text())
    attacked = record["notes"].get("attacked") or [{}]       # one per seed

    def row(condition):
        return {name: None if m["mean"] is None else round(m["mean"], 4)
                for name, m in record["metrics"].get(condition, {}).items()}

    return {"defense": defense, "no_cache": no_cache, "wall_s": round(wall, 1),
            "fit_s": record["timings"]["fit_seconds"],
            "attacked_phases": attacked[0].get("seconds"),
            "attacked": row("attacked"), "defended": row("attacked+defense")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--defenses", default="rd,llmsi")
    parser.add_argument("--refit", action="store_true", help="then the first defense with --no-cache")
    parser.add_argument("extra", nargs="*", help="more `recguard eval` options, after --")
    args = parser.parse_args()

    from recguard.files import cache_dir

    with tempfile.TemporaryDirectory(prefix="recguard-reuse-") as work:
        cache, out = Path(work) / "cache", Path(work) / "records"
        cache.mkdir()
        out.mkdir()
        if (cache_dir() / "models").is_dir():
            (cache / "models").symlink_to(cache_dir() / "models")
        first, *others = args.defenses.split(",")
        for defense in [first, *others]:
            print(json.dumps(run_eval(defense, cache, out, args.extra, no_cache=False)), flush=True)
        if args.refit:
            print(json.dumps(run_eval(first, cache, out, args.extra, no_cache=True)), flush=True)


if __name__ == "__main__":
    main()
