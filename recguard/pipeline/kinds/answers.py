"""The LLM kinds, choose (LLaRA) and yes_no (TALLRec): the model answers requests.

Per seed: the protocol's samples and test requests (`recguard.data.llm_task`, fixed by
the seed); the attack poisons a share of the training samples (the poisoning rate PR
is the protocol's budget: m poisoned among m + n samples) and turns each test request
into its triggered twin (`Attack.at_inference`). Each condition answers both: the benign
requests (Valid and H@1, or AUC) and the triggered ones (A-Valid and ASR); a defense's
removals are scored against the triggered items, and Score compares its row with the
undefended poisoned one (`recguard.metrics.answers`).
"""

from __future__ import annotations

import time

import numpy as np

from recguard.contracts import AttackContext, FitContext
from recguard.data.interactions import Interactions
from recguard.data.llm_task import build_task, fake_samples
from recguard.data.poisoned import Poisoned, inject
from recguard.llm_contracts import LLMModel
from recguard.metrics.answers import AnswersView, RowsView, measure
from recguard.pipeline.conditions import ATTACKED, ATTACKED_DEF, CLEAN, ROW_NAMES
from recguard.pipeline.kinds.base import SeedData, TaskKind


def n_poisoned(budget: float, n_genuine: int) -> int:
    """m with m / (m + n) = PR, at least one (TALLRec: one poisoned sample among 16 shots)."""
    return max(1, int(round(budget * n_genuine / (1.0 - budget))))


class AnswersKind(TaskKind):
    every_defended = False        # one defense row, as the paper's tables
    clean_sees_the_attack = True  # the Benign row answers the attack's triggered requests

    def steps(self, conditions):
        # per condition: a fit (or the defense's preparation), benign and triggered answers
        return len(conditions) * (3 if self.plan.has_attack else 2)

    def prepare(self, data: Interactions, seed: int) -> SeedData:
        plan, protocol = self.plan, self.plan.protocol
        task = build_task(data, protocol, seed)
        train = task.interactions
        n_fake = n_poisoned(protocol.budget, len(task.train)) if plan.has_attack else 0
        poisoned = Poisoned.empty()
        triggered = None
        if plan.has_attack:
            ctx = AttackContext(targets=np.zeros(0, dtype=np.int64), n_fake=n_fake,
                                filler_size=protocol.history_len,
                                rng=np.random.default_rng([seed, 0xA77AC]), protocol=protocol)
            poisoned = plan.attack.poison(train, ctx)
            rng = np.random.default_rng([seed, 0x7216])
            triggered = [plan.attack.at_inference(r, task.catalog, rng) for r in task.test]
            if any(t is None for t in triggered):
                triggered = None
        attacked = inject(train, poisoned)
        samples = {CLEAN: task.train,
                   ATTACKED: task.train + (fake_samples(attacked, protocol, seed) if plan.has_attack else [])}
        return SeedData(train={CLEAN: train, ATTACKED: attacked}, targets=np.zeros(0, dtype=np.int64),
                        n_fake=n_fake, filler_size=protocol.history_len,
                        train_interactions=len(samples[CLEAN]),
                        extra={"task": task, "samples": samples, "triggered": triggered})

    def fit_label(self, seed, condition):
        return f"seed {seed} · {ROW_NAMES.get(condition, condition)} · fine-tuning {self.plan.backbone.name}"

    def fit_context(self, seed_data, base, seed, hooks, update):
        return FitContext(seed=seed, hooks=hooks, progress=update,
                          samples=seed_data.extra["samples"][base],
                          catalog=seed_data.extra["task"].catalog)

    def fit_notes(self, timings):
        return {"seconds": timings}

    def evaluate(self, seed_data, model, condition, seed, reference, timings):
        return self._answer(seed_data, model, condition, seed, timings, scanned=False), None

    def evaluate_defended(self, seed_data, model, condition, seed, reference, dctx, train):
        clock = time.perf_counter()
        metrics = self._answer(seed_data, model, condition, seed, {}, scanned=True)
        dctx.notes.setdefault("answer_seconds_with_defense", round(time.perf_counter() - clock, 3))
        return metrics

    def compare_rows(self, results):
        if ATTACKED in results and ATTACKED_DEF in results:
            view = RowsView(self.plan.protocol.task_kind, results[ATTACKED_DEF].metrics,
                            results[ATTACKED].metrics)
            results[ATTACKED_DEF].metrics.update(measure(self._metrics(), view))

    def _metrics(self):
        return [cls for _, _, _, cls in self.plan.metrics]

    def _answer(self, seed_data: SeedData, model: LLMModel, condition: str, seed: int,
                timings: dict[str, float], scanned: bool) -> dict[str, float]:
        task, triggered = seed_data.extra["task"], seed_data.extra["triggered"]
        row = ROW_NAMES.get(condition, self.plan.defense.name)
        answers = self._answer_all(model, task.test, f"seed {seed} · {row} · answering "
                                   f"{len(task.test)} requests", timings, "answer")
        triggered_answers = None
        if triggered is not None:
            triggered_answers = self._answer_all(model, triggered, f"seed {seed} · {row} · answering "
                                                 f"{len(triggered)} triggered requests",
                                                 timings, "answer_triggered")
        view = AnswersView(self.plan.protocol.task_kind, task.test, answers, triggered,
                           triggered_answers, scanned=scanned)
        return measure(self._metrics(), view)

    def _answer_all(self, model, requests, label, timings, phase):
        clock = time.perf_counter()
        update = self.progress.start_fit(label)
        answers = model.answer(requests, update)
        self.progress.end_fit()
        timings[phase] = round(time.perf_counter() - clock, 2)
        return answers
