"""Rev: adversarially learned injection by unrolled surrogate training.

Tang, Wen & Wang, "Revisiting Adversarially Learned Injection Attacks in Recommender
Systems", RecSys 2020. The fake users' rows X (n_fake x n_items, relaxed to the box
[0, rating_max]) are the variables of a bi-level problem (paper Sec. 3, Eq. 1):

    min_X  L_adv(R_hat(theta*(X)))   s.t.  theta*(X) = argmin_theta L_train(D u X; theta)

The inner problem trains a surrogate matrix factorisation (recguard.kit.poison.surrogate.DenseMF)
on the genuine data plus X; the outer loss L_adv is the multi-class cross-entropy of
the target items in every genuine user's softmax over all items (the authors' code,
``mult_ce_loss``), restricted to (user, target) pairs the user has not interacted
with. dL_adv/dX is obtained by unrolling the last ``unroll_steps`` training steps
with the autograd graph kept (paper Sec. 4, "unrolling"); earlier steps are taken
without the graph (warm start). X moves along the per-row l2-normalised negative
gradient with SGD + momentum, is clipped to [0, rating_max] after each step with the
targets held at rating_max, and is finally projected to discrete profiles: targets at
the maximum plus the ``filler_size`` items of largest optimised value
(recguard.kit.poison.surrogate.top_fillers). See the plugin README for every setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from recguard import Interactions, param
from recguard.kit.poison.profiles import OptimisedProfileAttack, project_relaxed
from recguard.kit.poison.surrogate import DenseMF, SurrogateOptions, dense_ratings

PAPER = ("Tang, Wen & Wang, Revisiting Adversarially Learned Injection Attacks in "
         "Recommender Systems, RecSys 2020")


@dataclass
class RevConfig(SurrogateOptions):
    surrogate: str = param("mf", "the surrogate: Rev differentiates through its own dense MF "
                                 "(recguard.kit.poison.surrogate.DenseMF), so only 'mf' is accepted",
                           choices=("mf",))
    surrogate_epochs: int = param(50, "full-batch Adam steps that train the surrogate (without "
                                       "graph) before the first adversarial epoch", low=1)
    surrogate_dim: int = param(64, "surrogate embedding size", low=1)
    surrogate_lr: float = param(0.01, "Adam learning rate of the graph-free surrogate training "
                                      "(authors' code: 1e-2)", low=0, open_low=True)
    surrogate_l2: float = param(1e-4, "L2 weight in DenseMF's loss", low=0)
    wmf_alpha: float = param(20.0, "implicit data: every entry is a squared error with confidence "
                                   "1 + wmf_alpha * x (WMF; authors' code: weight_alpha 20)", low=0)
    adv_epochs: int = param(20, "outer (adversarial) iterations (authors' code: 30)", low=0)
    refit_steps: int = param(5, "graph-free Adam steps re-fitting the surrogate to the current "
                                 "fake rows at the start of each adversarial epoch", low=0)
    unroll_steps: int = param(5, "last training steps unrolled with the autograd graph "
                                  "(authors' code: 10)", low=1)
    unroll_lr: float = param(0.5, "step size of the unrolled gradient steps, as a fraction of 1/L "
                                  "(L bounds the loss's curvature in one factor row)",
                             low=0, open_low=True)
    unroll_users: int = param(500, "genuine users drawn (each adversarial epoch, from the seeded "
                                    "rng) into the unrolled steps and the outer loss; all when fewer",
                              low=1)
    adv_lr: float = param(1.0, "SGD step on the fake rows, in units of rating_max (authors' code: 1.0)",
                          low=0, open_low=True)
    adv_momentum: float = param(0.95, "SGD momentum on the fake rows (authors' code: 0.95)",
                                low=0, high=1, open_high=True)
    budget_projection: bool = param(True, "project each fake row onto the convex hull of profiles "
                                          "with filler_size fillers (box and sum); false: the box only")


# ---------------------------------------------------------------- pieces (unit-tested)


def surrogate_inputs(genuine: np.ndarray, observed: np.ndarray, fake, explicit: bool,
                     alpha: float, scale: float = 1.0):
    """(ratings, observed) torch tensors of genuine rows stacked over the fake rows ``fake``
    (a tensor, possibly in the graph). ``observed`` is what DenseMF multiplies the error by
    (the square root of each entry's weight). Explicit: genuine ratings weigh 1 where
    observed, every relaxed fake entry weighs 1 (fake rows are dense). Implicit (WMF):
    every entry weighs 1 + alpha * value. ``scale`` multiplies the genuine rows' weights
    (1 / sampling share, so a user sample keeps the full data's item gradients)."""
    import torch

    g_r = torch.as_tensor(genuine)
    ratings = torch.cat([g_r, fake], dim=0)
    if explicit:
        g_w = torch.as_tensor(observed) * float(np.sqrt(scale))
        f_w = torch.ones_like(fake)
    else:
        g_w = torch.sqrt(scale * (1.0 + alpha * g_r))
        f_w = torch.sqrt(1.0 + alpha * fake.clamp(min=0))
    return ratings, torch.cat([g_w, f_w], dim=0)


def unroll_step_size(user, item, observed, fraction: float) -> float:
    """``fraction`` / L, L = 2 max(max_u sum_i w_ui ||v_i||^2, max_i sum_u w_ui ||p_u||^2) / sum(observed):
    a bound on DenseMF's data-term curvature in one user or item row."""
    import torch

    with torch.no_grad():
        w2 = observed.detach() ** 2
        rows = w2 @ item.detach().pow(2).sum(1)
        cols = w2.T @ user.detach().pow(2).sum(1)
        bound = 2.0 * float(torch.maximum(rows.max(), cols.max())) / float(observed.detach().sum().clamp(min=1))
    return fraction / max(bound, 1e-12)


def adversarial_loss(scores, targets: np.ndarray, eligible):
    """Mean over eligible (user, target) pairs of -log softmax(scores_u)_t (authors' mult_ce_loss)."""
    import torch

    logp = torch.log_softmax(scores, dim=1)[:, torch.as_tensor(targets)]
    return -(logp * eligible).sum() / eligible.sum().clamp(min=1.0)


def fit_graph_free(mf: DenseMF, optimizer, ratings, observed, steps: int, l2: float) -> None:
    """``steps`` full-batch Adam steps on DenseMF's loss, without keeping any graph."""
    ratings, observed = ratings.detach(), observed.detach()
    for _ in range(steps):
        optimizer.zero_grad()
        mf.loss(ratings, observed, l2).backward()
        optimizer.step()


# ---------------------------------------------------------------- the attack


class RevAttack(OptimisedProfileAttack):
    name: ClassVar[str] = "rev"
    summary: ClassVar[str] = ("Rev: fake rows optimised through unrolled surrogate-MF training to "
                              "promote the targets (bi-level, cross-entropy outer loss)")
    paper: ClassVar[str] = PAPER
    feedback: ClassVar[frozenset[str]] = frozenset({"explicit", "implicit"})
    backbone_kinds: ClassVar[frozenset[str]] = frozenset({"cf", "sequential"})  # LoRec sec. 6.1.4
    knowledge: ClassVar[str] = "black-box"
    Config = RevConfig

    def optimise(self, train: Interactions, targets: np.ndarray, n_fake: int, filler_size: int,
                 rng: np.random.Generator, trace: list | None = None) -> np.ndarray:
        """The relaxed fake rows (n_fake, n_items) after ``adv_epochs`` outer steps.
        ``trace`` (optional list) receives the outer loss of each epoch."""
        import torch

        cfg = self.config
        explicit = train.feedback == "explicit"
        r_max = float(train.rating_max)
        genuine, observed = dense_ratings(train)
        n_gen, n_items = genuine.shape
        # Initial fake rows: copies of randomly drawn genuine users (authors' code), targets at max.
        init_users = rng.choice(n_gen, size=n_fake, replace=n_fake > n_gen)
        budget = filler_size if cfg.budget_projection else None
        fake = project_relaxed(torch.tensor(genuine[init_users]), targets, r_max, budget)
        seed = int(rng.integers(2 ** 31 - 1))
        eligible_all = 1.0 - observed[:, targets]

        mf = DenseMF(n_gen + n_fake, n_items, cfg.surrogate_dim, seed)
        optimizer = torch.optim.Adam([mf.user, mf.item], lr=cfg.surrogate_lr)
        velocity = torch.zeros_like(fake)
        steps = cfg.surrogate_epochs
        for _ in range(cfg.adv_epochs):
            ratings, weights = surrogate_inputs(genuine, observed, fake, explicit, cfg.wmf_alpha)
            fit_graph_free(mf, optimizer, ratings, weights, steps, cfg.surrogate_l2)
            del ratings, weights
            steps = cfg.refit_steps
            grad, loss = self.outer_gradient(mf, genuine, observed, eligible_all, fake, targets,
                                             explicit, rng)
            if trace is not None:
                trace.append(loss)
            grad[:, targets] = 0.0
            grad = grad / grad.norm(dim=1, keepdim=True).clamp(min=1e-12)
            velocity = cfg.adv_momentum * velocity + grad
            fake = project_relaxed(fake - cfg.adv_lr * r_max * velocity, targets, r_max, budget)
        return fake.numpy()

    def outer_gradient(self, mf: DenseMF, genuine: np.ndarray, observed: np.ndarray,
                       eligible_all: np.ndarray, fake, targets: np.ndarray, explicit: bool,
                       rng: np.random.Generator):
        """dL_adv/dX through ``unroll_steps`` differentiable steps on a genuine-user sample."""
        import torch

        cfg = self.config
        n_gen = len(genuine)
        n_fake = len(fake)
        if cfg.unroll_users < n_gen:
            rows = np.sort(rng.choice(n_gen, size=cfg.unroll_users, replace=False))
        else:
            rows = np.arange(n_gen)
        x = fake.clone().requires_grad_()
        ratings, weights = surrogate_inputs(genuine[rows], observed[rows], x, explicit,
                                            cfg.wmf_alpha, scale=n_gen / len(rows))
        sub = DenseMF(len(rows) + n_fake, genuine.shape[1], cfg.surrogate_dim, 0)
        sub.user = torch.cat([mf.user.detach()[torch.as_tensor(rows)],
                              mf.user.detach()[n_gen:]]).requires_grad_()
        sub.item = mf.item.detach().clone().requires_grad_()
        lr = unroll_step_size(sub.user, sub.item, weights, cfg.unroll_lr)
        user, item = sub.unrolled(ratings, weights, cfg.unroll_steps, lr, cfg.surrogate_l2,
                                  keep_graph=True)
        scores = user[:len(rows)] @ item.T
        loss = adversarial_loss(scores, targets, torch.as_tensor(eligible_all[rows]))
        (grad,) = torch.autograd.grad(loss, x)
        return grad.detach(), float(loss.detach())
