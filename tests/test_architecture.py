"""The host's three wings and the directions imports may take between them.

    core      recguard.* but the wings below: contracts, registry, config, data, metrics, ...
    kit       recguard.kit.*: method machinery shared by plugins
    pipeline  recguard.pipeline.*: the cell loop
    sweep     recguard.sweep.*: grids of cells (spec files, executors) on the pipeline
    outer     recguard.cli, .leaderboard, .scaffold, .testing: what users and plugin tests run

Allowed: core <- pipeline <- sweep <- outer and core <- kit <- plugins. Imports are read from the
source (every ``import`` statement, inside functions too), not from what happens to load.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import recguard

HOST = Path(recguard.__file__).parent
PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
OUTER = ("recguard.cli", "recguard.leaderboard", "recguard.scaffold", "recguard.testing",
         "recguard.__main__")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(HOST.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def wing(module: str) -> str:
    if module.startswith(OUTER):
        return "outer"
    for name in ("kit", "pipeline", "sweep"):
        if module == f"recguard.{name}" or module.startswith(f"recguard.{name}."):
            return name
    return "core"


def imported(path: Path) -> set[str]:
    """Every recguard module ``path`` imports (``from recguard import x`` counts recguard.x
    when x is a module)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                if _is_module(candidate):
                    out.add(candidate)
    return {m for m in out if m == "recguard" or m.startswith("recguard.")}


def _is_module(name: str) -> bool:
    base = HOST.parent.joinpath(*name.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


HOST_FILES = sorted(p for p in HOST.rglob("*.py") if "templates" not in p.parts)
FORBIDDEN = {"core": {"kit", "pipeline", "sweep", "outer"}, "kit": {"pipeline", "sweep", "outer"},
             "pipeline": {"kit", "sweep", "outer"}, "sweep": {"kit", "outer"}, "outer": set()}


@pytest.mark.parametrize("path", HOST_FILES, ids=lambda p: module_name(p))
def test_host_imports_flow_one_way(path):
    own = wing(module_name(path))
    wrong = sorted(m for m in imported(path) if wing(m) in FORBIDDEN[own])
    assert not wrong, f"{module_name(path)} ({own}) imports {wrong}"


def module_level_imports(path: Path) -> set[str]:
    """The recguard modules ``path`` imports when it is imported (not inside functions, not
    under ``if TYPE_CHECKING``)."""
    out = set()
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names if _is_module(f"{node.module}.{a.name}")}
    return {m for m in out if m.startswith("recguard.")}


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """A path that comes back to its start, or None."""
    state: dict[str, int] = {}   # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return path + [module, target]
            if target not in state and (circle := visit(target, path + [module])):
                return circle
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (circle := visit(module, [])):
            return circle
    return None


def test_no_import_circles():
    circle = find_circle({module_name(p): module_level_imports(p) for p in HOST_FILES})
    assert circle is None, f"import circle: {' -> '.join(circle)}"


def test_the_circle_check_sees_a_circle(tmp_path):
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from recguard.pipeline.cell import run_cell\n")
    b.write_text("def f():\n    from recguard.contracts import Model\n")
    assert module_level_imports(a) == {"recguard.pipeline.cell"}
    assert module_level_imports(b) == set()   # inside a function: imported when it runs


def test_the_wings_are_where_the_readme_says():
    wings = {wing(module_name(p)) for p in HOST_FILES}
    assert wings == {"core", "kit", "pipeline", "sweep", "outer"}
    assert wing("recguard.kit.cf.loop") == "kit" and wing("recguard.pipeline.cell") == "pipeline"
    assert wing("recguard.sweep.grid") == "sweep" and wing("recguard.cli.sweep_cmd") == "outer"
    assert wing("recguard.data.poisoned") == "core" and wing("recguard.testing") == "outer"


def test_the_checker_sees_an_upward_import(tmp_path):
    source = "def f():\n    from recguard.kit.cf.loop import run_epochs\n    from recguard import pipeline\n"
    path = tmp_path / "probe.py"
    path.write_text(source)
    found = imported(path)
    assert {"recguard.kit.cf.loop", "recguard.pipeline"} <= found
    assert {wing(m) for m in found} & FORBIDDEN["core"]


PLUGIN_CODE = sorted(p for p in PLUGINS.glob("recguard-*/recguard_*/**/*.py"))


@pytest.mark.parametrize("path", PLUGIN_CODE, ids=lambda p: str(p.relative_to(PLUGINS)))
def test_plugins_use_the_public_face_and_the_kit(path):
    """A plugin imports ``recguard`` (the public face) and ``recguard.kit.*``: the rest of the
    host may move without breaking third-party plugins."""
    wrong = sorted(m for m in imported(path) if m != "recguard" and not m.startswith("recguard.kit."))
    assert not wrong, f"{path.relative_to(PLUGINS)} imports host internals {wrong}"


# a plugin test that spies on the pipeline itself: which users it ranks under APT
TEST_EXCEPTIONS = {("recguard-apt/tests/test_apt.py", "recguard.pipeline.kinds.ranking")}
PLUGIN_TESTS = sorted(PLUGINS.glob("recguard-*/tests/*.py"))


@pytest.mark.parametrize("path", PLUGIN_TESTS, ids=lambda p: str(p.relative_to(PLUGINS)))
def test_plugin_tests_use_the_public_face_the_kit_and_the_testing_helpers(path):
    where = str(path.relative_to(PLUGINS))
    wrong = sorted(m for m in imported(path)
                   if m != "recguard" and not m.startswith(("recguard.kit.", "recguard.testing"))
                   and (where, m) not in TEST_EXCEPTIONS)
    assert not wrong, f"{where} imports host internals {wrong}"


def test_the_core_and_the_sweep_import_without_torch():
    """The sweep imports torch (and Ray) only where a cell runs, in its workers."""
    core = [module_name(p) for p in HOST_FILES if wing(module_name(p)) in ("core", "sweep")]
    script = ("import sys, importlib\n"
              "for name in ('torch', 'transformers', 'peft', 'trl', 'ray'):\n"
              "    sys.modules[name] = None  # an import of it raises\n"
              f"for module in {core!r}:\n"
              "    importlib.import_module(module)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
