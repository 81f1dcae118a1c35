"""Adversarial collaborative filtering: APR and PamaCF.

APR (He et al., SIGIR 2018) adds a loss at adversarially perturbed embeddings,
L(Θ) + λ L(Θ + Δ), with Δ along the gradient of the loss w.r.t. the batch's
user, positive and negative embeddings, L2-normalised per row and scaled to a
fixed magnitude ε. PamaCF (Zhang et al., NeurIPS 2024, Eq. 5-6 and App. B
Eq. 8-10) gives each user its own magnitude ρ·c(u, t), with
c(u, t) = sig((‖u(t)‖ − mean‖u(t)‖) / mean‖u(t)‖) computed from the user
embeddings at the start of epoch t; the user's item perturbations take the same
magnitude. Both work on any embedding-based backbone whose training loss is
dot-product based (PamaCF's Corollary 1): BPR on implicit data and squared
loss on explicit ratings alike, through the backbone's ``embedding_batch``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recguard import Config, Defense, DefenseContext, FitHooks, Interactions, param
from recguard.kit.cf.adversarial import PerturbationHooks, adversarial_loss

__all__ = ["APRDefense", "PamaCFDefense", "adversarial_loss", "personal_coefficients"]

APR_PAPER = "He et al., Adversarial Personalized Ranking for Recommendation, SIGIR 2018"
PAMACF_PAPER = ("Zhang et al., Understanding and Improving Adversarial Collaborative Filtering "
                "for Robust Recommendation, NeurIPS 2024")


def personal_coefficients(user_embeddings: np.ndarray, squared: bool = False,
                          scale: float = 1.0) -> np.ndarray:
    """PamaCF's c(u, t) (Eq. 5-6): sig(‖u‖ / mean‖u‖ − 1), times ``scale``.

    ``squared=True`` and ``scale=2`` give the variant in the authors' public code
    (squared norms, a factor of 2, so an average user gets c = 1)."""
    norms = np.linalg.norm(user_embeddings, axis=1)
    if squared:
        norms = norms ** 2
    mean = norms.mean() if len(norms) else 1.0
    return scale / (1.0 + np.exp(-(norms / max(mean, 1e-12) - 1.0)))


@dataclass
class APRConfig(Config):
    eps: float = param(0.1, "perturbation magnitude ε, from PamaCF's grid 0.1..1.0 (App. C.1) by "
                            "ML-100K validation Recall@20 (see README)", low=0, open_low=True)
    adv_weight: float = param(1.0, "adversarial loss weight λ (PamaCF's code: 1)", low=0)
    adv_start: int = param(5, "first epoch with adversarial training (PamaCF's code: 5)", low=0)


class AdversarialDefense(Defense):
    """Shared by APR and PamaCF: a during-fit loss at perturbed embeddings."""

    stages = frozenset({"during_fit"})
    backbone_kinds = frozenset({"cf"})
    needs = frozenset({"embedding_batch", "loss_terms", "epoch_callbacks", "embeddings"})
    default_protocol = "pamacf"

    def magnitudes(self, model) -> np.ndarray | None:
        """Per-user magnitudes for this epoch, or None for the uniform ``eps``."""
        return None

    def during_fit(self, train: Interactions, ctx: DefenseContext) -> FitHooks:
        c = self.config
        return PerturbationHooks(adversarial_loss, c.adv_weight, c.adv_start, getattr(c, "eps", 0.0),
                                 self.magnitudes, ctx.notes)


class APRDefense(AdversarialDefense):
    name = "apr"
    summary = "APR: adversarial training with a uniform perturbation magnitude on CF embeddings"
    paper = APR_PAPER
    Config = APRConfig


@dataclass
class PamaCFConfig(Config):
    rho: float = param(0.1, "uniform magnitude ρ, from the paper's grid 0.1..1.0 by ML-100K "
                            "validation Recall@20; 0.7-0.9 is best on Gowalla (sec. 5.4) but "
                            "collapses the embeddings here (see README)", low=0, open_low=True)
    adv_weight: float = param(1.0, "adversarial loss weight λ (sec. 5.4: stable from 1.0)", low=0)
    adv_start: int = param(5, "first epoch with adversarial training (PamaCF's code: 5)", low=0)
    coefficient_scale: float = param(
        1.0, "c(u, t) is sig(...) times this; the paper maps c into (0, 1) (scale 1), the "
             "authors' code uses 2", low=0, open_low=True)
    squared_norms: bool = param(False, "use squared norms in c(u, t), as the authors' code does")
    personalized: bool = param(True, "ablation: False applies ρ to every user (APR with ε = ρ)")


class PamaCFDefense(AdversarialDefense):
    name = "pamacf"
    summary = "PamaCF: adversarial training with per-user magnitudes ρ·c(u, t) from embedding scales"
    paper = f"{PAMACF_PAPER}, Eq. 5-6, App. B Eq. 8-10"
    Config = PamaCFConfig

    def magnitudes(self, model) -> np.ndarray:
        users = model.user_embeddings()
        if not self.config.personalized:
            return np.full(len(users), self.config.rho, dtype=np.float32)
        c = personal_coefficients(users, self.config.squared_norms, self.config.coefficient_scale)
        return (self.config.rho * c).astype(np.float32)
