"""`recguard plugin new`: scaffold an installable plugin package around one working example.

``new_plugin("pop-filler", "attack", parent)`` writes ``parent/recguard-pop-filler/``:

    pyproject.toml                  the ``recguard`` entry point: pop-filler = "recguard_pop_filler"
    README.md                       install, run, test, publish
    recguard_pop_filler/__init__.py the example component, registered through its hook
    tests/test_pop_filler.py        the host's contract check and the example's own tests

The files come from ``templates/common`` (every plugin) and ``templates/<kind>``
(the example component and its tests), rendered with `string.Template`. Nothing
is ever overwritten: the package is written into a hidden folder beside the
target and renamed into place at the end.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from importlib import resources
from importlib.metadata import entry_points
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING

from recguard.errors import RecguardError
from recguard.files import atomic_write_text

if TYPE_CHECKING:  # pragma: no cover
    from recguard.plugins import Host

NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")


@dataclass(frozen=True)
class Kind:
    """What differs between the kinds of component a plugin can bring."""

    hook: str       # the register_* hook the example implements
    example: str    # the example method, in one line, for the README
    run: str        # the `recguard eval` line that exercises it ({name} filled in)
    options: str    # how a user sets its Config's options, for the README ({name} filled in)


KINDS: dict[str, Kind] = {
    "attack": Kind("register_attacks",
                   "The example is a popularity-filler attack: fake users rate the target items "
                   "at the maximum and popular filler items at their mean rating.",
                   "recguard eval --attack {name} --seeds 0",
                   "`--attack-opt key=value` sets an option of `{name}`."),
    "defense": Kind("register_defenses",
                    "The example is an RDMA detector: before training it scores every user by how "
                    "far their ratings deviate from the item means and drops the top-scoring share.",
                    "recguard eval --defense {name} --seeds 0",
                    "`--defense-opt key=value` sets an option of `{name}`."),
    "backbone": Kind("register_backbones",
                     "The example is an item-popularity recommender: every user's scores are the "
                     "items' training popularity.",
                     "recguard eval --backbone {name} --seeds 0",
                     "`--backbone-opt key=value` sets an option of `{name}`."),
    "metric": Kind("register_metrics",
                   "The example is item coverage: the share of distinct items among the slots of "
                   "the genuine users' top-k lists.",
                   "recguard eval --metrics HR@50,{name}@50 --seeds 0",
                   "`--metrics` replaces the protocol's metric list, so name the others too; a "
                   "metric is built with its Config's defaults (there are no metric options)."),
}

# file in the package ({module}, {stem} filled in) -> its templates under templates/ ({kind}
# filled in), concatenated: every test file ends with the check that the host registers it
LAYOUT = {
    "pyproject.toml": ("common/pyproject.toml.tmpl",),
    "README.md": ("common/README.md.tmpl",),
    "{module}/__init__.py": ("{kind}/plugin.py.tmpl",),
    "tests/test_{stem}.py": ("{kind}/test_plugin.py.tmpl", "common/test_registered.py.tmpl"),
}


@dataclass(frozen=True)
class PluginNames:
    """Every name derived from the plugin's NAME and kind."""

    name: str           # the component's registry name and the entry-point name: pop-filler
    kind: str           # attack
    distribution: str   # recguard-pop-filler (also the folder)
    module: str         # recguard_pop_filler
    stem: str           # pop_filler
    cls: str            # PopFillerAttack

    @classmethod
    def of(cls, name: str, kind: str) -> "PluginNames":
        stem = name.replace("-", "_")
        camel = "".join(part.capitalize() for part in name.split("-"))
        suffix = kind.capitalize()
        return cls(name, kind, f"recguard-{name}", f"recguard_{stem}", stem,
                   camel if camel.endswith(suffix) else camel + suffix)

    def placeholders(self) -> dict[str, str]:
        kind = KINDS[self.kind]
        return {"name": self.name, "kind": self.kind, "kinds": f"{self.kind}s",
                "distribution": self.distribution, "module": self.module, "cls": self.cls,
                "example": kind.example, "run": kind.run.format(name=self.name),
                "options": kind.options.format(name=self.name)}


def check_name(name: str, kind: str, host: "Host") -> PluginNames:
    """The plugin's names, or a `RecguardError` saying why NAME cannot be used."""
    if kind not in KINDS:
        raise RecguardError(f"unknown plugin kind {kind!r}; choose one of {', '.join(KINDS)}")
    if name.startswith(("recguard-", "recguard_")):
        bare = name[len("recguard-"):]
        raise RecguardError(f"plugin name {name!r}: give the component's name without the prefix; "
                            f"`recguard plugin new {bare}` makes the package recguard-{bare}")
    if not NAME.fullmatch(name):
        raise RecguardError(f"plugin name {name!r} is not a lowercase slug: a letter, then letters, "
                            f"digits and single hyphens (e.g. pop-filler)")
    names = PluginNames.of(name, kind)
    # registry names are case-sensitive, but `hr` beside `HR` would only confuse users
    registry = host.registry(kind)
    for existing in registry.names():
        if existing.lower() == name:
            provenance = registry.entry(existing).provenance
            raise RecguardError(f"{kind} {existing!r} is already registered by plugin "
                                f"{provenance.plugin} ({provenance.distribution} {provenance.version}); "
                                f"choose another name")
    from recguard.plugins import ENTRY_POINT_GROUP

    taken = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if name in taken:
        dist = taken[name].dist.name if taken[name].dist else "?"
        raise RecguardError(f"a recguard plugin named {name!r} is already installed (from {dist}); "
                            f"choose another name")
    if importlib.util.find_spec(names.module) is not None:
        raise RecguardError(f"a module named {names.module} is already importable; choose another name")
    return names


def render(names: PluginNames) -> dict[str, str]:
    """Relative path -> text of every file of the package."""
    root = resources.files(__name__).joinpath("templates")
    values = names.placeholders()

    def fill(template: str) -> str:
        return Template(root.joinpath(template.format(kind=names.kind)).read_text()).substitute(values)

    return {path.format(module=names.module, stem=names.stem): "".join(map(fill, templates))
            for path, templates in LAYOUT.items()}


def new_plugin(name: str, kind: str, parent: str | os.PathLike = ".", host: "Host | None" = None) -> Path:
    """Write the plugin package ``parent/recguard-NAME`` and return its folder."""
    if host is None:
        from recguard.plugins import get_host

        host = get_host()
    names = check_name(name, kind, host)
    parent = Path(parent)
    target = parent / names.distribution
    if target.exists() or target.is_symlink():
        raise RecguardError(f"{target} already exists; recguard plugin new never overwrites, "
                            f"remove it or pass another --dir")
    if parent.exists() and not parent.is_dir():
        raise RecguardError(f"--dir {parent} is not a folder")
    files = render(names)
    staging = parent / f".{names.distribution}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        staging.mkdir(parents=True)
        for relative, text in files.items():
            path = atomic_write_text(staging / relative, text)
            path.chmod(0o644)  # a package to share, whatever the umask
        os.rename(staging, target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise RecguardError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target
