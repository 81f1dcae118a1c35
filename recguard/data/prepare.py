"""Apply a protocol to a dataset: feedback conversion, filtering, split, targets."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from recguard.data.interactions import Interactions
from recguard.data.splits import Split, chrono_ratio, leave_one_out, random_holdout
from recguard.data.targets import select_targets
from recguard.errors import RecguardError
from recguard.protocols import Protocol


@dataclass
class Prepared:
    """A protocol applied to a dataset for one seed: what every condition of a cell shares."""

    split: Split
    targets: np.ndarray
    seed: int

    @property
    def train(self) -> Interactions:
        return self.split.train


def deduplicate(data: Interactions) -> Interactions:
    """Keep the latest row of each (user, item) pair."""
    order = np.lexsort((np.arange(len(data)), data.timestamp, data.item, data.user))
    u, i = data.user[order], data.item[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = (u[1:] != u[:-1]) | (i[1:] != i[:-1])
    keep = np.sort(order[last])
    return data if len(keep) == len(data) else data.take(keep)


def to_implicit(data: Interactions, threshold: float | None) -> Interactions:
    rows = np.arange(len(data)) if threshold is None else np.flatnonzero(data.rating >= threshold)
    out = data.take(rows)
    return replace(out, rating=np.ones(len(out), dtype=np.float32), feedback="implicit",
                   rating_max=1.0)


def k_core(data: Interactions, min_user: int, min_item: int) -> Interactions:
    """Iteratively drop users and items with too few interactions, then renumber."""
    keep = np.ones(len(data), dtype=bool)
    while True:
        users = np.bincount(data.user[keep], minlength=data.n_users)
        items = np.bincount(data.item[keep], minlength=data.n_items)
        bad = keep & ((users[data.user] < min_user) | (items[data.item] < min_item))
        if not bad.any():
            break
        keep &= ~bad
    return compact(data.take(np.flatnonzero(keep)))


def compact(data: Interactions) -> Interactions:
    """Renumber users and items so that only those with interactions remain."""
    users, user = np.unique(data.user, return_inverse=True)
    items, item = np.unique(data.item, return_inverse=True)
    if len(users) == data.n_users and len(items) == data.n_items:
        return data
    text = None if data.item_text is None else data.item_text[items]
    return replace(data, user=user, item=item, n_users=len(users), n_items=len(items),
                   user_ids=data.user_ids[users], item_ids=data.item_ids[items], item_text=text,
                   is_fake=data.is_fake[users])


def normalise(data: Interactions) -> Interactions:
    scale = data.rating_max
    return replace(data, rating=(data.rating / scale).astype(np.float32), rating_max=1.0)


def preprocess(data: Interactions, protocol: Protocol) -> Interactions:
    """The seed-independent part: deduplication, feedback conversion, k-core filter."""
    data = deduplicate(data)
    if protocol.feedback == "implicit":
        data = to_implicit(data, protocol.implicit_threshold)
    elif data.feedback == "implicit":
        raise RecguardError(f"protocol {protocol.name!r} evaluates explicit ratings but dataset "
                            f"{data.name!r} has none; use an implicit protocol (pamacf, lorec)")
    data = k_core(data, protocol.min_user_interactions, protocol.min_item_interactions)
    if len(data) == 0:
        raise RecguardError(f"no interactions left after protocol {protocol.name!r} filtering")
    return data


def prepare(data: Interactions, protocol: Protocol, seed: int) -> Prepared:
    """Split and targets for one seed. ``data`` comes from `preprocess`."""
    rng = np.random.default_rng([seed, 0x5EED])
    if protocol.split == "leave_one_out":
        split = leave_one_out(data)
    elif protocol.split == "chrono_ratio":
        split = chrono_ratio(data, tuple(protocol.split_ratios))
    else:
        split = random_holdout(data, rng, protocol.holdout_min_rating, protocol.valid_fraction)
    if protocol.feedback == "explicit" and protocol.normalise_ratings:
        split = Split(*(normalise(part) for part in (split.train, split.valid, split.test)))
    targets = select_targets(data.item_counts(), protocol.target_rule, protocol.n_targets, rng,
                             protocol.unpopular_below)
    return Prepared(split=split, targets=targets, seed=seed)
