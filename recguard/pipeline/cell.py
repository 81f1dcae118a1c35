"""The one pipeline every cell runs.

For each seed: apply the protocol (split and targets fixed by the seed), build
the attack's fake users, then fit and evaluate each condition:

    clean             the backbone on genuine training data
    attacked          the backbone on genuine + fake users
    clean+defense     the defense applied to the clean data   (with a defense)
    attacked+defense  the defense applied to the poisoned data (with a defense)

Every condition's result is cached on disk, keyed by everything it depends on
(the code of the components involved included): the clean condition is shared
by every attack and defense, clean+defense by every attack (a defense never
sees the attack's budget), attacked by every defense. For defenses that act
only at inference the undefended models are reused in memory.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recguard import __version__
from recguard.contracts import (AttackContext, DefenseContext, FitContext, FitHooks, Model,
                                RankingView)
from recguard.data.interactions import Interactions
from recguard.data.poisoned import Poisoned, inject
from recguard.data.prepare import Prepared, prepare, preprocess
from recguard.errors import RecguardError
from recguard.files import atomic_write_json, cache_dir
from recguard.metrics.detection import DETECTION_METRICS, detection_metrics
from recguard.metrics.top_k import target_eligibility, top_k
from recguard.plan import Plan
from recguard.progress import Progress

CLEAN, ATTACKED = "clean", "attacked"
CLEAN_DEF, ATTACKED_DEF = "clean+defense", "attacked+defense"
ATTACK_ONLY_PROTOCOL_FIELDS = ("budget", "filler_size")


def conditions_of(plan: Plan) -> list[str]:
    names = [CLEAN] + ([ATTACKED] if plan.has_attack else [])
    if plan.has_defense:
        names += [CLEAN_DEF] + ([ATTACKED_DEF] if plan.has_attack else [])
    return names


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


@functools.lru_cache(maxsize=None)
def _package_fingerprint(package: str) -> str:
    module = sys.modules[package]
    files = sorted(Path(p) for root in getattr(module, "__path__", []) for p in Path(root).rglob("*.py"))
    if not files and getattr(module, "__file__", None):
        files = [Path(module.__file__)]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def code_fingerprint(cls: type) -> str:
    """A hash of the source of the package defining ``cls``: cached results are
    invalidated when a plugin's (or the host's) code changes, not only its version."""
    return _package_fingerprint(cls.__module__.split(".")[0])


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

    def evaluate(self, model: Model, reference: dict[str, float] | None = None
                 ) -> tuple[dict[str, float], dict[str, float]]:
        """The protocol's metrics and the reference they were computed against.

        Without a reference (the clean condition) the model is its own reference:
        the base values of relative metrics (HR@k for RC-HR@k) are taken from it.
        """
        if hasattr(model, "set_history"):
            # sequential models read the genuine users' histories up to the test item,
            # validation item included (as LoRec's code tests); fitting never saw it
            model.set_history(self.seen)
        ranked = top_k(model.score, self.users, self.exclude, self.k_max)
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


@dataclass
class ConditionResult:
    metrics: dict[str, float]
    fit_seconds: float
    cached: bool = False
    notes: dict[str, Any] = dataclasses.field(default_factory=dict)


class CellRunner:
    """Runs one planned cell over its seeds."""

    def __init__(self, plan: Plan, progress: Progress | None = None, use_cache: bool = True):
        self.plan = plan
        self.progress = progress or Progress()
        self.use_cache = use_cache

    # ------------------------------------------------------------ data

    def load(self) -> tuple[Interactions, Interactions]:
        plan = self.plan
        raw = plan.dataset.load(plan.data_path, plan.dataset_config)
        return raw, preprocess(raw, plan.protocol)

    # ------------------------------------------------------------ one seed

    def run_seed(self, data: Interactions, seed: int, data_fingerprint: str) -> dict[str, Any]:
        plan = self.plan
        prepared = prepare(data, plan.protocol, seed)
        train = prepared.train
        evaluator = Evaluator(plan, prepared, data)
        ctx = attack_context(plan, prepared, seed)
        start = time.perf_counter()
        poisoned = plan.attack.poison(train, ctx) if plan.has_attack else Poisoned.empty()
        attack_seconds = time.perf_counter() - start
        attacked = inject(train, poisoned)

        results: dict[str, ConditionResult] = {}
        models: dict[str, Model] = {}
        keys = {c: self._cache_key(c, seed, data_fingerprint) for c in conditions_of(plan)}
        cached = {c: self._cache_read(keys[c]) if self.use_cache else None for c in keys}
        # an inference-time defense wraps the undefended models: fit them when it must run
        reuse_models = plan.has_defense and plan.defense.stages == frozenset({"at_inference"})
        needs_model = {CLEAN: reuse_models and cached.get(CLEAN_DEF) is None,
                       ATTACKED: reuse_models and cached.get(ATTACKED_DEF) is None}
        reference: dict[str, float] | None = None
        for condition, data_for in ((CLEAN, train), (ATTACKED, attacked)):
            if condition not in keys:
                continue
            hit = None if needs_model[condition] else cached[condition]
            if hit is not None:
                results[condition] = ConditionResult(hit["metrics"], hit["fit_seconds"], True)
                reference = reference or hit["reference"]
                self.progress.skip(f"seed {seed} · {condition} (cached)")
                continue
            model, seconds = self._fit(condition, seed, data_for, FitHooks())
            metrics, reference = evaluator.evaluate(model, reference if condition != CLEAN else None)
            results[condition] = ConditionResult(metrics, seconds)
            models[condition] = model
            self._cache_write(keys[condition], {"metrics": metrics, "fit_seconds": seconds,
                                                "reference": reference})
        for condition, base, data_for in ((CLEAN_DEF, CLEAN, train), (ATTACKED_DEF, ATTACKED, attacked)):
            if condition not in keys:
                continue
            hit = cached[condition]
            if hit is not None:
                results[condition] = ConditionResult(hit["metrics"], hit["fit_seconds"], True, hit["notes"])
                self.progress.skip(f"seed {seed} · {condition} (cached)")
                continue
            results[condition] = self._defended(condition, seed, data_for, evaluator, reference,
                                                models.get(base) if reuse_models else None)
            done = results[condition]
            self._cache_write(keys[condition], {"metrics": done.metrics, "fit_seconds": done.fit_seconds,
                                                "notes": done.notes})
        return {"targets": prepared.targets, "n_fake": ctx.n_fake, "filler_size": ctx.filler_size,
                "train_interactions": len(train), "results": results, "attack_seconds": attack_seconds}

    def _fit(self, condition: str, seed: int, train: Interactions, hooks: FitHooks):
        label = f"seed {seed} · {condition} · {self.plan.backbone.name}"
        task = self.progress.start_fit(label)
        start = time.perf_counter()
        model = self.plan.backbone.fit(train, FitContext(seed=seed, hooks=hooks, progress=task))
        seconds = time.perf_counter() - start
        self.progress.end_fit()
        return model, seconds

    def _defended(self, condition: str, seed: int, train: Interactions, evaluator: Evaluator,
                  reference: dict[str, float], fitted: Model | None) -> ConditionResult:
        plan, defense = self.plan, self.plan.defense
        dctx = DefenseContext(seed=seed, protocol=plan.protocol, backbone=plan.backbone)
        start = time.perf_counter()
        data = train
        if "before_fit" in defense.stages:
            data = defense.before_fit(data, dctx)
        if fitted is None:
            hooks = defense.during_fit(data, dctx) if "during_fit" in defense.stages else FitHooks()
            fitted, _ = self._fit(condition, seed, data, hooks)
        model = defense.at_inference(fitted, data, dctx) if "at_inference" in defense.stages else fitted
        seconds = time.perf_counter() - start
        metrics, _ = evaluator.evaluate(model, reference)
        if train.is_fake.any():
            metrics.update(detection_metrics(dctx, train.is_fake))
        return ConditionResult(metrics, seconds, notes=dctx.notes)

    # ------------------------------------------------------------ result cache

    def _cache_key(self, condition: str, seed: int, data_fingerprint: str) -> str | None:
        """A hash of everything a condition's result depends on, or None when a component's
        code cannot be fingerprinted (then the condition is not cached)."""
        plan = self.plan
        protocol = plan.protocol.to_dict()
        attacked = condition in (ATTACKED, ATTACKED_DEF)
        defended = condition in (CLEAN_DEF, ATTACKED_DEF)
        if not attacked:  # clean fits depend on neither the attack nor its budget and fillers
            for field in ATTACK_ONLY_PROTOCOL_FIELDS:
                protocol.pop(field)
        code_of = ([plan.backbone, Evaluator] + ([plan.attack] if attacked else [])
                   + ([plan.defense] if defended else []))
        try:
            code = [code_fingerprint(c if isinstance(c, type) else type(c)) for c in code_of]
        except (KeyError, OSError):
            return None
        parts = {
            "recguard": __version__,
            "code": code,
            "condition": condition, "seed": seed,
            "data": data_fingerprint, "protocol": protocol,
            "backbone": [plan.backbone.name, plan.provenance["backbone"]["version"],
                         plan.backbone.resolved_config(plan.protocol)],
            "attack": ([plan.attack.name, plan.provenance["attack"]["version"],
                        plan.attack.resolved_config(plan.protocol)] if attacked else None),
            "defense": ([plan.defense.name, plan.provenance["defense"]["version"],
                         plan.defense.resolved_config(plan.protocol)] if defended else None),
            "metrics": [label for label, _, _, _ in plan.metrics],
        }
        blob = json.dumps(parts, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:24]

    def _cache_path(self, key: str):
        return cache_dir() / "cells" / f"{key}.json"

    def _cache_read(self, key: str | None) -> dict | None:
        if key is None:
            return None
        try:
            return json.loads(self._cache_path(key).read_text())
        except (OSError, ValueError):
            return None

    def _cache_write(self, key: str | None, value: dict) -> None:
        if key is None or not self.use_cache:
            return
        try:
            atomic_write_json(self._cache_path(key), value)
        except OSError:
            pass  # a read-only cache folder costs speed, not correctness


def planned_spec(plan: Plan) -> dict:
    """The parts of a record's spec known before the run: the components and the protocol."""
    return {
        "backbone": {"name": plan.backbone.name, "config": plan.backbone.resolved_config(plan.protocol)},
        "attack": {"name": plan.attack.name, "config": plan.attack.resolved_config(plan.protocol),
                   "knowledge": plan.attack.knowledge},
        "defense": {"name": plan.defense.name, "config": plan.defense.resolved_config(plan.protocol)},
        "protocol": plan.protocol.to_dict(),
    }


def run_cell(plan: Plan, progress: Progress | None = None, use_cache: bool = True,
             fitted=None) -> dict:
    """Run every seed of a planned cell and return its result record. ``fitted``: a
    `recguard.pipeline.llm_cell.FittedModels` shared by the LLM cells of a grid, or None."""
    from recguard.records import aggregate, new_record

    progress = progress or Progress()
    llm = plan.protocol.llm_task != "none"
    if llm:
        from recguard.pipeline.llm_cell import LLM_METRIC_DIRECTIONS, LLMCellRunner, llm_conditions

        runner: CellRunner = LLMCellRunner(plan, progress, use_cache, fitted)
        conditions = llm_conditions(plan)
        # per condition: a fit (or the defense's preparation), benign and triggered answers
        fits = len(conditions) * (3 if plan.has_attack else 2)
    else:
        runner = CellRunner(plan, progress, use_cache)
        conditions = conditions_of(plan)
        inference_only = plan.has_defense and plan.defense.stages == frozenset({"at_inference"})
        fits = len(conditions) // 2 if inference_only else len(conditions)
    start = time.perf_counter()
    raw, data = runner.load()
    fingerprint = raw.fingerprint()
    progress.start_cell(len(plan.spec.seeds) * fits,
                        f"{plan.backbone.name} · {plan.attack.name} · {plan.defense.name} "
                        f"on {raw.name} ({plan.protocol.name})")
    try:
        outputs = [runner.run_seed(data, seed, fingerprint) for seed in plan.spec.seeds]
    finally:
        progress.close()

    labels = [label for label, _, _, _ in plan.metrics]
    extra = LLM_METRIC_DIRECTIONS if llm else DETECTION_METRICS
    metrics: dict[str, dict] = {}
    for condition in conditions:
        per_condition = [out["results"][condition].metrics for out in outputs]
        names = labels + [n for n in extra if all(n in m for m in per_condition)]
        metrics[condition] = {n: aggregate([m.get(n, float("nan")) for m in per_condition])
                              for n in names}
    higher = {label: cls.higher_is_better for label, _, _, cls in plan.metrics}
    higher.update(extra)
    spec = plan.spec
    first = outputs[0]
    record = new_record(
        spec={
            "dataset": {"name": raw.name, "registry_name": spec.dataset,
                        "path": str(plan.data_path) if plan.data_path else None,
                        "options": plan.dataset_config.to_dict(), "fingerprint": fingerprint,
                        "stats": raw.summary()},
            **planned_spec(plan),
            "seeds": list(spec.seeds),
            "targets": {str(seed): [str(data.item_ids[t]) for t in out["targets"]]
                        for seed, out in zip(spec.seeds, outputs)},
        },
        provenance=plan.provenance,
        conditions=conditions,
        metrics=metrics,
        higher_is_better={k: v for k, v in higher.items()
                          if any(k in m for m in metrics.values())},
        counts={"users": int(data.n_users), "items": int(data.n_items),
                "train_interactions": int(first["train_interactions"]),
                "fake_users": int(first["n_fake"]), "filler_size": int(first["filler_size"]),
                "targets": int(plan.protocol.n_targets)},
        notes={c: [out["results"][c].notes for out in outputs] for c in conditions
               if any(out["results"][c].notes for out in outputs)},
        timings={"total_seconds": round(time.perf_counter() - start, 3),
                 "fit_seconds": {c: [round(out["results"][c].fit_seconds, 3) for out in outputs]
                                 for c in conditions},
                 "cached": {c: [out["results"][c].cached for out in outputs] for c in conditions},
                 **({} if llm else {"attack_seconds": [round(out["attack_seconds"], 3)
                                                       for out in outputs]})},
    )
    return record
