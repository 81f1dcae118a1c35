"""TNA: Fang, Gong & Liu, "Influence Function based Data Poisoning Attacks to Top-N
Recommender Systems", WWW 2020 (the S-attack: the optimisation over influential users).

1. Surrogate (black-box): the attacker fits its own matrix factorisation by alternating
   least squares on the genuine ratings (`recguard.kit.poison.als`).
2. Attacker's loss (sec. 4.1): over a set of users, every target t the user has not rated
   and every item i of the user's current top-N list (unseen, non-target items),
   ``g(r_ui - r_ut)`` with the Wilcoxon-Mann-Whitney surrogate ``g(x) = 1 / (1 + exp(-x / b))``
   of "i beats t": the smaller, the more targets enter the top-N lists.
3. Influential users (sec. 4.2): the influence of removing user u's ratings on that loss
   over all users, ``(1/n) s . grad_theta L_u`` with ``s = (H + damping I)^-1 grad L_att``
   (Koh & Liang; H the Hessian of the ALS objective divided by n, solved by conjugate
   gradient on Hessian-vector products, `recguard.kit.poison.influence`). The ``influential_share`` of
   users with the largest |influence| form S.
4. Fake users (sec. 4.3): the fake rating vectors, relaxed to [0, rating_max] with the targets
   at the maximum, minimise the loss over S plus eta (``l1``) times their L1 norm. The gradient
   goes through the alternating-minimisation solution (the fake users' factors and the
   factors of the targets and of S's list items re-solved in closed form, as Li et al.
   derive it for PGA); projected gradient steps, the factors re-fitted after each step and
   the top-N lists re-read from them. ``eta`` is relative to the mean |d loss / d rating|
   of a non-target entry at the first step; the projection is the box [0, rating_max]
   (``budget_projection`` swaps in the filler-budget hull, where the L1 term is constant).
5. Projection: fillers are the ``filler_size`` non-target items with the largest optimised
   ratings, rated those values snapped to the rating levels; targets at the maximum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from recguard import Interactions, RecguardError, param
from recguard.kit.poison.als import (AlsAscent, AlsOptions, fit_genuine, resolve_fake_users,
                                     resolve_items)
from recguard.kit.poison.profiles import OptimisedProfileAttack
from recguard.kit.poison.surrogate import dense_ratings, top_fillers

PAPER = ("Fang, Gong & Liu, Influence Function based Data Poisoning Attacks to Top-N "
         "Recommender Systems, WWW 2020")


@dataclass
class TNAConfig(AlsOptions):
    influential_share: float = param(
        0.1, "Delta: the share of genuine users kept as influential users S (sec. 4.2)", low=0,
        high=1, open_low=True)
    top_n: int = param(10, "N: the top-N lists the targets should enter", low=1)
    wmw_width: float = param(1.0, "b: width of the WMW sigmoid g(x) = 1/(1+exp(-x/b)) in rating "
                                  "units (sec. 4.1); much below the score gaps it saturates and "
                                  "the gradient vanishes", low=0, open_low=True)
    damping: float = param(1e-4, "damping added to the Hessian of the ALS objective / n "
                                 "(raised x10 on negative curvature, up to 3 times)", low=0)
    cg_iterations: int = param(50, "conjugate-gradient steps per inverse-Hessian-vector product", low=1)
    cg_tolerance: float = param(1e-3, "conjugate gradient stops at this relative residual", low=0)
    steps: int = param(20, "projected gradient steps on the fake ratings (sec. 4.3)", low=0)
    l1: float = param(0.5, "eta: weight of the L1 norm of the fake ratings in the loss (sec. 4.3), "
                           "in units of the mean |d loss / d rating| of a non-target entry at the "
                           "first step (with budget_projection the row sums are fixed and it has no "
                           "effect)", low=0)
    budget_projection: bool = param(False, "project each fake row onto the convex hull of profiles "
                                           "with filler_size fillers (box and sum); false: the box "
                                           "[0, rating_max] with the L1 term (the paper's problem)")


# ---------------------------------------------------------------- pieces (unit-tested)


def top_lists(scores: np.ndarray, seen: np.ndarray, targets: np.ndarray, n: int) -> np.ndarray:
    """Each row's ``n`` best items among those it has not seen and that are not targets."""
    return top_fillers(np.where(seen, -np.inf, scores.astype(np.float64)), targets, n)


def wmw_loss(user_f, item_f, users, lists, targets, eligible, width: float):
    """sum over users, eligible targets and list items of g(s_ui - s_ut) (a torch scalar).

    ``lists`` (len(users), N) item indices; ``eligible`` (len(users), n_targets) 0/1."""
    import torch

    pu = user_f[users]
    s_list = (pu.unsqueeze(1) * item_f[lists]).sum(-1)            # (U, N)
    s_target = pu @ item_f[targets].T                              # (U, T)
    diff = s_list.unsqueeze(2) - s_target.unsqueeze(1)             # (U, N, T)
    return (torch.sigmoid(diff / width) * eligible.unsqueeze(1)).sum()


class Factors:
    """ALS factors as a model the influence code can differentiate: squared loss on the
    ratings plus ``l2`` (|U|^2 + |V|^2), the objective ALS minimises."""

    def __init__(self, user, item):
        self.user = user.detach().clone().requires_grad_()
        self.item = item.detach().clone().requires_grad_()

    def parameters(self):
        return [self.user, self.item]

    def batch_embeddings(self, users, items, negatives):
        regulariser = self.user.pow(2).sum() + self.item.pow(2).sum()
        return self.user[users], self.item[items], None, regulariser


def user_influence(factors: Factors, train: Interactions, l2: float, users, lists, targets,
                   eligible, cfg: "TNAConfig") -> tuple[np.ndarray, dict]:
    """Per user: the first-order change of the attacker's loss when the user's ratings are
    removed, ``(1/n) s . grad_theta L_u`` (Koh & Liang's I_up,loss with epsilon = -1/n)."""
    import torch

    from recguard.kit.cf.embedding import per_row_loss
    from recguard.kit.poison.influence import HessianOperator, damped_solve, training_tensors

    n = max(len(train), 1)
    params = factors.parameters()
    loss = wmw_loss(factors.user, factors.item, torch.as_tensor(users), torch.as_tensor(lists),
                    torch.as_tensor(targets), torch.as_tensor(eligible), cfg.wmw_width)
    gradient = list(torch.autograd.grad(loss, params))
    tensors = training_tensors(train)
    hessian = HessianOperator(factors, *tensors, weight_decay=l2 / n, damping=cfg.damping)
    s, info, products = damped_solve(hessian, gradient, cfg.cg_iterations, cfg.cg_tolerance)
    # s . grad L_u for every u at once: one double backward through per-row weights
    weights = torch.ones(len(train), requires_grad=True)
    per_row, _ = per_row_loss(factors, *tensors[:2], None, tensors[2], implicit=False)
    grads = torch.autograd.grad((weights * per_row).sum(), params, create_graph=True)
    (by_row,) = torch.autograd.grad(sum((g * d).sum() for g, d in zip(grads, s)), weights)
    influence = np.bincount(train.user, weights=by_row.detach().numpy().astype(np.float64),
                            minlength=train.n_users) / n
    return influence, {"cg_products": products, "cg_residual": round(info.residual, 6),
                       "damping": hessian.damping}


# ---------------------------------------------------------------- the attack


class TNAAttack(OptimisedProfileAttack):
    name: ClassVar[str] = "tna"
    summary: ClassVar[str] = ("TNA (Fang et al., WWW 2020): influence functions pick the genuine "
                              "users that matter most to the targets; fake ratings optimised to "
                              "push the targets into their top-N lists")
    paper: ClassVar[str] = PAPER
    feedback: ClassVar[frozenset[str]] = frozenset({"explicit"})
    backbone_kinds: ClassVar[frozenset[str]] = frozenset({"cf"})
    knowledge: ClassVar[str] = "black-box"
    Config = TNAConfig

    def optimise(self, train: Interactions, targets: np.ndarray, n_fake: int, filler_size: int,
                 rng: np.random.Generator, trace: list | None = None) -> np.ndarray:
        """The relaxed fake rows (n_fake, n_items); sets ``influence`` (per user),
        ``influential`` (S) and ``influence_info``. ``trace`` receives minus the loss over S
        (plus the L1 term) before each step."""
        import torch

        from recguard.kit.cf.loop import torch_threads

        cfg: TNAConfig = self.config
        if train.feedback != "explicit":   # check_request refused it already; kept for direct calls
            raise RecguardError("attack 'tna' needs explicit ratings")
        genuine, observed = dense_ratings(train)
        l2 = cfg.surrogate_l2
        with torch_threads(1):
            user, item = fit_genuine(genuine, observed, True, cfg, int(rng.integers(2 ** 31 - 1)))
            users, lists, eligible = attacker_view(user, item, observed, targets, cfg.top_n)
            # sec. 4.2: every user's influence on the loss over all eligible users
            influence, self.influence_info = user_influence(
                Factors(user, item), train, l2, users, lists, targets, eligible, cfg)
            n_s = max(1, int(round(cfg.influential_share * len(users))))
            chosen = users[np.argsort(-np.abs(influence[users]), kind="stable")[:n_s]]
            self.influence, self.influential = influence, chosen
            seen_s = observed[chosen].astype(bool)
            eligible_s = torch.as_tensor(1.0 - observed[np.ix_(chosen, targets)])
            s_users = torch.as_tensor(chosen)

            free = torch.ones(train.n_items, dtype=torch.bool)
            free[torch.as_tensor(targets)] = False
            eta: list[float] = []     # the L1 weight in loss units, fixed at the first step

            def utility(x, genuine_user, item):
                """Minus the loss over S (+ the L1 term) at the factors re-solved from x."""
                with torch.no_grad():   # S's current top-N lists, read from the fitted factors
                    scores = (genuine_user[s_users] @ item.T).numpy()
                lists_s = top_lists(scores, seen_s, targets, cfg.top_n)
                moved = np.union1d(targets, lists_s.ravel())
                fake_user = resolve_fake_users(x, item, True, cfg.wmf_alpha, l2)
                q = resolve_items(moved, x, fake_user, genuine_user, genuine, observed, True,
                                  cfg.wmf_alpha, l2)
                item = item.index_copy(0, torch.as_tensor(moved), q)
                loss = wmw_loss(genuine_user, item, s_users, torch.as_tensor(lists_s),
                                torch.as_tensor(targets), eligible_s, cfg.wmw_width)
                if not eta:   # eta is relative to the mean |d loss / d x| of a free entry at the start
                    (grad,) = torch.autograd.grad(loss, x, retain_graph=True)
                    eta.append(cfg.l1 * float(grad[:, free].abs().mean()))
                return -(loss + eta[0] * x[:, free].sum())

            steps = AlsAscent(cfg, cfg.steps)
            return steps.run(train, genuine, observed, targets, n_fake, filler_size, rng, utility, trace)


def attacker_view(user, item, observed: np.ndarray, targets: np.ndarray, top_n: int):
    """(users with data, their top-N lists, 0/1 eligibility per target: not yet rated)."""
    seen = observed.astype(bool)
    users = np.flatnonzero(seen.any(axis=1))
    scores = (user[users] @ item.T).numpy()
    lists = top_lists(scores, seen[users], targets, top_n)
    return users, lists, (~seen[users][:, targets]).astype(np.float32)
