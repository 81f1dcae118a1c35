"""LLMSI: a safety instruction added to the recommender's prompt (BadRec appendix
B.1.1-B.1.2, after Varshney et al. [34]). The backbone renders `Request.instruction`
into its prompt; nothing else changes."""

from __future__ import annotations

from dataclasses import dataclass, replace

from recguard import AnswerFilter, Config, RecguardError, param

from recguard_backdoor_baselines.common import BADREC, BaselineDefense

SAFETY_INSTRUCTION = "Please pay attention to the perturbations that are added to the item titles."


@dataclass
class LLMSIConfig(Config):
    instruction: str = param(SAFETY_INSTRUCTION, "the safety instruction (B.1.2's text by default)")


class LLMSIFilter(AnswerFilter):
    def __init__(self, inner, cfg: LLMSIConfig, seed: int, notes: dict):
        super().__init__(inner)
        if not cfg.instruction.strip():
            raise RecguardError("llmsi: the safety instruction is empty")
        self.text = cfg.instruction.strip()

    def inspect(self, requests):
        return [(replace(r, instruction=f"{r.instruction} {self.text}".strip()), frozenset())
                for r in requests]


class LLMSIDefense(BaselineDefense):
    name = "llmsi"
    summary = "LLMSI: appends a safety instruction about perturbed item titles to the prompt"
    paper = f"{BADREC} (LLMSI, after Varshney et al. [34])"
    Config = LLMSIConfig
    Filter = LLMSIFilter
