"""`recguard eval` under a data-parallel launch: `torchrun` (what `accelerate launch` starts
on several GPUs) with two CPU processes, which join a gloo process group. The tiny LM's
fine-tunes run data-parallel (each rank takes half of every epoch's batches), every rank
runs the rest of the cell, and rank 0 alone reports: one progress stream, one record."""

import os
import re
import shutil
import subprocess
import sys

import pytest

from recguard.launch import is_main_process, launch_rank
from recguard.records import read_record

pytestmark = pytest.mark.integration


def test_the_rank_comes_from_the_launch_environment(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    assert (launch_rank(), is_main_process()) == (0, True)
    monkeypatch.setenv("RANK", "3")
    assert (launch_rank(), is_main_process()) == (3, False)
    monkeypatch.setenv("RANK", "")
    assert launch_rank() == 0


def _eval(launcher: list[str], tiny_llm: str, out, cache) -> subprocess.CompletedProcess:
    args = ["eval", "--backbone", "tallrec", "--backbone-opt", f"model={tiny_llm}",
            "--backbone-opt", "epochs=1", "--backbone-opt", "max_length=2048",
            "--protocol-opt", "n_train_samples=8", "--protocol-opt", "n_test_samples=8",
            "--attack", "badrec", "--output", str(out), "--no-cache"]
    return subprocess.run([*launcher, "-m", "recguard", *args], capture_output=True, text=True,
                          env={**os.environ, "RECGUARD_CACHE": str(cache)}, timeout=600)


def _fit_steps(stderr: str, row: str) -> list[int]:
    return [int(n) for n in re.findall(rf"{row} · fine-tuning tallrec: (\d+)/\1 steps", stderr)]


def test_two_ranks_fine_tune_data_parallel_and_rank_0_alone_reports(tmp_path, tiny_llm):
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun (torch's launcher) is not on the PATH")
    single = _eval([sys.executable], tiny_llm, tmp_path / "single", tmp_path / "cache")
    assert single.returncode == 0, single.stderr[-3000:]
    launched = _eval([torchrun, "--standalone", "--nproc_per_node", "2"], tiny_llm,
                     tmp_path / "launched", tmp_path / "cache")
    assert launched.returncode == 0, launched.stderr[-3000:]
    records = list((tmp_path / "launched").glob("*.json"))
    assert len(records) == 1                               # rank 1 wrote nothing
    assert launched.stderr.count("Benign · fine-tuning tallrec: started") == 1
    # each rank takes half of the batches: half the optimiser steps of one process
    for row in ("Benign", "BadRec"):
        (alone,), (together,) = _fit_steps(single.stderr, row), _fit_steps(launched.stderr, row)
        assert together == -(-alone // 2), (row, alone, together)
    record = read_record(records[0])
    assert set(record["metrics"]) == {"clean", "attacked"}
