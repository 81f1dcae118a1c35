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
