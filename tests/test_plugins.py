"""The plugin host: registration, provenance, duplicates, suggestions, guarded loading."""

import subprocess
import sys
from types import SimpleNamespace

import pytest

from recguard.contracts import Attack
from recguard.data.poisoned import Poisoned
from recguard.errors import RecguardError
from recguard.hookspecs import hookimpl
from recguard.plugins import Host


class Dummy(Attack):
    name = "dummy"
    summary = "test attack"

    def poison(self, train, ctx):
        return Poisoned.empty()


def plugin_with(**hooks):
    return SimpleNamespace(**{name: hookimpl(fn) for name, fn in hooks.items()})


def test_builtins_register_metrics_datasets_protocols(host):
    assert {"HR", "NDCG", "Recall", "T-HR", "T-NDCG", "RC-HR", "RC-NDCG"} <= set(host.metrics.names())
    assert {"ml-100k", "ml-1m", "atomic", "csv"} <= set(host.datasets.names())
    assert {"apt", "pamacf", "lorec"} <= set(host.protocols.names())
    assert "none" in host.attacks and "none" in host.defenses
    entry = host.metrics.entry("HR")
    assert entry.provenance.distribution == "recguard" and entry.provenance.version


def test_bundled_plugins_are_found_through_entry_points(host):
    assert host.backbones.entry("mf").provenance.distribution == "recguard-mf"
    assert {"random", "average", "bandwagon"} <= set(host.attacks.names())
    assert not host.failed, host.failed


def test_register_for_one_test_and_remove(host, register_plugin):
    register_plugin(plugin_with(register_attacks=lambda register: register(Dummy)), "dummy-plugin")
    assert host.attacks.entry("dummy").provenance.plugin == "dummy-plugin"
    host.unregister_plugin("dummy-plugin")
    assert "dummy" not in host.attacks


def test_duplicate_names_both_plugins(host, register_plugin):
    register_plugin(plugin_with(register_attacks=lambda register: register(Dummy)), "first")
    with pytest.raises(RecguardError, match="registered twice: by plugin first and by plugin second"):
        register_plugin(plugin_with(register_attacks=lambda register: register(Dummy)), "second")


def test_base_class_check_and_all_or_nothing(host, register_plugin):
    class NotABackbone:
        name = "oops"

    bad = plugin_with(register_attacks=lambda register: register(Dummy),
                      register_backbones=lambda register: register(NotABackbone))
    with pytest.raises(RecguardError, match="is not a subclass of recguard.contracts.Backbone"):
        register_plugin(bad, "bad")
    assert "dummy" not in host.attacks  # nothing of a refused plugin stays registered


def test_unknown_name_suggests(host):
    with pytest.raises(RecguardError, match=r"unknown attack 'bandwagn' \(did you mean 'bandwagon'\?\)"):
        host.attacks.get("bandwagn")


def _broken_plugin_env(tmp_path):
    """A distribution whose plugin module raises at import, visible through PYTHONPATH."""
    (tmp_path / "broken_recguard_plugin.py").write_text("raise RuntimeError('boom at import')\n")
    dist = tmp_path / "broken_recguard_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-recguard-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[recguard]\nbroken = broken_recguard_plugin\n")
    return {"PYTHONPATH": str(tmp_path)}


def run_recguard(args, env_extra=None):
    import os

    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "recguard", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_a_plugin_that_raises_at_import_is_listed_as_failed(tmp_path):
    env = _broken_plugin_env(tmp_path)
    listed = run_recguard(["list", "attacks"], env)
    assert listed.returncode == 0, listed.stderr
    assert "average" in listed.stdout
    shown = run_recguard(["plugins"], env)
    assert shown.returncode == 0
    assert "broken" in shown.stdout and "boom at import" in shown.stdout


def test_environment_variable_limits_plugins():
    out = run_recguard(["list", "backbones"], {"RECGUARD_PLUGINS": ""})
    assert out.returncode == 0 and "mf" not in out.stdout.split()
    out = run_recguard(["list", "backbones"], {"RECGUARD_PLUGINS": "mf"})
    assert " mf " in out.stdout or "\nmf" in out.stdout or "mf " in out.stdout


def test_host_without_entry_points_has_builtins_only():
    host = Host()
    host.load_builtins()
    assert "mf" not in host.backbones and "HR" in host.metrics
    assert isinstance(host.backbones.names(), list)


# ---------------------------------------------------------------- every hook, through register_plugin


def test_register_metrics_and_protocols_reach_a_plan(host, register_plugin):
    import dataclasses

    import numpy as np

    from recguard.contracts import Metric
    from recguard.plan import CellSpec, make_plan
    from recguard.protocols import APT
    from recguard.testing import check_metric

    class Distinct(Metric):
        name = "Distinct"
        summary = "distinct items over top-k slots"

        def compute(self, view, k):
            return len(np.unique(view.topk[:, :k])) / view.topk[:, :k].size

    wide = dataclasses.replace(APT, name="apt-distinct", metrics=("HR@50", "Distinct@10"))
    register_plugin(plugin_with(register_metrics=lambda register: register(Distinct),
                                register_protocols=lambda register: register(wide)), "distinct-plugin")
    check_metric(host.metrics.get("Distinct"))
    plan = make_plan(CellSpec(protocol="apt-distinct", seeds=(0,)), host)
    assert plan.protocol is wide
    assert [(label, cls) for label, _, _, cls in plan.metrics][1] == ("Distinct@10", Distinct)
    assert plan.provenance["metrics"]["Distinct"]["plugin"] == "distinct-plugin"
    assert plan.provenance["protocol"]["plugin"] == "distinct-plugin"


def test_register_datasets_loads_through_the_plan(host, register_plugin, tiny_dataset):
    from recguard.data.datasets import DatasetSpec
    from recguard.plan import CellSpec, make_plan

    spec = DatasetSpec("tiny", "the test suite's tiny interactions", lambda path, config: tiny_dataset)
    register_plugin(plugin_with(register_datasets=lambda register: register(spec)), "tiny-data")
    plan = make_plan(CellSpec(dataset="tiny", attack="none", seeds=(0,)), host)
    assert plan.dataset is spec and plan.provenance["dataset"]["plugin"] == "tiny-data"
    assert plan.dataset.load(plan.data_path, plan.dataset_config) is tiny_dataset
    with pytest.raises(RecguardError, match="is not a DatasetSpec"):
        register_plugin(plugin_with(register_datasets=lambda register: register("tiny.csv")), "bad-data")


def test_register_commands_adds_a_cli_command(host, register_plugin, capsys):
    import click

    from recguard.cli import cli, main

    def register_commands(cli):
        @cli.command("hello")
        @click.argument("who")
        def hello(who):
            """Greet WHO."""
            click.echo(f"hello {who}")

    register_plugin(plugin_with(register_commands=register_commands), "hello-plugin")
    try:
        main(["hello", "plugins"])  # returns normally on success
        assert capsys.readouterr().out == "hello plugins\n"
    finally:
        cli.commands.pop("hello", None)  # the CLI group is global; the host is not
