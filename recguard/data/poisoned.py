"""What an attack hands back (`Poisoned`) and how it joins the training data (`inject`).

Fake users are numbered after the genuine ones and marked (`Interactions.is_fake`)
so that detectors can be scored against the truth; defenses never read the mark.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from recguard.data.interactions import Interactions
from recguard.data.llm_task import USER_ITEM_TEXT  # meta key: user -> {item: title}, from Poisoned


@dataclass
class Poisoned:
    """Fake users' profiles (users numbered 0..n_fake-1) and any poisoned item texts."""

    n_fake: int
    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray | None = None
    item_text: dict[int, str] = field(default_factory=dict)
    # fake user -> {item: title}: what that fake user's profile calls an item (a backdoor
    # trigger in one title, seen in the fake users' samples only; the catalog is unchanged)
    user_item_text: dict[int, dict[int, str]] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> "Poisoned":
        z = np.zeros(0, dtype=np.int64)
        return cls(0, z, z, np.zeros(0, dtype=np.float32))


def inject(train: Interactions, poisoned: Poisoned) -> Interactions:
    """Genuine training data plus the fake users, numbered after the genuine ones."""
    if poisoned.n_fake == 0 and not poisoned.item_text:
        return train
    start = train.timestamp.max() + 1 if len(train) else 0
    stamps = (poisoned.timestamp if poisoned.timestamp is not None
              else start + np.arange(len(poisoned.user)))
    text = train.item_text
    if poisoned.item_text:
        text = text.copy()
        for item, title in poisoned.item_text.items():
            text[item] = title
    grown = train.with_new_users(poisoned.n_fake, poisoned.user, poisoned.item, poisoned.rating,
                                 stamps, prefix="fake", fake=True)
    meta = grown.meta
    if poisoned.user_item_text:
        meta = {**meta, USER_ITEM_TEXT: {**meta.get(USER_ITEM_TEXT, {}),
                                         **{train.n_users + u: dict(t)
                                            for u, t in poisoned.user_item_text.items()}}}
    return replace(grown, item_text=text, meta=meta)
