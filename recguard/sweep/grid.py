"""A spec's groups expanded into cells of one seed each, every cell checked by `make_plan`
(the same names, options and compatibility checks as `recguard eval`) before anything runs."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Any, Iterator

from recguard.compat import IncompatibleCell
from recguard.errors import OptionError, RecguardError, did_you_mean
from recguard.plan import CellSpec, Plan, make_plan
from recguard.plugins import Host, get_host
from recguard.sweep.spec import ROLES, Group, SweepSpec

COMPONENTS = ("backbone", "attack", "defense")   # what `options.NAME` may name


@dataclass
class Cell:
    """One seed of one grid point, planned. ``line``: its group's line in the spec."""

    group: str
    line: int
    plan: Plan

    @property
    def seed(self) -> int:
        return self.plan.spec.seeds[0]

    @property
    def label(self) -> str:
        """The cell for a reader: each component with the options the spec gives it, so that
        two cells of a grid over an option read apart."""
        plan, spec = self.plan, self.plan.spec

        def named(name: str, options: dict[str, Any]) -> str:
            given = ", ".join(f"{k}={v}" for k, v in options.items())
            return f"{name}({given})" if given else name

        protocol = {k: v for k, v in spec.protocol_options.items() if k != "budget"}  # shown after the attack
        return (f"{named(plan.backbone.name, spec.backbone_options)} · {named(plan.protocol.name, protocol)} · "
                f"{named(plan.attack.name, spec.attack_options)} {plan.protocol.budget:g} · "
                f"{named(plan.defense.name, spec.defense_options)} · seed {self.seed}")

    def to_spec(self) -> dict[str, Any]:
        """The cell as plain data (names and option strings): what a worker plans it from."""
        spec = self.plan.spec
        return {**spec.__dict__, "seeds": list(spec.seeds)}


@dataclass
class Refused:
    """A grid point the compatibility check refuses, with where it comes from."""

    group: str
    line: int
    label: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line} [{self.group}] {self.label}: {self.reason}"


def spec_from_dict(data: dict[str, Any]) -> CellSpec:
    return CellSpec(**{**data, "seeds": tuple(data["seeds"]) if data.get("seeds") else None})


def _product(lists: dict[Any, list[Any]]) -> Iterator[dict[Any, Any]]:
    """Every choice of one value per key."""
    for values in itertools.product(*lists.values()):
        yield dict(zip(lists, values))


def grid_points(group: Group) -> Iterator[tuple[dict[str, Any], CellSpec]]:
    """(coordinates, spec) of every grid point, seeds not yet split; options that name a
    component apply to the points that use it, and a list of option values is an axis."""
    axes = {axis: group.axes.get(axis, [None]) for axis in
            ("dataset", "data_path", "backbone", "protocol", "attack", "budget", "defense")}
    seeds = tuple(group.axes["seeds"]) if "seeds" in group.axes else None
    for point in _product(axes):
        per_role = {role: dict(group.role_options.get(role, {})) for role in ROLES}
        for role in COMPONENTS:   # not the protocol: `lorec` names a protocol and a defense
            if point.get(role) in group.named_options:
                per_role[role].update(group.named_options[point[role]])
        flat = {(role, key): values for role in ROLES for key, values in per_role[role].items()}
        for chosen in _product(flat):
            options: dict[str, dict[str, str]] = {role: {} for role in ROLES}
            for (role, key), value in chosen.items():
                options[role][key] = value
            if point["budget"] is not None:
                options["protocol"]["budget"] = repr(point["budget"])
            spec = CellSpec(
                dataset=point["dataset"] or CellSpec.dataset, data_path=point["data_path"],
                dataset_options=options["dataset"], backbone=point["backbone"],
                backbone_options=options["backbone"], attack=point["attack"] or CellSpec.attack,
                attack_options=options["attack"], defense=point["defense"] or CellSpec.defense,
                defense_options=options["defense"], protocol=point["protocol"],
                protocol_options=options["protocol"], seeds=seeds)
            yield point, spec


def _matches(rule: dict[str, list[Any]], coords: dict[str, Any]) -> bool:
    return all(key in coords and coords[key] is not None and coords[key] in values
               for key, values in rule.items())


def _excluded(group: Group, coords: dict[str, Any]) -> bool:
    return any(_matches(rule, coords) for rule in group.excludes)


def resolved_coords(plan: Plan, seed: int) -> dict[str, Any]:
    spec = plan.spec
    return {"dataset": spec.dataset, "data_path": spec.data_path, "backbone": plan.backbone.name,
            "protocol": plan.protocol.name, "attack": plan.attack.name, "defense": plan.defense.name,
            "budget": float(plan.protocol.budget), "seed": seed}


def cell_coords(cell: Cell) -> dict[str, str]:
    """What `--where` can select a cell by, as text: its axes (dataset, backbone, protocol,
    attack, budget, defense, seed) and every option the spec gives a component, by key."""
    coords = {key: coord_text(value) for key, value in resolved_coords(cell.plan, cell.seed).items()}
    for role in ROLES:
        for key, value in getattr(cell.plan.spec, f"{role}_options").items():
            coords.setdefault(key, coord_text(value))
    return coords


def coord_text(value: Any) -> str:
    """A coordinate as `--where` compares it: None empty, booleans as TOML writes them."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else str(value)


def select(cells: list[Cell], where: dict[str, list[str]]) -> list[Cell]:
    """The cells whose coordinates (`cell_coords`) match ``where`` (`matching`)."""
    keep = matching([cell_coords(cell) for cell in cells], where, "cell of the spec")
    return [cell for cell, kept in zip(cells, keep) if kept]


def matching(coords: list[dict[str, str]], where: dict[str, list[str]], what: str) -> list[bool]:
    """Whether each of ``coords`` takes one of the listed values (`_same`) for every key of
    ``where``. A key none of them has is an error that lists the keys they have (``what``
    names them in the message)."""
    check_keys(coords, list(where), "--where", what)
    return [all(key in c and any(_same(c[key], v) for v in values) for key, values in where.items())
            for c in coords]


def check_keys(coords: list[dict[str, str]], keys: list[str], flag: str, what: str) -> None:
    """A `RecguardError` for the first of ``keys`` that none of ``coords`` has, with the
    closest keys and all of them ("--by positon: no record has it (did you mean ...)")."""
    known = sorted({key for c in coords for key in c})
    for key in keys:
        if key not in known:
            raise RecguardError(f"{flag} {key}: no {what} has it{did_you_mean(key, known)}; "
                                f"keys: {', '.join(known)}")


def _same(have: str, want: str) -> bool:
    """Equal as text, or as numbers (``lr=8e-4`` is ``0.0008``), or as booleans in any case."""
    if have == want or have.lower() == want.lower() in ("true", "false"):
        return True
    try:
        return float(have) == float(want)
    except ValueError:
        return False


def _check_names(spec: SweepSpec, group: Group, host: Host) -> None:
    """An unknown name is an error in the file (with its line), never a skipped cell."""
    registries = {"dataset": host.datasets, "backbone": host.backbones, "attack": host.attacks,
                  "defense": host.defenses, "protocol": host.protocols}
    for role, registry in registries.items():
        for name in group.axes.get(role, []):
            try:
                registry.entry(name)
            except RecguardError as exc:
                raise RecguardError(f"{spec.path}:{group.lines.get(role, group.line)}: {exc}") from None


def _option_line(group: Group, exc: RecguardError) -> int:
    """The line of the options table a bad option is in (the ``ROLE_options`` table, else the
    by-name ``options``), else the group's line."""
    role = exc.role if isinstance(exc, OptionError) else ""
    for key in (f"{role}_options", "options"):
        if role and key in group.lines:
            return group.lines[key]
    return group.line


def expand(spec: SweepSpec, host: Host | None = None) -> tuple[list[Cell], list[Refused]]:
    """Every cell of the spec, in spec order, and the grid points refused as impossible. A
    misspelt name, a bad option or value is a `RecguardError` naming the file and line."""
    host = host or get_host()
    cells: list[Cell] = []
    refused: list[Refused] = []
    seen: set[str] = set()
    for group in spec.groups:
        _check_names(spec, group, host)
        for point, cell_spec in grid_points(group):
            if _excluded(group, point):
                continue
            label = " · ".join(f"{v:g}" if isinstance(v, float) else str(v)
                               for v in point.values() if v is not None)
            try:
                plan = make_plan(cell_spec, host)
            except IncompatibleCell as exc:
                refused.append(Refused(group.name, group.line, label, str(exc)))
                continue
            except RecguardError as exc:
                line = _option_line(group, exc)
                raise RecguardError(f"{spec.path}:{line}: [{group.name}] {label}: {exc}") from None
            for seed in plan.spec.seeds:
                if _excluded(group, resolved_coords(plan, seed)):
                    continue
                one = replace(plan, spec=replace(plan.spec, seeds=(seed,)))
                cell = Cell(group.name, group.line, one)
                identity = repr(sorted(cell.to_spec().items()))
                if identity not in seen:    # two groups may share cells: run each once
                    seen.add(identity)
                    cells.append(cell)
    return cells, refused
