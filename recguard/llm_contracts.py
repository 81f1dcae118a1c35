"""LLM recommenders: the requests they answer, their answers, and their contract.

An LLM recommender (kind ``llm``) does not score every item; it answers
*requests*. Two tasks, one per protocol:

``choose``  LLaRA: "this user watched H; which of these candidates next?" The
            answer is one candidate (or none: an invalid answer).
``yes_no``  TALLRec: "the user liked L and disliked D; will they like T?" The
            answer is P(Yes).

A `Request` names items by index; their texts come from the catalog (the
dataset's titles) unless the request overrides some (`Request.titles`): that is
how a backdoor trigger reaches one candidate of one request without changing the
item anywhere else, and how a defense rewrites a title (RD, Paraphraser). The
ground truth of which items carry a trigger (`Request.triggered`) is for the
pipeline's metrics only: a defense must never read it.

Training samples are requests too (with their answer: the target item or the
label), so attacks, backbones and the pipeline share one representation.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, ClassVar, Mapping, Sequence

import numpy as np

from recguard.contracts import Backbone, Model

# each task's default protocol: the CPU-sized presets (`--protocol llara` / `tallrec` are the papers')
TASK_PROTOCOLS = {"choose": "llara-cpu", "yes_no": "tallrec-cpu"}


@dataclass(frozen=True)
class Request:
    """One question to an LLM recommender (or, with its answer, one training sample).

    ``history``: item indices, oldest first (TALLRec: the liked ones).
    ``candidates``: the item pool to choose from (TALLRec: just the target).
    ``target``: the true next item (choose) or the item asked about (yes_no).
    ``label``: yes_no only, whether the user liked the target.
    ``titles``: per-request title overrides, item index -> text.
    ``instruction``: extra text a defense appends to the task instruction (LLMSI).
    ``triggered``: items whose title carries a trigger (ground truth, never for defenses).
    """

    user: int
    history: tuple[int, ...]
    candidates: tuple[int, ...]
    target: int
    disliked: tuple[int, ...] = ()
    label: bool | None = None
    titles: Mapping[int, str] = field(default_factory=dict)
    instruction: str = ""
    triggered: frozenset[int] = frozenset()

    def title(self, item: int, catalog: Sequence[str]) -> str:
        return self.titles.get(item, catalog[item])

    def with_titles(self, titles: Mapping[int, str]) -> "Request":
        """A copy with more title overrides (later ones win)."""
        return replace(self, titles={**self.titles, **titles})

    def without(self, items: set[int] | frozenset[int]) -> "Request":
        """A copy whose candidate pool lacks ``items`` (a filtering defense)."""
        return replace(self, candidates=tuple(i for i in self.candidates if i not in items))


@dataclass(frozen=True)
class Answer:
    """A recommender's answer to one request.

    ``choice``: the chosen item index (choose), None for an invalid answer.
    ``p_yes``: P(Yes) (yes_no); a removed target answers 0.
    ``removed``: candidates a defense took out of the pool before the model answered.
    """

    choice: int | None = None
    p_yes: float | None = None
    removed: frozenset[int] = frozenset()


class LLMModel(Model):
    """A fitted LLM recommender: answers requests. ``catalog[i]`` is item i's title."""

    task: ClassVar[str] = "choose"
    catalog: Sequence[str]

    def answer(self, requests: Sequence[Request],
               progress: Callable[[int, int], None] = lambda done, total: None) -> list[Answer]:
        raise NotImplementedError

    def score(self, users: np.ndarray) -> np.ndarray:
        raise TypeError("an LLM recommender answers requests; it does not score every item")


class AnswerFilter(LLMModel):
    """Wraps a model: rewrites or filters each request first, then maps the answer back.

    Subclasses implement `inspect`, returning the request the inner model sees and
    the candidates removed from it. Removed candidates are reported in the
    answer; a yes_no request whose target is removed answers P(Yes) = 0.
    """

    def __init__(self, inner: LLMModel):
        self.inner = inner
        self.task = inner.task
        self.catalog = inner.catalog
        self.n_items = getattr(inner, "n_items", len(inner.catalog))

    def inspect(self, requests: Sequence[Request]) -> list[tuple[Request, frozenset[int]]]:
        raise NotImplementedError

    def answer(self, requests, progress=lambda done, total: None):
        inspected = self.inspect(requests)
        shown = [r for r, removed in inspected if r.candidates]
        answers = iter(self.inner.answer(shown, progress) if shown else [])
        out = []
        for request, removed in inspected:
            if not request.candidates:
                out.append(Answer(None, 0.0 if self.task == "yes_no" else None, removed))
            else:
                a = next(answers)
                out.append(replace(a, removed=removed | a.removed))
        return out


class LLMBackbone(Backbone):
    """A backbone of kind ``llm``: `fit(train, ctx)` returns an `LLMModel`.

    The pipeline builds the training samples and test requests (see
    `recguard.data.llm_task`) and passes the samples in ``FitContext.samples``.
    """

    kind: ClassVar[str] = "llm"
    task: ClassVar[str] = "choose"
    feedback = frozenset({"explicit", "implicit"})

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "default_protocol" not in cls.__dict__:   # a subclass may still name its own
            cls.default_protocol = TASK_PROTOCOLS[cls.task]
