"""LLaRA (Liao et al., SIGIR 2024): next-item choice among candidates by a LoRA-tuned causal
LM whose prompt mixes titles with projected SASRec item embeddings, learned by curriculum.

Prompt: one of the three templates of ``prompts/llara.txt`` (the authors' movie templates,
one per line; the candidate count is the real one), history and candidates joined with
", ", each item as ``Title <|item_i|>`` (hybrid) or ``Title`` (text); completion: " " and
the target's title. Hybrid slots carry ``projector(SASRec item embedding)`` (`hybrid`).

Curriculum: the training order (epochs concatenated, each a seeded permutation) is fixed
before training; sample i of N uses the hybrid prompt with probability i/N, else the text
prompt, and is trained in that order (``TrainSettings(shuffle=False)``), so the schedule
is deterministic given the seed. Answering: greedy generation, valid iff exactly one
candidate title appears in the text (case-insensitive, LLaRA's rule), else no choice; or
``answer=likelihood``: the candidate whose title is most likely as the completion.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from recguard import Answer, FitContext, LLMBackbone, LLMModel, RecguardError, Request, param

from recguard_llmrec.common import (LLMRecConfig, fit_catalog, for_answering, load_lm,
                                    lora_settings, require_samples, train_settings, tune)
from recguard_llmrec.hybrid import (PROJECTOR, install_hybrid, item_token, projector_parameters,
                                    sasrec_item_vectors)

TEMPLATE_FILE = "llara.txt"
ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class LLaRAConfig(LLMRecConfig):
    prompt: Literal["hybrid", "text"] = param(
        "hybrid", "hybrid: each title followed by its projected SASRec embedding, learned by "
                  "curriculum (LLaRA); text: titles only (no SASRec, no projector)")
    curriculum: bool = param(True, "prompt=hybrid: sample i of N uses the hybrid prompt with "
                                   "probability i/N (LLaRA); off: every sample hybrid")
    answer: Literal["generate", "likelihood"] = param(
        "generate", "generate: greedy decoding, valid iff exactly one candidate title appears "
                    "(LLaRA); likelihood: the candidate title most likely as the completion "
                    "(always valid)")
    likelihood_reduce: Literal["mean", "sum"] = param(
        "mean", "answer=likelihood: mean or sum of the title tokens' log-probabilities")
    max_new_tokens: int = param(32, "answer=generate: tokens generated per request", low=1)
    template: int = param(-1, "prompt template (a line of prompts/llara.txt): -1 draws one per "
                              "training sample (LLaRA) and answers with the first; k uses line k",
                          low=-1)
    sasrec_epochs: int = param(20, "prompt=hybrid: epochs of the SASRec whose item embeddings "
                                   "are projected (LLaRA uses a converged SASRec)", low=1)
    sasrec_dim: int = param(64, "prompt=hybrid: SASRec embedding size (LLaRA: 64)", low=2)
    lora_alpha: int = param(32, "LoRA alpha (LLaRA: 32)", low=1)
    lora_dropout: float = param(0.1, "LoRA dropout (LLaRA: 0.1)", low=0, high=1, open_high=True)
    target_modules: tuple[str, ...] = param(ALL_PROJECTIONS, "modules LoRA adapts (LLaRA: every "
                                                             "attention and MLP projection)")
    epochs: float = param(5.0, "training epochs over ctx.samples (LLaRA: 5; the llara-cpu "
                               "protocol sets 1)", low=0, open_low=True)
    lr: float = param(8e-4, "peak learning rate (LLaRA: 8e-4)", low=0, open_low=True)
    warmup_ratio: float = param(0.1, "share of steps warming the learning rate up (LLaRA: "
                                     "warm-up, then cosine decay)", low=0, high=1, open_high=True)
    scheduler: str = param("cosine", "learning-rate schedule after warm-up (LLaRA: cosine)")


# ---------------------------------------------------------------- prompts


def llara_templates() -> list[str]:
    from recguard.kit.lm.prompts import load_prompt

    lines = [line.strip() for line in load_prompt("recguard_llmrec", TEMPLATE_FILE).splitlines()]
    return [line for line in lines if line]


def render_prompt(request: Request, catalog: Sequence[str], template: str, hybrid: bool) -> str:
    """One request in ``template``; ``hybrid`` puts each item's slot token after its title."""

    def items(indices):
        titles = [request.title(i, catalog) for i in indices]
        if hybrid:
            titles = [f"{t} {item_token(i)}" for t, i in zip(titles, indices)]
        return ", ".join(titles)

    extra = f" {request.instruction.strip()}" if request.instruction.strip() else ""
    return template.format(history=items(request.history), candidates=items(request.candidates),
                           n_candidates=len(request.candidates), extra_instruction=extra)


def completion(request: Request, catalog: Sequence[str]) -> str:
    return " " + request.title(request.target, catalog)


def curriculum_order(n_samples: int, epochs: float, seed: int, n_templates: int,
                     hybrid: bool = True, curriculum: bool = True):
    """The training order: (sample index, uses the hybrid prompt, template index) per step.

    Epochs are concatenated seeded permutations (a fractional last epoch is cut); sample i
    of N is hybrid with probability i/N under the curriculum."""
    rng = np.random.default_rng([seed, 0x11A2A])
    total = max(1, int(round(epochs * n_samples)))
    order = np.concatenate([rng.permutation(n_samples)
                            for _ in range(math.ceil(total / n_samples))])[:total]
    draws = rng.random(total)
    templates = rng.integers(n_templates, size=total)
    if not hybrid:
        flags = np.zeros(total, dtype=bool)
    elif curriculum:
        flags = draws < np.arange(total) / total
    else:
        flags = np.ones(total, dtype=bool)
    return [(int(s), bool(h), int(t)) for s, h, t in zip(order, flags, templates)]


def valid_choice(text: str, request: Request, catalog: Sequence[str]) -> int | None:
    """The candidate whose title appears in ``text`` (case-insensitive) when exactly one does."""
    low = text.lower()
    hits = {c for c in request.candidates
            if (title := request.title(c, catalog).strip().lower()) and title in low}
    return next(iter(hits)) if len(hits) == 1 else None


# ---------------------------------------------------------------- model


class LLaRAModel(LLMModel):
    task = "choose"

    def __init__(self, lm, tokenizer, catalog: Sequence[str], cfg: LLaRAConfig, template: str):
        self.lm, self.tokenizer, self.catalog, self.cfg = lm, tokenizer, list(catalog), cfg
        self.template, self.hybrid = template, cfg.prompt == "hybrid"
        self.n_items = len(self.catalog)

    def prompts(self, requests: Sequence[Request]) -> list[str]:
        return [render_prompt(r, self.catalog, self.template, self.hybrid) for r in requests]

    def answer(self, requests, progress=lambda done, total: None):
        from recguard.kit.lm.generation import completion_logprob, generate

        requests = list(requests)
        if not requests:
            return []
        prompts = self.prompts(requests)
        if self.cfg.answer == "generate":
            texts = generate(self.lm, self.tokenizer, prompts,
                             max_new_tokens=self.cfg.max_new_tokens,
                             batch_size=self.cfg.batch_size, progress=progress)
            return [Answer(choice=valid_choice(t, r, self.catalog))
                    for t, r in zip(texts, requests)]
        pairs = [(p, r, c) for p, r in zip(prompts, requests) for c in r.candidates]
        logp = completion_logprob(self.lm, self.tokenizer, [p for p, _, _ in pairs],
                                  [" " + r.title(c, self.catalog) for _, r, c in pairs],
                                  batch_size=self.cfg.batch_size,
                                  reduce=self.cfg.likelihood_reduce, progress=progress)
        out, start = [], 0
        for r in requests:
            scores = logp[start:start + len(r.candidates)]
            out.append(Answer(choice=int(r.candidates[int(np.argmax(scores))])))
            start += len(r.candidates)
        return out


class LLaRABackbone(LLMBackbone):
    name = "llara"
    task = "choose"
    summary = ("LLaRA: a LoRA-tuned causal LM chooses the next item among candidates from a "
               "prompt of titles with projected SASRec item embeddings (curriculum from text to "
               "hybrid prompts)")
    paper = ("Liao et al., LLaRA: Large Language-Recommendation Assistant, SIGIR 2024")
    offers = frozenset({"item_text"})
    Config = LLaRAConfig

    def fit(self, train, ctx: FitContext) -> LLaRAModel:
        cfg: LLaRAConfig = self.config
        samples = require_samples(ctx.samples, "choose", self.name)
        catalog = fit_catalog(ctx, train)
        templates = llara_templates()
        if cfg.template >= len(templates):
            raise RecguardError(f"llara option template={cfg.template}: prompts/{TEMPLATE_FILE} "
                                f"has {len(templates)} templates (0..{len(templates) - 1}, or -1)")
        hybrid = cfg.prompt == "hybrid"
        clock = time.perf_counter()
        lm, tokenizer = load_lm(cfg)
        ctx.timings["load"] = round(time.perf_counter() - clock, 2)
        if hybrid:
            vectors = sasrec_item_vectors(train, ctx.seed, cfg.sasrec_epochs, cfg.sasrec_dim,
                                          cfg.device)
            install_hybrid(lm, tokenizer, vectors)
            ctx.timings["sasrec"] = round(time.perf_counter() - clock - ctx.timings["load"], 2)
        steps = curriculum_order(len(samples), cfg.epochs, ctx.seed, len(templates), hybrid,
                                 cfg.curriculum)
        pick = (lambda t: templates[t]) if cfg.template < 0 else (lambda t: templates[cfg.template])
        prompts = [render_prompt(samples[s], catalog, pick(t), h) for s, h, t in steps]
        completions = [completion(samples[s], catalog) for s, _, _ in steps]
        before = {k: p.detach().clone() for k, p in projector_parameters(lm).items()}
        # the epochs are already in the curriculum order: one pass over it, in that order
        tuned = tune(cfg, lm, tokenizer, prompts, completions, ctx, self.name,
                     lora=lora_settings(cfg, (PROJECTOR,) if hybrid else ()),
                     train=train_settings(cfg, shuffle=False, epochs=1.0), added_weights=hybrid)
        if hybrid and any(h for _, h, _ in steps):
            _check_projector_trained(before, tuned)
        return LLaRAModel(for_answering(cfg, tuned), tokenizer, catalog, cfg,
                          templates[max(cfg.template, 0)])


def _check_projector_trained(before: dict, tuned) -> None:
    """After hybrid samples were trained, the projector the model uses must have moved
    (peft would otherwise have frozen it, leaving random projections)."""
    import torch

    after = list(projector_parameters(tuned).values())
    if not after or all(torch.equal(a.detach().cpu(), b.cpu())
                        for a, b in zip(after, before.values())):
        raise RecguardError("llara: the item-embedding projector did not train (peft "
                            "modules_to_save did not reach it); check the peft version")
