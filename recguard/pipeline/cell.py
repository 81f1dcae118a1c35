"""The one loop every cell runs: seeds x conditions.

For each seed the task kind (`recguard.pipeline.kinds`, chosen from the protocol)
prepares the data - the protocol's split or samples, the attack's fake users - then
each condition (`recguard.pipeline.conditions`) is fitted and evaluated: the undefended
ones first, then the defense applied to them. Results are cached on disk
(`recguard.pipeline.cache`); a defense that acts only at inference wraps the undefended
model fitted in this seed (or kept in a `FittedModels` by an earlier cell of a grid)
instead of fitting again. The record is assembled by `recguard.pipeline.record`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from recguard.contracts import DefenseContext, FitHooks, Model
from recguard.data.interactions import Interactions
from recguard.data.prepare import preprocess
from recguard.memory import release_memory
from recguard.pipeline.cache import CellCache, FittedModels
from recguard.pipeline.conditions import BASE, CLEAN, conditions_of, undefended_conditions
from recguard.pipeline.kinds import SeedData, TaskKind, kind_for
from recguard.pipeline.record import cell_record
from recguard.plan import Plan
from recguard.progress import Progress


@dataclass
class ConditionResult:
    metrics: dict[str, float]
    fit_seconds: float
    cached: bool = False
    notes: dict[str, Any] = dataclasses.field(default_factory=dict)


def load(plan: Plan) -> tuple[Interactions, Interactions]:
    """The dataset as loaded, and as the protocol preprocesses it."""
    raw = plan.dataset.load(plan.data_path, plan.dataset_config)
    return raw, preprocess(raw, plan.protocol)


class CellRunner:
    """Runs one planned cell's seeds over its conditions."""

    def __init__(self, plan: Plan, kind: TaskKind, cache: CellCache, progress: Progress,
                 fitted: FittedModels):
        self.plan = plan
        self.kind = kind
        self.cache = cache
        self.progress = progress
        self.fitted = fitted
        self.conditions = conditions_of(plan, kind.every_defended)

    def run_seed(self, data: Interactions, seed: int) -> tuple[SeedData, dict[str, ConditionResult]]:
        plan, kind, cache = self.plan, self.kind, self.cache
        seed_data = kind.prepare(data, seed)
        keys = {c: cache.key(c, seed) for c in self.conditions}
        cached = {c: cache.read(keys[c]) for c in self.conditions}
        defended = [c for c in self.conditions if c in BASE]
        # an inference-time defense wraps the undefended models: keep them when it must run
        wraps = plan.has_defense and plan.defense.stages == frozenset({"at_inference"})
        to_wrap = {BASE[c] for c in defended if wraps and cached[c] is None}
        results: dict[str, ConditionResult] = {}
        models: dict[str, Model] = {}
        reference: dict[str, float] | None = None
        for condition in undefended_conditions(plan):
            hit = cached[condition]
            fit_key = cache.fit_key(condition, seed)
            kept = self.fitted.get(fit_key) if hit is None or condition in to_wrap else None
            if hit is not None:
                results[condition] = ConditionResult(hit["metrics"], hit["fit_seconds"], True,
                                                     hit.get("notes", {}))
                reference = reference or hit.get("reference")
                if condition in to_wrap:
                    # the defense wraps this model: fit it again (an LLM loads its saved
                    # adapter) unless it is kept, but its own answers stay the cached ones
                    models[condition] = (kept[0] if kept else self._refit(
                        seed_data, condition, seed, fit_key, hit["fit_seconds"]))
                self.progress.skip(f"seed {seed} · {condition} "
                                   f"({'kept in memory' if kept else 'cached'})")
                continue
            if kept is not None:
                model, seconds = kept          # seconds: the original fit's
                timings: dict[str, float] = {}
                self.progress.skip(f"seed {seed} · {condition} (kept in memory)")
            else:
                model, seconds, timings = self._fit(seed_data, condition, condition, seed, FitHooks())
            metrics, reference = kind.evaluate(seed_data, model, condition, seed,
                                               reference if condition != CLEAN else None, timings)
            results[condition] = ConditionResult(metrics, seconds, notes=kind.fit_notes(timings))
            if condition in to_wrap:
                models[condition] = model
            cache.write(keys[condition], {"metrics": metrics, "fit_seconds": seconds,
                                          "reference": reference, "notes": results[condition].notes})
            self.fitted.keep(fit_key, model, seconds)
            del model       # else the clean model stays alive through the attacked fit
            release_memory()
        for condition in defended:
            hit = cached[condition]
            if hit is not None:
                results[condition] = ConditionResult(hit["metrics"], hit["fit_seconds"], True, hit["notes"])
                self.progress.skip(f"seed {seed} · {condition} (cached)")
                continue
            done = self._defended(seed_data, condition, seed, reference, models.get(BASE[condition]))
            results[condition] = done
            cache.write(keys[condition], {"metrics": done.metrics, "fit_seconds": done.fit_seconds,
                                          "notes": done.notes})
        kind.compare_rows(results)
        return seed_data, results

    def _fit(self, seed_data: SeedData, condition: str, base: str, seed: int, hooks: FitHooks,
             data: Interactions | None = None) -> tuple[Model, float, dict[str, float]]:
        """Fit the backbone for ``condition`` on ``base``'s data (or ``data``, a defense's)."""
        update = self.progress.start_fit(self.kind.fit_label(seed, condition))
        start = time.perf_counter()
        ctx = self.kind.fit_context(seed_data, base, seed, hooks, update)
        ctx.use_cache = self.cache.use_cache
        model = self.plan.backbone.fit(seed_data.train[base] if data is None else data, ctx)
        seconds = time.perf_counter() - start
        self.progress.end_fit()
        return model, seconds, dict(ctx.timings)

    def _refit(self, seed_data: SeedData, condition: str, seed: int, fit_key: str | None,
               fit_seconds: float) -> Model:
        """The model of a condition whose result is cached, for a defense to wrap; kept for
        the grid's next cells like any fit, with the seconds of its original fit (the cached
        row's), not of this reload."""
        model, _, _ = self._fit(seed_data, condition, condition, seed, FitHooks())
        self.fitted.keep(fit_key, model, fit_seconds)
        return model

    def _defended(self, seed_data: SeedData, condition: str, seed: int,
                  reference: dict[str, float] | None, fitted: Model | None) -> ConditionResult:
        """The defense's stages on the base condition's data: before the fit (detect, drop or
        reweight users), during it (`FitHooks`), at inference (wrap the fitted model)."""
        plan, defense, base = self.plan, self.plan.defense, BASE[condition]
        train = seed_data.train[base]
        dctx = DefenseContext(seed=seed, protocol=plan.protocol, backbone=plan.backbone,
                              use_cache=self.cache.use_cache)
        start = time.perf_counter()
        preparing = fitted is None and bool(defense.stages & {"before_fit", "during_fit"})
        if preparing:
            dctx.progress = self.progress.start_phase(f"seed {seed} · preparing {defense.name}")
        try:
            data = defense.before_fit(train, dctx) if "before_fit" in defense.stages else train
            hooks = FitHooks()
            if fitted is None and "during_fit" in defense.stages:
                hooks = defense.during_fit(data, dctx)
        finally:
            if preparing:
                self.progress.end_phase()
        if fitted is None:
            fitted, _, _ = self._fit(seed_data, condition, base, seed, hooks, data)
            model = defense.at_inference(fitted, data, dctx) if "at_inference" in defense.stages else fitted
        else:
            self.progress.start_fit(f"seed {seed} · preparing {defense.name}")
            model = defense.at_inference(fitted, data, dctx)
            self.progress.end_fit()
        seconds = time.perf_counter() - start
        metrics = self.kind.evaluate_defended(seed_data, model, condition, seed, reference, dctx, train)
        return ConditionResult(metrics, seconds, notes=dctx.notes)


def run_cell(plan: Plan, progress: Progress | None = None, use_cache: bool = True,
             fitted: FittedModels | None = None) -> dict:
    """Run every seed of a planned cell and return its result record. ``fitted``: models
    kept in memory across the cells of a grid run in one process, or None (keep none)."""
    progress = progress or Progress()
    kind = kind_for(plan, progress)
    start = time.perf_counter()
    raw, data = load(plan)
    fingerprint = raw.fingerprint()
    cache = CellCache(plan, fingerprint, use_cache, kind.clean_sees_the_attack)
    runner = CellRunner(plan, kind, cache, progress, fitted if fitted is not None else FittedModels(size=0))
    progress.start_cell(len(plan.spec.seeds) * kind.steps(runner.conditions),
                        f"{plan.backbone.name} · {plan.attack.name} · {plan.defense.name} "
                        f"on {raw.name} ({plan.protocol.name})")
    try:
        outputs = [runner.run_seed(data, seed) for seed in plan.spec.seeds]
    finally:
        progress.close()
    return cell_record(plan, raw, data, fingerprint, runner.conditions, outputs, kind.extra_metrics,
                       time.perf_counter() - start)
