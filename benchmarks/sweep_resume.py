"""A sweep stopped mid-way and resumed: by SIGINT (local executor), and with a Ray worker
killed under a cell (Ray executor). Checks that no cell is lost, none runs twice and no
record is half-written.

    python benchmarks/sweep_resume.py [--work DIR] [--stop-after 4]

The grid: MF under APT's protocol, Average and Bandwagon at 3%, defenses none / apr / rvd,
seeds 0 and 1 (12 cells), each part from an empty cell cache.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SPEC = """
protocol = "apt"
backbone = "mf"
attack = ["average", "bandwagon"]
budget = 0.03
defense = ["none", "apr", "rvd"]
seeds = [0, 1]
"""
CELLS = 12


def sweep(spec: Path, out: Path, cache: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, RECGUARD_CACHE=str(cache))
    return subprocess.Popen([sys.executable, "-m", "recguard", "sweep", str(spec), "--output", str(out),
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def records(out: Path) -> dict[str, int]:
    """File name -> mtime_ns of every record; every file must be a whole JSON record."""
    found = {}
    for path in out.glob("*.json"):
        json.loads(path.read_text())   # raises on a half-written file
        found[path.name] = path.stat().st_mtime_ns
    leftovers = [p.name for p in out.iterdir() if p.suffix != ".json"]
    assert not leftovers, f"temporary files left: {leftovers}"
    return found


def wait_for(out: Path, count: int, process: subprocess.Popen) -> None:
    while len(list(out.glob("*.json"))) < count:
        if process.poll() is not None:
            sys.exit(f"the sweep ended before {count} records:\n{process.stderr.read()[-2000:]}")
        time.sleep(0.2)


def resume(spec: Path, out: Path, cache: Path, before: dict[str, int], *extra: str) -> None:
    start = time.perf_counter()
    again = sweep(spec, out, cache, *extra, "-q")
    _, err = again.communicate()
    after = records(out)
    rerun = [name for name, stamp in before.items() if after.get(name) != stamp]
    print(f"resumed in {time.perf_counter() - start:.1f} s (exit {again.returncode}): "
          f"{err.strip().splitlines()[-1]}")
    print(f"records: {len(after)} of {CELLS}; of the {len(before)} written before, rewritten: {len(rerun)}")
    assert again.returncode == 0 and len(after) == CELLS and not rerun


def sigint_part(work: Path, spec: Path, stop_after: int) -> None:
    out, cache = work / "sigint-out", work / "sigint-cache"
    print(f"\n== local executor, 2 jobs: SIGINT once {stop_after} records are written")
    process = sweep(spec, out, cache, "--jobs", "2")
    wait_for(out, stop_after, process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate()
    before = records(out)
    said = [line for line in err.splitlines() if line.startswith("interrupted:")]
    print(f"stopped: exit {process.returncode}; {said[0] if said else err.strip()[-300:]}")
    print(f"{len(before)} whole records, no temporary file")
    resume(spec, out, cache, before, "--jobs", "2")


def ray_workers() -> list[int]:
    """The pids of Ray worker processes running a cell now (Ray titles them ``ray::attempt``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if command.startswith("ray::attempt"):
                found.append(int(entry.name))
    return found


def ray_part(work: Path, spec: Path) -> None:
    out, cache = work / "ray-out", work / "ray-cache"
    print("\n== ray executor (a local cluster of 2 CPUs): a worker killed under a cell")
    process = sweep(spec, out, cache, "--executor", "ray", "--jobs", "2")
    wait_for(out, 1, process)
    while not (busy := ray_workers()):
        time.sleep(0.1)
    os.kill(busy[0], signal.SIGKILL)     # a worker of this sweep's own cluster
    print(f"killed Ray worker {busy[0]} while {len(list(out.glob('*.json')))} records were written")
    _, err = process.communicate()
    lines = err.strip().splitlines()
    retried = [line for line in lines if "failed, retrying once" in line]
    print(f"sweep exit {process.returncode}; {lines[-1]}")
    print("\n".join(f"  {line}" for line in retried))
    after = records(out)
    print(f"records: {len(after)} of {CELLS}")
    assert process.returncode == 0 and len(after) == CELLS and retried
    resume(spec, out, cache, after, "--executor", "ray", "--jobs", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/recguard-sweep-resume")
    parser.add_argument("--stop-after", type=int, default=4)
    parser.add_argument("--parts", default="sigint,ray")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    spec = work / "grid.toml"
    spec.write_text(SPEC)
    if "sigint" in args.parts:
        sigint_part(work, spec, args.stop_after)
    if "ray" in args.parts:
        ray_part(work, spec)


if __name__ == "__main__":
    main()
