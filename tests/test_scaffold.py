"""`recguard plugin new`: the scaffolded package installs, passes its checks and runs in a cell."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

from recguard.errors import RecguardError
from recguard.scaffold import KINDS, PluginNames, new_plugin
from recguard.testing import check_attack, check_backbone, check_defense, check_metric
from tests.test_cli import run_main

CHECKS = {"attack": check_attack, "backbone": check_backbone, "metric": check_metric}
# Names of the scaffolded plugins: ones nobody installs, so that a user who tried
# `recguard plugin new pop-filler` and installed it does not make these tests fail.
PREFIX = "scaffold-check"
CMD = f"{PREFIX}-cmd"


@pytest.fixture
def scaffold(host, tmp_path, monkeypatch):
    """``scaffold(kind)``: a new plugin package under tmp_path, importable for this test;
    returns (names, folder, module)."""
    imported = []

    def make(kind: str):
        names = PluginNames.of(f"{PREFIX}-{kind}", kind)
        folder = new_plugin(names.name, kind, tmp_path, host)
        monkeypatch.syspath_prepend(str(folder))
        module = importlib.import_module(names.module)
        imported.append(names.module)
        return names, folder, module

    yield make
    for module in imported:
        sys.modules.pop(module, None)


def test_names_derived_from_the_plugin_name():
    names = PluginNames.of("pop-filler", "attack")
    assert (names.distribution, names.module, names.stem, names.cls) == \
        ("recguard-pop-filler", "recguard_pop_filler", "pop_filler", "PopFillerAttack")
    assert PluginNames.of("demo-attack", "attack").cls == "DemoAttack"
    assert PluginNames.of("coverage2", "metric").cls == "Coverage2Metric"


@pytest.mark.parametrize("kind", KINDS)
def test_package_layout_and_entry_point(kind, scaffold):
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    names, folder, _ = scaffold(kind)
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts)
    assert files == ["README.md", "pyproject.toml", f"{names.module}/__init__.py",
                     f"tests/test_{names.stem}.py"]
    project = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
    assert project["name"] == f"recguard-{PREFIX}-{kind}"
    assert "recguard" in project["dependencies"]
    assert project["entry-points"]["recguard"] == {names.name: names.module}
    readme = (folder / "README.md").read_text()
    for line in (f"pip install -e {names.distribution}", f"recguard list {kind}s", "python -m pytest",
                 KINDS[kind].run.format(name=names.name), "docs/leaderboard.md"):
        assert line in readme, line
    assert "$" not in (folder / f"{names.module}/__init__.py").read_text()  # every placeholder filled


@pytest.mark.parametrize("kind", KINDS)
def test_the_example_passes_the_host_contract_and_registers(kind, scaffold, host, register_plugin):
    names, _, module = scaffold(kind)
    registered = []
    getattr(module, KINDS[kind].hook)(registered.append)
    assert registered == [getattr(module, names.cls)]
    cls = registered[0]
    assert cls.name == names.name and cls.summary and cls.paper
    if kind == "defense":
        check_defense(cls, host.backbones.get("mf"))
    else:
        CHECKS[kind](cls)
    register_plugin(module, names.name)
    entry = host.registry(kind).entry(names.name)
    assert entry.obj is cls and entry.provenance.plugin == names.name


@pytest.mark.integration
@pytest.mark.parametrize("kind", KINDS)
def test_the_generated_tests_pass(kind, scaffold):
    _, folder, _ = scaffold(kind)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                          cwd=folder, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "passed" in done.stdout and "skipped" not in done.stdout


# One real cell on ML-100K per kind, through the CLI, with MF (the default backbone) where
# the kind is not the backbone; the clean condition is shared through the result cache.
CELLS = {
    "attack": ["--attack", f"{PREFIX}-attack"],
    "defense": ["--defense", f"{PREFIX}-defense"],
    "backbone": ["--backbone", f"{PREFIX}-backbone"],
    "metric": ["--attack", "none", "--metrics", f"HR@50,{PREFIX}-metric@50"],
}


@pytest.mark.integration
@pytest.mark.parametrize("kind", KINDS)
def test_the_registered_component_runs_in_a_cell(kind, scaffold, register_plugin, tmp_path, capsys):
    names, _, module = scaffold(kind)
    register_plugin(module, names.name)
    code, out, err = run_main(["eval", *CELLS[kind], "--seeds", "0", "--json",
                               "--output", str(tmp_path / "results")], capsys)
    assert code == 0, err
    record = json.loads(out)
    spec, provenance, metrics = record["spec"], record["provenance"], record["metrics"]
    if kind == "metric":
        assert provenance["metrics"][names.name]["plugin"] == names.name
        assert 0.0 < metrics["clean"][f"{names.name}@50"]["mean"] <= 1.0
        return
    assert spec[kind]["name"] == names.name and provenance[kind]["plugin"] == names.name
    if kind == "attack":
        assert metrics["attacked"]["T-HR@50"]["mean"] > metrics["clean"]["T-HR@50"]["mean"]
    elif kind == "defense":
        assert record["conditions"][-1] == "attacked+defense"
        assert 0.0 <= metrics["attacked+defense"]["Detect-AUC"]["mean"] <= 1.0
        assert metrics["attacked+defense"]["Weight-fake"]["mean"] < 1.0
    else:
        assert metrics["clean"]["HR@50"]["mean"] > 0.1  # popularity is a strong ML-100K baseline


# ---------------------------------------------------------------- the command and its errors


def test_plugin_new_command_writes_the_package(host, tmp_path, capsys):
    code, out, err = run_main(["plugin", "new", CMD, "--kind", "attack",
                               "--dir", str(tmp_path)], capsys)
    assert code == 0, err
    folder = tmp_path / f"recguard-{CMD}"
    assert (folder / f"recguard_{CMD.replace('-', '_')}" / "__init__.py").is_file()
    assert f"created {folder}" in out and f"pip install -e {folder}" in out
    assert f"recguard eval --attack {CMD} --seeds 0" in out
    assert [p.name for p in tmp_path.iterdir()] == [f"recguard-{CMD}"]  # no staging left


def assert_one_line_error(code, err, fragment):
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("name", ["Pop", "1pop", "pop_filler", "pop--filler", "-pop", "pop-", "pöp", ""])
def test_bad_names_are_refused(name, host, tmp_path, capsys):
    code, _, err = run_main(["plugin", "new", "--kind", "attack", "--dir", str(tmp_path), "--", name],
                            capsys)
    assert_one_line_error(code, err, "is not a lowercase slug")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("name, kind, fragment", [
    ("mf", "backbone", "backbone 'mf' is already registered by plugin mf (recguard-mf"),
    ("average", "attack", "attack 'average' is already registered by plugin heuristics"),
    ("none", "defense", "defense 'none' is already registered by plugin recguard.builtins"),
    ("hr", "metric", "metric 'HR' is already registered"),            # case-insensitive
    ("heuristics", "attack", "a recguard plugin named 'heuristics' is already installed"),
    ("mf", "attack", "a recguard plugin named 'mf' is already installed (from recguard-mf)"),
])
def test_clashing_names_are_refused(name, kind, fragment, host, tmp_path, capsys):
    code, _, err = run_main(["plugin", "new", name, "--kind", kind, "--dir", str(tmp_path)], capsys)
    assert_one_line_error(code, err, fragment)
    assert not any(tmp_path.iterdir())


def test_an_existing_folder_is_never_overwritten(host, tmp_path, capsys):
    folder = tmp_path / f"recguard-{CMD}"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    code, _, err = run_main(["plugin", "new", CMD, "--kind", "attack", "--dir", str(tmp_path)],
                            capsys)
    assert_one_line_error(code, err, f"{folder} already exists; recguard plugin new never overwrites")
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == [f"recguard-{CMD}"]


def test_a_failed_write_leaves_nothing_behind(host, tmp_path, monkeypatch):
    import recguard.scaffold as scaffold_module

    real, calls = scaffold_module.atomic_write_text, []

    def disk_full_on_the_third_file(path, text):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(path, text)

    monkeypatch.setattr(scaffold_module, "atomic_write_text", disk_full_on_the_third_file)
    with pytest.raises(RecguardError, match=f"cannot write .*recguard-{CMD}: No space left on device"):
        new_plugin(CMD, "attack", tmp_path, host)
    assert not any(tmp_path.iterdir())


def test_unknown_kind_is_a_usage_error(host, tmp_path, capsys):
    code, _, err = run_main(["plugin", "new", "pop", "--kind", "dataset", "--dir", str(tmp_path)], capsys)
    assert code == 2 and "Invalid value for '--kind'" in err
    with pytest.raises(RecguardError, match="unknown plugin kind 'dataset'"):
        new_plugin("pop", "dataset", tmp_path, host)


def test_plugin_help_does_not_import_torch():
    code = ("import sys\nfrom recguard.cli import main\ntry:\n    main(['plugin', 'new', '--help'])\n"
            "except SystemExit:\n    pass\nprint('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "--kind" in out and out.strip().endswith("NO-TORCH")
