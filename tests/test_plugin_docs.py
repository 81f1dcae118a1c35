"""docs/plugins.md stays true: every hook documented and tested, every testing helper
mentioned, and every example marked complete runs and passes the contract checks."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

import recguard.testing
from recguard import hookspecs
from recguard.contracts import Attack, Backbone, Defense, Metric
from recguard.data.interactions import Interactions
from recguard.plan import CellSpec, make_plan
from recguard.testing import (check_attack, check_backbone, check_defense, check_llm_defense,
                              check_metric, tiny_interactions)

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "plugins.md").read_text()
HOOKS = sorted(name for name, fn in vars(hookspecs).items() if hasattr(fn, "recguard_spec"))
COMPLETE = re.compile(r"<!-- complete example -->\n```python\n(.*?)```", re.S)


def test_the_hooks_are_the_seven_we_know():
    # a new hook needs its section in the guide and a test (the two tests below)
    assert HOOKS == ["register_attacks", "register_backbones", "register_commands", "register_datasets",
                     "register_defenses", "register_metrics", "register_protocols"]


def section(hook: str) -> str:
    match = re.search(rf"^## {hook}\n(.*?)(?=^## )", DOC, re.S | re.M)
    assert match, f"docs/plugins.md has no '## {hook}' section"
    return match.group(1)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_a_complete_example(hook):
    text = section(hook)
    assert "**Receives**" in text
    examples = COMPLETE.findall(text)
    assert examples and any(f"def {hook}(" in code for code in examples), \
        f"the '## {hook}' section has no complete example implementing it"


def sources_of_tests():
    return sorted(p for p in [*ROOT.glob("tests/**/*.py"), *ROOT.glob("plugins/*/tests/**/*.py")]
                  if p.name != Path(__file__).name)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_implemented_by_some_test(hook):
    """A test defines an implementation: ``def register_x(`` (an @hookimpl function or a
    plugin-object method) or ``register_x=hookimpl(...)`` / ``register_x=lambda`` (a plugin
    object built in the test), which it then registers through ``register_plugin``."""
    implements = re.compile(rf"def {hook}\(|\b{hook}\s*=\s*(hookimpl\b|lambda\b)")
    assert any(implements.search(p.read_text()) for p in sources_of_tests()), \
        f"no test under tests/ or plugins/*/tests implements {hook}"


@pytest.mark.parametrize("name", recguard.testing.__all__)
def test_every_testing_helper_is_documented(name):
    assert f"`{name}" in DOC, f"recguard.testing.{name} is not mentioned in docs/plugins.md"


def test_every_python_block_is_valid_python():
    for code in re.findall(r"```python\n(.*?)```", DOC, re.S):
        compile(code, "docs/plugins.md", "exec")


# ---------------------------------------------------------------- the complete examples run


def load_example(code: str, index: int) -> types.ModuleType:
    """Execute an example as the module a plugin would be (dataclasses and type hints look
    the module up in sys.modules)."""
    module = types.ModuleType(f"recguard_docs_example_{index}")
    sys.modules[module.__name__] = module
    exec(compile(code, f"docs/plugins.md (complete example {index})", "exec"), module.__dict__)
    return module


def check_component(cls, host) -> None:
    if issubclass(cls, Backbone):
        check_backbone(cls)
    elif issubclass(cls, Attack):
        check_attack(cls)
    elif issubclass(cls, Metric):
        check_metric(cls)
    elif cls.backbone_kinds == frozenset({"llm"}):
        check_llm_defense(cls, None)
    else:
        usable = [b for b in host.backbones.iter_objects()
                  if b.kind in cls.backbone_kinds and cls.needs <= b.offers and b.feedback & cls.feedback]
        check_defense(cls, min(usable, key=lambda b: b.name != "mf"))


def check_dataset(spec, tmp_path) -> None:
    data = tiny_interactions()
    rows = np.column_stack([data.user_ids[data.user], data.item_ids[data.item],
                            data.rating.astype(int), data.timestamp])
    path = tmp_path / f"{spec.name}.tsv"
    np.savetxt(path, rows, fmt="%s", delimiter="\t")
    loaded = spec.load(path, spec.Config())
    assert isinstance(loaded, Interactions) and len(loaded) == len(data)
    assert (loaded.n_users, loaded.n_items) == (data.n_users, len(np.unique(data.item)))


EXAMPLES = COMPLETE.findall(DOC)


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_complete_example_registers_and_works(index, host, register_plugin, tmp_path):
    module = load_example(EXAMPLES[index], index)
    try:
        register_plugin(module, module.__name__)
        added = dict(host.loaded[-1].components)  # kind -> names, of this plugin
        for kind, names in added.items():
            for name in names:
                obj = host.registry(kind).get(name)
                if kind in ("backbone", "attack", "defense", "metric"):
                    check_component(obj, host)
                elif kind == "dataset":
                    check_dataset(obj, tmp_path)
                else:  # a protocol: a cell under it plans
                    assert make_plan(CellSpec(protocol=name, seeds=(0,)), host).protocol is obj
        if hasattr(module, "register_commands"):
            group = click.Group("recguard")
            module.register_commands(cli=group)
            assert group.commands, "register_commands added no command"
            for command in group.commands:
                result = CliRunner().invoke(group, [command])
                assert result.exit_code == 0, result.output
            added["command"] = list(group.commands)
        assert added, "a complete example registers something"
    finally:
        sys.modules.pop(module.__name__, None)
