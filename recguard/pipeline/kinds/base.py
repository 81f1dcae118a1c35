"""What the cell loop asks of a task kind."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from recguard.contracts import DefenseContext, FitContext, FitHooks, Model
from recguard.data.interactions import Interactions
from recguard.plan import Plan
from recguard.progress import Progress, Update


@dataclass
class SeedData:
    """One seed's training data per undefended condition (clean, attacked) and its counts."""

    train: dict[str, Interactions]
    targets: Any                       # the target items (none for the LLM kinds)
    n_fake: int
    filler_size: int
    train_interactions: int
    attack_seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)   # the kind's own (LLM: the task)


class TaskKind:
    """A way of asking a fitted model and scoring its answers.

    The cell loop (`recguard.pipeline.cell`) fits the undefended conditions, applies the
    defense, caches, and assembles the record; a kind prepares each seed's data, builds
    the backbone's `FitContext` and computes a condition's metrics."""

    every_defended: ClassVar[bool] = True          # False: one defense row (the last)
    clean_sees_the_attack: ClassVar[bool] = False  # the clean result depends on the attack
    # metrics beside the plan's, name -> higher is better (what the kind measures itself)
    extra_metrics: ClassVar[dict[str, bool]] = {}

    def __init__(self, plan: Plan, progress: Progress):
        self.plan = plan
        self.progress = progress

    def steps(self, conditions: list[str]) -> int:
        """Progress steps of one seed (fits, defense preparations, answering passes)."""
        return len(conditions)

    def prepare(self, data: Interactions, seed: int) -> SeedData:
        raise NotImplementedError

    def fit_label(self, seed: int, condition: str) -> str:
        return f"seed {seed} · {condition} · {self.plan.backbone.name}"

    def fit_context(self, seed_data: SeedData, base: str, seed: int, hooks: FitHooks,
                    update: Update) -> FitContext:
        """The backbone's context for fitting on ``base``'s data (clean or attacked)."""
        return FitContext(seed=seed, hooks=hooks, progress=update)

    def fit_notes(self, timings: dict[str, float]) -> dict[str, Any]:
        """What an undefended condition's record notes hold of its fit and evaluation."""
        return {}

    def evaluate(self, seed_data: SeedData, model: Model, condition: str, seed: int,
                 reference: dict[str, float] | None, timings: dict[str, float]
                 ) -> tuple[dict[str, float], dict[str, float] | None]:
        """An undefended condition's metrics and the reference of relative metrics (None for
        the clean condition: it is its own)."""
        raise NotImplementedError

    def evaluate_defended(self, seed_data: SeedData, model: Model, condition: str, seed: int,
                          reference: dict[str, float] | None, dctx: DefenseContext,
                          train: Interactions) -> dict[str, float]:
        """A defended condition's metrics; ``train`` the data the defense was given."""
        raise NotImplementedError

    def compare_rows(self, results: dict) -> None:
        """Metrics of a row against another (`ConditionResult` by condition), added in place."""
