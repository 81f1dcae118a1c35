"""LLM4Dec (Zhang et al., LoRec, 2024, sec. 4, Eq. 2-5): an LLM-based fraudster detector.

Every user is embedded by a causal LM from the LoRec prompt (`UserEncoder`); a
two-layer perceptron d maps the embedding to p_u, the probability that u is a
fraudster (Eq. 2). d is trained on a supervised set of known fraudsters U_atk
(label 1), made by a Bandwagon attack on users disjoint from U, against the
observed users U (label 0, although U may hold undetected fraudsters), Eq. 3,
plus an entropy regulariser over U that keeps p_u away from 0 and 1 (Eq. 4-5).

Hard detection drops the users with p_u >= 0.5 before training; soft detection
keeps everyone and weights each user's loss by 1 - p_u.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from recguard.components import AttackContext, Config, Defense, DefenseContext
from recguard.config import param
from recguard.data.interactions import Interactions
from recguard.errors import RecguardError

PAPER = "Zhang et al., LoRec: Large Language Model for Robust Sequential Recommendation, 2024"


@dataclass
class LLMUserConfig(Config):
    """The LLM user encoder's options, shared by LLM4Dec and LoRec."""

    llm: str | None = param(None, "causal LM: None for the packaged SmolLM2-135M-Instruct, or a "
                                  "local folder / Hugging Face id (the paper: Llama-2-7B)")
    scenario: str = param("Movie", "the recommendation scenario named in the prompt (PROTOCOLS.md: "
                                   "Game / Arts / News; MovieLens: Movie)")
    max_tokens: int = param(1024, "prompt length cap in tokens; the oldest items are dropped", low=1)
    llm_batch_size: int = param(8, "prompts embedded at once", low=1)
    llm_dtype: Literal["float32", "bfloat16"] = param("float32", "LLM precision (bfloat16 is ~2x "
                                                                 "faster on this CPU)")

    def encoder(self):
        from recguard_lorec.user_encoder import UserEncoder

        return UserEncoder(self.llm, scenario=self.scenario, max_tokens=self.max_tokens,
                           batch_size=self.llm_batch_size, dtype=self.llm_dtype)


@dataclass
class LLM4DecConfig(LLMUserConfig):
    mode: Literal["hard", "soft"] = param("hard", "hard: drop users with p >= threshold (PROTOCOLS.md); "
                                                  "soft: weight each user's loss by 1 - p (sec. 4)")
    threshold: float = param(0.5, "hard detection threshold on p_u (PROTOCOLS.md: 0.5)", low=0, high=1)
    supervised_fraction: float = param(0.1, "|U_atk| / |U| (PROTOCOLS.md: 10% of |U|)", low=0, high=1,
                                       open_low=True)
    supervised_attack: str = param("bandwagon", "attack that makes U_atk (PROTOCOLS.md: Bandwagon)")
    supervised_targets: int = param(5, "random items U_atk promotes (the defender does not know "
                                       "the real targets; 5 as in the protocols)", low=1)
    entropy_weight: float = param(0.5, "λ of Eq. 5 (the paper: tunable; LoRec's λ1 = 0.5, "
                                       "PROTOCOLS.md)", low=0)
    hidden: int = param(256, "hidden units of the two-layer perceptron d (not given; ours)", low=1)
    epochs: int = param(100, "full-batch Adam steps training d (not given; ours: more steps let d "
                             "memorise the unlabelled fraudsters in U as genuine, see README)", low=1)
    lr: float = param(1e-3, "Adam learning rate for d (not given; ours)", low=0, open_low=True)


def supervised_fraudsters(train: Interactions, cfg: LLM4DecConfig, rng: np.random.Generator,
                          protocol) -> Interactions:
    """``train`` plus U_atk: fake users from ``cfg.supervised_attack`` numbered after U."""
    from recguard.evaluate import inject
    from recguard.plugins import get_host

    attacks = get_host().attacks
    if cfg.supervised_attack not in attacks:
        raise RecguardError(f"llm4dec makes its supervised fraudsters with attack "
                            f"{cfg.supervised_attack!r}, which is not installed")
    attack = attacks.get(cfg.supervised_attack)()
    n_atk = max(1, int(round(cfg.supervised_fraction * train.n_users)))
    targets = rng.choice(train.n_items, size=min(cfg.supervised_targets, train.n_items), replace=False)
    filler = max(1, int(round(len(train) / max(train.n_users, 1))))
    ctx = AttackContext(targets=targets, n_fake=n_atk, filler_size=filler, rng=rng, protocol=protocol)
    return inject(train, attack.poison(train, ctx))


def detector_loss(p_atk, p_observed, entropy_weight: float):
    """Eq. 3 + λ·Eq. 4. Eq. 4 as printed, mean(log p + log(1 - p)), decreases without bound
    as p -> 0 or 1, so minimising it would push predictions to the extremes; its stated
    purpose is to prevent them, so we add its negative, which is smallest at p = 0.5."""
    import torch

    eps = 1e-7
    p_atk = p_atk.clamp(eps, 1 - eps)
    p_observed = p_observed.clamp(eps, 1 - eps)
    fraud = -torch.log(p_atk).mean() - torch.log(1 - p_observed).mean()
    regulariser = -(torch.log(p_observed) + torch.log(1 - p_observed)).mean()
    return fraud + entropy_weight * regulariser


def train_detector(embeddings: np.ndarray, n_observed: int, cfg: LLM4DecConfig, seed: int) -> np.ndarray:
    """Fit d on U (rows < n_observed, label 0) and U_atk (the rest, label 1); return p_u over U."""
    import torch

    from recguard.training import seed_everything

    seed_everything(seed)
    x = torch.as_tensor(embeddings, dtype=torch.float32)
    # standardise the LLM features (their scale differs by model and layer; ours, not the paper's)
    x = (x - x.mean(0)) / x.std(0).clamp_min(1e-6)
    d = torch.nn.Sequential(torch.nn.Linear(x.shape[1], cfg.hidden), torch.nn.ReLU(),
                            torch.nn.Linear(cfg.hidden, 1))
    optimizer = torch.optim.Adam(d.parameters(), lr=cfg.lr)
    for _ in range(cfg.epochs):
        p = torch.sigmoid(d(x)).squeeze(-1)
        loss = detector_loss(p[n_observed:], p[:n_observed], cfg.entropy_weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return torch.sigmoid(d(x[:n_observed])).squeeze(-1).numpy().astype(np.float64)


class LLM4DecDefense(Defense):
    name = "llm4dec"
    summary = "LLM4Dec: an MLP on LLM embeddings of user prompts flags fraudsters (hard: drop; soft: weight)"
    paper = f"{PAPER}, sec. 4, Eq. 2-5"
    stages = frozenset({"before_fit"})
    backbone_kinds = frozenset({"cf", "sequential"})
    default_protocol = "lorec"
    Config = LLM4DecConfig

    def before_fit(self, train: Interactions, ctx: DefenseContext) -> Interactions:
        cfg = self.config
        if cfg.mode == "soft" and ctx.backbone is not None and "user_weights" not in ctx.backbone.offers:
            raise RecguardError(f"llm4dec mode=soft weights users, and backbone {ctx.backbone.name!r} "
                                f"does not offer user_weights; use mode=hard")
        rng = np.random.default_rng([ctx.seed, 0x11D])
        combined = supervised_fraudsters(train, cfg, rng, ctx.protocol)
        embeddings = cfg.encoder().encode(combined)
        p = train_detector(embeddings, train.n_users, cfg, ctx.seed)
        ctx.user_scores = p
        flagged = np.flatnonzero(p >= cfg.threshold)
        ctx.notes.update({"mode": cfg.mode, "supervised_fraudsters": combined.n_users - train.n_users,
                          "mean_p": float(p.mean()), "flagged": int(len(flagged))})
        if cfg.mode == "hard":
            return train.drop_users(flagged)
        return replace(train, user_weight=(1.0 - p).astype(np.float32))
