"""Content addresses of sweep cells: a record's file name is a hash of everything its
result depends on, so a finished cell is found by its name and a changed option, plugin
version or plugin source gives the touched cells new names (and only those)."""

from __future__ import annotations

import json
from pathlib import Path

from recguard import __version__
from recguard.files import json_digest
from recguard.pipeline.cache import package_fingerprint
from recguard.pipeline.record import planned_spec
from recguard.plan import Plan
from recguard.sweep.grid import Cell

class Addresser:
    """Computes cells' keys, loading each dataset once for its fingerprint and hashing each
    package's source once."""

    def __init__(self) -> None:
        self._data: dict[str, str] = {}
        self._code: dict[str, str] = {}

    def data_fingerprint(self, plan: Plan) -> str:
        source = json.dumps([plan.spec.dataset, str(plan.data_path), plan.dataset_config.to_dict()],
                            sort_keys=True, default=str)
        if source not in self._data:
            self._data[source] = plan.dataset.load(plan.data_path, plan.dataset_config).fingerprint()
        return self._data[source]

    def code(self, package: str) -> str:
        if package not in self._code:
            self._code[package] = package_fingerprint(package)
        return self._code[package]

    def parts(self, cell: Cell) -> dict:
        """What the key hashes: the resolved spec, the versions and the code of its parts."""
        plan = cell.plan
        packages = {type(c).__module__.split(".")[0] for c in (plan.backbone, plan.attack, plan.defense)}
        return {
            "recguard": __version__,
            "dataset": {"name": plan.spec.dataset, "options": plan.dataset_config.to_dict(),
                        "fingerprint": self.data_fingerprint(plan)},
            **planned_spec(plan),
            "seed": cell.seed,
            "versions": {role: plan.provenance[role]["version"]
                         for role in ("dataset", "backbone", "attack", "defense", "protocol")},
            # the host's source too (its core, pipeline and kit): the loop is part of every result
            "code": {package: self.code(package) for package in sorted(packages | {"recguard"})},
        }

    def key(self, cell: Cell) -> str:
        return json_digest(self.parts(cell), 32)

    def filename(self, cell: Cell) -> str:
        """``<backbone>_<attack>_<defense>_s<seed>_<key>.json``: the names for a reader, the
        key for identity."""
        plan = cell.plan
        names = [plan.backbone.name, plan.attack.name, plan.defense.name, f"s{cell.seed}"]
        return "_".join(n.replace("/", "-") for n in names) + f"_{self.key(cell)}.json"


def record_path(output: Path, addresser: Addresser, cell: Cell) -> Path:
    return Path(output) / addresser.filename(cell)
