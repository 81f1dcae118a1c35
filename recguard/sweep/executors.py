"""Where a sweep's cells run: local processes or Ray tasks. An executor takes cell specs
and hands back `Outcome`s as cells finish; the sweep loop (`recguard.sweep.run`) decides
what to submit, retries and writes the records."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import threading
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Hashable

from recguard.errors import RecguardError, show_warning
from recguard.sweep.worker import Outcome, attempt, limit_threads, one_line, ray_attempt, thread_cap

RAY_INSTALL = 'pip install "recguard[ray]"'


def visible_gpus() -> list[str]:
    """The GPUs CUDA would show this process, found without importing torch:
    ``CUDA_VISIBLE_DEVICES`` when set, else nvidia-smi's list (none where it is absent)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip() not in ("", "-1")]
    try:
        found = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in found.stdout.splitlines() if line.strip()] if found.returncode == 0 else []


def next_gpu(gpus: list[str], started) -> str:
    """The GPU of the next worker to start: ``started`` (a shared counter) counts them."""
    with started.get_lock():
        index, started.value = started.value, started.value + 1
    return gpus[index % len(gpus)]


def _init_local_worker(threads: int, gpus: list[str], started) -> None:
    limit_threads(threads)
    warnings.showwarning = show_warning     # a library warning: one line in the sweep's log
    if gpus:   # the workers take the GPUs in turn, each seeing one as its cuda:0
        os.environ["CUDA_VISIBLE_DEVICES"] = next_gpu(gpus, started)
    # Ctrl-C reaches the whole process group: the parent decides (stop the workers, keep
    # every finished record), a worker must not die half-way on its own
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with, args=(os.getppid(),), daemon=True,
                     name="exit-with-the-sweep").start()


def _exit_with(parent: int, every_s: float = 1.0) -> None:
    """End this worker once its sweep process is gone (killed with SIGKILL, say), rather
    than finish a cell nobody will record. The parent writes the records, so nothing is
    left half-written; the caches a cell fills are written atomically."""
    while os.getppid() == parent:
        time.sleep(every_s)
    os._exit(3)


class LocalExecutor:
    """``jobs`` worker processes (started fresh, not forked: the parent may hold torch's
    threads), each with ``cores // jobs`` torch threads (or fewer, as OMP_NUM_THREADS says).
    On a machine with GPUs the workers take them in turn, one each (`--jobs` = the number of
    GPUs gives every GPU a cell of its own)."""

    name = "local"

    def __init__(self, jobs: int = 1):
        if jobs < 1:
            raise RecguardError(f"--jobs {jobs}: give at least 1")
        self.jobs = jobs
        self.slots = jobs
        self.threads = thread_cap(max(1, (os.cpu_count() or 1) // jobs))
        self._pool: ProcessPoolExecutor | None = None
        self._running: dict[Future, tuple[Hashable, ProcessPoolExecutor]] = {}
        self.gpus = visible_gpus()
        self._context = multiprocessing.get_context("spawn")
        self._workers_started = self._context.Value("i", 0)
        self.description = (f"local, {jobs} process(es) x {self.threads} thread(s)"
                            + (f", GPU {', '.join(self.gpus)} in turn" if self.gpus else ""))

    def start(self) -> None:
        self._pool = self._pool or self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.jobs, mp_context=self._context, initializer=_init_local_worker,
                                   initargs=(self.threads, self.gpus, self._workers_started))

    def submit(self, task: Hashable, spec: dict[str, Any], gpu: bool) -> None:
        self.start()
        self._running[self._pool.submit(attempt, spec)] = (task, self._pool)

    def next_done(self) -> tuple[Hashable, Outcome]:
        done, _ = wait(list(self._running), return_when=FIRST_COMPLETED)
        future = next(iter(done))
        task, pool = self._running.pop(future)
        try:
            return task, future.result()
        except BrokenProcessPool:
            # a worker died (killed, out of memory): every cell in its pool is lost with it;
            # a fresh pool takes the next submissions
            if pool is self._pool:
                self._pool = None
                pool.shutdown(wait=False)
            return task, Outcome(None, "the worker process died (killed or out of memory)", 0.0)
        except Exception as exc:
            return task, Outcome(None, one_line(exc), 0.0)

    def close(self, cancel: bool = False) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if cancel:
            # stop the cells in flight now: their records are not written, a re-run does them
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
        pool.shutdown(wait=True, cancel_futures=cancel)


class RayExecutor:
    """Each cell a Ray task. ``address``: None starts a local cluster (of ``jobs`` CPUs when
    given), ``auto`` joins the cluster this node belongs to, else ``host:port`` or
    ``ray://...``. A cell that prefers a GPU (`Plan.prefers_gpu`: an LLM backbone, or a
    defense that runs an LLM) asks for one when the cluster has GPUs; every cell asks for a CPU."""

    name = "ray"

    def __init__(self, address: str | None = None, jobs: int | None = None):
        try:
            import ray
        except ImportError:
            raise RecguardError(f"--executor ray needs Ray: {RAY_INSTALL}") from None
        self.ray = ray
        self.address = address
        self.jobs = jobs
        self._running: dict[Any, Hashable] = {}
        self._remote = None
        self.slots = 0
        self.description = "ray"

    def start(self) -> None:
        ray = self.ray
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if self.address is None and self.jobs:
                options["num_cpus"] = self.jobs
            try:
                # "local": a new instance, even where a cluster is already running here
                ray.init(address=self.address or "local", **options)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise RecguardError(f"cannot reach the Ray cluster at {self.address or 'a new local one'}: "
                                    f"{one_line(exc)}") from None
        resources = ray.cluster_resources()
        self.gpus = resources.get("GPU", 0) > 0
        self.slots = max(1, int(resources.get("CPU", 1)))
        # no retries of Ray's own: the sweep retries a failed cell once, whichever executor
        self._remote = ray.remote(max_retries=0)(ray_attempt)
        self.description = (f"ray at {self.address or 'a local cluster'}: "
                            f"{int(resources.get('CPU', 0))} CPU(s), {int(resources.get('GPU', 0))} GPU(s)")

    def submit(self, task: Hashable, spec: dict[str, Any], gpu: bool) -> None:
        if self._remote is None:
            self.start()
        resources = {"num_gpus": 1, "num_cpus": 1} if gpu and self.gpus else {"num_cpus": 1}
        self._running[self._remote.options(**resources).remote(spec)] = task

    def next_done(self) -> tuple[Hashable, Outcome]:
        ray = self.ray
        (ref,), _ = ray.wait(list(self._running), num_returns=1)
        task = self._running.pop(ref)
        try:
            return task, ray.get(ref)
        except ray.exceptions.RayError as exc:   # a worker killed, a node lost
            return task, Outcome(None, one_line(exc), 0.0)

    def close(self, cancel: bool = False) -> None:
        ray = self.ray
        if cancel:
            for ref in list(self._running):
                ray.cancel(ref, force=True)
        self._running.clear()
        if ray.is_initialized():
            ray.shutdown()


def make_executor(name: str, jobs: int | None, address: str | None):
    if name == "local":
        if address:
            raise RecguardError("--address is for --executor ray")
        return LocalExecutor(jobs or 1)
    if name == "ray":
        return RayExecutor(address, jobs)
    raise RecguardError(f"unknown executor {name!r}; available: local, ray")
