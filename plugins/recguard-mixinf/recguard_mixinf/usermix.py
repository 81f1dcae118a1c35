"""Usermix (Wu et al., TPAMI 2023): a fake user as the linear interpolation of two real ones.

    x = λ r_a + (1 - λ) r_b,   λ ~ Beta(α, α),   a ≠ b drawn uniformly among the genuine users

r_a, r_b are dense rating rows (0 where a user has not rated). The mixed row is then made a
profile a recommender can take (the authors' code rounds fake rows to the rating grid, an
entry rounded to 0 being no rating):

1. every entry is rounded to the nearest of {0} ∪ the data's rating levels, 0 meaning
   "not rated": an item only one parent rated keeps λ (or 1 - λ) of its rating, so it drops
   out when that share rounds to 0;
2. the targets' entries are cleared (the attacks set them to the maximum afterwards);
3. at most ``filler_size`` of the remaining items are kept, drawn uniformly: the protocol's
   profile size.

Everything is vectorised over the rows; numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recguard.kit.poison.profiles import snap_to_levels


@dataclass
class Mixed:
    """Usermix rows and where they came from."""

    rows: np.ndarray      # (k, n_items) float32 profiles, targets cleared
    first: np.ndarray     # (k,) parent a
    second: np.ndarray    # (k,) parent b
    weight: np.ndarray    # (k,) λ


def interpolate(first: np.ndarray, second: np.ndarray, weight) -> np.ndarray:
    """λ r_a + (1 - λ) r_b row by row (``weight`` a scalar or one λ per row)."""
    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim == 1:
        weight = weight[:, None]
    return weight * first + (1.0 - weight) * second


def discretise(mixed: np.ndarray, levels: np.ndarray, targets: np.ndarray, filler_size: int,
               rng: np.random.Generator) -> np.ndarray:
    """Steps 1-3 above: round to {0} ∪ ``levels``, clear the targets, keep at most
    ``filler_size`` of the rated items of each row (uniformly at random). float32."""
    grid = np.union1d([0.0], np.asarray(levels, dtype=np.float64))
    rows = snap_to_levels(np.atleast_2d(mixed), grid)
    rows[:, np.asarray(targets, dtype=np.int64)] = 0.0
    rated = rows > 0
    extra = rated.sum(axis=1) > filler_size
    if extra.any():
        keys = np.where(rated, rng.random(rows.shape), -1.0)   # a random order of the rated items
        k = min(filler_size, rows.shape[1])
        if k == 0:
            rows[extra] = 0.0
        else:
            threshold = -np.partition(-keys[extra], k - 1, axis=1)[:, k - 1:k]
            rows[extra] = np.where(keys[extra] >= threshold, rows[extra], 0.0)
    return rows


def parent_pool(train_users: np.ndarray, n_users: int) -> np.ndarray:
    """The genuine users with at least one rating (the parents Usermix may draw)."""
    return np.flatnonzero(np.bincount(train_users, minlength=n_users) > 0)


def draw_pairs(pool: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``k`` pairs of distinct users of ``pool`` (the same user twice only if the pool has one)."""
    first = rng.choice(pool, size=k)
    if len(pool) < 2:
        return first, first.copy()
    offset = rng.integers(1, len(pool), size=k)            # uniform over the other users
    position = np.searchsorted(pool, first)
    return first, pool[(position + offset) % len(pool)]


def usermix(dense: np.ndarray, pool: np.ndarray, k: int, alpha: float, levels: np.ndarray,
            targets: np.ndarray, filler_size: int, rng: np.random.Generator) -> Mixed:
    """``k`` Usermix profiles from the dense genuine rating matrix ``dense``."""
    first, second = draw_pairs(pool, k, rng)
    weight = rng.beta(alpha, alpha, size=k)
    mixed = interpolate(dense[first], dense[second], weight)
    return Mixed(discretise(mixed, levels, targets, filler_size, rng), first, second, weight)
