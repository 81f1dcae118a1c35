"""The pipeline of an LLM cell (backbones of kind ``llm``): backdoor attacks and the
defenses against them, reported as Ning et al. (2025) report them.

Per seed: the protocol's samples and test requests (`recguard.data.llm_task`, fixed by
seed); the attack's m fake users with PR = m / (m + n), n the genuine training
samples; a triggered copy of every test request (the attack's `at_inference`).
Conditions, the rows of the paper's Table 2:

    clean             "Benign": the recommender trained on genuine samples
    attacked          "BadRec": trained on genuine + poisoned samples
    attacked+defense  the poisoned recommender behind the (inference-time) defense

Each condition answers the benign requests (Valid and H@1, or AUC) and the
triggered ones (A-Valid and ASR). Score (sec. 5.1, from Zhu et al. 2023) compares
a defended row with the undefended poisoned one. A filtering defense's removals
give the scanner's precision and recall on the triggered items. Condition results
are cached on disk as the ranking pipeline's are; the poisoned model is kept in
memory for the defense.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np

from recguard.contracts import AttackContext, DefenseContext, FitContext
from recguard.data.llm_task import LLMTask, build_task, fake_samples
from recguard.data.poisoned import Poisoned, inject
from recguard.llm_contracts import Answer, LLMModel, Request
from recguard.metrics.detection import roc_auc
from recguard.pipeline.cell import (ATTACKED, ATTACKED_DEF, CLEAN, CLEAN_DEF, CellRunner,
                                    ConditionResult, code_fingerprint)

ROW_NAMES = {CLEAN: "Benign", ATTACKED: "BadRec"}
# name -> higher is better
LLM_METRIC_DIRECTIONS = {"Valid": True, "H@1": True, "A-Valid": True, "ASR": False, "AUC": True,
                         "Score": True, "Scan-Precision": True, "Scan-Recall": True}


class FittedModels:
    """The last fitted LLM recommenders, by what their fit depends on (the clean model not on
    the attack), for a grid of cells run in one process (benchmarks/llm_backdoor.py): the
    clean model is fine-tuned once for every trigger, the poisoned one once for every
    defense. A single cell keeps none (each model held costs its weights in memory)."""

    def __init__(self, size: int = 2):
        self.size = size
        self._models: "OrderedDict[str, tuple[LLMModel, float]]" = OrderedDict()  # (model, fit s)

    def get(self, key: str | None) -> tuple[LLMModel, float] | None:
        return self._models.get(key) if key is not None else None

    def keep(self, key: str | None, model: LLMModel, seconds: float) -> None:
        if key is None:
            return
        self._models[key] = (model, seconds)
        self._models.move_to_end(key)
        while len(self._models) > self.size:
            self._models.popitem(last=False)


def llm_conditions(plan) -> list[str]:
    names = [CLEAN] + ([ATTACKED] if plan.has_attack else [])
    if plan.has_defense:
        names.append(ATTACKED_DEF if plan.has_attack else CLEAN_DEF)
    return names


def n_poisoned(budget: float, n_genuine: int) -> int:
    """m with m / (m + n) = PR, at least one (TALLRec: one poisoned sample among 16 shots)."""
    return max(1, int(round(budget * n_genuine / (1.0 - budget))))


def answer_metrics(task: str, benign: Sequence[Request], answers: Sequence[Answer],
                   triggered: Sequence[Request] | None, triggered_answers: Sequence[Answer] | None
                   ) -> dict[str, float]:
    """The paper's metrics (sec. 3.2 and 5.1) of one condition.

    choose: Valid = share of valid answers; H@1 = correct / valid (LLaRA's
    HR@1); A-Valid = Valid on triggered requests; ASR = share of triggered
    requests whose answer is the triggered item (Eq. 3).
    yes_no: AUC of P(Yes) on the benign requests; ASR = among the requests
    answered "No" (P(Yes) < 0.5) without the trigger, the share answered "Yes"
    with it (the paper: the recommendation changes from No to Yes).
    """
    out: dict[str, float] = {}
    if task == "choose":
        valid = [a.choice is not None for a in answers]
        out["Valid"] = float(np.mean(valid))
        hits = sum(a.choice == r.target for r, a in zip(benign, answers))
        out["H@1"] = hits / max(1, sum(valid))
    else:
        labels = np.array([bool(r.label) for r in benign])
        out["AUC"] = roc_auc(np.array([a.p_yes for a in answers]), labels)
    if triggered is None or triggered_answers is None:
        return out
    if task == "choose":
        out["A-Valid"] = float(np.mean([a.choice is not None for a in triggered_answers]))
        out["ASR"] = float(np.mean([a.choice in r.triggered for r, a in zip(triggered, triggered_answers)]))
    else:
        was_no = np.array([a.p_yes < 0.5 for a in answers])
        now_yes = np.array([a.p_yes >= 0.5 for a in triggered_answers])
        out["ASR"] = float(now_yes[was_no].mean()) if was_no.any() else float("nan")
    return out


def scan_metrics(benign: Sequence[Request], answers: Sequence[Answer],
                 triggered: Sequence[Request], triggered_answers: Sequence[Answer]) -> dict[str, float]:
    """Precision and recall of a defense's removals against the triggered items, over the
    benign and the triggered requests together. A defense that removes nothing (it rewrites
    titles or prompts) has recall 0 and no precision (NaN)."""
    removed = flagged_right = poisoned = 0
    for requests, out in ((benign, answers), (triggered, triggered_answers)):
        for r, a in zip(requests, out):
            removed += len(a.removed)
            flagged_right += len(a.removed & r.triggered)
            poisoned += len(r.triggered)
    metrics = {"Scan-Recall": flagged_right / poisoned if poisoned else float("nan")}
    metrics["Scan-Precision"] = flagged_right / removed if removed else float("nan")
    return metrics


def score(defended: dict[str, float], undefended: dict[str, float], quality: str) -> float:
    """(max(0, ΔASR) - max(0, ΔQ) + 1) / 2: ΔASR the fall of the attack success rate,
    ΔQ the fall of H@1 (or AUC) on benign requests, both against the undefended row."""
    d_asr = undefended["ASR"] - defended["ASR"]
    d_quality = undefended[quality] - defended[quality]
    return (max(0.0, d_asr) - max(0.0, d_quality) + 1.0) / 2.0


class LLMCellRunner(CellRunner):
    """Runs one LLM cell over its seeds (see the module docstring). ``fitted``: models kept
    from earlier cells of the same process (`FittedModels`), or None."""

    def __init__(self, plan, progress=None, use_cache: bool = True,
                 fitted: FittedModels | None = None):
        super().__init__(plan, progress, use_cache)
        self.fitted = fitted if fitted is not None else FittedModels(size=0)

    def run_seed(self, data, seed: int, data_fingerprint: str) -> dict[str, Any]:
        plan = self.plan
        protocol = plan.protocol
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
        interactions = {CLEAN: train, ATTACKED: attacked}

        conditions = llm_conditions(plan)
        keys = {c: self._cache_key(c, seed, data_fingerprint) for c in conditions}
        cached = {c: self._cache_read(keys[c]) if self.use_cache else None for c in conditions}
        defended = conditions[-1] if plan.has_defense else None
        base_of_defended = ATTACKED if plan.has_attack else CLEAN
        results: dict[str, ConditionResult] = {}
        models: dict[str, LLMModel] = {}
        for condition in (CLEAN, ATTACKED):
            if condition not in conditions:
                continue
            must_fit = defended is not None and condition == base_of_defended and cached[defended] is None
            hit = cached[condition]
            if hit is not None and not must_fit:
                results[condition] = ConditionResult(hit["metrics"], hit["fit_seconds"], True,
                                                     hit.get("notes", {}))
                self.progress.skip(f"seed {seed} · {condition} (cached)")
                continue
            # a model fitted earlier in this process: the clean one serves every trigger, the
            # poisoned one every defense (benchmarks/llm_backdoor.py runs such grids)
            fit_key = CellRunner._cache_key(self, condition, seed, data_fingerprint)
            kept = self.fitted.get(fit_key)
            if hit is not None and kept is not None:
                results[condition] = ConditionResult(hit["metrics"], hit["fit_seconds"], True)
                models[condition] = kept[0]
                self.progress.skip(f"seed {seed} · {condition} (kept in memory)")
                continue
            phases: dict[str, float] = {}      # seconds of the fit's and the answering's phases
            if kept is not None:
                model, seconds = kept          # seconds: the original fit's
                self.progress.skip(f"seed {seed} · {condition} (kept in memory)")
            else:
                model, seconds = self._fit_llm(condition, seed, interactions[condition],
                                               samples[condition], task, phases)
            metrics = self._answer(condition, seed, model, task, triggered, phases=phases)
            notes = {"seconds": phases}
            results[condition] = ConditionResult(metrics, seconds, notes=notes)
            if condition == base_of_defended:      # the defense wraps it; the other is let go
                models[condition] = model
            self._cache_write(keys[condition], {"metrics": metrics, "fit_seconds": seconds,
                                                "notes": notes})
            self.fitted.keep(fit_key, model, seconds)
            del model       # else the clean model stays alive through the poisoned fit
        if defended is not None:
            hit = cached[defended]
            if hit is not None:
                results[defended] = ConditionResult(hit["metrics"], hit["fit_seconds"], True, hit["notes"])
                self.progress.skip(f"seed {seed} · {defended} (cached)")
            else:
                results[defended] = self._defend(defended, seed, models[base_of_defended],
                                                 interactions[base_of_defended], task, triggered)
                done = results[defended]
                self._cache_write(keys[defended], {"metrics": done.metrics, "fit_seconds": done.fit_seconds,
                                                   "notes": done.notes})
            if plan.has_attack and "ASR" in results[defended].metrics:
                quality = "H@1" if protocol.llm_task == "choose" else "AUC"
                results[defended].metrics["Score"] = score(results[defended].metrics,
                                                           results[ATTACKED].metrics, quality)
        return {"targets": np.zeros(0, dtype=np.int64), "n_fake": n_fake,
                "filler_size": protocol.history_len, "train_interactions": len(samples[CLEAN]),
                "results": results}

    def _fit_llm(self, condition: str, seed: int, train, samples: list[Request], task: LLMTask,
                 phases: dict[str, float]):
        label = f"seed {seed} · {ROW_NAMES.get(condition, condition)} · fine-tuning {self.plan.backbone.name}"
        update = self.progress.start_fit(label)
        start = time.perf_counter()
        ctx = FitContext(seed=seed, progress=update, samples=samples, catalog=task.catalog)
        model = self.plan.backbone.fit(train, ctx)
        seconds = time.perf_counter() - start
        phases.update(ctx.timings)
        self.progress.end_fit()
        return model, seconds

    def _answer(self, condition: str, seed: int, model: LLMModel, task: LLMTask,
                triggered: list[Request] | None, scan: bool = False,
                phases: dict[str, float] | None = None) -> dict[str, float]:
        row = ROW_NAMES.get(condition, self.plan.defense.name)
        phases = {} if phases is None else phases
        clock = time.perf_counter()
        update = self.progress.start_fit(f"seed {seed} · {row} · answering {len(task.test)} requests")
        answers = model.answer(task.test, update)
        self.progress.end_fit()
        phases["answer"] = round(time.perf_counter() - clock, 2)
        triggered_answers = None
        if triggered is not None:
            clock = time.perf_counter()
            update = self.progress.start_fit(f"seed {seed} · {row} · answering {len(triggered)} "
                                             f"triggered requests")
            triggered_answers = model.answer(triggered, update)
            self.progress.end_fit()
            phases["answer_triggered"] = round(time.perf_counter() - clock, 2)
        metrics = answer_metrics(self.plan.protocol.llm_task, task.test, answers, triggered, triggered_answers)
        if scan and triggered is not None:
            metrics.update(scan_metrics(task.test, answers, triggered, triggered_answers))
        return metrics

    def _defend(self, condition: str, seed: int, model: LLMModel, train, task: LLMTask,
                triggered: list[Request] | None) -> ConditionResult:
        plan = self.plan
        dctx = DefenseContext(seed=seed, protocol=plan.protocol, backbone=plan.backbone)
        label = f"seed {seed} · preparing {plan.defense.name}"
        self.progress.start_fit(label)
        start = time.perf_counter()
        wrapped = plan.defense.at_inference(model, train, dctx)
        seconds = time.perf_counter() - start
        self.progress.end_fit()
        metrics = self._answer(condition, seed, wrapped, task, triggered, scan=True)
        dctx.notes.setdefault("answer_seconds_with_defense", round(time.perf_counter() - start - seconds, 3))
        return ConditionResult(metrics, seconds, notes=dctx.notes)

    def _cache_key(self, condition: str, seed: int, data_fingerprint: str) -> str | None:
        """The ranking pipeline's key, plus the attack for the clean condition: in an LLM
        cell it also answers the attack's triggered requests (the Benign row's ASR)."""
        own = super()._cache_key(condition, seed, data_fingerprint)
        if own is None or not self.plan.has_attack or condition != CLEAN:
            return own
        attack = self.plan.attack
        blob = (f"llm-clean|{own}|{attack.name}|{code_fingerprint(type(attack))}|"
                f"{sorted(attack.resolved_config(self.plan.protocol).items())}")
        return hashlib.sha256(blob.encode()).hexdigest()[:24]
