"""PGA: projected gradient ascent on the fake users' ratings of a factorisation model.

Li, Wang, Singh & Vorobeychik, "Data Poisoning Attacks on Factorization-Based
Collaborative Filtering", NeurIPS 2016. The attacker adds n_fake users whose rating
rows X (relaxed to [0, rating_max]) are optimised so that the matrix factorisation
the victim learns by alternating minimisation (paper Sec. 3, Eq. 2-3) on the genuine
data plus X maximises the attacker's utility. Here the utility is the paper's
*integrity* utility for promotion: the mean predicted rating of the target items for
genuine users who have not rated them (Sec. 3, R(M_hat) on the target columns).

The gradient dR/dX goes through the alternating-minimisation solution as the paper
derives it from the KKT conditions of the two least-squares blocks (Sec. 4.1): the
factors are first fitted without gradient by ``surrogate_epochs`` full ALS sweeps;
then the fake users' factors U~ = argmin (given V) and the target items' factors
v_t = argmin (given the genuine U and U~) are re-solved in closed form with the
autograd graph kept, and R is differentiated through those two solves (implicit
differentiation of one ALS sweep at its fixed point; the genuine users' factors are
held, as in the paper's derivation). X takes a projected gradient-ascent step
(Sec. 4.2), is projected back onto the feasible set, the factors are re-fitted with
``refit_sweeps`` warm-started sweeps, and so on for ``pga_steps`` steps. Finally each
row keeps the targets at the maximum and the ``filler_size`` non-target items of
largest optimised rating (recguard.surrogate.top_fillers). See the plugin README.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from recguard.config import param
from recguard.data.interactions import Interactions
from recguard.profiles import OptimisedProfileAttack, project_relaxed
from recguard.surrogate import SurrogateOptions, dense_ratings

PAPER = ("Li, Wang, Singh & Vorobeychik, Data Poisoning Attacks on Factorization-Based "
         "Collaborative Filtering, NeurIPS 2016")


@dataclass
class PGAConfig(SurrogateOptions):
    surrogate: str = param("mf", "the surrogate: PGA differentiates through its own alternating-"
                                 "minimisation MF, so only 'mf' is accepted", choices=("mf",))
    surrogate_epochs: int = param(10, "full ALS sweeps (users, then items) fitting the surrogate "
                                      "before the first ascent step", low=1)
    surrogate_dim: int = param(16, "rank of the factorisation (kept small: each ALS sweep costs "
                                   "n_users * n_items * dim^2)", low=1)
    surrogate_l2: float = param(1.0, "lambda: the L2 weight of every factor in the ALS objective",
                                low=0, open_low=True)
    wmf_alpha: float = param(20.0, "implicit data: every entry counts with confidence "
                                   "1 + wmf_alpha * x (weighted ALS)", low=0)
    pga_steps: int = param(20, "projected gradient-ascent steps", low=0)
    refit_sweeps: int = param(2, "warm-started ALS sweeps re-fitting the factors after each step",
                              low=0)
    step: float = param(0.5, "ascent step: the largest gradient entry of a row moves by "
                             "step * rating_max", low=0, open_low=True)
    budget_projection: bool = param(True, "project each fake row onto the convex hull of profiles "
                                          "with filler_size fillers (box and sum); false: the box "
                                          "[0, rating_max] only (the paper's projection)")


# ---------------------------------------------------------------- pieces (unit-tested)


def solve_rows(weights, ratings, fixed, l2: float):
    """Each row's factor x_r = argmin sum_j w_rj (r_rj - x_r . f_j)^2 + l2 |x_r|^2
    = (sum_j w_rj f_j f_j^T + l2 I)^-1 sum_j w_rj r_rj f_j, for all rows at once (dense)."""
    import torch

    d = fixed.shape[1]
    outer = (fixed[:, :, None] * fixed[:, None, :]).reshape(len(fixed), d * d)
    gram = (weights @ outer).reshape(-1, d, d) + l2 * torch.eye(d, dtype=fixed.dtype)
    rhs = (weights * ratings) @ fixed
    return torch.linalg.solve(gram, rhs.unsqueeze(-1)).squeeze(-1)


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


def integrity_utility(fake, genuine_user, item, genuine_ratings, genuine_obs, eligible, targets,
                      explicit: bool, alpha: float, l2: float):
    """R(X): mean predicted target rating over eligible genuine (user, target) pairs, with the
    fake users' factors and the target items' factors re-solved from X (differentiable in X)."""
    import torch

    t = torch.as_tensor(targets)
    if explicit:
        f_w = torch.ones_like(fake)
        g_w_t = torch.as_tensor(genuine_obs[:, targets])
    else:
        f_w = 1.0 + alpha * fake
        g_w_t = 1.0 + alpha * torch.as_tensor(genuine_ratings[:, targets])
    fake_user = solve_rows(f_w, fake, item, l2)                        # U~(X), V held
    users = torch.cat([genuine_user, fake_user], dim=0)
    w_t = torch.cat([g_w_t, f_w[:, t]], dim=0)                          # (n_users, n_targets)
    r_t = torch.cat([torch.as_tensor(genuine_ratings[:, targets]), fake[:, t]], dim=0)
    v_t = solve_rows(w_t.T, r_t.T, users, l2)                           # v_t(U, U~(X)), (n_targets, d)
    predicted = genuine_user @ v_t.T                                     # (n_genuine, n_targets)
    return (predicted * eligible).sum() / eligible.sum().clamp(min=1.0)


# ---------------------------------------------------------------- the attack


class PGAAttack(OptimisedProfileAttack):
    name: ClassVar[str] = "pga"
    summary: ClassVar[str] = ("PGA: projected gradient ascent on fake ratings through alternating-"
                              "minimisation MF, raising the targets' predicted ratings")
    paper: ClassVar[str] = PAPER
    feedback: ClassVar[frozenset[str]] = frozenset({"explicit", "implicit"})
    backbone_kinds: ClassVar[frozenset[str]] = frozenset({"cf"})
    knowledge: ClassVar[str] = "black-box"
    Config = PGAConfig

    def optimise(self, train: Interactions, targets: np.ndarray, n_fake: int, filler_size: int,
                 rng: np.random.Generator, trace: list | None = None) -> np.ndarray:
        """The relaxed fake rows (n_fake, n_items) after ``pga_steps`` ascent steps; ``trace``
        (optional list) receives the utility before each step."""
        import torch

        cfg = self.config
        explicit = train.feedback == "explicit"
        r_max = float(train.rating_max)
        genuine, observed = dense_ratings(train)
        n_gen, n_items = genuine.shape
        budget = filler_size if cfg.budget_projection else None
        init_users = rng.choice(n_gen, size=n_fake, replace=n_fake > n_gen)
        fake = project_relaxed(torch.tensor(genuine[init_users]), targets, r_max, budget)
        generator = torch.Generator().manual_seed(int(rng.integers(2 ** 31 - 1)))
        user = torch.randn(n_gen + n_fake, cfg.surrogate_dim, generator=generator) * 0.1
        item = torch.randn(n_items, cfg.surrogate_dim, generator=generator) * 0.1
        eligible = torch.as_tensor(1.0 - observed[:, targets])
        sweeps = cfg.surrogate_epochs
        with torch.no_grad():
            weights, ratings = entry_weights(observed, fake, genuine, explicit, cfg.wmf_alpha)
            user, item = als_sweeps(user, item, weights, ratings, cfg.surrogate_l2, sweeps)
        for _ in range(cfg.pga_steps):
            x = fake.clone().requires_grad_()
            utility = integrity_utility(x, user[:n_gen], item, genuine, observed, eligible, targets,
                                        explicit, cfg.wmf_alpha, cfg.surrogate_l2)
            (grad,) = torch.autograd.grad(utility, x)
            if trace is not None:
                trace.append(float(utility.detach()))
            grad[:, targets] = 0.0
            grad = grad / grad.abs().amax(dim=1, keepdim=True).clamp(min=1e-12)
            fake = project_relaxed(fake + cfg.step * r_max * grad, targets, r_max, budget)
            with torch.no_grad():
                weights, ratings = entry_weights(observed, fake, genuine, explicit, cfg.wmf_alpha)
                user, item = als_sweeps(user, item, weights, ratings, cfg.surrogate_l2, cfg.refit_sweeps)
        return fake.numpy()
