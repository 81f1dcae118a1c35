"""ERM users (APT, Alg. 1 lines 8-11): which items they rate, how, and how they join the data.

Items: ``per_user`` items drawn without replacement with probability
exp(-t·I_i) / Σ_{j∈Φ} exp(-t·I_j) over Φ = {i | I_i < 0} (sec. 3), or uniformly
among all items for APT-rand (sec. 5.1.3). Drawing without replacement in
proportion to weights is done for all ERM users at once by the Gumbel top-k
trick (the k largest of log-weight + Gumbel noise), no loop over users or items.

Ratings: N(μ_i + r⁺, σ_i), μ_i and σ_i the mean and standard deviation of the
item's ratings in the training data (sec. 3), rounded to the rating grid and
clipped to the valid range.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from recguard import Interactions

ERM_META_KEY = "apt_erm_users"  # [first, end) user indices of the ERM users in a training set


@dataclass
class ItemStats:
    mean: np.ndarray
    std: np.ndarray
    low: float   # the valid rating range [low, high]
    high: float


def item_statistics(train: Interactions) -> ItemStats:
    """Per-item mean and (population) standard deviation of the ratings; an item
    without ratings takes the global mean and standard deviation."""
    m = train.n_items
    ratings = train.rating.astype(np.float64)
    counts = np.bincount(train.item, minlength=m)
    sums = np.bincount(train.item, weights=ratings, minlength=m)
    squares = np.bincount(train.item, weights=ratings ** 2, minlength=m)
    global_mean = float(ratings.mean()) if len(ratings) else 0.0
    global_std = float(ratings.std()) if len(ratings) else 0.0
    rated = counts > 0
    mean = np.full(m, global_mean)
    mean[rated] = sums[rated] / counts[rated]
    var = np.full(m, global_std ** 2)
    var[rated] = squares[rated] / counts[rated] - mean[rated] ** 2
    low = float(ratings.min()) if len(ratings) else 0.0
    return ItemStats(mean, np.sqrt(np.maximum(var, 0.0)), low, float(train.rating_max))


def gumbel_top_k(logits: np.ndarray, rows: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``rows`` independent draws of ``k`` distinct indices, each a sample without replacement
    with probabilities softmax(logits) (successive sampling, as numpy's ``choice(replace=False, p)``)."""
    n = len(logits)
    k = min(k, n)
    keys = logits[None, :] + rng.gumbel(size=(rows, n))
    if k == n:
        return np.tile(np.arange(n), (rows, 1))
    top = np.argpartition(-keys, k - 1, axis=1)[:, :k]
    return np.sort(top, axis=1)


def selection_logits(influence: np.ndarray, temperature: float, negative_only: bool = True,
                     normalise: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(candidate items, their logits -t·I). Candidates: Φ = {i | I_i < 0} (all items if
    Φ is empty or ``negative_only`` is off). ``normalise`` min-max scales the candidates'
    influences to [-1, 0] first (the authors' code), so the most beneficial item gets
    weight e^t relative to the least beneficial one."""
    candidates = np.flatnonzero(influence < 0) if negative_only else np.arange(len(influence))
    if len(candidates) == 0:
        candidates = np.arange(len(influence))
    values = influence[candidates].astype(np.float64)
    if normalise:
        spread = values.max() - values.min()
        values = (values - values.min()) / spread - 1.0 if spread > 0 else -np.ones_like(values)
    return candidates, -temperature * values


def choose_items(influence: np.ndarray, n_users: int, per_user: int, temperature: float,
                 rng: np.random.Generator, negative_only: bool = True,
                 normalise: bool = True) -> np.ndarray:
    """(n_users, k) item indices chosen by influence (Alg. 1 line 9); k = min(per_user, |Φ|)."""
    candidates, logits = selection_logits(influence, temperature, negative_only, normalise)
    return candidates[gumbel_top_k(logits, n_users, per_user, rng)]


def random_items(n_items: int, n_users: int, per_user: int, rng: np.random.Generator) -> np.ndarray:
    """(n_users, k) items drawn uniformly without replacement (APT-rand)."""
    return gumbel_top_k(np.zeros(n_items), n_users, per_user, rng)


def erm_ratings(items: np.ndarray, stats: ItemStats, shift: float, rng: np.random.Generator,
                step: float = 0.0) -> np.ndarray:
    """Ratings from N(μ_i + shift, σ_i), rounded to multiples of ``step`` (0: not rounded)
    and clipped to [stats.low, stats.high]."""
    values = rng.normal(stats.mean[items] + shift, stats.std[items])
    if step > 0:
        values = np.round(values / step) * step
    return np.clip(values, stats.low, stats.high).astype(np.float32)


def with_erm_users(train: Interactions, n_erm: int, items: np.ndarray | None = None,
                   ratings: np.ndarray | None = None) -> Interactions:
    """``train`` plus ``n_erm`` ERM users numbered after its users (``erm-j``), rating
    ``items[j]`` with ``ratings[j]``; without items the users exist but rate nothing
    (Alg. 1 line 1, before the pre-training). They are the defender's own users, not
    an attack: ``is_fake`` stays False; the meta key ``apt_erm_users`` marks them."""
    start = train.n_users
    if items is None:
        items = np.zeros((n_erm, 0), dtype=np.int64)
        ratings = np.zeros((n_erm, 0), dtype=np.float32)
    t0 = int(train.timestamp.max()) + 1 if len(train) else 0
    grown = train.with_new_users(n_erm, np.repeat(np.arange(n_erm), items.shape[1]), items.reshape(-1),
                                 np.asarray(ratings, np.float32).reshape(-1), t0 + np.arange(items.size),
                                 prefix="erm", fake=False)
    return replace(grown, meta={**train.meta, ERM_META_KEY: [start, start + n_erm]})
