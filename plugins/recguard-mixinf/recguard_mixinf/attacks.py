"""MixRand and MixInf: Wu, Lian, Ge, Zhu & Chen, "Influence-Driven Data Poisoning for Robust
Recommender Systems", IEEE TPAMI 2023, as RVD (Xu, Wu & Lian, 2023, sec. Experimental Setup and
App. B) uses them; the schedule follows the authors' code (Daftstone/Inf_recommender,
``mixattack.py``).

MixRand: each fake user is a Usermix profile (`recguard_mixinf.usermix`) with the targets at the
maximum rating.

MixInf: the same generator, with an influence-based threat estimator choosing among candidates,
without retraining any model per candidate:

1. a probe fake user z: one Usermix profile with the targets at the maximum;
2. the attacker's surrogate (black-box: its own recommender, default MF) trained once on the
   genuine data plus z (``context=probe``, the authors' code) or plus z and n_fake - 1 other
   Usermix fake users (``context=attack``, the default: the threat is linearised where the
   attack acts);
3. the attacker's objective f(θ), a mean over the (genuine user u, target t) pairs with t
   unrated: ``margin`` s_ut - s_uk, k the user's ``top_k``-th best unrated non-target item at
   the trained θ̂, or ``score`` s_ut; s = (H + λI)⁻¹ ∇θ f at θ̂, H the Hessian of the
   surrogate's mean training loss, λ a damping term (`recguard.kit.poison.influence`);
4. the threat of a candidate profile x in z's place (``estimator``):

       rows:          T(x) = Σ_{j ∈ x} I_up(j, x_j),   I_up(j, r) = -(1/n) sᵀ ∇θ ℓ(z, j, r)
       perturbation:  T(x) = Σ_j x_j I_j,              I_j = -(1/n) ∂/∂z_j sᵀ ∇θ L(z, θ̂)

   ``rows`` is Koh & Liang's up-weighting influence of adding x's ratings as training rows of
   z (a table over items x rating levels, one double backward); ``perturbation`` is the
   authors' linear estimate (their code scores candidates by x . I, I the perturbation
   influence of the probe's ratings), which is the slope of ``rows`` in the rating and drops
   its intercept (see the README for why that matters);
5. for each fake user, ``candidates`` Usermix profiles (targets cleared); the one with the
   largest T(x) is kept, and its targets set to the maximum rating. ``rounds`` > 1 retrains
   the surrogate with the probe among the chosen users and chooses again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from recguard import Attack, AttackContext, Config, Interactions, Poisoned, RecguardError, param
from recguard.kit.poison.profiles import check_request, profiles_in_order
from recguard.kit.poison.surrogate import SurrogateOptions, dense_ratings
from recguard_mixinf.usermix import parent_pool, usermix

PAPER = ("Wu, Lian, Ge, Zhu & Chen, Influence-Driven Data Poisoning for Robust Recommender "
         "Systems, IEEE TPAMI 2023; as used by Xu, Wu & Lian, Toward Robust Recommendation via "
         "Real-time Vicinal Defense (RVD), 2023, App. B")


@dataclass
class MixRandConfig(Config):
    alpha: float = param(1.0, "Usermix's interpolation weight is Beta(alpha, alpha); 1 is uniform "
                              "on [0, 1] (our choice: RVD's App. B says only 'linearly "
                              "interpolating two rating vectors')", low=0, open_low=True)


@dataclass
class MixInfConfig(SurrogateOptions):
    alpha: float = param(1.0, "Usermix's interpolation weight is Beta(alpha, alpha); 1 is uniform "
                              "on [0, 1] (our choice, as for mixrand)", low=0, open_low=True)
    candidates: int = param(100, "Usermix candidates per fake user, the most threatening kept "
                                 "(authors' code, mixattack.py: 100); 1 is MixRand with a "
                                 "surrogate trained for nothing (the ablation)", low=1)
    estimator: Literal["rows", "perturbation"] = param(
        "rows", "threat of a candidate x: rows = the up-weighting influence of adding x's ratings "
                "as training rows, sum_j I_up(j, x_j) (Koh & Liang; ours, see the README); "
                "perturbation = the linear x . I of the authors' code (mixattack.py), I the "
                "derivative of the influence w.r.t. the probe's ratings")
    context: Literal["probe", "attack"] = param(
        "attack", "what the surrogate is trained on besides the genuine data: probe = the probe "
                  "user alone (the authors' code); attack = the probe and n_fake - 1 other "
                  "Usermix fake users, so that the threat is linearised where the attack acts "
                  "(ours; see the README)")
    rounds: int = param(1, "threat estimates: after the first, the surrogate is retrained with "
                           "the probe among the fake users chosen so far and the choice is "
                           "redone (context=attack; the authors' loop runs once, iters = 1)",
                        low=1)
    objective: Literal["margin", "score"] = param(
        "margin", "f, what the attacker raises on the surrogate, over the (genuine user, target) "
                  "pairs with the target unrated: margin = the target's score minus the score of "
                  "the user's top_k-th item (fixed at the trained surrogate); score = the "
                  "target's score alone (ours: the papers available give no formula)")
    top_k: int = param(50, "margin: the list the targets should enter (the protocol's T-HR@50)",
                       low=1)
    damping: float = param(1e-3, "lambda in (H + lambda I)^-1, H the surrogate's mean-loss Hessian "
                                 "(ours; raised x10 on negative curvature, up to 3 times; the "
                                 "authors' LiSSA uses a scale instead)", low=0)
    cg_iterations: int = param(50, "conjugate-gradient steps of the inverse-Hessian-vector product "
                                   "(ours; the authors run LiSSA)", low=1)
    cg_tolerance: float = param(1e-4, "conjugate gradient stops at this relative residual (ours)",
                                low=0)
    hessian_rows: int = param(0, "training ratings drawn for H (0: all of them)", low=0)
    threads: int = param(1, "torch threads while estimating the influence; 0 keeps torch's "
                            "setting", low=0)


class UsermixAttack(Attack):
    """Fake users from Usermix, targets at the maximum; subclasses choose among candidates."""

    feedback: ClassVar[frozenset[str]] = frozenset({"explicit"})
    backbone_kinds: ClassVar[frozenset[str]] = frozenset({"cf"})
    knowledge: ClassVar[str] = "black-box"
    default_protocol: ClassVar[str] = "apt"

    def poison(self, train: Interactions, ctx: AttackContext) -> Poisoned:
        targets = check_request(self.name, self.feedback, train, ctx)
        if ctx.n_fake == 0:
            return Poisoned.empty()
        dense, _ = dense_ratings(train)
        pool = parent_pool(train.user, train.n_users)
        if len(pool) == 0:
            raise RecguardError(f"attack {self.name!r} mixes genuine users' ratings, but no user "
                                f"has any")
        levels = np.unique(train.rating)

        def draw(k: int):
            return usermix(dense, pool, k, self.config.alpha, levels, targets, int(ctx.filler_size),
                           ctx.rng).rows

        rows = self.fake_rows(train, targets, int(ctx.n_fake), draw, ctx.rng)
        return to_poisoned(train, rows, targets, ctx.rng)

    def fake_rows(self, train, targets, n_fake, draw, rng) -> np.ndarray:
        """(n_fake, n_items) filler rows (targets cleared); ``draw(k)`` gives k Usermix rows."""
        return draw(n_fake)


def to_poisoned(train: Interactions, rows: np.ndarray, targets: np.ndarray,
                rng: np.random.Generator) -> Poisoned:
    """Each row's rated items plus the targets at the maximum rating, in a random order."""
    items, ratings = [], []
    for row in rows:
        fillers = np.flatnonzero(row > 0)
        profile = np.concatenate([targets, fillers])
        values = np.concatenate([np.full(len(targets), train.rating_max, np.float32),
                                 row[fillers].astype(np.float32)])
        order = rng.permutation(len(profile))
        items.append(profile[order])
        ratings.append(values[order])
    return profiles_in_order(train, items, ratings)


class MixRandAttack(UsermixAttack):
    name: ClassVar[str] = "mixrand"
    summary: ClassVar[str] = ("MixRand (Wu et al., TPAMI 2023): Usermix fake users (two real "
                              "users' ratings linearly interpolated), targets at the maximum")
    paper: ClassVar[str] = PAPER
    Config = MixRandConfig


class MixInfAttack(UsermixAttack):
    name: ClassVar[str] = "mixinf"
    summary: ClassVar[str] = ("MixInf (Wu et al., TPAMI 2023): Usermix candidates, the most "
                              "harmful kept by an influence-function threat estimator on a "
                              "surrogate; targets at the maximum")
    paper: ClassVar[str] = PAPER
    Config = MixInfConfig

    def fake_rows(self, train, targets, n_fake, draw, rng) -> np.ndarray:
        cfg: MixInfConfig = self.config
        probe = draw(1)[0]
        others = (draw(n_fake - 1) if cfg.context == "attack" and n_fake > 1
                  else np.zeros((0, train.n_items), np.float32))
        levels = np.unique(train.rating)
        self.influence_info = []
        for round_ in range(cfg.rounds):
            if round_ > 0 and cfg.context == "attack":   # re-linearise among the chosen users
                others = rows[:n_fake - 1]
            self.table, info = threat_table(train, np.vstack([others, probe[None]]), targets, levels,
                                            cfg, int(rng.integers(2 ** 31 - 1)))
            self.influence_info.append(info)
            picked, chosen = [], []
            for _ in range(n_fake):
                candidates = draw(cfg.candidates)
                estimate = threat_of(candidates, self.table, levels)
                best = int(np.argmax(estimate))
                picked.append(candidates[best])
                chosen.append(float(estimate[best]))
            rows = np.stack(picked)
        self.chosen_threat = np.array(chosen)
        return rows


def threat_of(rows: np.ndarray, table: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """T(x) for each row x (its entries 0 or one of ``levels``): the sum over its rated items j
    of ``table[j, level of x_j]``."""
    index = np.clip(np.searchsorted(levels, rows), 0, len(levels) - 1)
    values = np.take_along_axis(table, index.T, axis=1).T          # (k, n_items)
    return np.where(rows > 0, values, 0.0).sum(axis=1)


# ---------------------------------------------------------------- the threat estimator


def with_fakes(train: Interactions, rows: np.ndarray, targets: np.ndarray) -> Interactions:
    """``train`` plus one fake user per row of ``rows`` (n, n_items), numbered after the genuine
    users in order (so the last row is the last user): the row's rated items and the targets at
    the maximum rating."""
    rows = np.atleast_2d(rows)
    users, items, ratings = [], [], []
    for k, row in enumerate(rows):
        fillers = np.flatnonzero(row > 0)
        items.append(np.concatenate([targets, fillers]).astype(np.int64))
        ratings.append(np.concatenate([np.full(len(targets), train.rating_max), row[fillers]]))
        users.append(np.full(len(targets) + len(fillers), k, np.int64))
    items, users = np.concatenate(items), np.concatenate(users)
    t0 = int(train.timestamp.max()) + 1 if len(train) else 0
    return train.with_new_users(len(rows), users, items, np.concatenate(ratings).astype(np.float32),
                                t0 + np.arange(len(items)), prefix="probe", fake=True)


def objective(model, train: Interactions, genuine: int, targets: np.ndarray, kind: str = "score",
              top_k: int = 50):
    """f(θ) on the surrogate (a torch scalar), a mean over the (user, target) pairs of the first
    ``genuine`` users with the target unrated: of s_ut (``score``), or of s_ut - s_uk with k the
    user's ``top_k``-th best unrated non-target item at the current θ (``margin``)."""
    import torch

    from recguard.kit.cf.loop import dot_scores
    from recguard.kit.poison.surrogate import surrogate_scores, top_fillers

    seen = np.zeros((genuine, train.n_items), dtype=bool)
    mine = train.user < genuine
    seen[train.user[mine], train.item[mine]] = True
    users, slot = np.nonzero(~seen[:, targets])
    if len(users) == 0:
        raise RecguardError("attack 'mixinf': every genuine user has rated every target")
    pair = getattr(model, "pair_scores", None) or dot_scores
    pu, qt, _, _ = model.batch_embeddings(torch.as_tensor(users), torch.as_tensor(targets[slot]), None)
    value = pair(pu, qt)
    if kind == "margin":
        scores = surrogate_scores(model, genuine).astype(np.float64)
        scores[seen] = -np.inf
        k = max(1, min(top_k, train.n_items - len(targets)))
        kth = top_fillers(scores, targets, k)[:, -1]          # each user's k-th best item
        pu, qk, _, _ = model.batch_embeddings(torch.as_tensor(users), torch.as_tensor(kth[users]), None)
        value = value - pair(pu, qk)
    return value.mean()


def threat_table(train: Interactions, fakes: np.ndarray, targets: np.ndarray, levels: np.ndarray,
                 cfg: MixInfConfig, seed: int) -> tuple[np.ndarray, dict]:
    """Steps 2-4 of the module docstring: the surrogate trained on ``train`` plus ``fakes``
    (the probe is the last row, the others are context), then `threat_from_model`."""
    from recguard import registered
    from recguard.kit.cf.loop import torch_threads
    from recguard.kit.poison.surrogate import fit_surrogate

    backbone = registered("backbone", cfg.surrogate)
    if "twice_differentiable" not in backbone.offers:
        raise RecguardError(f"attack 'mixinf': surrogate {cfg.surrogate!r} does not offer a twice "
                            f"differentiable loss; influence functions need one (e.g. mf)")
    data = with_fakes(train, fakes, targets)
    with torch_threads(cfg.threads):
        model = fit_surrogate(backbone, data, seed, cfg)
        return threat_from_model(model, data, train.n_users, targets, levels, cfg,
                                 training_weight_decay(backbone, data.feedback), seed)


def threat_from_model(model, data: Interactions, genuine: int, targets: np.ndarray,
                      levels: np.ndarray, cfg: MixInfConfig, weight_decay: float,
                      seed: int = 0) -> tuple[np.ndarray, dict]:
    """The (n_items, n_levels) table of the threat of item j rated at level l by the last user
    of ``data`` (the probe), float64 with the targets' rows 0, and what the solve did; ``model``
    is trained on ``data`` with loss mean(per-row loss) + ``weight_decay`` x its regulariser,
    the first ``genuine`` users are the ones f is measured on."""
    import torch

    from recguard.kit.poison.influence import (inverse_hvp, parameter_gradient, rating_influence,
                                               row_influence)

    probe_user = data.n_users - 1
    m = data.n_items
    gradient = parameter_gradient(model, objective(model, data, genuine, targets, cfg.objective,
                                                   cfg.top_k))
    rows = None
    if cfg.hessian_rows and cfg.hessian_rows < len(data):
        rows = np.random.default_rng(seed).choice(len(data), cfg.hessian_rows, replace=False)
    direction, info = inverse_hvp(model, data, gradient, weight_decay=weight_decay,
                                  damping=cfg.damping, max_iter=cfg.cg_iterations,
                                  tol=cfg.cg_tolerance, rows=rows)
    if cfg.estimator == "rows":
        items = np.tile(np.arange(m), len(levels))
        values = np.repeat(np.asarray(levels, np.float32), m)
        table = row_influence(model, torch.full((len(items),), probe_user, dtype=torch.long),
                              torch.as_tensor(items), torch.as_tensor(values), direction,
                              len(data)).reshape(len(levels), m).T
    else:
        slope = rating_influence(model, data, probe_user, direction)
        table = slope[:, None] * np.asarray(levels, np.float64)[None, :]
    table = np.ascontiguousarray(table)
    table[targets] = 0.0
    info.update(weight_decay=weight_decay, estimator=cfg.estimator)
    return table, info


def training_weight_decay(backbone, feedback: str) -> float:
    """The weight of the L2 term in the surrogate's training loss (its resolved default), so
    that H is the Hessian of the loss the surrogate minimised."""
    from recguard import APT, PAMACF

    resolved = backbone().resolved_config(APT if feedback == "explicit" else PAMACF)
    return float(resolved.get("weight_decay") or 0.0)
