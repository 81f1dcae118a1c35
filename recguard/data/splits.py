"""Hold-out splits: random per-user (APT), chronological ratio (PamaCF), leave-one-out (LoRec).

Every split is a function of (data, seed) alone and keeps the index spaces,
so train, valid and test rows refer to the same users and items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recguard.data.interactions import Interactions


@dataclass
class Split:
    train: Interactions
    valid: Interactions
    test: Interactions


def _positions(data: Interactions, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows listed in ``order`` (grouped by user): each row's 0-based position within
    its user's group and the size of that group."""
    users = data.user[order]
    counts = np.bincount(users, minlength=data.n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.arange(len(order)) - starts[users]
    return position, counts[users]


def _assemble(data: Interactions, order: np.ndarray, part: np.ndarray) -> Split:
    """``part[j]`` in {0: train, 1: valid, 2: test} for row ``order[j]``."""
    rows = [order[part == p] for p in range(3)]
    return Split(*(data.take(np.sort(r)) for r in rows))


def chronological(data: Interactions) -> np.ndarray:
    """Row order grouped by user, by time within a user (row index breaks ties)."""
    return np.lexsort((np.arange(len(data)), data.timestamp, data.user))


def leave_one_out(data: Interactions) -> Split:
    """Each user's last interaction is the test item, the one before it validation.

    Users with fewer than three interactions keep everything in training.
    """
    order = chronological(data)
    position, size = _positions(data, order)
    from_end = size - 1 - position
    part = np.where(size < 3, 0, np.select([from_end == 0, from_end == 1], [2, 1], 0))
    return _assemble(data, order, part)


def chrono_ratio(data: Interactions, ratios: tuple[float, float, float]) -> Split:
    """Per user, the earliest ``ratios[0]`` of the history trains, the next ``ratios[1]``
    validates and the latest ``ratios[2]`` tests (PamaCF, 70/10/20)."""
    order = chronological(data)
    position, size = _positions(data, order)
    n_train = np.maximum(1, np.floor(size * ratios[0] + 1e-9)).astype(np.int64)
    n_valid = np.floor(size * (ratios[0] + ratios[1]) + 1e-9).astype(np.int64) - n_train
    n_valid = np.maximum(n_valid, 0)
    part = np.select([position < n_train, position < n_train + n_valid], [0, 1], 2)
    return _assemble(data, order, part)


def random_holdout(data: Interactions, rng: np.random.Generator, min_rating: float,
                   valid_fraction: float) -> Split:
    """APT's split: one test interaction per user, drawn at random among the user's
    ratings >= ``min_rating`` (any rating if the user has none); of the remaining
    ratings, ``valid_fraction`` of each user's (rounded down) go to validation."""
    eligible = data.rating >= min_rating
    # Eligible rows first, in random order within a user: each user's first row is its test item.
    order = np.lexsort((rng.random(len(data)), ~eligible, data.user))
    position, _ = _positions(data, order)
    test_rows = order[position == 0]
    # The remaining rows, shuffled again per user so validation is not biased by eligibility.
    rest = order[position > 0]
    rest = rest[np.lexsort((rng.random(len(rest)), data.user[rest]))]
    rest_position, rest_size = _positions(data, rest)
    valid_rows = rest[rest_position < np.floor(rest_size * valid_fraction + 1e-9)]
    part = np.zeros(len(data), dtype=np.int64)
    part[valid_rows] = 1
    part[test_rows] = 2
    return _assemble(data, np.arange(len(data)), part)
