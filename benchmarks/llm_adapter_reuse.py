"""What reusing a saved LoRA adapter saves: the main cell's poisoned LLaRA model, wrapped by
two defenses in two separate `recguard eval` processes (as two sweep cells would be).

    python benchmarks/llm_adapter_reuse.py [--defenses rd,llmsi] [-- extra eval options]

Runs, in a fresh ``RECGUARD_CACHE`` (the converted base model is linked in from the user's
cache, so no run pays for the GGUF conversion), ``recguard eval --attack badrec --defense D``
for each defense in turn, then the first defense again with ``--no-cache``. The first
process fine-tunes the benign and the poisoned model and saves their adapters; the second
finds both conditions' results cached but must wrap the poisoned model in its defense, so
it loads the poisoned adapter instead of fine-tuning again; the third refits everything.
Prints one JSON line per run: wall seconds, the attacked fit's seconds and phases (``train``
when fine-tuned, ``load_adapter`` when reused) and the defended row's metrics, which must
equal across the reused and the refitted model.
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
    subprocess.run(command, env=env, check=True)
    wall = time.perf_counter() - start
    (path,) = set(out.glob("*.json")) - before
    record = json.loads(path.read_text())
    attacked = record["notes"].get("attacked") or [{}]       # one per seed
    defended = record["metrics"].get("attacked+defense", {})
    return {"defense": defense, "no_cache": no_cache, "wall_s": round(wall, 1),
            "fit_s": record["timings"]["fit_seconds"],
            "attacked_phases": attacked[0].get("seconds"),
            "defended": {name: round(m["mean"], 4) for name, m in defended.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--defenses", default="rd,llmsi")
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
        print(json.dumps(run_eval(first, cache, out, args.extra, no_cache=True)), flush=True)


if __name__ == "__main__":
    main()
