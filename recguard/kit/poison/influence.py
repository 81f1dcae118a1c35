"""Influence functions without the Hessian: Hessian-vector products and conjugate gradient.

Koh & Liang (ICML 2017) estimate the effect of up-weighting a training point z on a
quantity f as ``-grad f . H^-1 grad L(z)``, H the Hessian of the mean training loss.
For a recommender H is too large to form, so `HessianOperator` applies it to vectors
(one double backward through the training-loss gradient, built once), and
`conjugate_gradient` / `damped_solve` solve ``(H + damping I) s = b``; matrix
factorisation's Hessian is indefinite away from the optimum, so the damping is raised
x10 whenever conjugate gradient meets non-positive curvature. Any model trained by the
shared CF loop works (everything goes through `recguard.kit.cf.embedding.per_row_loss`). Used by APT
(its Eq. 5) and TNA (its influential users).

`parameter_gradient`, `inverse_hvp` and `rating_influence` are the three steps of Koh &
Liang's *perturbation* influence of one user's ratings on a quantity f (∇θ f, then
s = (H + λI)⁻¹ ∇θ f, then -(1/n) ∂/∂z [sᵀ ∇θ L(z, θ)] for every item at once); MixInf's
threat estimator uses them; `row_influence` is the up-weighting influence of adding given
rating rows (its default estimator).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recguard.data.interactions import Interactions
from recguard.kit.cf.embedding import per_row_loss


def _dot(a, b) -> float:
    return float(sum((x * y).sum() for x, y in zip(a, b)))


def training_tensors(train: Interactions, rows=None):
    """(users, items, ratings) index / value tensors of ``train`` (or of its ``rows``)."""
    import torch

    if rows is None:
        rows = slice(None)
    return (torch.as_tensor(train.user[rows]), torch.as_tensor(train.item[rows]),
            torch.as_tensor(train.rating[rows]))


class HessianOperator:
    """v ↦ (H + λI) v for H the Hessian of the mean training loss of ``rows``,
    ``mean(per-row loss) + weight_decay · regulariser`` (what the CF loop minimises).

    The gradient is built once with ``create_graph=True``; every product is one
    more backward pass through it (``retain_graph``), never the Hessian itself."""

    def __init__(self, model, users, items, ratings, weight_decay: float = 0.0,
                 damping: float = 0.0):
        import torch

        self.params = list(model.parameters())
        self.damping = float(damping)
        per_row, reg = per_row_loss(model, users, items, None, ratings, implicit=False)
        loss = per_row.mean() + weight_decay * reg
        grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
        # a parameter the loss does not reach has a zero gradient and a zero Hessian block
        self.live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
        self.grads = [grads[i] for i in self.live]

    def __call__(self, vectors):
        import torch

        out = [self.damping * v for v in vectors]
        if self.live:
            hv = torch.autograd.grad(self.grads, [self.params[i] for i in self.live],
                                     grad_outputs=[vectors[i] for i in self.live],
                                     retain_graph=True, allow_unused=True)
            for i, h in zip(self.live, hv):
                if h is not None:
                    out[i] = out[i] + h
        return out


@dataclass
class SolveInfo:
    iterations: int = 0
    residual: float = 1.0  # ‖b − A x‖ / ‖b‖ at the end
    negative_curvature: bool = False


def conjugate_gradient(apply, b, max_iter: int, tol: float):
    """Solve ``apply(x) = b`` (symmetric positive definite) for a list of tensors.

    Stops after ``max_iter`` products, at relative residual ``tol``, or on a
    direction of non-positive curvature (then the operator is not positive
    definite and the caller should raise the damping)."""
    import torch

    with torch.no_grad():
        x = [torch.zeros_like(t) for t in b]
        r = [t.clone() for t in b]
        p = [t.clone() for t in b]
        rs = _dot(r, r)
        b2 = rs
        info = SolveInfo(residual=0.0 if b2 == 0 else 1.0)
        if b2 == 0:
            return x, info
        for k in range(max_iter):
            ap = apply(p)
            curvature = _dot(p, ap)
            if not curvature > 0:
                info.negative_curvature = True
                break
            alpha = rs / curvature
            for xi, pi in zip(x, p):
                xi.add_(pi, alpha=alpha)
            for ri, api in zip(r, ap):
                ri.sub_(api, alpha=alpha)
            rs_new = _dot(r, r)
            info.iterations = k + 1
            info.residual = float(np.sqrt(rs_new / b2))
            if info.residual <= tol:
                break
            beta = rs_new / rs
            p = [ri + beta * pi for ri, pi in zip(r, p)]
            rs = rs_new
    return x, info


def damped_solve(hessian: HessianOperator, vectors, max_iter: int, tol: float, retries: int = 3):
    """(solution, info, products): ``(H + damping I)^-1 vectors`` by conjugate gradient,
    raising ``hessian.damping`` x10 (up to ``retries`` times) on non-positive curvature;
    ``products`` counts the Hessian-vector products over all attempts."""
    products = 0
    for _ in range(retries + 1):
        solution, info = conjugate_gradient(hessian, vectors, max_iter, tol)
        products += info.iterations
        if not info.negative_curvature:
            break
        hessian.damping = max(hessian.damping, 1e-8) * 10.0
    return solution, info, products


def parameter_gradient(model, value) -> list:
    """∇θ ``value`` (a scalar in the autograd graph of ``model.parameters()``), a zero tensor
    for a parameter it does not reach: the ``∇θ f`` of an influence estimate."""
    import torch

    params = list(model.parameters())
    grads = torch.autograd.grad(value, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g.detach() for p, g in zip(params, grads)]


def inverse_hvp(model, train: Interactions, vectors, *, weight_decay: float = 0.0,
                damping: float = 1e-3, max_iter: int = 20, tol: float = 1e-3, retries: int = 3,
                rows=None):
    """``(H + λI)⁻¹ vectors`` for H the Hessian of ``train``'s mean training loss (only its
    ``rows`` when given: a subsampled Hessian) by damped conjugate gradient; returns the
    solution (a list of tensors like ``model.parameters()``) and a JSON-able info dict."""
    hessian = HessianOperator(model, *training_tensors(train, rows), weight_decay=weight_decay,
                              damping=damping)
    solution, info, products = damped_solve(hessian, vectors, max_iter, tol, retries)
    return solution, {"cg_products": products, "cg_residual": round(info.residual, 6),
                      "negative_curvature": info.negative_curvature, "damping": hessian.damping,
                      "hessian_rows": len(train) if rows is None else len(rows)}


def rating_influence(model, train: Interactions, users, direction, n: int | None = None) -> np.ndarray:
    """Koh & Liang's perturbation influence of one user's ratings, for every item at once.

    ``-(1/n) ∂/∂z_j [directionᵀ ∇θ L(z, θ)]`` for j over all items, where L(z, θ) is the
    training loss of the user over *every* item with z the user's dense rating row (its
    ratings in ``train``, 0 elsewhere) as a leaf tensor, and ``direction`` is
    ``(H + λI)⁻¹ ∇θ f`` (`inverse_hvp`). Entry j is then the first-order change of f when
    the user's rating of item j moves one unit up (for the squared loss the mixed derivative
    does not depend on z, so rated and unrated items are treated alike). ``users``: one user,
    or several distinct ones whose influences are summed (APT's base users). ``n`` defaults
    to the number of training ratings (the mean loss's 1/n). One double backward, float64 out."""
    import torch

    users = np.atleast_1d(np.asarray(users, dtype=np.int64))
    k, m = len(users), train.n_items
    slot = np.full(train.n_users, -1, dtype=np.int64)
    slot[users] = np.arange(k)
    mine = slot[train.user] >= 0
    dense = np.zeros((k, m), dtype=np.float32)
    dense[slot[train.user[mine]], train.item[mine]] = train.rating[mine]
    z = torch.as_tensor(dense.reshape(-1)).requires_grad_(True)
    params = list(model.parameters())
    per_row, _ = per_row_loss(model, torch.as_tensor(np.repeat(users, m)), torch.arange(m).repeat(k),
                              None, z, implicit=False)
    grads = torch.autograd.grad(per_row.sum(), params, create_graph=True, allow_unused=True)
    inner = sum((g * d.to(g.device)).sum() for g, d in zip(grads, direction) if g is not None)
    (dz,) = torch.autograd.grad(inner, z)
    total = dz.view(k, m).sum(0).detach().cpu().numpy().astype(np.float64)
    return -total / max(n if n is not None else len(train), 1)


def row_influence(model, users, items, ratings, direction, n: int) -> np.ndarray:
    """Koh & Liang's up-weighting influence of adding each given training row:
    ``-(1/n) directionᵀ ∇θ ℓ(u, i, r)`` per row (index / value tensors ``users``, ``items``,
    ``ratings``), ``direction`` being ``(H + λI)⁻¹ ∇θ f`` (`inverse_hvp`) and n the number of
    training ratings: the first-order change of f when the row joins the training data with
    weight 1 (the model's own loss, squared error on explicit ratings). One double backward
    through per-row weights for all rows at once; float64 out."""
    import torch

    params = list(model.parameters())
    per_row, _ = per_row_loss(model, users, items, None, ratings, implicit=False)
    weights = torch.ones(len(per_row), requires_grad=True)
    grads = torch.autograd.grad((weights.to(per_row.device) * per_row).sum(), params,
                                create_graph=True, allow_unused=True)
    inner = sum((g * d.to(g.device)).sum() for g, d in zip(grads, direction) if g is not None)
    (by_row,) = torch.autograd.grad(inner, weights)
    return -by_row.detach().cpu().numpy().astype(np.float64) / max(n, 1)
