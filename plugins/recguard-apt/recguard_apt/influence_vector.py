"""The influence vector of APT's Eq. 5, with implicit Hessian-vector products.

    I = -(1/n) ∇θ L_ER(θ)ᵀ (H + λI)⁻¹ ∇z ∇θ L(z, θ)                      (Eq. 5)

I_j is the first-order change of the empirical risk L_ER when the fake user z'
rates item j one unit higher (Eq. 4: I_poison(z') ≈ Iᵀ z'). H is the Hessian
of the mean training loss (Koh & Liang's convention, so the 1/n of Eq. 5 is the
number of training ratings), λ a damping term that makes H + λI positive
definite (matrix factorisation's Hessian is indefinite).

Everything goes through `recguard.kit.cf.embedding.per_row_loss`, so any model trained by the
shared CF loop works (MF, LightGCN, ...); the Hessian is never formed:

1. ``s = (H + λI)⁻¹ g`` by conjugate gradient, g = ∇θ L_ER. Each CG step is one
   Hessian-vector product, a second backward pass through the graph of the
   training-loss gradient, built once per solve (double backward).
2. ``Iᵀ = -(1/n) ∂/∂z [sᵀ ∇θ L(z, θ)]`` (`recguard.kit.poison.influence.rating_influence`):
   one more double backward, through the loss of the base user z over every item, with
   z's ratings as a leaf tensor. This gives the whole vector over items at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from recguard import Interactions
from recguard.kit.cf.embedding import per_row_loss
from recguard.kit.poison.influence import (HessianOperator, damped_solve, rating_influence,
                                           training_tensors)


def risk_gradient(model, train: Interactions, risk: str, weight_decay: float = 0.0):
    """∇θ L_ER over every rating of ``train``.

    ``risk="sigmoid"``: L_ER = Σ 1 / (1 + exp(-(r - r̂)²)) (APT, sec. 3, after Eq. 5);
    ``risk="training"``: the training loss itself, Σ (r - r̂)² + n·wd·regulariser."""
    import torch

    users, items, ratings = training_tensors(train)
    params = list(model.parameters())
    per_row, reg = per_row_loss(model, users, items, None, ratings, implicit=False)
    if risk == "sigmoid":
        value = torch.sigmoid(per_row).sum()
    else:
        value = per_row.sum() + len(per_row) * weight_decay * reg
    grads = torch.autograd.grad(value, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def base_users(train: Interactions, k: int) -> np.ndarray:
    """The ``k`` users with the smallest rating vectors ‖r_u‖ (sec. 3: z = argmin ‖r‖, so
    that z is close to the zero vector); only users with at least one rating."""
    counts = train.user_counts()
    norms = np.bincount(train.user, weights=np.square(train.rating.astype(np.float64)),
                        minlength=train.n_users)
    candidates = np.flatnonzero(counts > 0)
    order = np.argsort(norms[candidates], kind="stable")
    return candidates[order[:k]]


@dataclass
class InfluenceSettings:
    risk: str = "sigmoid"
    base_users: int = 1
    damping: float = 1e-3
    cg_iterations: int = 20
    cg_tolerance: float = 1e-3
    hessian_rows: int = 0  # 0: every training rating
    weight_decay: float = 0.0
    damping_retries: int = 3  # ×10 on negative curvature


@dataclass
class InfluenceResult:
    influence: np.ndarray
    info: dict = field(default_factory=dict)


def influence_vector(model, train: Interactions, settings: InfluenceSettings,
                     generator=None) -> InfluenceResult:
    """Eq. 5 for every item: one inverse-HVP solve, one batched perturbation product."""
    import torch

    n = len(train)
    g = risk_gradient(model, train, settings.risk, settings.weight_decay)
    rows = None
    if settings.hessian_rows and settings.hessian_rows < n:
        rows = torch.randperm(n, generator=generator)[:settings.hessian_rows].numpy()
    hessian = HessianOperator(model, *training_tensors(train, rows),
                              weight_decay=settings.weight_decay, damping=settings.damping)
    solution, info, iterations = damped_solve(hessian, g, settings.cg_iterations,
                                              settings.cg_tolerance, settings.damping_retries)
    z = base_users(train, settings.base_users)
    influence = rating_influence(model, train, z, solution, n)
    return InfluenceResult(influence, {
        "cg_iterations": iterations, "cg_residual": round(info.residual, 6),
        "negative_curvature": info.negative_curvature, "damping": hessian.damping,
        "hessian_rows": n if rows is None else len(rows), "base_users": [int(u) for u in z]})
