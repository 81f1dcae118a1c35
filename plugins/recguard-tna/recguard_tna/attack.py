"""TNA: Fang, Gong & Liu, "Influence Function based Data Poisoning Attacks to Top-N
Recommender Systems", WWW 2020.

1. A surrogate MF is trained on the genuine training data (black-box: the attacker's own).
2. The attacker's loss (sec. 4.1) over a set of users U: for every target t a user has not
   rated and every item i of the user's current top-N list L_u (unseen, non-target items),
   ``g(s_ui - s_ut)`` with the Wilcoxon-Mann-Whitney surrogate ``g(x) = 1 / (1 + exp(-x / b))``
   of "i beats t". The lists L_u are fixed from the trained surrogate.
3. Influential users (sec. 4.2): the influence of removing user u's ratings on the
   attacker's loss over all eligible users is ``(1/n) s . grad_theta L_u(theta)`` with
   ``s = (H + damping I)^-1 grad_theta L_att`` (Koh & Liang; H the Hessian of the mean
   training loss, solved by conjugate gradient with Hessian-vector products). The
   ``influential_share`` of users with the largest |influence| form S.
4. Fake users (sec. 4.3): a fake user's rating vector w over all items (relaxed to
   [0, rating_max], targets fixed at the maximum) with its factors p(w) folded in by ridge
   regression on the surrogate's item factors. Adding it changes the item factors by
   ``-H^-1 (1/n) grad_theta L_fake(w)`` (the influence function, i.e. the implicit
   function derivative of the retrained MF), so the attacker's loss over S changes by
   ``f(w) = -(1/n) s_S . grad_theta L_fake(w)``, ``s_S = (H + damping I)^-1 grad L_att(S)``.
   w minimises f by projected Adam steps from a random start drawn from ``ctx.rng``.
5. Projection: fillers are the ``filler_size`` non-target items with the largest optimised
   w, rated w rounded to the nearest rating level present in the data; targets at the maximum.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from recguard.components import Attack, AttackContext, Poisoned
from recguard.config import param
from recguard.data.interactions import Interactions
from recguard.errors import RecguardError
from recguard.profiles import profiles_in_order, snap_to_levels
from recguard.surrogate import SurrogateOptions, fit_surrogate

PAPER = ("Fang, Gong & Liu, Influence Function based Data Poisoning Attacks to Top-N "
         "Recommender Systems, WWW 2020")


@dataclass
class TNAConfig(SurrogateOptions):
    influential_share: float = param(
        0.1, "the share of genuine users kept as influential users S (sec. 4.2)", low=0, high=1,
        open_low=True)
    top_n: int = param(10, "N: the top-N lists the targets should enter (the paper's HR@10)", low=1)
    wmw_width: float = param(0.1, "b: width of the WMW sigmoid g(x) = 1/(1+exp(-x/b)) (sec. 4.1)",
                             low=0, open_low=True)
    damping: float = param(1e-4, "damping added to the Hessian of the mean training loss "
                                 "(raised x10 on negative curvature, up to 3 times)", low=0)
    cg_iterations: int = param(50, "conjugate-gradient steps per inverse-Hessian-vector product", low=1)
    cg_tolerance: float = param(1e-3, "conjugate gradient stops at this relative residual", low=0)
    steps: int = param(50, "projected Adam steps on each fake user's ratings", low=1)
    step_size: float = param(0.05, "Adam step size, as a share of rating_max", low=0, open_low=True)
    l1: float = param(1.0, "eta: weight of the L1 penalty on the fake ratings (sec. 4.3), relative "
                           "to the mean gradient of the attacker's loss at the start", low=0)
    fold_in: float = param(1.0, "ridge penalty of the fake user's fold-in factors", low=0,
                           open_low=True)


# ---------------------------------------------------------------- pieces


def top_lists(scores: np.ndarray, seen: np.ndarray, targets: np.ndarray, n: int) -> np.ndarray:
    """Each row's ``n`` best items among those it has not seen and that are not targets."""
    masked = np.where(seen, -np.inf, scores.astype(np.float64))
    masked[:, targets] = -np.inf
    n = min(n, scores.shape[1] - len(targets))
    return np.argpartition(-masked, n - 1, axis=1)[:, :n]


def wmw_loss(user_f, item_f, users, lists, targets, eligible, width: float):
    """sum over users, eligible targets and list items of g(s_ui - s_ut) (a torch scalar).

    ``lists`` (len(users), N) item indices; ``eligible`` (len(users), n_targets) 0/1."""
    import torch

    pu = user_f[users]
    s_list = (pu.unsqueeze(1) * item_f[lists]).sum(-1)            # (U, N)
    s_target = pu @ item_f[targets].T                              # (U, T)
    diff = s_list.unsqueeze(2) - s_target.unsqueeze(1)             # (U, N, T)
    return (torch.sigmoid(diff / width) * eligible.unsqueeze(1)).sum()


@dataclass
class Influence:
    """The surrogate's pieces TNA differentiates: factors, data tensors, the Hessian solver."""

    model: object
    train: Interactions
    damping: float
    cg_iterations: int
    cg_tolerance: float
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        import torch

        from recguard_apt.influence import HessianOperator

        self.users = torch.as_tensor(self.train.user)
        self.items = torch.as_tensor(self.train.item)
        self.ratings = torch.as_tensor(self.train.rating)
        self.params = list(self.model.parameters())
        self.hessian = HessianOperator(self.model, self.users, self.items, self.ratings,
                                       weight_decay=0.0, damping=self.damping)

    def solve(self, vectors):
        """(H + damping I)^-1 vectors by conjugate gradient (damping x10 on negative curvature)."""
        from recguard_apt.influence import conjugate_gradient

        for _ in range(4):
            solution, info = conjugate_gradient(self.hessian, vectors, self.cg_iterations,
                                                self.cg_tolerance)
            if not info.negative_curvature:
                break
            self.hessian.damping = max(self.hessian.damping, 1e-8) * 10.0
        self.info = {"cg_iterations": info.iterations, "cg_residual": round(info.residual, 6),
                     "damping": self.hessian.damping}
        return solution

    def per_user(self, direction) -> np.ndarray:
        """``direction . grad_theta L_u`` for every user u, L_u the sum of u's per-row losses:
        one double backward through row weights (d/dw_r of direction . grad sum_r w_r l_r)."""
        import torch

        from recguard.cf import per_row_loss

        weights = torch.ones(len(self.users), requires_grad=True)
        per_row, _ = per_row_loss(self.model, self.users, self.items, None, self.ratings, implicit=False)
        grads = torch.autograd.grad((weights * per_row).sum(), self.params, create_graph=True)
        inner = sum((g * d).sum() for g, d in zip(grads, direction))
        (by_row,) = torch.autograd.grad(inner, weights)
        return np.bincount(self.train.user, weights=by_row.detach().numpy().astype(np.float64),
                           minlength=self.train.n_users)

    def attack_gradient(self, users, lists, targets, eligible, width):
        import torch

        user_f, item_f = self.params
        loss = wmw_loss(user_f, item_f, torch.as_tensor(users), torch.as_tensor(lists),
                        torch.as_tensor(targets), torch.as_tensor(eligible, dtype=torch.float32), width)
        return list(torch.autograd.grad(loss, self.params)), float(loss.detach())


def influence_scores(inf: Influence, users, lists, targets, eligible, width) -> np.ndarray:
    """Per user: the first-order change of the attacker's loss when the user's ratings are
    removed, ``(1/n) s . grad_theta L_u`` (Koh & Liang's I_up,loss with epsilon = -1/n)."""
    gradient, _ = inf.attack_gradient(users, lists, targets, eligible, width)
    s = inf.solve(gradient)
    return inf.per_user(s) / max(len(inf.train), 1)


def fake_objective(item_f, s_item, top: float, fold_in: float, n_rows: int):
    """f(w) = -(1/n) s_Q . grad_Q L_fake(w): the influence-predicted change of the attacker's
    loss when a fake user joins who rates item j at ``top`` with weight w_j in [0, 1] (w_j is
    the relaxed "item j is in the profile"); its factors p(w) are the weighted ridge fold-in
    ``argmin_p sum_j w_j (q_j . p - top)^2 + fold_in |p|^2`` on the surrogate's item factors."""
    import torch

    eye = fold_in * torch.eye(item_f.shape[1])

    def factors(w):
        gram = item_f.T @ (w.unsqueeze(1) * item_f) + eye
        return torch.linalg.solve(gram, item_f.T @ (w * top))

    def f(w):
        p = factors(w)
        residual = item_f @ p - top                                  # (m,)
        # grad_Q of sum_j w_j (q_j . p - top)^2 is 2 w_j residual_j p; dotted with s_Q row by row
        return -(2.0 / n_rows) * (w * residual * (s_item @ p)).sum()

    f.factors = factors
    return f


# ---------------------------------------------------------------- the attack


class TNAAttack(Attack):
    name: ClassVar[str] = "tna"
    summary: ClassVar[str] = ("EXPERIMENTAL, not yet effective - TNA (Fang et al., WWW 2020): influence functions pick the genuine users "
                              "that matter most to the targets; fake ratings optimised to push the "
                              "targets into their top-N lists")
    paper: ClassVar[str] = PAPER
    feedback: ClassVar[frozenset[str]] = frozenset({"explicit"})
    backbone_kinds: ClassVar[frozenset[str]] = frozenset({"cf", "sequential"})
    knowledge: ClassVar[str] = "black-box"
    Config = TNAConfig

    def poison(self, train: Interactions, ctx: AttackContext) -> Poisoned:
        import torch

        from recguard.training import torch_threads

        cfg: TNAConfig = self.config
        if train.feedback != "explicit":
            raise RecguardError("attack 'tna' needs explicit ratings (its influence and relaxation "
                                "are derived for MF's squared loss)")
        if cfg.surrogate != "mf":
            raise RecguardError("attack 'tna' derives its influence for matrix factorisation: "
                                "surrogate must be 'mf'")
        targets = np.unique(np.asarray(ctx.targets, dtype=np.int64))
        n_fake = int(ctx.n_fake)
        n_filler = min(int(ctx.filler_size), train.n_items - len(targets))
        top = float(train.rating_max)
        levels = np.unique(train.rating) if len(train) else np.array([top], np.float32)
        rng = ctx.rng
        seed = int(rng.integers(2 ** 31 - 1))

        with torch_threads(1):
            torch.manual_seed(seed)
            model = fit_surrogate(train, seed, cfg)
            users, lists, eligible = self.attacker_view(model, train, targets, cfg.top_n)
            inf = Influence(model, train, cfg.damping, cfg.cg_iterations, cfg.cg_tolerance)
            # sec. 4.2: influence of each user on the attacker's loss over every eligible user
            scores = influence_scores(inf, users, lists, targets, eligible, cfg.wmw_width)
            self.influence = scores
            n_s = max(1, int(round(cfg.influential_share * len(users))))
            chosen = np.argsort(-np.abs(scores[users]), kind="stable")[:n_s]
            self.influential = users[chosen]
            # sec. 4.3: s_S for the loss over S only
            gradient, _ = inf.attack_gradient(users[chosen], lists[chosen], targets, eligible[chosen],
                                              cfg.wmw_width)
            s_item = inf.solve(gradient)[1].detach()
            item_f = model.parameters()[1].detach()
            objective = fake_objective(item_f, s_item, top, cfg.fold_in, len(train))
            profiles = [self.optimise(objective, item_f, train.n_items, targets, n_filler, top, levels, cfg, rng)
                        for _ in range(n_fake)]

        length = [len(i) for i, _ in profiles]
        order = [rng.permutation(n) for n in length]
        items = [i[o] for (i, _), o in zip(profiles, order)]
        ratings = [r[o] for (_, r), o in zip(profiles, order)]
        return profiles_in_order(train, items, ratings)

    @staticmethod
    def attacker_view(model, train: Interactions, targets: np.ndarray, top_n: int):
        """(users with data, their top-N lists, 0/1 eligibility per target: not yet rated)."""
        from recguard.surrogate import surrogate_scores

        seen = np.zeros((train.n_users, train.n_items), dtype=bool)
        seen[train.user, train.item] = True
        users = np.flatnonzero(seen.any(axis=1))
        scores = surrogate_scores(model, train.n_users)[users]
        lists = top_lists(scores, seen[users], targets, top_n)
        return users, lists, (~seen[users][:, targets]).astype(np.float32)

    @staticmethod
    def optimise(objective, item_f, n_items, targets, n_filler, top, levels, cfg: TNAConfig, rng):
        """One fake user: projected Adam on w in [0, top]^m (targets pinned at top) from a
        random start, then the top-``n_filler`` non-target items of w."""
        import torch

        start = rng.random(n_items) * 0.1
        w = torch.tensor(start, dtype=torch.float32, requires_grad=True)
        pinned = torch.zeros(n_items, dtype=torch.bool)
        pinned[torch.as_tensor(targets)] = True
        free = (~pinned).float()
        # f is tiny in absolute terms (1/n); scale it by its mean gradient at the start so
        # that the L1 weight eta is relative to an average item's benefit
        probe = torch.tensor(start, dtype=torch.float32, requires_grad=True)
        (grad,) = torch.autograd.grad(objective(probe), probe)
        scale = float((grad.abs() * free).sum() / free.sum().clamp(min=1)) or 1.0
        optimizer = torch.optim.Adam([w], lr=cfg.step_size)
        for _ in range(cfg.steps):
            with torch.no_grad():
                w[pinned] = 1.0
            optimizer.zero_grad()
            loss = objective(w) / scale + cfg.l1 * (w * free).sum()
            loss.backward()
            pressure = w.grad.detach().clone()
            w.grad[pinned] = 0.0
            optimizer.step()
            with torch.no_grad():
                w.clamp_(0.0, 1.0)
        values = w.detach().numpy().astype(np.float64)
        # ties (items clamped at the maximum) go to the item that pushes hardest upwards
        key = values - 1e-6 * pressure.numpy() + rng.random(n_items) * 1e-12
        key[targets] = -np.inf
        order = np.argsort(-key, kind="stable")[:n_filler]
        items = np.concatenate([targets, order]).astype(np.int64)
        with torch.no_grad():   # fillers rated as the folded-in fake user is predicted to rate them
            predicted = (item_f[torch.as_tensor(order)] @ objective.factors(w.detach())).numpy()
        ratings = np.concatenate([np.full(len(targets), top), snap_to_levels(predicted, levels)])
        return items, ratings.astype(np.float32)
