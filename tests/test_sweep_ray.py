"""The Ray executor on real clusters: one `ray.init` starts (no mock), and a cluster of two
node processes (`ray start --head` and `ray start --address`, as on two machines) that
`recguard sweep --executor ray --address` joins. Skipped where Ray is not installed
(`pip install "recguard[ray]"`; CI installs it)."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from recguard.records import read_record
from recguard.sweep import load_sweep
from recguard.sweep.run import run_sweep

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.integration, pytest.mark.ray]

TINY = """
protocol = "apt"
attack = "average"
defense = ["none", "apr"]
budget = 0.03
seeds = [0]
backbone_options = {epochs = 2}
"""


def test_ray_executor_runs_cells_as_tasks_of_a_local_cluster(tmp_path):
    from recguard.sweep.executors import RayExecutor

    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY)
    _, cells, _ = load_sweep(spec)
    executor = RayExecutor(address=None, jobs=2)
    result = run_sweep(cells, tmp_path / "out", executor)
    assert not ray.is_initialized()     # shut down at the end
    assert (result.ran, result.failures) == (2, [])
    assert executor.description.startswith("ray at a local cluster: 2 CPU(s)")
    records = [read_record(p) for p in result.paths]
    assert [r["spec"]["defense"]["name"] for r in records] == ["none", "apr"]
    assert records[0]["metrics"]["attacked"] == records[1]["metrics"]["attacked"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node(*args: str, temp_dir=None) -> subprocess.Popen:
    """A Ray node in its own process group (``--block``: it lives as long as this process,
    and takes its own daemons with it when stopped)."""
    ray_cli = shutil.which("ray") or os.path.join(os.path.dirname(sys.executable), "ray")
    return subprocess.Popen([ray_cli, "start", "--block", "--num-cpus", "1", "--disable-usage-stats",
                             *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _stop(node: subprocess.Popen) -> None:
    if node.poll() is None:
        os.killpg(node.pid, signal.SIGTERM)
        try:
            node.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(node.pid, signal.SIGKILL)


def test_sweep_joins_a_two_node_cluster_by_its_address(tmp_path):
    port = _free_port()
    address = f"127.0.0.1:{port}"
    head = _node("--head", "--port", str(port), "--node-ip-address", "127.0.0.1",
                 "--include-dashboard", "false")
    worker = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:   # the head answers once its GCS is up
            probe = subprocess.run([sys.executable, "-c", f"import ray; ray.init(address='{address}'); "
                                    "print(int(ray.cluster_resources().get('CPU', 0)))"],
                                   capture_output=True, text=True)
            if probe.returncode == 0:
                break
            assert head.poll() is None, head.stderr.read()[-2000:]
            time.sleep(2)
        worker = _node("--address", address, "--node-ip-address", "127.0.0.1")
        while time.monotonic() < deadline:
            probe = subprocess.run([sys.executable, "-c", f"import ray; ray.init(address='{address}'); "
                                    "print(int(ray.cluster_resources().get('CPU', 0)))"],
                                   capture_output=True, text=True)
            if probe.stdout.strip().endswith("2"):
                break
            time.sleep(2)
        spec = tmp_path / "tiny.toml"
        spec.write_text(TINY)
        out = tmp_path / "out"
        done = subprocess.run([sys.executable, "-m", "recguard", "sweep", str(spec), "--executor", "ray",
                               "--address", address, "--output", str(out)],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"running on ray at {address}: 2 CPU(s)" in done.stderr
        assert "2 cells: 0 already done, 2 run, 0 failed" in done.stderr
        assert len([read_record(p) for p in out.glob("*.json")]) == 2
    finally:
        if worker is not None:
            _stop(worker)
        _stop(head)


def test_without_ray_the_ray_executor_is_a_one_line_error(tmp_path, monkeypatch):
    from recguard.errors import RecguardError
    from recguard.sweep.executors import make_executor

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(RecguardError, match=r'--executor ray needs Ray: pip install "recguard\[ray\]"'):
        make_executor("ray", None, None)


def test_llm_cells_ask_ray_for_a_gpu_and_cpu_cells_do_not(tmp_path, tiny_llm):
    """On a cluster with a GPU an LLM cell is a task of ``num_gpus=1``, a CF cell is not. The
    GPU here is a logical one (declared to ``ray.init``, as `ray start --num-gpus` declares
    it): Ray schedules by it and gives its id to the task, which is what a real GPU gets; the
    model then finds no CUDA device on this machine and runs on the CPU."""
    from recguard.sweep.executors import RayExecutor

    spec = tmp_path / "mixed.toml"
    spec.write_text(f"""
[defaults]
seeds = [0]
[groups.llm]
backbone = "tallrec"
protocol = "tallrec"
backbone_options = {{model = "{tiny_llm}", epochs = 1}}
protocol_options = {{n_train_samples = 4, n_test_samples = 8}}
[groups.cf]
backbone = "mf"
protocol = "apt"
attack = "random"
budget = 0.01
backbone_options = {{epochs = 2}}
""")
    _, cells, _ = load_sweep(spec)
    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    executor = RayExecutor(address=None)      # joins the running instance
    result = run_sweep(cells, tmp_path / "out", executor)
    assert (result.ran, result.failures) == (2, [])
    assert executor.description.endswith("2 CPU(s), 1 GPU(s)")
    placed = {r["spec"]["backbone"]["name"]: r["environment"] for r in map(read_record, result.paths)}
    assert placed["tallrec"]["cuda_visible_devices"] == "0"
    assert placed["mf"].get("cuda_visible_devices", "") == ""
    assert placed["tallrec"]["ray_node_id"] == placed["mf"]["ray_node_id"]
