"""APT and APT-rand (Wu et al., SIGIR 2021): fight poisoning with the defender's own users.

Algorithm 1: train T_pre epochs on the data D; then every T_inter epochs replace
the ERM users D* (n* = 5% of the users, each rating m* items) and train on
D ∪ D*. APT picks each ERM user's items by the influence of Eq. 5 (softmax with
temperature t over the items of negative influence); APT-rand, the paper's
ablation (sec. 5.1.3, 5.4), picks them uniformly at random. Both rate an item i
from N(μ_i + r⁺, σ_i). See the package README for the equations, the settings
and where this departs from the paper or the authors' code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

from recguard import Config, Defense, DefenseContext, FitHooks, Interactions, RecguardError, param

from recguard_apt.erm import (choose_items, erm_ratings, item_statistics, random_items,
                              with_erm_users)
from recguard_apt.influence_vector import InfluenceSettings, influence_vector

PAPER = ("Wu et al., Fight Fire with Fire: Towards Robust Recommender Systems via Adversarial "
         "Poisoning Training, SIGIR 2021")


@dataclass
class APTConfig(Config):
    erm_fraction: float = param(0.05, "ERM users n* as a fraction of the training users (sec. 5.1.5: "
                                      "5%; Fig. 3 varies 1-20%)", low=0, high=1, open_low=True)
    items_per_user: int = param(400, "m*, items each ERM user rates (sec. 5.1.5, ML-100K: 400)", low=1)
    temperature: float = param(20.0, "t in exp(-t·I_i) of the item choice (sec. 3; sec. 5.1.5, "
                                     "ML-100K: 20)", low=0)
    pretrain_epochs: int = param(15, "T_pre, epochs on the data alone first (Alg. 1; sec. 5.1.5, "
                                     "ML-100K: 15)", low=0)
    interval: int = param(2, "T_inter, new ERM users every this many epochs (Alg. 1; sec. 5.1.5, "
                             "ML-100K: 2)", low=1)
    r_plus: float = param(1.0, "r+, added to each item's mean rating, in stars (sec. 3; sec. 5.1.5, "
                               "ML-100K: 1)", low=0)
    scale_max: float = param(5.0, "top of the star scale r_plus and rating_step are given on "
                                  "(ML-100K: 1-5 stars, sec. 5.1.1)", low=0, open_low=True)
    rating_step: float = param(1.0, "ERM ratings rounded to multiples of this many stars (the "
                                    "authors' code rounds to the rating grid); 0: not rounded", low=0)
    item_choice: Literal["influence", "random"] = param(
        "influence", "influence: Eq. 5 and Alg. 1 line 9 (APT); random: uniform (APT-rand, sec. 5.1.3)")
    negative_only: bool = param(True, "draw items only from Φ = {i | I_i < 0} (sec. 3)")
    item_stats: Literal["observed", "genuine"] = param(
        "observed", "where μ_i, σ_i of the ERM ratings come from: observed, the data the defense "
                    "is given (fake users included); genuine, the genuine users only, as the "
                    "authors' code computes them before the attack: an oracle, for ablation")
    normalise: bool = param(True, "min-max scale I over Φ to [-1, 0] before the softmax, as the "
                                  "authors' code does (its ts·1e-4 is the paper's t)")
    risk: Literal["sigmoid", "training"] = param(
        "sigmoid", "L_ER of Eq. 5: sum of sigmoid((r - r̂)²) (sec. 3) or the training loss")
    base_users: int = param(1, "z of Eq. 4-5: this many lowest-norm users, influences summed "
                               "(sec. 3: the argmin, 1; the authors' code: 10)", low=1)
    damping: float = param(1e-3, "λ in (H + λI)⁻¹, H the mean training loss's Hessian (ours: "
                                 "H is indefinite, λ_min ≈ -1.3e-4 on ML-100K; see README)", low=0)
    cg_iterations: int = param(20, "at most this many conjugate-gradient steps, one implicit "
                                   "Hessian-vector product each (ours)", low=1)
    cg_tolerance: float = param(1e-3, "CG stops at this relative residual (ours)", low=0)
    hessian_rows: int = param(16384, "training ratings drawn per generation for H (the authors' "
                                     "LiSSA batch size); 0: all ratings", low=0)


class APTHooks(FitHooks):
    """Injects the ERM users: empty slots from epoch 0 (Alg. 1 line 1), new profiles at
    epochs T_pre, T_pre + T_inter, ... (lines 5-11)."""

    def __init__(self, config: APTConfig, train: Interactions, ctx: DefenseContext,
                 weight_decay: float = 0.0):
        self.config = config
        self.data = train
        self.seed = ctx.seed
        self.n_erm = max(1, int(round(config.erm_fraction * train.n_users)))
        self.stats = item_statistics(train if config.item_stats == "observed"
                                     else train.take(~train.is_fake[train.user]))
        scale = train.rating_max / config.scale_max  # stars -> the data's units
        self.shift = config.r_plus * scale
        self.step = config.rating_step * scale
        self.settings = InfluenceSettings(
            risk=config.risk, base_users=config.base_users, damping=config.damping,
            cg_iterations=config.cg_iterations, cg_tolerance=config.cg_tolerance,
            hessian_rows=config.hessian_rows, weight_decay=weight_decay)
        self.notes = ctx.notes
        self.notes.update({"erm_users": [train.n_users, train.n_users + self.n_erm],
                           "rating_shift": round(self.shift, 6), "generations": []})
        self.generations = 0
        self.last: tuple[np.ndarray, np.ndarray] | None = None  # (items, ratings) of the latest ERM users

    def generation_epoch(self, epoch: int) -> bool:
        c = self.config
        return epoch >= c.pretrain_epochs and (epoch - c.pretrain_epochs) % c.interval == 0

    def on_epoch_start(self, epoch, model, train):
        if self.generation_epoch(epoch):
            return self.generate(epoch, model)
        if epoch == 0:
            return with_erm_users(self.data, self.n_erm)
        return None

    def generate(self, epoch: int, model) -> Interactions:
        import torch

        c = self.config
        start = time.perf_counter()
        rng = np.random.default_rng([self.seed, 0xA97, self.generations])
        note: dict = {"epoch": epoch}
        if c.item_choice == "influence":
            generator = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
            result = influence_vector(model, self.data, self.settings, generator)
            items = choose_items(result.influence, self.n_erm, c.items_per_user, c.temperature, rng,
                                 c.negative_only, c.normalise)
            note.update(result.info)
            note["negative_items"] = int((result.influence < 0).sum())
        else:
            items = random_items(self.data.n_items, self.n_erm, c.items_per_user, rng)
        ratings = erm_ratings(items, self.stats, self.shift, rng, self.step)
        note.update({"items_per_user": int(items.shape[1]), "mean_rating": round(float(ratings.mean()), 4),
                     "seconds": round(time.perf_counter() - start, 3)})
        self.notes["generations"].append(note)
        self.generations += 1
        self.last = (items, ratings)
        return with_erm_users(self.data, self.n_erm, items, ratings)


class APTDefense(Defense):
    name = "apt"
    summary = "APT: ERM users chosen by influence (Eq. 5) injected during training; explicit ratings"
    paper = f"{PAPER}, Alg. 1, Eq. 3-5"
    stages = frozenset({"during_fit"})
    backbone_kinds = frozenset({"cf"})
    needs = frozenset({"twice_differentiable", "epoch_callbacks"})
    feedback = frozenset({"explicit"})  # Eq. 5 differentiates the loss by the ratings
    default_protocol = "apt"
    Config = APTConfig

    def during_fit(self, train: Interactions, ctx: DefenseContext) -> FitHooks:
        if train.feedback != "explicit":
            raise RecguardError(
                f"defense {self.name!r} needs explicit ratings: ERM users are rating vectors and "
                f"their influence (Eq. 5) is a derivative of the squared rating loss by the ratings, "
                f"which BPR on implicit data does not have; use an explicit protocol (apt)")
        backbone = ctx.backbone.resolved_config(ctx.protocol) if ctx.backbone is not None else {}
        hooks = APTHooks(self.config, train, ctx, float(backbone.get("weight_decay") or 0.0))
        epochs = backbone.get("epochs")
        if isinstance(epochs, int) and epochs <= self.config.pretrain_epochs:
            ctx.notes["warning"] = (f"the backbone trains {epochs} epochs, not more than "
                                    f"pretrain_epochs={self.config.pretrain_epochs}: no ERM users")
        return hooks


@dataclass
class APTRandConfig(APTConfig):
    item_choice: Literal["influence", "random"] = param(
        "random", "random: uniform (APT-rand, sec. 5.1.3); influence: Eq. 5 (APT)")


class APTRandDefense(APTDefense):
    name = "apt-rand"
    summary = "APT-rand: APT's ablation with the ERM users' items drawn at random; explicit ratings"
    paper = f"{PAPER}, sec. 5.1.3 and 5.4"
    Config = APTRandConfig
