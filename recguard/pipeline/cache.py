"""What a cell keeps between runs: condition results on disk, fitted models in memory.

A condition's result is cached under a key of everything it depends on, the source of
the components involved included, so that changing a plugin's code (not only its
version) invalidates it: the clean condition is shared by every attack and defense,
clean+defense by every attack (a defense never sees the attack's budget), attacked by
every defense. Files go to ``$RECGUARD_CACHE/cells`` (default ``~/.cache/recguard``).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

from recguard import __version__
from recguard.files import atomic_write_json, cache_dir, json_digest
from recguard.pipeline.conditions import ATTACKED, ATTACKED_DEF, CLEAN, CLEAN_DEF
from recguard.plan import Plan

ATTACK_ONLY_PROTOCOL_FIELDS = ("budget", "filler_size")
# recguard's own code a result does not depend on: what drives cells, not what runs them
# (an edit to the CLI or the sweep keeps every cached condition and finished sweep cell)
HOST_DRIVERS = ("cli", "sweep", "leaderboard", "scaffold", "testing.py", "__main__.py")


def package_fingerprint(package: str) -> str:
    """A hash of the source files of an imported package (or single-module plugin); for
    recguard itself, of its core, pipeline and kit (not the `HOST_DRIVERS`)."""
    leave_out = HOST_DRIVERS if package == "recguard" else ()
    module = sys.modules[package]
    files = sorted(Path(p) for root in getattr(module, "__path__", []) for p in Path(root).rglob("*.py")
                   if Path(p).relative_to(root).parts[0] not in leave_out)
    if not files and getattr(module, "__file__", None):
        files = [Path(module.__file__)]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class CellCache:
    """The on-disk results of one cell's conditions. ``clean_sees_the_attack``: the clean
    condition's result depends on the attack too (an LLM cell's clean model answers the
    attack's triggered requests: the Benign row's ASR)."""

    def __init__(self, plan: Plan, data_fingerprint: str, use_cache: bool = True,
                 clean_sees_the_attack: bool = False):
        self.plan = plan
        self.data_fingerprint = data_fingerprint
        self.use_cache = use_cache
        self.clean_sees_the_attack = clean_sees_the_attack
        self._fingerprints: dict[str, str] = {}   # package -> source hash, for this cell's run

    def _code(self, component: Any) -> str:
        cls = component if isinstance(component, type) else type(component)
        package = cls.__module__.split(".")[0]
        if package not in self._fingerprints:
            self._fingerprints[package] = package_fingerprint(package)
        return self._fingerprints[package]

    def fit_key(self, condition: str, seed: int) -> str | None:
        """A hash of everything a condition's fitted model and result depend on, or None when
        a component's code cannot be fingerprinted (then the condition is not cached)."""
        plan = self.plan
        protocol = plan.protocol.to_dict()
        attacked = condition in (ATTACKED, ATTACKED_DEF)
        defended = condition in (CLEAN_DEF, ATTACKED_DEF)
        if not attacked:  # clean fits depend on neither the attack nor its budget and fillers
            for field in ATTACK_ONLY_PROTOCOL_FIELDS:
                protocol.pop(field)
        code_of = ([plan.backbone, CellCache] + ([plan.attack] if attacked else [])
                   + ([plan.defense] if defended else []))
        try:
            code = [self._code(c) for c in code_of]
        except (KeyError, OSError):
            return None
        parts = {
            "recguard": __version__,
            "code": code,
            "condition": condition, "seed": seed,
            "data": self.data_fingerprint, "protocol": protocol,
            "backbone": [plan.backbone.name, plan.provenance["backbone"]["version"],
                         plan.backbone.resolved_config(plan.protocol)],
            "attack": ([plan.attack.name, plan.provenance["attack"]["version"],
                        plan.attack.resolved_config(plan.protocol)] if attacked else None),
            "defense": ([plan.defense.name, plan.provenance["defense"]["version"],
                         plan.defense.resolved_config(plan.protocol)] if defended else None),
            "metrics": [label for label, _, _, _ in plan.metrics],
        }
        return json_digest(parts, 24)

    def key(self, condition: str, seed: int) -> str | None:
        """The key of a condition's result: its fit's, plus the attack for a clean condition
        that answers the attack's triggered requests."""
        own = self.fit_key(condition, seed)
        plan = self.plan
        if own is None or condition != CLEAN or not (self.clean_sees_the_attack and plan.has_attack):
            return own
        attack = plan.attack
        try:
            code = self._code(attack)
        except (KeyError, OSError):
            return None
        blob = (f"llm-clean|{own}|{attack.name}|{code}|"
                f"{sorted(attack.resolved_config(plan.protocol).items())}")
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def _path(self, key: str) -> Path:
        return cache_dir() / "cells" / f"{key}.json"

    def read(self, key: str | None) -> dict | None:
        if key is None or not self.use_cache:
            return None
        try:
            return json.loads(self._path(key).read_text())
        except (OSError, ValueError):
            return None

    def write(self, key: str | None, value: dict) -> None:
        if key is None or not self.use_cache:
            return
        try:
            atomic_write_json(self._path(key), value)
        except OSError:
            pass  # a read-only cache folder costs speed, not correctness


class FittedModels:
    """The last fitted models, by their fit's key (the clean model's not depending on the
    attack), for cells run one after another in one process (benchmarks/llm_poison_curve.py):
    the clean model is fine-tuned once for every rate, a poisoned one once for its defenses.
    A single cell keeps none (each model held costs its weights in memory)."""

    def __init__(self, size: int = 2):
        self.size = size
        self._models: "OrderedDict[str, tuple[Any, float]]" = OrderedDict()  # (model, fit s)

    def get(self, key: str | None) -> tuple[Any, float] | None:
        return self._models.get(key) if key is not None else None

    def keep(self, key: str | None, model: Any, seconds: float) -> None:
        if key is None or self.size <= 0:
            return
        self._models[key] = (model, seconds)
        self._models.move_to_end(key)
        while len(self._models) > self.size:
            self._models.popitem(last=False)
