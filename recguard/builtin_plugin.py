"""The host's own plugin: metrics, datasets, protocol presets, and the `none` attack / defense.

`none` lives here rather than in a method plugin so that ``RECGUARD_PLUGINS=``
(built-ins only) still gives a working, if empty-handed, evaluation.
"""

from __future__ import annotations

from recguard.contracts import Attack, Defense
from recguard.data.poisoned import Poisoned
from recguard.hookspecs import hookimpl


class NoAttack(Attack):
    name = "none"
    summary = "No attack: the attacked conditions are skipped"

    def poison(self, train, ctx):
        return Poisoned.empty()


class NoDefense(Defense):
    name = "none"
    summary = "No defense: only the clean and attacked conditions run"


@hookimpl
def register_attacks(register):
    register(NoAttack)


@hookimpl
def register_defenses(register):
    register(NoDefense)


@hookimpl
def register_metrics(register):
    from recguard.metrics.answers import ANSWER_METRICS
    from recguard.metrics.ranking import METRICS

    for metric in METRICS + ANSWER_METRICS:
        register(metric)


@hookimpl
def register_datasets(register):
    from recguard.data.builtin_datasets import DATASETS

    for spec in DATASETS:
        register(spec)


@hookimpl
def register_protocols(register):
    from recguard.protocols import PRESETS

    for protocol in PRESETS:
        register(protocol)
