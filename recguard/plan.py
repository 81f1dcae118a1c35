"""Resolve a cell's names and options into configured components, before any work."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from recguard.compat import check_cell
from recguard.config import build_config, parse_options
from recguard.contracts import Attack, Backbone, Defense, Metric
from recguard.errors import RecguardError
from recguard.plugins import Host, get_host
from recguard.protocols import RANKING, Protocol, parse_metric, resolve


DEFAULT_BACKBONE = "mf"


@dataclass
class CellSpec:
    """What a user asks for: names and ``key=value`` options (strings)."""

    dataset: str = "ml-100k"
    data_path: str | None = None
    dataset_options: dict[str, str] = field(default_factory=dict)
    backbone: str | None = None        # None: the attack's or defense's default_backbone, else mf
    backbone_options: dict[str, str] = field(default_factory=dict)
    attack: str = "average"
    attack_options: dict[str, str] = field(default_factory=dict)
    defense: str = "none"
    defense_options: dict[str, str] = field(default_factory=dict)
    protocol: str | None = None
    protocol_options: dict[str, str] = field(default_factory=dict)
    seeds: tuple[int, ...] | None = (0, 1, 2)   # None: (0,) for LLM backbones, else (0, 1, 2)


@dataclass
class Plan:
    """A checked cell: every component built and configured, the protocol resolved."""

    spec: CellSpec
    dataset: Any
    dataset_config: Any
    data_path: Path | None
    backbone: Backbone
    attack: Attack
    defense: Defense
    protocol: Protocol
    metrics: list[tuple[str, str, int | None, type[Metric]]]  # (label, name, k, class)
    provenance: dict[str, dict]

    @property
    def has_attack(self) -> bool:
        return self.attack.name != "none"

    @property
    def has_defense(self) -> bool:
        return self.defense.name != "none"

    @property
    def prefers_gpu(self) -> bool:
        """An LLM backbone, or a component that runs an LLM (`Component.prefers_gpu`)."""
        return self.backbone.kind == "llm" or any(
            c.prefers_gpu for c in (self.backbone, self.attack, self.defense))


def protocol_backbone_defaults(protocol: Protocol, config_cls: type) -> dict[str, str]:
    """The protocol's ``backbone_options`` that ``config_cls`` has a field for (a preset written
    for LLaRA's schedule leaves a third-party backbone's own defaults alone)."""
    known = {f.name for f in fields(config_cls)}
    pairs = parse_options(protocol.backbone_options, f"protocol {protocol.name} backbone")
    return {key: value for key, value in pairs.items() if key in known}


def plan_metrics(host: Host, protocol: Protocol) -> list[tuple[str, str, int | None, type[Metric]]]:
    """(label, name, k, class) of what a cell reports: a ranking protocol's NAME@k list; under
    an LLM task kind every metric registered for it (its ``metrics`` name the headline ones)."""
    kind = protocol.task_kind
    for spec in protocol.metrics:
        name = parse_metric(spec)[0] if kind == RANKING else spec
        if kind not in host.metrics.get(name).task_kinds:
            measured = sorted(e.name for e in host.metrics if kind in e.obj.task_kinds)
            raise RecguardError(f"metric {name!r} does not measure {kind} protocols; those that do: "
                                f"{', '.join(measured)}")
    if kind != RANKING:
        return [(e.name, e.name, None, e.obj) for e in host.metrics.registered()
                if kind in e.obj.task_kinds]
    named = [parse_metric(spec) for spec in protocol.metrics]
    return [(f"{name}@{k}", name, k, host.metrics.get(name)) for name, k in named]


def _dataset_entry(host: Host, name: str):
    """The registered dataset ``name``; a name that looks like a file or folder gets a
    pointer to ``--data-path`` (a common first try: ``--dataset my_ratings.csv``)."""
    try:
        return host.datasets.entry(name)
    except RecguardError as exc:
        if "/" in name or "\\" in name or Path(name).suffix or Path(name).expanduser().exists():
            raise RecguardError(f"{exc}; a file or folder goes in --data-path "
                                f"(e.g. --dataset csv --data-path {name})") from None
        raise


def make_plan(spec: CellSpec, host: Host | None = None) -> Plan:
    host = host or get_host()
    if spec.seeds is not None and not spec.seeds:
        raise RecguardError("no seeds given: pass --seeds, e.g. --seeds 0,1,2")
    dataset_entry = _dataset_entry(host, spec.dataset)
    dataset_config = build_config(dataset_entry.obj.Config, spec.dataset_options, "dataset")
    data_path = None
    if spec.data_path is not None:
        data_path = Path(spec.data_path).expanduser()
        if not data_path.exists():
            raise RecguardError(f"dataset path '{spec.data_path}' does not exist")
    elif dataset_entry.obj.needs_path:
        raise RecguardError(f"dataset {spec.dataset!r} needs --data-path PATH")

    attack_entry = host.attacks.entry(spec.attack)
    defense_entry = host.defenses.entry(spec.defense)
    # no --backbone: the one the attack or defense was made for (BadRec, P-Scanner: LLaRA)
    backbone_name = (spec.backbone or attack_entry.obj.default_backbone
                     or defense_entry.obj.default_backbone or DEFAULT_BACKBONE)
    backbone_entry = host.backbones.entry(backbone_name)
    backbone_cls = backbone_entry.obj
    attack = attack_entry.obj(build_config(attack_entry.obj.Config, spec.attack_options, "attack"))
    defense = defense_entry.obj(build_config(defense_entry.obj.Config, spec.defense_options, "defense"))

    # an LLM backbone's task fixes its protocol; a ranking backbone takes its defense's paper's
    llm_protocol = backbone_cls.default_protocol if backbone_cls.kind == "llm" else None
    protocol_name = spec.protocol or llm_protocol or defense.default_protocol or backbone_cls.default_protocol
    protocol = resolve(host.protocols.get(protocol_name), spec.protocol_options)
    backbone_options = {**protocol_backbone_defaults(protocol, backbone_cls.Config), **spec.backbone_options}
    backbone = backbone_cls(build_config(backbone_cls.Config, backbone_options, "backbone"))
    metrics = plan_metrics(host, protocol)
    check_cell(host, type(backbone), type(attack), type(defense), protocol)
    if spec.seeds is None or spec.backbone is None:
        spec = replace(spec, backbone=backbone_name,
                       seeds=spec.seeds if spec.seeds is not None
                       else ((0,) if backbone.kind == "llm" else (0, 1, 2)))
    provenance = {
        "dataset": dataset_entry.provenance.to_dict(),
        "backbone": backbone_entry.provenance.to_dict(),
        "attack": attack_entry.provenance.to_dict(),
        "defense": defense_entry.provenance.to_dict(),
        "protocol": host.protocols.entry(protocol_name).provenance.to_dict(),
        "metrics": {name: host.metrics.entry(name).provenance.to_dict() for _, name, _, _ in metrics},
    }
    return Plan(spec, dataset_entry.obj, dataset_config, data_path, backbone, attack, defense,
                protocol, metrics, provenance)
