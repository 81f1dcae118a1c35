"""Helpers attacks share when they write fake profiles.

`OptimisedProfileAttack` is the shape of the attacks that optimise relaxed (continuous)
fake rating rows and then project them onto discrete profiles (Rev, PGA): a subclass
implements `optimise`; `project_relaxed` keeps rows in the feasible set during the
optimisation and `discrete_profiles` makes the final profiles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from recguard.contracts import Attack, AttackContext
from recguard.data.poisoned import Poisoned
from recguard.errors import RecguardError
from recguard.kit.poison.surrogate import top_fillers

if TYPE_CHECKING:  # pragma: no cover
    from recguard.data.interactions import Interactions


def snap_to_levels(values: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Clip to the lowest / highest of ``levels`` (the rating values present in the data),
    then round each value to the nearest level (a tie goes up). float32."""
    levels = np.sort(np.asarray(levels, dtype=np.float64))
    x = np.clip(np.asarray(values, dtype=np.float64), levels[0], levels[-1])
    upper = np.clip(np.searchsorted(levels, x, side="left"), 0, len(levels) - 1)
    lower = np.maximum(upper - 1, 0)
    take_upper = (levels[upper] - x) <= (x - levels[lower])
    return levels[np.where(take_upper, upper, lower)].astype(np.float32)


def project_relaxed(x, targets: np.ndarray, rating_max: float, filler_size: int | None = None):
    """The relaxed feasible set, in place: every entry in [0, rating_max], targets at
    rating_max, and (when ``filler_size`` is given) the non-target entries of each row summing
    to ``filler_size * rating_max`` - the convex hull of profiles with ``filler_size`` fillers
    at the maximum. That projection is clip(y - tau, 0, rating_max) with the row's shift tau
    found by bisection."""
    import torch

    free = np.setdiff1d(np.arange(x.shape[1]), targets)
    if filler_size is not None and len(free):
        y = x[:, free]
        total = min(filler_size, len(free)) * rating_max
        low = (y.min(dim=1, keepdim=True).values - rating_max)
        high = y.max(dim=1, keepdim=True).values
        for _ in range(60):
            tau = (low + high) / 2
            over = (y - tau).clamp(0.0, rating_max).sum(dim=1, keepdim=True) > total
            low = torch.where(over, tau, low)
            high = torch.where(over, high, tau)
        x[:, free] = (y - (low + high) / 2).clamp(0.0, rating_max)
    x.clamp_(0.0, rating_max)
    x[:, targets] = rating_max
    return x


def discrete_profiles(train: "Interactions", relaxed: np.ndarray, targets: np.ndarray, filler_size: int,
                      rng: np.random.Generator) -> Poisoned:
    """Targets at rating_max plus the ``filler_size`` largest non-target entries of each relaxed
    row (their optimised values snapped to the rating levels on explicit data; 1 on implicit);
    each profile in a random order, timestamped after the genuine data."""
    n_fake = len(relaxed)
    fillers = top_fillers(relaxed, targets, filler_size, rng)
    items = np.concatenate([np.broadcast_to(targets, (n_fake, len(targets))), fillers], axis=1)
    if train.feedback == "explicit":
        filler_ratings = snap_to_levels(np.take_along_axis(relaxed, fillers, axis=1), np.unique(train.rating))
        ratings = np.concatenate([np.full((n_fake, len(targets)), train.rating_max, np.float32),
                                  filler_ratings], axis=1)
    else:
        ratings = np.ones(items.shape, dtype=np.float32)
    return shuffled_rows(train, items, ratings, rng)


def check_request(name: str, feedback: frozenset, train: "Interactions", ctx: AttackContext) -> np.ndarray:
    """The sorted distinct targets, after refusing impossible requests with one line."""
    if train.feedback not in feedback:
        raise RecguardError(f"attack {name!r} needs {'/'.join(sorted(feedback))} feedback but the "
                            f"training data is {train.feedback}")
    targets = np.unique(np.asarray(ctx.targets, dtype=np.int64))
    if len(targets) and (targets.min() < 0 or targets.max() >= train.n_items):
        raise RecguardError(f"attack {name!r}: target items must lie in 0..{train.n_items - 1}, "
                            f"got {targets.tolist()}")
    if ctx.n_fake < 0 or ctx.filler_size < 0:
        raise RecguardError(f"attack {name!r}: n_fake and filler_size must be >= 0, got "
                            f"{ctx.n_fake} and {ctx.filler_size}")
    return targets


def first_fake_timestamp(train: "Interactions") -> int:
    """Fake activity starts right after the genuine data's last timestamp."""
    return int(train.timestamp.max()) + 1 if len(train) else 0


def profiles_in_order(train: "Interactions", items: list[np.ndarray], ratings: list[np.ndarray]) -> Poisoned:
    """Fake user u rates ``items[u]`` with ``ratings[u]`` in that (time) order; the profiles
    follow one another after the genuine data."""
    lengths = [len(i) for i in items]
    return Poisoned(
        n_fake=len(items),
        user=np.repeat(np.arange(len(items), dtype=np.int64), lengths),
        item=np.concatenate(items).astype(np.int64) if items else np.zeros(0, np.int64),
        rating=np.concatenate(ratings).astype(np.float32) if ratings else np.zeros(0, np.float32),
        timestamp=first_fake_timestamp(train) + np.arange(sum(lengths), dtype=np.int64),
    )


def shuffled_rows(train: "Interactions", items: np.ndarray, ratings: np.ndarray,
                  rng: np.random.Generator) -> Poisoned:
    """Profiles as (n_fake, length) rows, each put in a random order that is its time order."""
    order = np.argsort(rng.random(items.shape), axis=1)
    return profiles_in_order(train, list(np.take_along_axis(items, order, axis=1)),
                             list(np.take_along_axis(ratings, order, axis=1)))


class OptimisedProfileAttack(Attack):
    """An attack that optimises relaxed fake rows (n_fake, n_items) and projects them:
    targets at the maximum plus the ``filler_size`` largest optimised entries per row."""

    def poison(self, train: "Interactions", ctx: AttackContext) -> Poisoned:
        targets = check_request(self.name, self.feedback, train, ctx)
        if len(train) == 0:
            raise RecguardError(f"attack {self.name!r} trains a surrogate on the genuine data, "
                                f"which is empty")
        if ctx.n_fake == 0:
            return Poisoned.empty()
        relaxed = self.optimise(train, targets, int(ctx.n_fake), int(ctx.filler_size), ctx.rng)
        return discrete_profiles(train, relaxed, targets, int(ctx.filler_size), ctx.rng)

    def optimise(self, train: "Interactions", targets: np.ndarray, n_fake: int, filler_size: int,
                 rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError
