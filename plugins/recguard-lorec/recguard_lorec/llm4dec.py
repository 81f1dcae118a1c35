"""LLM4Dec (Zhang et al., LoRec, 2024, sec. 4, Eq. 2-5): an LLM-based fraudster detector.

Every user is embedded by a causal LM from the LoRec prompt (`UserEncoder`); a
two-layer perceptron d maps the embedding to p_u, the probability that u is a
fraudster (Eq. 2). d is trained on a supervised set of known fraudsters U_atk
(label 1), made by a Bandwagon attack on users disjoint from U, against the
observed users U (label 0, although U may hold undetected fraudsters), Eq. 3,
plus an entropy regulariser over U (Eq. 4-5; its form and sign: `detection`).

Hard detection drops the users with p_u >= 0.5 before training; soft detection
keeps everyone and weights each user's loss by 1 - p_u.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from recguard import Defense, DefenseContext, Interactions, RecguardError, param

from recguard_lorec.detection import (FraudDetectorConfig, fraud_loss, standardised,
                                     with_supervised_fraudsters)

PAPER = "Zhang et al., LoRec: Large Language Model for Robust Sequential Recommendation, 2024"


@dataclass
class LLM4DecConfig(FraudDetectorConfig):
    mode: Literal["hard", "soft"] = param("hard", "hard: drop users with p >= threshold (PROTOCOLS.md); "
                                                  "soft: weight each user's loss by 1 - p (sec. 4)")
    threshold: float = param(0.5, "hard detection threshold on p_u (PROTOCOLS.md: 0.5)", low=0, high=1)
    hidden: int = param(256, "hidden units of the two-layer perceptron d (not given; ours)", low=1)
    epochs: int = param(100, "full-batch Adam steps training d (not given; ours: more steps let d "
                             "memorise the unlabelled fraudsters in U as genuine, see README)", low=1)
    lr: float = param(1e-3, "Adam learning rate for d (not given; ours)", low=0, open_low=True)


def train_detector(embeddings: np.ndarray, n_observed: int, cfg: LLM4DecConfig, seed: int) -> np.ndarray:
    """Fit d on U (rows < n_observed, label 0) and U_atk (the rest, label 1); return p_u over U."""
    import torch

    from recguard.kit.cf.loop import seed_everything

    seed_everything(seed)
    x = torch.as_tensor(standardised(embeddings))
    d = torch.nn.Sequential(torch.nn.Linear(x.shape[1], cfg.hidden), torch.nn.ReLU(),
                            torch.nn.Linear(cfg.hidden, 1))
    optimizer = torch.optim.Adam(d.parameters(), lr=cfg.lr)
    for _ in range(cfg.epochs):
        p = torch.sigmoid(d(x)).squeeze(-1)
        loss = fraud_loss(p[n_observed:], p[:n_observed], cfg.entropy_weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return torch.sigmoid(d(x[:n_observed])).squeeze(-1).numpy().astype(np.float64)


class LLM4DecDefense(Defense):
    name = "llm4dec"
    summary = "LLM4Dec: an MLP on LLM embeddings of user prompts flags fraudsters (hard: drop; soft: weight)"
    paper = f"{PAPER}, sec. 4, Eq. 2-5"
    prefers_gpu = True     # the LLM encodes every user's history
    stages = frozenset({"before_fit"})
    backbone_kinds = frozenset({"cf", "sequential"})
    default_protocol = "lorec"
    Config = LLM4DecConfig

    def before_fit(self, train: Interactions, ctx: DefenseContext) -> Interactions:
        cfg = self.config
        if cfg.mode == "soft" and ctx.backbone is not None and "user_weights" not in ctx.backbone.offers:
            raise RecguardError(f"llm4dec mode=soft weights users, and backbone {ctx.backbone.name!r} "
                                f"does not offer user_weights; use mode=hard")
        combined = with_supervised_fraudsters(train, cfg, ctx.seed, ctx.protocol)
        embeddings = cfg.encoder(ctx.use_cache).encode(combined, progress=ctx.progress)
        p = train_detector(embeddings, train.n_users, cfg, ctx.seed)
        ctx.user_scores = p
        flagged = np.flatnonzero(p >= cfg.threshold)
        ctx.notes.update({"mode": cfg.mode, "supervised_fraudsters": combined.n_users - train.n_users,
                          "mean_p": float(p.mean()), "flagged": int(len(flagged))})
        if cfg.mode == "hard":
            ctx.user_weights = (p < cfg.threshold).astype(np.float64)
            return train.drop_users(flagged)
        ctx.user_weights = 1.0 - p
        return replace(train, user_weight=(1.0 - p).astype(np.float32))
