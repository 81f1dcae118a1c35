"""One interaction model for every dataset: users, items, ratings, timestamps, item text."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import numpy as np


@dataclass
class Interactions:
    """User-item interactions with dense 0-based indices.

    ``user_ids`` / ``item_ids`` keep the raw identifiers of the source file.
    ``is_fake`` marks injected users (ground truth for detectors; never read by
    a defense). ``user_weight`` is set by reweighting defenses. ``feedback`` is
    "explicit" (ratings matter) or "implicit" (every row is a positive).
    """

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    n_users: int
    n_items: int
    user_ids: np.ndarray
    item_ids: np.ndarray
    item_text: np.ndarray | None = None
    feedback: str = "explicit"
    rating_max: float = 5.0
    is_fake: np.ndarray | None = None
    user_weight: np.ndarray | None = None
    name: str = "interactions"
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.user = np.asarray(self.user, dtype=np.int64)
        self.item = np.asarray(self.item, dtype=np.int64)
        self.rating = np.asarray(self.rating, dtype=np.float32)
        self.timestamp = np.asarray(self.timestamp, dtype=np.int64)
        if self.is_fake is None:
            self.is_fake = np.zeros(self.n_users, dtype=bool)
        n = len(self.user)
        if not (len(self.item) == len(self.rating) == len(self.timestamp) == n):
            raise ValueError("user, item, rating and timestamp must have the same length")

    def __len__(self) -> int:
        return len(self.user)

    # ------------------------------------------------------------ views

    def user_counts(self) -> np.ndarray:
        return np.bincount(self.user, minlength=self.n_users)

    def item_counts(self) -> np.ndarray:
        return np.bincount(self.item, minlength=self.n_items)

    def by_user(self) -> tuple[np.ndarray, np.ndarray]:
        """(indptr, order): rows of user u are ``order[indptr[u]:indptr[u+1]]``, by time."""
        order = np.lexsort((np.arange(len(self)), self.timestamp, self.user))
        indptr = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum(self.user_counts(), out=indptr[1:])
        return indptr, order

    def items_of_users(self) -> list[np.ndarray]:
        """Each user's items in time order."""
        indptr, order = self.by_user()
        items = self.item[order]
        return [items[indptr[u]:indptr[u + 1]] for u in range(self.n_users)]

    def genuine_users(self) -> np.ndarray:
        return np.flatnonzero(~self.is_fake)

    # ------------------------------------------------------------ derived copies

    def take(self, rows: np.ndarray) -> "Interactions":
        """The same index spaces, only the given rows (an index or boolean array)."""
        return replace(self, user=self.user[rows], item=self.item[rows],
                       rating=self.rating[rows], timestamp=self.timestamp[rows])

    def with_rows(self, other: "Interactions") -> "Interactions":
        """Rows of both (same index spaces)."""
        return replace(self, user=np.concatenate([self.user, other.user]),
                       item=np.concatenate([self.item, other.item]),
                       rating=np.concatenate([self.rating, other.rating]),
                       timestamp=np.concatenate([self.timestamp, other.timestamp]))

    def with_new_users(self, n_new: int, user: np.ndarray, item: np.ndarray, rating: np.ndarray,
                       timestamp: np.ndarray, prefix: str, fake: bool) -> "Interactions":
        """``n_new`` users numbered after the existing ones (``user`` counts from 0 among
        them), with ids ``{prefix}-j``, marked fake or not, weight 1 if users are weighted."""
        weight = self.user_weight
        if weight is not None:
            weight = np.concatenate([np.asarray(weight, dtype=np.float32), np.ones(n_new, np.float32)])
        return replace(
            self,
            user=np.concatenate([self.user, np.asarray(user, dtype=np.int64) + self.n_users]),
            item=np.concatenate([self.item, item]),
            rating=np.concatenate([self.rating, np.asarray(rating, dtype=np.float32)]),
            timestamp=np.concatenate([self.timestamp, timestamp]),
            n_users=self.n_users + n_new,
            user_ids=np.concatenate([self.user_ids, [f"{prefix}-{j}" for j in range(n_new)]]),
            is_fake=np.concatenate([self.is_fake, np.full(n_new, fake, dtype=bool)]),
            user_weight=weight,
        )

    def drop_users(self, users: np.ndarray) -> "Interactions":
        """Remove every row of the given users (index spaces unchanged, so scores stay aligned)."""
        dropped = np.zeros(self.n_users, dtype=bool)
        dropped[np.asarray(users, dtype=np.int64)] = True
        return self.take(~dropped[self.user])

    def fingerprint(self) -> str:
        """A content hash: the same data gives the same fingerprint on any machine."""
        h = hashlib.sha256()
        order = np.lexsort((self.item, self.user))
        for arr in (self.user[order], self.item[order], self.rating[order], self.timestamp[order]):
            h.update(np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes())
        h.update(f"{self.n_users}:{self.n_items}:{self.feedback}".encode())
        if self.item_text is not None:
            h.update("\x1f".join(map(str, self.item_text)).encode())
        return "sha256:" + h.hexdigest()[:16]

    def summary(self) -> dict:
        return {"users": int(self.n_users), "items": int(self.n_items), "interactions": len(self),
                "fake_users": int(self.is_fake.sum()), "feedback": self.feedback}


def reindex(raw_users: np.ndarray, raw_items: np.ndarray, rating, timestamp, *, name: str,
            item_text_by_raw: dict[str, str] | None = None, feedback: str = "explicit",
            rating_max: float | None = None) -> Interactions:
    """Build an `Interactions` from raw identifiers, numbering users and items from 0."""
    user_ids, user = np.unique(np.asarray(raw_users).astype(str), return_inverse=True)
    item_ids, item = np.unique(np.asarray(raw_items).astype(str), return_inverse=True)
    rating = np.asarray(rating, dtype=np.float32)
    text = None
    if item_text_by_raw is not None:
        text = np.array([item_text_by_raw.get(i, "") for i in item_ids], dtype=object)
    return Interactions(user=user, item=item, rating=rating, timestamp=np.asarray(timestamp),
                        n_users=len(user_ids), n_items=len(item_ids), user_ids=user_ids,
                        item_ids=item_ids, item_text=text, feedback=feedback,
                        rating_max=float(rating_max if rating_max is not None
                                         else (rating.max() if len(rating) else 1.0)),
                        name=name)
