"""The ranking kind: the model scores every item; ranking metrics on the top-k lists.

Per seed the protocol splits the data and draws the targets, and the attack builds its
fake users (the budget in fake users, the filler size and an rng fixed by the seed). A
defense that leaves fraud scores or per-user weights is also scored against the truth of
who is fake (`recguard.metrics.detection`).
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from recguard.contracts import AttackContext, Model, RankingView
from recguard.data.interactions import Interactions
from recguard.data.poisoned import Poisoned, inject
from recguard.data.prepare import Prepared, prepare
from recguard.errors import RecguardError
from recguard.metrics.detection import DETECTION_METRICS, detection_metrics
from recguard.metrics.top_k import target_eligibility, top_k
from recguard.pipeline.conditions import ATTACKED, CLEAN
from recguard.pipeline.kinds.base import SeedData, TaskKind
from recguard.plan import Plan


def fake_users(budget: float, n_users: int) -> int:
    """The budget in fake users. One that rounds to none is refused rather than raised to one:
    the record would say `budget` while the run used another."""
    n_fake = int(round(budget * n_users))
    if n_fake < 1:
        raise RecguardError(f"budget {budget:g} is {budget * n_users:.2g} fake users for {n_users} "
                            f"genuine users; one fake user needs a budget of at least "
                            f"{0.5 / n_users:.2g}")
    return n_fake


def attack_context(plan: Plan, prepared: Prepared, seed: int) -> AttackContext:
    """What the attack is told for one seed: the budget in fake users (none without an
    attack), the filler size (the protocol's, else the mean genuine profile) and its rng."""
    train = prepared.train
    n_fake = fake_users(plan.protocol.budget, train.n_users) if plan.has_attack else 0
    filler = plan.protocol.filler_size or int(round(len(train) / max(train.n_users, 1)))
    return AttackContext(targets=prepared.targets, n_fake=n_fake, filler_size=filler,
                         rng=np.random.default_rng([seed, 0xA77AC]), protocol=plan.protocol)


class Evaluator:
    """Ranks a model's items for the genuine users and computes the protocol's metrics."""

    def __init__(self, plan: Plan, prepared: Prepared, everything: Interactions):
        split = prepared.split
        self.metrics = plan.metrics
        self.k_max = max(k for _, _, k, _ in plan.metrics)
        self.users = np.arange(split.train.n_users)
        self.seen = split.train.with_rows(split.valid)
        self.exclude = self.seen.items_of_users()
        self.test_items = split.test.items_of_users()
        self.targets = prepared.targets
        self.eligible = target_eligibility(self.users, self.targets, everything.user, everything.item)

    def evaluate(self, model: Model, reference: dict[str, float] | None = None,
                 on_batch: Callable[[int, int], None] | None = None
                 ) -> tuple[dict[str, float], dict[str, float]]:
        """The protocol's metrics and the reference they were computed against.

        Without a reference (the clean condition) the model is its own reference:
        the base values of relative metrics (HR@k for RC-HR@k) are taken from it.
        ``on_batch(done, total)`` hears the users ranked so far.
        """
        if hasattr(model, "set_history"):
            # sequential models read the genuine users' histories up to the test item,
            # validation item included (as LoRec's code tests); fitting never saw it
            model.set_history(self.seen)
        ranked = top_k(model.score, self.users, self.exclude, self.k_max, on_batch=on_batch)
        view = RankingView(self.users, ranked, self.test_items, self.targets, self.eligible, {})
        if reference is None:
            reference = {}
            for _, _, k, cls in self.metrics:
                base = getattr(cls, "reference_of", None)
                if base is not None:
                    reference[f"{base.name}@{k}"] = float(base().compute(view, k))
        view.reference = reference
        metrics = {label: float(cls().compute(view, k)) for label, _, k, cls in self.metrics}
        return metrics, reference


class RankingKind(TaskKind):
    extra_metrics = DETECTION_METRICS

    def prepare(self, data: Interactions, seed: int) -> SeedData:
        plan = self.plan
        prepared = prepare(data, plan.protocol, seed)
        train = prepared.train
        ctx = attack_context(plan, prepared, seed)
        start = time.perf_counter()
        poisoned = plan.attack.poison(train, ctx) if plan.has_attack else Poisoned.empty()
        attack_seconds = time.perf_counter() - start
        return SeedData(train={CLEAN: train, ATTACKED: inject(train, poisoned)},
                        targets=prepared.targets, n_fake=ctx.n_fake, filler_size=ctx.filler_size,
                        train_interactions=len(train), attack_seconds=attack_seconds,
                        extra={"evaluator": Evaluator(plan, prepared, data)})

    def evaluate(self, seed_data, model, condition, seed, reference, timings):
        return seed_data.extra["evaluator"].evaluate(model, reference)

    def evaluate_defended(self, seed_data, model, condition, seed, reference, dctx, train):
        evaluator = seed_data.extra["evaluator"]
        defense = self.plan.defense
        if "at_inference" in defense.stages:
            # the defense does its work while the users are ranked (RVD fine-tunes for each
            # served user: minutes on ML-1M), so the ranking is a phase of its own
            update = self.progress.start_phase(f"seed {seed} · {condition} · ranking "
                                               f"{len(evaluator.users)} users behind {defense.name}")
            try:
                metrics, _ = evaluator.evaluate(model, reference, on_batch=update)
            finally:
                self.progress.end_phase()
        else:
            metrics, _ = evaluator.evaluate(model, reference)
        if train.is_fake.any():
            metrics.update(detection_metrics(dctx, train.is_fake))
        return metrics
