"""Heuristic shilling attacks: Random, Average (Lam & Riedl, WWW 2004) and Bandwagon
(Mobasher et al., ACM TOIT 2007), as used by APT (SIGIR 2021), LoRec (2024) and PamaCF
(NeurIPS 2024).

Every fake profile holds all target items and ``filler_size`` filler items (distinct,
never a target; every non-target item when there are fewer). The attacks differ only
in how fillers are chosen and rated:

=========  ==========================================  =============================================
attack     fillers                                     explicit ratings (targets: ``rating_max``)
=========  ==========================================  =============================================
random     uniform over non-target items               N(global mean, global std)
average    uniform over non-target items               item i ~ N(mean_i, std_i) (explicit data only)
bandwagon  ``popular_share`` of them from the top      popular fillers: ``rating_max``;
           ``popular_pool`` items by count, the rest   the rest N(global mean, global std)
           uniform
=========  ==========================================  =============================================

Drawn ratings are clipped to the lowest and highest rating levels present in the
training data and rounded to the nearest level present (0.2, 0.4, ..., 1.0 after
APT's normalisation; 1..5 on raw MovieLens). On implicit data every row is a
positive with rating 1.0.

Fake rows are timestamped after the latest genuine one: fake 0's profile first,
then fake 1's, and so on, each profile in a random order with strictly increasing
timestamps, so chronological splits and sequential models see the injected
activity as the most recent.

`ctx.rng` is the only source of randomness: the same seed gives identical output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from recguard import Attack, AttackContext, Config, Interactions, Poisoned, RecguardError, param
from recguard.kit.poison.profiles import check_request, shuffled_rows, snap_to_levels

LAM_RIEDL = "Lam & Riedl, Shilling Recommender Systems for Fun and Profit, WWW 2004"
MOBASHER = ("Mobasher, Burke, Bhaumik & Williams, Toward Trustworthy Recommender Systems: "
            "An Analysis of Attack Models and Algorithm Robustness, ACM TOIT 7(4), 2007")


# ---------------------------------------------------------------- what the attacker knows


@dataclass
class RatingStats:
    """Black-box knowledge of explicit training data: rating levels and rating distributions.

    ``levels`` are the distinct rating values present (sorted). Item statistics are
    population mean / std of the item's training ratings; items without a rating take
    the global mean / std. An item rated once has std 0, so it is always given its one
    observed rating (after snapping, which leaves a level unchanged).
    """

    levels: np.ndarray
    global_mean: float
    global_std: float
    item_mean: np.ndarray
    item_std: np.ndarray

    @classmethod
    def of(cls, train: Interactions) -> "RatingStats":
        if len(train) == 0:
            raise RecguardError("explicit heuristic attacks need at least one genuine rating "
                                "to learn the rating distribution; the training data is empty")
        rating = train.rating.astype(np.float64)
        counts = np.bincount(train.item, minlength=train.n_items).astype(np.float64)
        sums = np.bincount(train.item, weights=rating, minlength=train.n_items)
        squares = np.bincount(train.item, weights=rating ** 2, minlength=train.n_items)
        rated = counts > 0
        global_mean = float(rating.mean())
        global_std = float(rating.std())
        safe = np.maximum(counts, 1.0)
        item_mean = np.where(rated, sums / safe, global_mean)
        item_var = np.where(rated, squares / safe - item_mean ** 2, global_std ** 2)
        return cls(levels=np.unique(train.rating), global_mean=global_mean, global_std=global_std,
                   item_mean=item_mean, item_std=np.sqrt(np.maximum(item_var, 0.0)))

    def snap(self, values: np.ndarray) -> np.ndarray:
        """Clip to the lowest / highest rating level, round to the nearest level."""
        return snap_to_levels(values, self.levels)


def _uniform_subsets(candidates: np.ndarray, size: int, n_rows: int,
                     rng: np.random.Generator) -> np.ndarray:
    """``n_rows`` independent uniform subsets of ``candidates`` without replacement: (n_rows, size)."""
    out = np.empty((n_rows, size), dtype=np.int64)
    for row in range(n_rows):
        out[row] = rng.choice(candidates, size=size, replace=False)
    return out


# ---------------------------------------------------------------- the shared construction


class HeuristicAttack(Attack):
    """Builds the profiles; a subclass chooses the fillers and rates them."""

    knowledge: ClassVar[str] = "black-box"

    def poison(self, train: Interactions, ctx: AttackContext) -> Poisoned:
        targets = check_request(self.name, self.feedback, train, ctx)
        n_fake = int(ctx.n_fake)
        candidates = np.setdiff1d(np.arange(train.n_items, dtype=np.int64), targets)
        n_filler = min(int(ctx.filler_size), len(candidates))
        explicit = train.feedback == "explicit"
        stats = RatingStats.of(train) if explicit else None
        rng = ctx.rng

        fillers, filler_ratings = self.fillers(train, stats, candidates, n_filler, n_fake, rng)
        length = len(targets) + n_filler
        items = np.concatenate([np.broadcast_to(targets, (n_fake, len(targets))), fillers], axis=1)
        if explicit:
            target_ratings = np.full((n_fake, len(targets)), train.rating_max, dtype=np.float32)
            ratings = np.concatenate([target_ratings, filler_ratings.astype(np.float32)], axis=1)
        else:
            ratings = np.ones((n_fake, length), dtype=np.float32)
        return shuffled_rows(train, items, ratings, rng)

    def fillers(self, train: Interactions, stats: RatingStats | None, candidates: np.ndarray,
                n_filler: int, n_fake: int, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray | None]:
        """Filler items (n_fake, n_filler) and, when ``stats`` is given (explicit data), their
        ratings on the rating grid; ratings are None on implicit data."""
        raise NotImplementedError


# ---------------------------------------------------------------- random


@dataclass
class RandomConfig(Config):
    """The Random attack has no options: fillers and ratings follow from the data."""


class RandomAttack(HeuristicAttack):
    name: ClassVar[str] = "random"
    summary: ClassVar[str] = ("Random attack: targets at the maximum, uniform random fillers "
                              "rated from the global rating distribution")
    paper: ClassVar[str] = f"{LAM_RIEDL}; as used by APT (SIGIR 2021) and LoRec (2024)"
    Config = RandomConfig

    def fillers(self, train, stats, candidates, n_filler, n_fake, rng):
        items = _uniform_subsets(candidates, n_filler, n_fake, rng)
        if stats is None:
            return items, None
        return items, stats.snap(rng.normal(stats.global_mean, stats.global_std, size=items.shape))


# ---------------------------------------------------------------- average


@dataclass
class AverageConfig(Config):
    """The Average attack has no options: fillers and ratings follow from the data."""


class AverageAttack(HeuristicAttack):
    name: ClassVar[str] = "average"
    summary: ClassVar[str] = ("Average attack: targets at the maximum, uniform random fillers "
                              "each rated from its own item's rating distribution")
    paper: ClassVar[str] = f"{LAM_RIEDL}; as used by APT (SIGIR 2021, sec. 5.1.2)"
    # On implicit data every rating is 1, so there is no per-item distribution to mimic
    # and the attack would be the Random attack under another name: refused instead.
    feedback: ClassVar[frozenset[str]] = frozenset({"explicit"})
    Config = AverageConfig

    def fillers(self, train, stats, candidates, n_filler, n_fake, rng):
        items = _uniform_subsets(candidates, n_filler, n_fake, rng)
        return items, stats.snap(rng.normal(stats.item_mean[items], stats.item_std[items]))


# ---------------------------------------------------------------- bandwagon


@dataclass
class BandwagonConfig(Config):
    popular_share: float = param(
        0.1, "share of each profile's fillers drawn from the popular pool (Mobasher's 'selected' "
             "items, rated the maximum); rounded to a whole number of items", low=0, high=1)
    popular_pool: int = param(
        50, "the popular pool: the top-N non-target items by training interaction count; set it "
            "to the number of popular fillers for one fixed selected set shared by every profile",
        low=1)


class BandwagonAttack(HeuristicAttack):
    name: ClassVar[str] = "bandwagon"
    summary: ClassVar[str] = ("Bandwagon attack: targets and a share of popular items at the "
                              "maximum, the other fillers random with global-distribution ratings")
    paper: ClassVar[str] = f"{MOBASHER}; as used by LoRec (2024) and PamaCF (NeurIPS 2024)"
    Config = BandwagonConfig

    def popular_items(self, train: Interactions, candidates: np.ndarray) -> np.ndarray:
        """The pool: top ``popular_pool`` candidates by count (ties: lower item index first)."""
        counts = np.bincount(train.item, minlength=train.n_items)[candidates]
        ranked = candidates[np.lexsort((candidates, -counts))]
        return ranked[:min(self.config.popular_pool, len(ranked))]

    def fillers(self, train, stats, candidates, n_filler, n_fake, rng):
        pool = self.popular_items(train, candidates)
        n_popular = min(int(np.floor(n_filler * self.config.popular_share + 0.5)), len(pool))
        n_rest = n_filler - n_popular
        items = np.empty((n_fake, n_filler), dtype=np.int64)
        for fake in range(n_fake):
            popular = rng.choice(pool, size=n_popular, replace=False)
            others = np.ones(len(candidates), dtype=bool)
            others[np.searchsorted(candidates, popular)] = False  # candidates are sorted
            items[fake, :n_popular] = popular
            items[fake, n_popular:] = rng.choice(candidates[others], size=n_rest, replace=False)
        if stats is None:
            return items, None
        ratings = np.empty((n_fake, n_filler), dtype=np.float32)
        ratings[:, :n_popular] = train.rating_max
        ratings[:, n_popular:] = stats.snap(rng.normal(stats.global_mean, stats.global_std,
                                                       size=(n_fake, n_rest)))
        return items, ratings
