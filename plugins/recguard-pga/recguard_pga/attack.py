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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from recguard import Interactions, param
from recguard.kit.poison.als import AlsAscent, AlsOptions, resolve_fake_users, resolve_items
from recguard.kit.poison.profiles import OptimisedProfileAttack
from recguard.kit.poison.surrogate import dense_ratings

PAPER = ("Li, Wang, Singh & Vorobeychik, Data Poisoning Attacks on Factorization-Based "
         "Collaborative Filtering, NeurIPS 2016")


@dataclass
class PGAConfig(AlsOptions):
    pga_steps: int = param(20, "projected gradient-ascent steps", low=0)


def integrity_utility(fake, genuine_user, item, genuine_ratings, genuine_obs, eligible, targets,
                      explicit: bool, alpha: float, l2: float):
    """R(X): mean predicted target rating over eligible genuine (user, target) pairs, with the
    fake users' factors and the target items' factors re-solved from X (differentiable in X)."""
    fake_user = resolve_fake_users(fake, item, explicit, alpha, l2)     # U~(X), V held
    v_t = resolve_items(targets, fake, fake_user, genuine_user, genuine_ratings, genuine_obs,
                        explicit, alpha, l2)                            # v_t(U, U~(X)), (n_targets, d)
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
        genuine, observed = dense_ratings(train)
        eligible = torch.as_tensor(1.0 - observed[:, targets])

        def utility(x, genuine_user, item):
            return integrity_utility(x, genuine_user, item, genuine, observed, eligible, targets,
                                     explicit, cfg.wmf_alpha, cfg.surrogate_l2)

        return AlsAscent(cfg, cfg.pga_steps).run(train, genuine, observed, targets, n_fake,
                                                 filler_size, rng, utility, trace)
