"""recguard: evaluate recommender systems under poisoning and backdoor attacks.

This module is the public face plugins import from; its names stay put when the
modules behind them move. The host has three wings (README, "Architecture"):

    core      contracts, hooks, registry, plugins, config, protocols, compat, plan,
              data, metrics, records, errors, progress, memory (torch-free)
    pipeline  `recguard.pipeline`: one loop over a cell's seeds and conditions
    kit       `recguard.kit`: method machinery shared by plugins (the plugin author's library)

Every method lives in a plugin package. Names are imported on first use, so that
``import recguard`` (and the CLI's start) stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "hookimpl": "recguard.hookspecs",
    # the contracts of ranking and LLM components
    **dict.fromkeys(("Config", "Component", "Model", "FitHooks", "FitContext", "Backbone",
                     "AttackContext", "Attack", "DefenseContext", "Defense", "RankingView",
                     "Metric", "CAPABILITIES"), "recguard.contracts"),
    **dict.fromkeys(("Request", "Answer", "LLMModel", "AnswerFilter", "LLMBackbone"),
                    "recguard.llm_contracts"),
    **dict.fromkeys(("param", "build_config"), "recguard.config"),
    **dict.fromkeys(("Interactions", "reindex"), "recguard.data.interactions"),
    **dict.fromkeys(("Poisoned", "inject"), "recguard.data.poisoned"),
    **dict.fromkeys(("catalog_of", "build_task", "fake_samples"), "recguard.data.llm_task"),
    "DatasetSpec": "recguard.data.datasets",
    **dict.fromkeys(("Protocol", "APT", "PAMACF", "LOREC", "TALLREC", "LLARA", "LLARA_CPU"),
                    "recguard.protocols"),
    "roc_auc": "recguard.metrics.detection",
    **dict.fromkeys(("AnswersView", "RowsView"), "recguard.metrics.answers"),
    **dict.fromkeys(("RecguardError", "RecguardWarning", "did_you_mean"), "recguard.errors"),
    "Progress": "recguard.progress",
    **dict.fromkeys(("cache_dir", "atomic_write", "atomic_write_json", "atomic_folder", "canonical_json",
                     "json_digest"), "recguard.files"),
    "release_memory": "recguard.memory",
    **dict.fromkeys(("registered", "registered_names"), "recguard.plugins"),
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'recguard' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
