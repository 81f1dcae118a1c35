"""Refuse an impossible cell before any work, saying which combinations do work."""

from __future__ import annotations

from typing import TYPE_CHECKING

from recguard.errors import RecguardError
from recguard.protocols import RANKING

if TYPE_CHECKING:  # pragma: no cover
    from recguard.contracts import Attack, Backbone, Defense
    from recguard.plugins import Host
    from recguard.protocols import Protocol


class IncompatibleCell(RecguardError):
    """The components and protocol exist and are configured, but cannot run together (a sweep
    may skip such a cell; a misspelt name or a bad option is another error)."""


def _backbone_problem(backbone: type["Backbone"], user: type, role: str) -> str | None:
    """Why ``user`` (an attack or defense class) cannot run on ``backbone``, or None."""
    if backbone.kind not in user.backbone_kinds:
        return (f"{role} {user.name!r} supports {'/'.join(sorted(user.backbone_kinds))} backbones, "
                f"not {backbone.kind} backbones like {backbone.name!r}")
    missing = sorted(set(user.needs) - set(backbone.offers))
    if missing:
        return f"{role} {user.name!r} needs {', '.join(missing)} from the backbone, which " \
               f"backbone {backbone.name!r} does not offer"
    return None


def _working(names: list[str]) -> str:
    return ", ".join(names) if names else "none installed"


def check_cell(host: "Host", backbone: type["Backbone"], attack: type["Attack"],
               defense: type["Defense"], protocol: "Protocol") -> None:
    """Raise a one-line `IncompatibleCell` (a `RecguardError`) if the cell cannot run."""
    is_llm_protocol = protocol.task_kind != RANKING

    def same_family(p) -> bool:   # an LLM protocol for an LLM backbone, a ranking one otherwise
        return (p.task_kind != RANKING) == (backbone.kind == "llm")

    if (backbone.kind == "llm") != is_llm_protocol:
        ok = [p.name for p in host.protocols.iter_objects() if same_family(p)]
        raise IncompatibleCell(f"backbone {backbone.name!r} ({backbone.kind}) cannot run under protocol "
                            f"{protocol.name!r} ({'an LLM' if is_llm_protocol else 'a ranking'} protocol); "
                            f"protocols that work: {_working(ok)}")
    if backbone.kind == "llm" and getattr(backbone, "task", protocol.task_kind) != protocol.task_kind:
        ok = [p.name for p in host.protocols.iter_objects() if p.task_kind == backbone.task]
        raise IncompatibleCell(f"backbone {backbone.name!r} answers {backbone.task} requests but protocol "
                            f"{protocol.name!r} asks {protocol.task_kind}; protocols that work: {_working(ok)}")
    feedback = protocol.feedback
    if feedback not in backbone.feedback:
        ok = [p.name for p in host.protocols.iter_objects()
              if p.feedback in backbone.feedback and same_family(p)]
        raise IncompatibleCell(f"backbone {backbone.name!r} trains on {'/'.join(sorted(backbone.feedback))} "
                            f"feedback but protocol {protocol.name!r} is {feedback}; protocols that "
                            f"work: {_working(ok)}")
    for user, role, registry in ((attack, "attack", host.attacks), (defense, "defense", host.defenses)):
        problem = _backbone_problem(backbone, user, role)
        if problem:
            backbones = [b.name for b in host.backbones.iter_objects()
                         if _backbone_problem(b, user, role) is None]
            others = [c.name for c in registry.iter_objects()
                      if _backbone_problem(backbone, c, role) is None]
            raise IncompatibleCell(f"{problem}; backbones that work with {role} {user.name!r}: "
                                f"{_working(backbones)}; {role}s that work with backbone "
                                f"{backbone.name!r}: {_working(others)}")
    for user, role, registry in ((attack, "attack", host.attacks), (defense, "defense", host.defenses)):
        if feedback not in user.feedback:
            ok = [c.name for c in registry.iter_objects() if feedback in c.feedback]
            raise IncompatibleCell(f"{role} {user.name!r} needs {'/'.join(sorted(user.feedback))} "
                                f"feedback but protocol {protocol.name!r} is {feedback}; {role}s that "
                                f"work with it: {_working(ok)}")
