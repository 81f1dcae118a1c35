"""Re-run the cell an entry claims and compare every per-seed value.

A quick check re-runs a subset of the entry's seeds (the first, by default): the
entry stores each seed's value, so one re-run seed is compared exactly, without
waiting for all of them. An exact re-run does every seed and also compares the
aggregates. Cached results are never used: every condition is fitted again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from recguard.errors import RecguardError

DEFAULT_TOLERANCE = 1e-3   # absolute, on each per-seed value (metrics lie in [0, 1])


@dataclass
class Difference:
    condition: str
    metric: str
    seed: int
    claimed: float | None
    rerun: float | None

    @property
    def gap(self) -> float:
        if self.claimed is None or self.rerun is None:
            return 0.0 if self.claimed is None and self.rerun is None else math.inf
        return abs(self.claimed - self.rerun)


@dataclass
class Verdict:
    seeds: list[int]
    tolerance: float
    compared: list[Difference] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)   # the cell itself differs

    @property
    def mismatches(self) -> list[Difference]:
        return [d for d in self.compared if d.gap > self.tolerance]

    @property
    def reproduced(self) -> bool:
        return not self.problems and not self.mismatches and bool(self.compared)

    @property
    def max_gap(self) -> float:
        return max((d.gap for d in self.compared), default=0.0)


def spec_of(record: dict, seeds: list[int]):
    """The `CellSpec` that re-runs ``record`` on ``seeds``, every option as recorded."""
    from recguard.plan import CellSpec

    spec = record["spec"]
    protocol = {k: _option(v) for k, v in spec["protocol"].items() if k != "name"}
    return CellSpec(
        dataset=spec["dataset"].get("registry_name", spec["dataset"]["name"]),
        data_path=spec["dataset"]["path"],
        dataset_options={k: _option(v) for k, v in spec["dataset"]["options"].items()},
        backbone=spec["backbone"]["name"],
        backbone_options={k: _option(v) for k, v in spec["backbone"]["config"].items()},
        attack=spec["attack"]["name"],
        attack_options={k: _option(v) for k, v in spec["attack"]["config"].items()},
        defense=spec["defense"]["name"],
        defense_options={k: _option(v) for k, v in spec["defense"]["config"].items()},
        protocol=spec["protocol"]["name"], protocol_options=protocol, seeds=tuple(seeds))


def _option(value):
    """JSON lists back to the comma-separated form options parse into tuples or lists."""
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return value


def choose_seeds(record: dict, quick_seeds: int | None) -> list[int]:
    seeds = list(record["spec"]["seeds"])
    if quick_seeds is None:
        return seeds
    if quick_seeds < 1:
        raise RecguardError("--quick needs at least one seed")
    return seeds[:quick_seeds]


def compare(claimed: dict, rerun: dict, seeds: list[int], tolerance: float) -> Verdict:
    verdict = Verdict(seeds, tolerance)
    claimed_fp = claimed["spec"]["dataset"]["fingerprint"]
    rerun_fp = rerun["spec"]["dataset"]["fingerprint"]
    if claimed_fp != rerun_fp:
        verdict.problems.append(f"the dataset here ({rerun_fp}) is not the entry's ({claimed_fp})")
    for seed in seeds:
        if claimed["spec"]["targets"][str(seed)] != rerun["spec"]["targets"][str(seed)]:
            verdict.problems.append(f"seed {seed} drew other targets here: "
                                    f"{rerun['spec']['targets'][str(seed)]} for "
                                    f"{claimed['spec']['targets'][str(seed)]}")
    position = {seed: i for i, seed in enumerate(claimed["spec"]["seeds"])}
    for condition, metrics in claimed["metrics"].items():
        for name, stat in metrics.items():
            again = rerun["metrics"].get(condition, {}).get(name)
            if again is None:
                verdict.problems.append(f"the re-run has no {condition} {name}")
                continue
            for i, seed in enumerate(seeds):
                verdict.compared.append(Difference(condition, name, seed,
                                                   stat["per_seed"][position[seed]],
                                                   again["per_seed"][i]))
    return verdict


def verify(entry: dict, quick_seeds: int | None, tolerance: float, progress=None) -> tuple[Verdict, dict]:
    """Re-run the entry's cell on its first ``quick_seeds`` seeds (None: all) and compare."""
    from recguard.pipeline import run_cell
    from recguard.plan import make_plan

    if tolerance < 0:
        raise RecguardError("--tolerance must be >= 0")
    record = entry["record"]
    seeds = choose_seeds(record, quick_seeds)
    rerun = run_cell(make_plan(spec_of(record, seeds)), progress, use_cache=False)
    return compare(record, rerun, seeds, tolerance), rerun
