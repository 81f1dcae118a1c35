"""What the baseline defenses share: the pool they inspect, seeding, the defense's own LM
(loaded lazily, prompted in its chat template), paraphrasing titles with it (Paraphraser,
RPD), and asking the victim first, then filtering (RPD, CoS)."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from recguard import (Answer, AnswerFilter, Config, Defense, DefenseContext, LLMModel,
                      RecguardError, Request, param)

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


def chat_prompt(tokenizer, text: str) -> str:
    """``text`` as the user turn of ``tokenizer``'s chat template, ready for the assistant's
    reply; a tokenizer without a template gets the text and a newline."""
    text = text.strip()
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                             tokenize=False, add_generation_prompt=True)
    return text + "\n"


def decision(answer: Answer, task: str):
    """The discrete recommendation of an answer: the chosen item (choose; None when invalid)
    or whether P(Yes) >= 0.5 (yes_no)."""
    if task == "yes_no":
        return answer.p_yes is not None and answer.p_yes >= 0.5
    return answer.choice


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions) between two strings."""
    if len(a) < len(b):
        a, b = b, a
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


# ---------------------------------------------------------------- paraphrasing titles

LABEL = re.compile(r"^(paraphrased\s+title|paraphrase|title)\s*:\s*", re.IGNORECASE)
QUOTES = "\"'“”‘’`"


def clean(text: str) -> str:
    """The first non-empty line of a generation, without a 'Title:' label or quotes."""
    for line in text.splitlines():
        line = LABEL.sub("", line.strip().strip(QUOTES).strip()).strip().strip(QUOTES).strip()
        if line:
            return line
    return ""


@dataclass
class ParaphraseConfig(LMConfig):
    """Options of a defense that paraphrases titles with its own LM (Paraphraser, RPD)."""

    prompt: str = param("paraphrase_title.txt", "the prompt template in this plugin's prompts/ folder, "
                                                "with {title}")
    max_new_tokens: int = param(32, "longest paraphrase, in tokens", low=1)
    batch_size: int = param(8, "titles per generation batch", low=1)


class TitleParaphrasing:
    """Mixin of a filter that paraphrases titles: each distinct title once, greedily, by the
    defense's LM from ``cfg.prompt`` in its chat template; an empty paraphrase keeps the
    title (counted in ``notes["empty_outputs"]``). Needs ``cfg``, ``lm``, ``seed``, ``notes``."""

    cfg: ParaphraseConfig
    lm: LazyLM
    seed: int
    notes: dict

    def start_paraphrasing(self) -> None:
        self.template: str | None = None
        self.cache: dict[str, str] = {}
        self.notes.update(titles_paraphrased=0, empty_outputs=0)

    def prompt(self, title: str, tokenizer) -> str:
        if self.template is None:
            from recguard.kit.lm.prompts import load_prompt

            self.template = load_prompt("recguard_backdoor_baselines", self.cfg.prompt)
            if "{title}" not in self.template:
                raise RecguardError(f"paraphrase prompt {self.cfg.prompt} has no {{title}} field")
        return chat_prompt(tokenizer, self.template.format(title=title))

    def paraphrase(self, titles: list[str]) -> list[str]:
        """Raw generations for ``titles`` (greedy)."""
        from recguard.kit.lm import generation

        model, tokenizer = self.lm.get()
        prompts = [self.prompt(t, tokenizer) for t in titles]
        return generation.generate(model, tokenizer, prompts, max_new_tokens=self.cfg.max_new_tokens,
                                   batch_size=self.cfg.batch_size, seed=self.seed)

    def fill(self, titles: set[str]) -> None:
        new = sorted(t for t in titles if t not in self.cache)
        if not new:
            return
        for title, raw in zip(new, self.paraphrase(new)):
            text = clean(raw)
            if not text:
                self.notes["empty_outputs"] += 1
                text = title
            self.cache[title] = text
        self.notes["titles_paraphrased"] += len(new)


# ---------------------------------------------------------------- ask first, then filter


class CheckingFilter(AnswerFilter):
    """A filter that judges each request by the victim's answer to it (RPD, CoS).

    ``check(requests, answers)`` returns, per request, the request to show instead and the
    items removed, or the request itself (the same object) to keep its first answer. The
    victim answers every request once, and again only the changed ones."""

    def check(self, requests: list[Request], answers: list[Answer]) -> list[tuple[Request, frozenset[int]]]:
        raise NotImplementedError

    def inspect(self, requests):
        requests = list(requests)
        return self.check(requests, self.inner.answer(requests) if requests else [])

    def answer(self, requests, progress=lambda done, total: None):
        requests = list(requests)
        if not requests:
            return []
        first = self.inner.answer(requests, progress)
        decided = self.check(requests, first)
        again = [i for i, (shown, _) in enumerate(decided)
                 if shown is not requests[i] and shown.candidates]
        second = dict(zip(again, self.inner.answer([decided[i][0] for i in again]) if again else []))
        out = []
        for i, (shown, removed) in enumerate(decided):
            if shown is requests[i]:
                a = first[i]
            elif i in second:
                a = second[i]
            else:    # nothing left in the pool
                a = Answer(None, 0.0 if self.task == "yes_no" else None)
            out.append(replace(a, removed=frozenset(removed) | a.removed))
        return out
