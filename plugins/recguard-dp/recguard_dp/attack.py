"""DP: Huang, Mu, Gong, Li, Liu & Xu, "Data Poisoning Attacks to Deep Learning Based
Recommender Systems", NDSS 2021 (sec. IV, Algorithm 1).

Fake users are built one after another (a block of ``retrain_every`` at a time):

1. the new fake users join the attacker-visible data (genuine training data plus every
   fake user finished so far) rating only the targets, at the maximum;
2. a *poison model* (the surrogate backbone, MF by default) is trained on that data with
   its own training loss plus ``lambda_attack`` times the promotion loss over genuine
   users (sec. IV-B/C): ``l_u = sum_t max(s_u[N] - s_ut, -kappa)`` where ``s_u[N]`` is the
   N-th highest score among the items u has not interacted with and that are not
   targets (the entry bar of u's top-N list), for every target t u has not interacted with;
3. each fake user v of the block takes as fillers the ``filler_size`` non-target items with
   the largest ``score_vj * p_j`` (its predicted scores, shifted to be positive, times the
   selection probabilities); the chosen fillers' probabilities decay, ``p_j <- delta * p_j``
   (sec. IV-D), so later fake users prefer other items;
4. the block's finished profiles (targets + fillers) join the attacker-visible data.

On explicit data the targets are rated ``rating_max`` and each filler the poison model's
predicted rating for that fake user, clipped and rounded to the rating levels present in
the data. On implicit data a profile is just items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from recguard import (Attack, AttackContext, FitHooks, Interactions, Poisoned, RecguardError,
                      param, registered)
from recguard.kit.poison.profiles import (check_request, first_fake_timestamp, profiles_in_order,
                                          snap_to_levels)
from recguard.kit.poison.surrogate import SurrogateOptions, fit_surrogate, top_fillers

PAPER = ("Huang, Mu, Gong, Li, Liu & Xu, Data Poisoning Attacks to Deep Learning Based "
         "Recommender Systems, NDSS 2021")


@dataclass
class DPConfig(SurrogateOptions):
    retrain_every: int = param(
        1, "retrain the poison model once per this many fake users (1: once per fake user, "
           "as Algorithm 1); the users of one block share a model and differ through the decay", low=1)
    decay: float = param(0.9, "delta: a filler's selection probability is multiplied by this "
                              "each time a fake user picks it (sec. IV-D)", low=0, high=1)
    lambda_attack: float = param(
        0.01, "lambda: weight of the promotion loss in the poison model's training loss (sec. IV-C)",
        low=0)
    kappa: float = param(0.0, "kappa: the promotion loss of a (user, target) stops at this margin "
                              "inside the top-N list (sec. IV-B)", low=0)
    top_n: int = param(10, "N: the length of the top-N list the promotion loss targets "
                           "(the paper's HR@10)", low=1)


# ---------------------------------------------------------------- the poison model


class PromoteTargets(FitHooks):
    """The promotion loss of sec. IV-B, added to every training batch of the poison model.

    For the batch's distinct genuine users u: ``sum_t max(s_u[N] - s_ut, -kappa)`` over
    the targets u has not interacted with, where ``s_u[N]`` is the score of u's N-th best
    unseen non-target item. Which item that is (the "bar") is found once per epoch from
    the model's current scores, without gradient; the loss then differentiates through the
    bar item's and the targets' scores. Scores are dot products of the model's user and
    item embeddings, so the surrogate must be a dot-product model (``mf``, the default).
    The sum is divided by the batch's row count, the denominator of the per-row training
    loss it is added to, so ``weight`` plays the paper's lambda."""

    def __init__(self, train: Interactions, targets: np.ndarray, n_genuine: int, top_n: int,
                 kappa: float, weight: float, chunk: int = 2048):
        import torch

        self.targets = torch.as_tensor(targets, dtype=torch.long)
        self.n_genuine = n_genuine
        self.top_n = top_n
        self.kappa = kappa
        self.weight = weight
        self.chunk = chunk
        self.seen = np.zeros((n_genuine, train.n_items), dtype=bool)
        genuine = train.user < n_genuine
        self.seen[train.user[genuine], train.item[genuine]] = True
        self.wanted = torch.as_tensor(~self.seen[:, targets]).float()   # (users, targets)
        self.bar = None

    def on_epoch_start(self, epoch, model, train):
        import torch

        bars = []
        with torch.no_grad():
            items = model.items(torch.arange(self.seen.shape[1]))
            for start in range(0, self.n_genuine, self.chunk):
                users = torch.arange(start, min(start + self.chunk, self.n_genuine))
                scores = model.users(users) @ items.T
                scores.masked_fill_(torch.as_tensor(self.seen[start:start + len(users)]), float("-inf"))
                scores[:, self.targets] = float("-inf")
                k = min(self.top_n, scores.shape[1] - len(self.targets))
                bars.append(scores.topk(k, dim=1).indices[:, -1])
        self.bar = torch.cat(bars) if bars else torch.zeros(0, dtype=torch.long)
        return None

    def loss(self, model, users):
        users = users[users < self.n_genuine]
        if len(users) == 0 or self.weight == 0 or self.bar is None:
            return None
        pu = model.users(users)
        bar = (pu * model.items(self.bar[users])).sum(1, keepdim=True)
        gap = bar - pu @ model.items(self.targets).T
        return (gap.clamp(min=-self.kappa) * self.wanted[users]).sum()

    def extra_loss(self, epoch, model, batch):
        import torch

        value = self.loss(model, torch.unique(batch["users"]))
        return None if value is None else self.weight * value / len(batch["users"])


def fit_poison_model(train: Interactions, seed: int, options: SurrogateOptions, hooks: FitHooks):
    """The surrogate ("poison model") trained on ``train`` with the promotion-loss ``hooks``."""
    model = fit_surrogate(registered("backbone", options.surrogate), train, seed, options, hooks)
    if not (hasattr(model, "users") and hasattr(model, "items")) or hasattr(model, "pair_scores"):
        raise RecguardError(f"dp's promotion loss needs a dot-product surrogate (e.g. mf); "
                            f"{options.surrogate!r} is not one")
    return model


# ---------------------------------------------------------------- profiles


def pick_fillers(scores: np.ndarray, probability: np.ndarray, targets: np.ndarray, n_filler: int,
                 rng: np.random.Generator) -> np.ndarray:
    """The ``n_filler`` non-target items with the largest (positive-shifted score x selection
    probability), best first; ties broken at random."""
    shifted = scores.astype(np.float64) - float(np.min(scores)) + 1e-6
    return top_fillers((shifted * probability)[None, :], targets, n_filler, rng)[0].astype(np.int64)


class DPAttack(Attack):
    name: ClassVar[str] = "dp"
    summary: ClassVar[str] = ("DP (Huang et al., NDSS 2021): fake users built one by one from a poison "
                              "model trained to promote the targets; fillers are its top-scored items, "
                              "with decaying selection probabilities")
    paper: ClassVar[str] = PAPER
    backbone_kinds: ClassVar[frozenset[str]] = frozenset({"cf", "sequential"})
    knowledge: ClassVar[str] = "black-box"
    Config = DPConfig

    def poison(self, train: Interactions, ctx: AttackContext) -> Poisoned:
        import torch

        from recguard.kit.cf.loop import torch_threads

        cfg: DPConfig = self.config
        targets = check_request(self.name, self.feedback, train, ctx)
        n_fake = int(ctx.n_fake)
        n_filler = min(int(ctx.filler_size), train.n_items - len(targets))
        explicit = train.feedback == "explicit"
        top = float(train.rating_max) if explicit else 1.0
        levels = np.unique(train.rating) if explicit and len(train) else np.array([top], np.float32)
        rng = ctx.rng
        probability = np.ones(train.n_items)
        profiles: list[tuple[np.ndarray, np.ndarray]] = []
        visible = train
        start = first_fake_timestamp(train)   # the fake users seen so far follow on from here
        self.trace = []   # per block: (first fake, block size, data users when trained)

        with torch_threads(1):
            for first in range(0, n_fake, cfg.retrain_every):
                block = min(cfg.retrain_every, n_fake - first)
                k = len(targets)
                seeded = visible.with_new_users(
                    block, np.repeat(np.arange(block), k), np.tile(targets, block),
                    np.full(block * k, top, np.float32), start + np.arange(block * k),
                    prefix="dp-new", fake=True)
                hooks = PromoteTargets(seeded, targets, train.n_users, cfg.top_n, cfg.kappa,
                                       cfg.lambda_attack)
                seed = int(rng.integers(2 ** 31 - 1))
                torch.manual_seed(seed)
                model = fit_poison_model(seeded, seed, cfg, hooks)
                scores = np.asarray(model.score(np.arange(visible.n_users, seeded.n_users)))
                self.trace.append((first, block, visible.n_users))
                block_items, block_ratings = [], []
                for row in scores:
                    fillers = pick_fillers(row, probability, targets, n_filler, rng)
                    probability[fillers] *= cfg.decay
                    rating = (snap_to_levels(row[fillers], levels) if explicit
                              else np.ones(len(fillers), np.float32))
                    items = np.concatenate([targets, fillers])
                    ratings = np.concatenate([np.full(k, top, np.float32), rating]).astype(np.float32)
                    order = rng.permutation(len(items))   # a profile's time order
                    block_items.append(items[order])
                    block_ratings.append(ratings[order])
                profiles += list(zip(block_items, block_ratings))
                lengths = [len(i) for i in block_items]
                stamps = start + np.arange(sum(lengths))
                start += sum(lengths)
                visible = visible.with_new_users(
                    block, np.repeat(np.arange(block), lengths), np.concatenate(block_items),
                    np.concatenate(block_ratings), stamps, prefix="dp", fake=True)

        return profiles_in_order(train, [i for i, _ in profiles], [r for _, r in profiles])
