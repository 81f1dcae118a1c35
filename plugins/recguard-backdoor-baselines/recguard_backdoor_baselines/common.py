"""What the baseline defenses share: the pool they inspect, seeding, the defense's own LM."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from recguard import (AnswerFilter, Config, Defense, DefenseContext, LLMModel, RecguardError,
                      Request, param)

BADREC = ("Ning, Fan & Li, Exploring Backdoor Attack and Defense for LLM-empowered "
          "Recommendations, appendix B.1.1-B.1.2")


def pool(request: Request) -> tuple[int, ...]:
    """The items whose titles an inference-time defense inspects: the candidates
    (choose), which for a yes_no request is the asked item alone."""
    return tuple(request.candidates)


def request_rng(seed: int, request: Request) -> np.random.Generator:
    """A generator fixed by the run's seed and the request (its user and target), so a
    request gets the same draws however the pipeline batches requests, and the clean and
    triggered versions of one request are perturbed alike."""
    return np.random.default_rng([int(seed), int(request.user), int(request.target)])


class BaselineDefense(Defense):
    """An inference-time defense on LLM recommenders: wraps the model in ``Filter``."""

    stages: ClassVar[frozenset[str]] = frozenset({"at_inference"})
    backbone_kinds: ClassVar[frozenset[str]] = frozenset({"llm"})
    Filter: ClassVar[type] = AnswerFilter

    def at_inference(self, model: Any, train: Any, ctx: DefenseContext) -> LLMModel:
        if not isinstance(model, LLMModel):
            raise RecguardError(f"defense {self.name!r} filters the requests of an LLM "
                                f"recommender; this model ({type(model).__name__}) answers none")
        notes = ctx.notes.setdefault(self.name, {})
        return self.Filter(model, self.config, ctx.seed, notes)


@dataclass
class LMConfig(Config):
    """Options of a defense that runs its own causal LM (never the victim)."""

    model: str | None = param(None, "the defense's LM: None = the packaged SmolLM2-135M-Instruct, "
                                    "or a local folder / hub id (recguard.kit.lm.models.load_causal_lm)")
    device: str = param("auto", "where the defense's LM runs: auto, cpu, cuda, ...")
    dtype: str = param("auto", "the defense's LM dtype: auto (recguard.kit.lm.models.resolve_precision), "
                               "float32, bfloat16, float16 or mixed (float32 under bf16 autocast)")
    batch_size: int = param(16, "texts per forward pass of the defense's LM", low=1)


class LazyLM:
    """(model, tokenizer) loaded on first use: a run that never asks loads nothing."""

    def __init__(self, cfg: LMConfig):
        self.cfg = cfg
        self._pair = None

    def get(self):
        if self._pair is None:
            from recguard.kit.lm.models import load_causal_lm

            self._pair = load_causal_lm(self.cfg.model, dtype=self.cfg.dtype, device=self.cfg.device)
        return self._pair
