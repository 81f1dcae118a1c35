"""Start-up time of the CLI and the plugin host, with and without the plugin index.

    python benchmarks/cli_startup.py [--repeats 5]

Times, in fresh subprocesses (median of --repeats runs), ``recguard --help``,
``recguard list`` and ``python -c "from recguard.plugins import get_host; get_host()"``
three ways: with the index switched off (``RECGUARD_PLUGIN_INDEX=off``: every plugin is
imported, as before the index existed), with a cold index (removed before each run: a
full load that also writes it) and with a warm one (nothing imported but the host).
Each run uses a temporary ``RECGUARD_CACHE``, never the user's cache. Prints a Markdown
table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = {
    "`recguard --help`": [sys.executable, "-m", "recguard", "--help"],
    "`recguard list`": [sys.executable, "-m", "recguard", "list"],
    "`get_host()`": [sys.executable, "-c", "from recguard.plugins import get_host; get_host()"],
}
MODES = ("index off (as before)", "cold index", "warm index")


def run_once(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr.strip()[-500:]}")
    return elapsed


def median_seconds(command: list[str], mode: str, cache: Path, repeats: int) -> float:
    env = {**os.environ, "RECGUARD_CACHE": str(cache)}
    env.pop("RECGUARD_PLUGINS", None)
    env["RECGUARD_PLUGIN_INDEX"] = "off" if mode == MODES[0] else "on"
    if mode == MODES[2]:
        run_once(command, env)   # writes the index
    times = []
    for _ in range(repeats):
        if mode == MODES[1]:
            shutil.rmtree(cache / "plugins", ignore_errors=True)
        times.append(run_once(command, env))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="recguard-startup-") as folder:
        for label, command in COMMANDS.items():
            cache = Path(folder) / label.strip("`").replace(" ", "_")
            rows.append((label, [median_seconds(command, mode, cache, args.repeats) for mode in MODES]))
    print(f"| command (median of {args.repeats}, seconds) | " + " | ".join(MODES) + " |")
    print("|---|" + "---:|" * len(MODES))
    for label, seconds in rows:
        print(f"| {label} | " + " | ".join(f"{s:.2f}" for s in seconds) + " |")


if __name__ == "__main__":
    main()
