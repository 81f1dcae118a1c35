"""TALLRec (Bao et al., RecSys 2023): LoRA instruction tuning of a causal LM to answer
"will the user like the target movie?" with "Yes." or "No.".

Prompt: the Alpaca template of ``prompts/tallrec.txt`` (the authors' instruction and
input, titles quoted and joined with ", "). Training: completion "Yes." / "No." from
``request.label``, loss on the completion only, LoRA r=8, alpha=16, dropout 0.05 on
the q/v projections, lr 1e-4 (their code). Score: P(Yes), the softmax over the
logits of the first token of "Yes" and of "No" at the first answer position.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

from recguard import Answer, FitContext, LLMBackbone, LLMModel, Request, param

from recguard_llmrec.common import (LLMRecConfig, fit_catalog, for_answering, load_lm,
                                    lora_settings, quoted, require_samples, train_settings, tune)

TEMPLATE_FILE = "tallrec.txt"


@dataclass
class TALLRecConfig(LLMRecConfig):
    epochs: float = param(10.0, "training epochs over ctx.samples (the authors: up to 200 at lr "
                                "1e-4 with early stopping on validation AUC; 10 at lr 3e-4 keeps "
                                "a 16-shot fit of SmolLM2-135M to a few minutes on 2 CPU cores)",
                          low=0, open_low=True)
    lr: float = param(3e-4, "learning rate (TALLRec: 1e-4, over many more epochs)", low=0,
                      open_low=True)
    train_batch_size: int = param(
        1, "samples per optimiser step: 1 cuts 16 (+1 poisoned) shots x 10 epochs into "
           "160-170 updates, which learn the task (AUC 0.63 against 0.45 in steps of 4, the "
           "same compute; plugins/recguard-llmrec/README.md)", low=1)


def tallrec_template() -> str:
    from recguard.kit.lm.prompts import load_prompt

    return load_prompt("recguard_llmrec", TEMPLATE_FILE).rstrip("\n") + "\n"  # the answer follows "### Response:\n"


def render_prompt(request: Request, catalog: Sequence[str], template: str) -> str:
    """The Alpaca prompt of one request: liked (history), disliked and the target's titles."""
    extra = f" {request.instruction.strip()}" if request.instruction.strip() else ""
    return template.format(liked=quoted([request.title(i, catalog) for i in request.history]),
                           disliked=quoted([request.title(i, catalog) for i in request.disliked]),
                           target=f'"{request.title(request.target, catalog)}"',
                           extra_instruction=extra)


def completion(request: Request) -> str:
    return "Yes." if request.label else "No."


class TALLRecModel(LLMModel):
    task = "yes_no"

    def __init__(self, lm, tokenizer, catalog: Sequence[str], cfg: TALLRecConfig, template: str):
        self.lm, self.tokenizer, self.catalog, self.cfg = lm, tokenizer, list(catalog), cfg
        self.template = template
        self.n_items = len(self.catalog)

    def prompts(self, requests: Sequence[Request]) -> list[str]:
        return [render_prompt(r, self.catalog, self.template) for r in requests]

    def answer(self, requests, progress=lambda done, total: None):
        from recguard.kit.lm.generation import yes_probability

        if not requests:
            return []
        p = yes_probability(self.lm, self.tokenizer, self.prompts(requests), yes="Yes", no="No",
                            batch_size=self.cfg.batch_size, progress=progress)
        return [Answer(p_yes=float(v)) for v in p]


class TALLRecBackbone(LLMBackbone):
    name = "tallrec"
    task = "yes_no"
    summary = ("TALLRec: LoRA instruction tuning of a causal LM to answer Yes./No. to 'will the "
               "user like the target movie?'; scores P(Yes)")
    paper = ("Bao et al., TALLRec: An Effective and Efficient Tuning Framework to Align Large "
             "Language Model with Recommendation, RecSys 2023")
    offers = frozenset({"item_text"})
    Config = TALLRecConfig

    def fit(self, train, ctx: FitContext) -> TALLRecModel:
        cfg: TALLRecConfig = self.config
        samples = require_samples(ctx.samples, "yes_no", self.name)
        catalog = fit_catalog(ctx, train)
        template = tallrec_template()
        clock = time.perf_counter()
        lm, tokenizer = load_lm(cfg)
        ctx.timings["load"] = round(time.perf_counter() - clock, 2)
        prompts = [render_prompt(s, catalog, template) for s in samples]
        completions = [completion(s) for s in samples]
        tuned = tune(cfg, lm, tokenizer, prompts, completions, ctx, self.name,
                     lora=lora_settings(cfg), train=train_settings(cfg))
        return TALLRecModel(for_answering(cfg, tuned), tokenizer, catalog, cfg, template)
