"""What LLM4Dec and LoRec's calibrator share (LoRec, Zhang et al., 2024, sec. 4 and 5.3):
the supervised fraudsters U_atk, the LLM embeddings of every user's prompt, and the
detector loss of Eq. 3-4.

U_atk are fake users made by a known attack (Bandwagon) on users disjoint from the
observed users U; they are labelled 1, every observed user 0 (U may hide fraudsters).

The entropy regulariser (Eq. 4). As printed, L_ER = mean_U [log p_u + log(1 - p_u)]
is minimised by pushing every p_u of U to 0 or 1, and unbounded below: added to
Eq. 3's -log(1 - p_u) it sends every observed user to p_u = 0. The authors' code
(``utls/utilize.py`` ``custom_loss``) adds the binary entropy
H(p_u) = -p_u log p_u - (1 - p_u) log(1 - p_u) of the observed users instead, with
the same direction (uncertain predictions cost) and bounded; Fig. 6 describes its
effect as separating the p_u of fraudsters in U from the genuine ones, which is what
minimising the entropy does. recguard uses the code's bounded form. (The sentence
in sec. 4 that calls it a guard "against extreme predictions" reads the other way;
an earlier recguard version followed that sentence and flipped the sign.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from recguard import Config, Interactions, param
from recguard.kit.poison.supervised import mean_profile_size, with_supervised_fakes


@dataclass
class LLMUserConfig(Config):
    """The LLM user encoder's options."""

    llm: str | None = param(None, "causal LM: None for the packaged SmolLM2-135M-Instruct, or a "
                                  "local folder / Hugging Face id (the paper: Llama-2-7B)")
    scenario: str = param("Movie", "the recommendation scenario named in the prompt (PROTOCOLS.md: "
                                   "Game / Arts / News; MovieLens: Movie)")
    max_tokens: int = param(1024, "prompt length cap in tokens; the oldest items are dropped", low=1)
    llm_batch_size: int = param(8, "prompts embedded at once", low=1)
    # float32 stays the default: the cached embeddings and the published numbers are float32
    llm_dtype: Literal["auto", "float32", "bfloat16", "mixed"] = param(
        "float32", "LLM precision: bfloat16 is ~2x faster on this CPU; auto: bfloat16 where the "
                   "device computes it natively (a GPU, a CPU with AMX), else float32; mixed: "
                   "float32 weights under bf16 autocast")
    llm_device: str = param("auto", "where the LLM runs: cpu, cuda, cuda:1 ... or auto (this "
                                    "process's GPU when CUDA is available, else the CPU)")

    def encoder(self, use_cache: bool = True):
        from recguard_lorec.user_encoder import UserEncoder

        return UserEncoder(self.llm, scenario=self.scenario, max_tokens=self.max_tokens,
                           batch_size=self.llm_batch_size, dtype=self.llm_dtype,
                           device=self.llm_device, use_cache=use_cache)


@dataclass
class FraudDetectorConfig(LLMUserConfig):
    """Options of a detector trained on U (label 0) against supervised fraudsters (label 1)."""

    supervised_fraction: float = param(0.1, "|U_atk| / |U| (PROTOCOLS.md: 10% of |U|)", low=0, high=1,
                                       open_low=True)
    supervised_attack: str = param("bandwagon", "attack that makes U_atk (PROTOCOLS.md: Bandwagon)")
    supervised_targets: int = param(5, "random items U_atk promotes (the defender does not know "
                                       "the real targets; 5 as in the protocols)", low=1)
    entropy_weight: float = param(0.5, "λ (LLM4Dec Eq. 5) / λ1 (LoRec Eq. 15) of the entropy "
                                       "regulariser (PROTOCOLS.md: 0.5); 0 is the w/o Reg ablation",
                                  low=0)


def with_supervised_fraudsters(train: Interactions, cfg: FraudDetectorConfig, seed: int,
                               protocol) -> Interactions:
    """``train`` plus U_atk (`recguard.kit.poison.supervised`), numbered after U, drawn from
    the seed alone, so LLM4Dec and LoRec make the same U_atk for the same seed and data (and
    share their cached prompt embeddings)."""
    return with_supervised_fakes(train, cfg.supervised_attack, cfg.supervised_fraction,
                                 cfg.supervised_targets, np.random.default_rng([seed, 0x11D]),
                                 protocol, filler_size=mean_profile_size(train),
                                 owner="the supervised fraudsters")


def fraud_loss(p_atk, p_observed, entropy_weight: float):
    """L_F (Eq. 3) + λ·L_ER (Eq. 4, as the bounded binary entropy; see the module docstring)."""
    import torch

    eps = 1e-7
    p_atk = p_atk.clamp(eps, 1 - eps)
    p_observed = p_observed.clamp(eps, 1 - eps)
    fraud = -torch.log(1 - p_observed).mean()
    if len(p_atk):  # a batch may hold no supervised fraudster
        fraud = fraud - torch.log(p_atk).mean()
    entropy = -(p_observed * torch.log(p_observed) + (1 - p_observed) * torch.log(1 - p_observed))
    return fraud + entropy_weight * entropy.mean()


def standardised(embeddings: np.ndarray) -> np.ndarray:
    """Each LLM feature centred and scaled to unit variance over the users given (ours, not
    the paper's: the scale of hidden states differs by model and layer)."""
    x = np.asarray(embeddings, dtype=np.float32)
    return (x - x.mean(0)) / np.maximum(x.std(0), 1e-6)
