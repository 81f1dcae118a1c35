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
largest optimised rating (recguard.kit.poison.surrogate.top_fillers). See the plugin README.

On explicit data the default relaxation is ``support``: during the ascent each fake row is
observed only on the items its final profile keeps (its targets and ``filler_size`` largest
entries), so the surrogate the ascent climbs is the one the final profiles give; Li et al.'s
dense relaxation (every fake entry observed) is ``relaxation=dense``, which raised its own
relaxed utility but lowered the utility of the final profiles (README, ablation).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from recguard import AttackContext, Interactions, Poisoned, param
from recguard.kit.poison.als import (AlsAscent, AlsOptions, als_sweeps, ascent_direction,
                                     ascent_start, resolve_fake_users, resolve_items, solve_rows)
from recguard.kit.poison.profiles import OptimisedProfileAttack, project_relaxed
from recguard.kit.poison.surrogate import dense_ratings, top_fillers

PAPER = ("Li, Wang, Singh & Vorobeychik, Data Poisoning Attacks on Factorization-Based "
         "Collaborative Filtering, NeurIPS 2016")


@dataclass
class PGAConfig(AlsOptions):
    pga_steps: int = param(20, "projected gradient-ascent steps", low=0)
    step: float = param(0.05, "gradient step: the largest gradient entry of a row moves by "
                              "step * rating_max (0.5 oscillates: README, ablation)",
                        low=0, open_low=True)
    filler_rating: str = param("snap", "explicit data: a filler's rating - 'snap': its optimised "
                                       "value snapped to the nearest rating level; 'max': rating_max",
                               choices=("snap", "max"))
    relaxation: str = param("support", "explicit data: the fake entries the surrogate fits during "
                                       "the ascent - 'support': each row's targets and filler_size "
                                       "largest entries (the items its final profile keeps), box "
                                       "projection; 'dense': all, weight 1 (Li et al.'s relaxation)",
                            choices=("support", "dense"))


def integrity_utility(fake, genuine_user, item, genuine_ratings, genuine_obs, eligible, targets,
                      explicit: bool, alpha: float, l2: float):
    """R(X): mean predicted target rating over eligible genuine (user, target) pairs, with the
    fake users' factors and the target items' factors re-solved from X (differentiable in X)."""
    fake_user = resolve_fake_users(fake, item, explicit, alpha, l2)     # U~(X), V held
    v_t = resolve_items(targets, fake, fake_user, genuine_user, genuine_ratings, genuine_obs,
                        explicit, alpha, l2)                            # v_t(U, U~(X)), (n_targets, d)
    return mean_target_prediction(genuine_user, v_t, eligible)


def mean_target_prediction(genuine_user, v_t, eligible):
    """The utility's value: the mean predicted rating u . v_t over the eligible (genuine user,
    target) pairs."""
    predicted = genuine_user @ v_t.T                                     # (n_genuine, n_targets)
    return (predicted * eligible).sum() / eligible.sum().clamp(min=1.0)


def support_ascent(cfg: PGAConfig, train: Interactions, genuine: np.ndarray, observed: np.ndarray,
                   eligible, targets: np.ndarray, n_fake: int, filler_size: int,
                   rng: np.random.Generator, trace: list | None) -> np.ndarray:
    """`AlsAscent` with each fake row observed only on its support - the targets and the
    ``filler_size`` items its start keeps (`top_fillers`) - so that the surrogate the ascent
    climbs is the one its final profiles give. Only the support's ratings move, projected onto
    [lowest rating level, rating_max]; the other entries are 0, so the final profiles keep
    exactly the support."""
    import torch

    r_max = float(train.rating_max)
    n_gen = len(genuine)
    budget = filler_size if cfg.budget_projection else None
    fake, user, item = ascent_start(genuine, targets, n_fake, r_max, budget, cfg.surrogate_dim, rng)
    support = torch.zeros_like(fake)
    support.scatter_(1, torch.as_tensor(top_fillers(fake.numpy(), targets, filler_size, rng)), 1.0)
    support[:, targets] = 1.0
    lowest = float(np.unique(train.rating)[0])

    def project(x):
        x = project_relaxed(x, targets, r_max)
        return torch.where(support > 0, x.clamp(min=lowest), torch.zeros_like(x))

    def refit(user, item, fake, sweeps):
        with torch.no_grad():
            return als_sweeps(user, item, torch.cat([torch.as_tensor(observed), support]),
                              torch.cat([torch.as_tensor(genuine), fake]), cfg.surrogate_l2, sweeps)

    fake = project(fake)
    user, item = refit(user, item, fake, cfg.surrogate_epochs)
    for _ in range(cfg.pga_steps):
        x = fake.clone().requires_grad_()
        fake_user = solve_rows(support, x, item, cfg.surrogate_l2)          # U~(X), V held
        v_t = resolve_items(targets, x, fake_user, user[:n_gen], genuine, observed, True,
                            cfg.wmf_alpha, cfg.surrogate_l2)
        grad = ascent_direction(mean_target_prediction(user[:n_gen], v_t, eligible), x, targets, trace)
        fake = project(fake + cfg.step * r_max * grad)
        user, item = refit(user, item, fake, cfg.refit_sweeps)
    return fake.numpy()


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

    def poison(self, train: Interactions, ctx: AttackContext) -> Poisoned:
        poisoned = super().poison(train, ctx)
        if self.config.filler_rating == "max" and train.feedback == "explicit":
            poisoned = replace(poisoned, rating=np.full_like(poisoned.rating, train.rating_max))
        return poisoned

    def optimise(self, train: Interactions, targets: np.ndarray, n_fake: int, filler_size: int,
                 rng: np.random.Generator, trace: list | None = None) -> np.ndarray:
        """The relaxed fake rows (n_fake, n_items) after ``pga_steps`` ascent steps; ``trace``
        (optional list) receives the utility before each step."""
        import torch

        cfg = self.config
        explicit = train.feedback == "explicit"
        genuine, observed = dense_ratings(train)
        eligible = torch.as_tensor(1.0 - observed[:, targets])
        if explicit and cfg.relaxation == "support":
            return support_ascent(cfg, train, genuine, observed, eligible, targets, n_fake, filler_size,
                                  rng, trace)

        def utility(x, genuine_user, item):
            return integrity_utility(x, genuine_user, item, genuine, observed, eligible, targets,
                                     explicit, cfg.wmf_alpha, cfg.surrogate_l2)

        return AlsAscent(cfg, cfg.pga_steps).run(train, genuine, observed, targets, n_fake,
                                                 filler_size, rng, utility, trace)
