"""Alternating-least-squares matrix factorisation with fake rows in the autograd graph.

Li et al. (NeurIPS 2016, sec. 4.1) differentiate an attacker's utility with respect to
the fake users' relaxed ratings X through the solution of alternating minimisation:
at the fitted point, the fake users' factors are the ridge solution given the item
factors, and an item's factors the ridge solution given every user's factors, so a
change in X moves both in closed form. PGA and TNA share that machinery:

- `solve_rows`, `entry_weights`, `als_sweeps`: dense weighted ALS (explicit: observed
  genuine entries and every relaxed fake entry weigh 1; implicit: 1 + alpha * value);
- `resolve_fake_users`, `resolve_items`: the two differentiable ridge solves;
- `AlsAscent`: projected gradient ascent on X for any differentiable utility, re-fitting
  the factors with warm-started sweeps after each step.

Everything is dense (n_users x n_items); one sweep costs about n_users * n_items * dim^2,
which is why the attacks default to a small rank.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from recguard.config import param
from recguard.kit.poison.surrogate import SurrogateOptions

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from recguard.data.interactions import Interactions


@dataclass
class AlsOptions(SurrogateOptions):
    """The Config base of attacks that differentiate through an ALS surrogate."""

    surrogate: str = param("mf", "the surrogate: the attack differentiates through its own "
                                 "alternating-minimisation MF, so only 'mf' is accepted", choices=("mf",))
    surrogate_epochs: int = param(10, "full ALS sweeps (users, then items) fitting the surrogate "
                                      "before the first gradient step", low=1)
    surrogate_dim: int = param(16, "rank of the factorisation (kept small: each ALS sweep costs "
                                   "n_users * n_items * dim^2)", low=1)
    surrogate_l2: float = param(1.0, "lambda: the L2 weight of every factor in the ALS objective",
                                low=0, open_low=True)
    wmf_alpha: float = param(20.0, "implicit data: every entry counts with confidence "
                                   "1 + wmf_alpha * x (weighted ALS)", low=0)
    refit_sweeps: int = param(2, "warm-started ALS sweeps re-fitting the factors after each step",
                              low=0)
    step: float = param(0.5, "gradient step: the largest gradient entry of a row moves by "
                             "step * rating_max", low=0, open_low=True)
    budget_projection: bool = param(True, "project each fake row onto the convex hull of profiles "
                                          "with filler_size fillers (box and sum); false: the box "
                                          "[0, rating_max] only (Li et al.'s projection)")


def solve_rows(weights, ratings, fixed, l2: float):
    """Each row's factor x_r = argmin sum_j w_rj (r_rj - x_r . f_j)^2 + l2 |x_r|^2
    = (sum_j w_rj f_j f_j^T + l2 I)^-1 sum_j w_rj r_rj f_j, for all rows at once (dense)."""
    import torch

    d = fixed.shape[1]
    outer = (fixed[:, :, None] * fixed[:, None, :]).reshape(len(fixed), d * d)
    gram = (weights @ outer).reshape(-1, d, d) + l2 * torch.eye(d, dtype=fixed.dtype)
    rhs = (weights * ratings) @ fixed
    return torch.linalg.solve(gram, rhs.unsqueeze(-1)).squeeze(-1)


def fake_weights(fake, explicit: bool, alpha: float):
    """The ALS weight of every relaxed fake entry: 1 (explicit) or 1 + alpha * x (implicit)."""
    import torch

    return torch.ones_like(fake) if explicit else 1.0 + alpha * fake


def entry_weights(genuine_obs, fake, genuine_ratings, explicit: bool, alpha: float):
    """(weights, ratings) of genuine rows over fake rows: explicit - genuine observed entries
    and every relaxed fake entry weigh 1; implicit - every entry weighs 1 + alpha * value."""
    import torch

    ratings = torch.cat([torch.as_tensor(genuine_ratings), fake], dim=0)
    if explicit:
        weights = torch.cat([torch.as_tensor(genuine_obs), torch.ones_like(fake)], dim=0)
    else:
        weights = 1.0 + alpha * ratings
    return weights, ratings


def als_sweeps(user, item, weights, ratings, l2: float, sweeps: int):
    """``sweeps`` alternating least-squares sweeps (users given items, then items given users)."""
    for _ in range(sweeps):
        user = solve_rows(weights, ratings, item, l2)
        item = solve_rows(weights.T, ratings.T, user, l2)
    return user, item


def resolve_fake_users(fake, item, explicit: bool, alpha: float, l2: float):
    """The fake users' factors U~(X) given the item factors (differentiable in X)."""
    return solve_rows(fake_weights(fake, explicit, alpha), fake, item, l2)


def resolve_items(columns: np.ndarray, fake, fake_user, genuine_user, genuine_ratings, genuine_obs,
                  explicit: bool, alpha: float, l2: float):
    """The factors of the items ``columns`` given every user's factors, genuine held and fake
    U~(X) (differentiable in X through both their ratings and U~)."""
    import torch

    cols = torch.as_tensor(columns)
    g_ratings = torch.as_tensor(genuine_ratings[:, columns])
    g_weights = torch.as_tensor(genuine_obs[:, columns]) if explicit else 1.0 + alpha * g_ratings
    weights = torch.cat([g_weights, fake_weights(fake[:, cols], explicit, alpha)], dim=0)
    ratings = torch.cat([g_ratings, fake[:, cols]], dim=0)
    users = torch.cat([genuine_user, fake_user], dim=0)
    return solve_rows(weights.T, ratings.T, users, l2)


def fit_genuine(genuine, observed, explicit: bool, options: AlsOptions, seed: int):
    """(user, item) factors of ALS on the genuine rows alone, ``surrogate_epochs`` sweeps."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    user = torch.randn(len(genuine), options.surrogate_dim, generator=generator) * 0.1
    item = torch.randn(genuine.shape[1], options.surrogate_dim, generator=generator) * 0.1
    with torch.no_grad():
        weights, ratings = entry_weights(observed, torch.zeros(0, genuine.shape[1]), genuine,
                                         explicit, options.wmf_alpha)
        return als_sweeps(user, item, weights, ratings, options.surrogate_l2, options.surrogate_epochs)


Utility = Callable[["torch.Tensor", "torch.Tensor", "torch.Tensor"], "torch.Tensor"]


def ascent_start(genuine: np.ndarray, targets: np.ndarray, n_fake: int, r_max: float,
                 budget: int | None, dim: int, rng: np.random.Generator):
    """Where an ascent on fake rows starts: (fake rows, user factors, item factors). The rows
    are copies of random genuine rows with the targets at the maximum, projected
    (`project_relaxed`, with ``budget`` fillers' worth of mass); the factors N(0, 0.1²) from a
    torch generator seeded from ``rng``."""
    import torch

    from recguard.kit.poison.profiles import project_relaxed

    n_gen, n_items = genuine.shape
    init_users = rng.choice(n_gen, size=n_fake, replace=n_fake > n_gen)
    fake = project_relaxed(torch.tensor(genuine[init_users]), targets, r_max, budget)
    generator = torch.Generator().manual_seed(int(rng.integers(2 ** 31 - 1)))
    user = torch.randn(n_gen + n_fake, dim, generator=generator) * 0.1
    item = torch.randn(n_items, dim, generator=generator) * 0.1
    return fake, user, item


def ascent_direction(value, x, targets: np.ndarray, trace: list | None):
    """One step's direction for an ascent on fake rows ``x``: d value / dx with the targets'
    columns zeroed (they stay at the maximum), each row scaled by its largest entry so that
    ``step`` is a share of the rating scale. ``trace`` (optional) receives the value."""
    import torch

    (grad,) = torch.autograd.grad(value, x)
    if trace is not None:
        trace.append(float(value.detach()))
    grad[:, targets] = 0.0
    return grad / grad.abs().amax(dim=1, keepdim=True).clamp(min=1e-12)


@dataclass
class AlsAscent:
    """Projected gradient ascent on relaxed fake rows through an ALS surrogate.

    ``utility(x, genuine_user, item)`` is maximised; it must be differentiable in x (the
    fake rows) and is evaluated at the current fitted factors."""

    options: AlsOptions
    steps: int

    def run(self, train: "Interactions", genuine: np.ndarray, observed: np.ndarray,
            targets: np.ndarray, n_fake: int, filler_size: int, rng: np.random.Generator,
            utility: Utility, trace: list | None = None) -> np.ndarray:
        """The relaxed fake rows (n_fake, n_items) after ``steps`` steps, started from copies
        of random genuine rows; ``trace`` (optional list) receives the utility before each step."""
        import torch

        from recguard.kit.poison.profiles import project_relaxed

        cfg = self.options
        explicit = train.feedback == "explicit"
        r_max = float(train.rating_max)
        n_gen = len(genuine)
        budget = filler_size if cfg.budget_projection else None
        fake, user, item = ascent_start(genuine, targets, n_fake, r_max, budget, cfg.surrogate_dim, rng)

        def refit(user, item, fake, sweeps):
            with torch.no_grad():
                weights, ratings = entry_weights(observed, fake, genuine, explicit, cfg.wmf_alpha)
                return als_sweeps(user, item, weights, ratings, cfg.surrogate_l2, sweeps)

        user, item = refit(user, item, fake, cfg.surrogate_epochs)
        for _ in range(self.steps):
            x = fake.clone().requires_grad_()
            grad = ascent_direction(utility(x, user[:n_gen], item), x, targets, trace)
            fake = project_relaxed(fake + cfg.step * r_max * grad, targets, r_max, budget)
            user, item = refit(user, item, fake, cfg.refit_sweeps)
        return fake.numpy()
