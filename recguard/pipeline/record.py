"""A cell's result record, assembled from its seeds' condition results (`recguard.records`
holds the schema, validation and writing)."""

from __future__ import annotations

from typing import Any

from recguard.data.interactions import Interactions
from recguard.plan import Plan
from recguard.records import aggregate, new_record


def planned_spec(plan: Plan) -> dict:
    """The parts of a record's spec known before the run: the components and the protocol."""
    return {
        "backbone": {"name": plan.backbone.name, "config": plan.backbone.resolved_config(plan.protocol)},
        "attack": {"name": plan.attack.name, "config": plan.attack.resolved_config(plan.protocol),
                   "knowledge": plan.attack.knowledge},
        "defense": {"name": plan.defense.name, "config": plan.defense.resolved_config(plan.protocol)},
        "protocol": plan.protocol.to_dict(),
    }


def cell_record(plan: Plan, raw: Interactions, data: Interactions, fingerprint: str,
                conditions: list[str], outputs: list[tuple[Any, dict]],
                extra_metrics: dict[str, bool], seconds: float) -> dict:
    """The record of a cell: per condition, each metric measured in every seed, aggregated
    over seeds (the plan's metrics first, then the task kind's ``extra_metrics``)."""
    labels = [label for label, _, _, _ in plan.metrics] + list(extra_metrics)
    metrics: dict[str, dict] = {}
    for condition in conditions:
        per_seed = [results[condition].metrics for _, results in outputs]
        metrics[condition] = {name: aggregate([m[name] for m in per_seed])
                              for name in labels if all(name in m for m in per_seed)}
    higher = {label: cls.higher_is_better for label, _, _, cls in plan.metrics}
    higher.update(extra_metrics)
    spec = plan.spec
    first = outputs[0][0]
    attack_seconds = [seed_data.attack_seconds for seed_data, _ in outputs]
    return new_record(
        spec={
            "dataset": {"name": raw.name, "registry_name": spec.dataset,
                        "path": str(plan.data_path) if plan.data_path else None,
                        "options": plan.dataset_config.to_dict(), "fingerprint": fingerprint,
                        "stats": raw.summary()},
            **planned_spec(plan),
            "seeds": list(spec.seeds),
            "targets": {str(seed): [str(data.item_ids[t]) for t in seed_data.targets]
                        for seed, (seed_data, _) in zip(spec.seeds, outputs)},
        },
        provenance=plan.provenance,
        conditions=conditions,
        metrics=metrics,
        higher_is_better={k: v for k, v in higher.items()
                          if any(k in m for m in metrics.values())},
        counts={"users": int(data.n_users), "items": int(data.n_items),
                "train_interactions": int(first.train_interactions),
                "fake_users": int(first.n_fake), "filler_size": int(first.filler_size),
                "targets": int(plan.protocol.n_targets)},
        notes={c: [results[c].notes for _, results in outputs] for c in conditions
               if any(results[c].notes for _, results in outputs)},
        timings={"total_seconds": round(seconds, 3),
                 "fit_seconds": {c: [round(results[c].fit_seconds, 3) for _, results in outputs]
                                 for c in conditions},
                 "cached": {c: [results[c].cached for _, results in outputs] for c in conditions},
                 **({"attack_seconds": [round(s, 3) for s in attack_seconds]}
                    if None not in attack_seconds else {})},
    )
