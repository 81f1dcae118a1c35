"""Heuristic shilling attacks (Lam & Riedl, WWW 2004; Mobasher et al., TOIT 2007).

Every fake profile holds all target items, rated the maximum, and
``filler_size`` filler items, none of them a target. What differs is how
fillers are chosen and rated:

- random:    uniform fillers, ratings ~ N(global mean, global std);
- average:   uniform fillers, item i rated ~ N(mean_i, std_i) (APT sec. 5.1.2);
- bandwagon: a share of the fillers from the most popular items, rated the
             maximum; the rest uniform, rated ~ N(global mean, global std).

On implicit data every interaction is a positive (rating 1). Drawn ratings are
clipped to the data's rating levels and rounded to the nearest level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recguard.components import Attack, AttackContext, Config, Poisoned
from recguard.config import param
from recguard.data.interactions import Interactions


@dataclass
class FillerStats:
    """What a black-box attacker knows of the data: rating levels, global and per-item statistics."""

    levels: np.ndarray
    global_mean: float
    global_std: float
    item_mean: np.ndarray
    item_std: np.ndarray
    popularity: np.ndarray

    @classmethod
    def of(cls, train: Interactions) -> "FillerStats":
        counts = train.item_counts().astype(np.float64)
        sums = np.bincount(train.item, weights=train.rating, minlength=train.n_items)
        squares = np.bincount(train.item, weights=train.rating.astype(np.float64) ** 2,
                              minlength=train.n_items)
        rated = counts > 0
        global_mean = float(train.rating.mean())
        global_std = float(train.rating.std())
        mean = np.where(rated, sums / np.maximum(counts, 1), global_mean)
        var = np.where(rated, squares / np.maximum(counts, 1) - mean ** 2, global_std ** 2)
        return cls(np.unique(train.rating), global_mean, global_std, mean,
                   np.sqrt(np.maximum(var, 0.0)), counts)

    def snap(self, ratings: np.ndarray) -> np.ndarray:
        """Nearest rating level present in the data."""
        idx = np.abs(ratings[:, None] - self.levels[None, :]).argmin(axis=1)
        return self.levels[idx].astype(np.float32)


class HeuristicAttack(Attack):
    """Shared profile construction; subclasses choose and rate the fillers."""

    knowledge = "black-box"

    def poison(self, train: Interactions, ctx: AttackContext) -> Poisoned:
        stats = FillerStats.of(train)
        rng = ctx.rng
        targets = np.asarray(ctx.targets, dtype=np.int64)
        candidates = np.setdiff1d(np.arange(train.n_items), targets)
        n_filler = min(ctx.filler_size, len(candidates))
        users, items, ratings = [], [], []
        explicit = train.feedback == "explicit"
        for fake in range(ctx.n_fake):
            fillers, filler_ratings = self.fillers(stats, candidates, n_filler, rng)
            profile = np.concatenate([targets, fillers])
            rates = np.concatenate([np.full(len(targets), stats.levels.max()), filler_ratings])
            order = rng.permutation(len(profile))  # the profile's order = its time order
            users.append(np.full(len(profile), fake))
            items.append(profile[order])
            ratings.append(rates[order] if explicit else np.ones(len(profile)))
        if not users:
            return Poisoned.empty()
        user = np.concatenate(users)
        start = int(train.timestamp.max()) + 1 if len(train) else 0
        stamps = start + np.arange(len(user), dtype=np.int64)
        return Poisoned(ctx.n_fake, user, np.concatenate(items),
                        np.concatenate(ratings).astype(np.float32), stamps)

    def fillers(self, stats: FillerStats, candidates: np.ndarray, n: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


@dataclass
class RandomConfig(Config):
    pass


class RandomAttack(HeuristicAttack):
    name = "random"
    summary = "Random attack: random fillers rated from the global rating distribution"
    paper = "Lam & Riedl, WWW 2004; as used by APT (SIGIR 2021) and LoRec (2024)"
    Config = RandomConfig

    def fillers(self, stats, candidates, n, rng):
        items = rng.choice(candidates, size=n, replace=False)
        return items, stats.snap(rng.normal(stats.global_mean, stats.global_std, size=n))


@dataclass
class AverageConfig(Config):
    pass


class AverageAttack(HeuristicAttack):
    name = "average"
    summary = "Average attack: random fillers, each rated from its own item's rating distribution"
    paper = "Lam & Riedl, WWW 2004; APT (Wu et al., SIGIR 2021) sec. 5.1.2"
    Config = AverageConfig

    def fillers(self, stats, candidates, n, rng):
        items = rng.choice(candidates, size=n, replace=False)
        return items, stats.snap(rng.normal(stats.item_mean[items], stats.item_std[items]))


@dataclass
class BandwagonConfig(Config):
    popular_share: float = param(0.1, "share of the fillers taken from the popular items "
                                      "(the 'selected' set, rated the maximum)", low=0, high=1)
    popular_pool: int = param(50, "the popular items are the top-N by interactions", low=1)


class BandwagonAttack(HeuristicAttack):
    name = "bandwagon"
    summary = "Bandwagon attack: popular items rated the maximum plus random fillers"
    paper = "Mobasher et al., ACM TOIT 2007; as used by LoRec (2024) and PamaCF (NeurIPS 2024)"
    Config = BandwagonConfig

    def fillers(self, stats, candidates, n, rng):
        pool = candidates[np.argsort(-stats.popularity[candidates], kind="stable")]
        pool = pool[:min(self.config.popular_pool, len(pool))]
        n_popular = min(int(round(n * self.config.popular_share)), len(pool))
        popular = rng.choice(pool, size=n_popular, replace=False)
        rest = rng.choice(np.setdiff1d(candidates, popular), size=n - n_popular, replace=False)
        ratings = np.concatenate([np.full(n_popular, stats.levels.max()),
                                  stats.snap(rng.normal(stats.global_mean, stats.global_std,
                                                        size=n - n_popular))])
        return np.concatenate([popular, rest]), ratings
