"""Vectorised full ranking: top-k lists with each user's seen items masked."""

from __future__ import annotations

from typing import Callable

import numpy as np


def top_k(score: Callable[[np.ndarray], np.ndarray], users: np.ndarray, exclude: list[np.ndarray],
          k: int, batch_size: int = 1024,
          on_batch: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Each user's k best items by descending score, ``exclude[j]`` masked for ``users[j]``.

    Ties go to the lower item index. Returns int64 (len(users), min(k, n_items)).
    ``on_batch(done, total)``, if given, hears the users ranked so far after each batch.
    """
    users = np.asarray(users, dtype=np.int64)
    out = []
    for start in range(0, len(users), batch_size):
        batch = users[start:start + batch_size]
        scores = np.array(score(batch), dtype=np.float64, copy=True)
        rows = np.repeat(np.arange(len(batch)), [len(exclude[start + j]) for j in range(len(batch))])
        if len(rows):
            scores[rows, np.concatenate(exclude[start:start + len(batch)])] = -np.inf
        kk = min(k, scores.shape[1])
        # argpartition on the negated scores, then a stable sort of the k kept by (score, index)
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk] if kk < scores.shape[1] \
            else np.tile(np.arange(scores.shape[1]), (len(batch), 1))
        kept = np.take_along_axis(scores, part, axis=1)
        order = np.lexsort((part, -kept), axis=1)
        out.append(np.take_along_axis(part, order, axis=1))
        if on_batch is not None:
            on_batch(start + len(batch), len(users))
    if not out:
        return np.zeros((0, k), dtype=np.int64)
    return np.concatenate(out).astype(np.int64)


def target_eligibility(users: np.ndarray, targets: np.ndarray, pair_users: np.ndarray,
                       pair_items: np.ndarray) -> np.ndarray:
    """(n_targets, len(users)) mask: True where the user never interacted with the target."""
    eligible = np.ones((len(targets), len(users)), dtype=bool)
    position = {int(u): j for j, u in enumerate(users)}
    for t, target in enumerate(targets):
        for u in np.unique(pair_users[pair_items == target]):
            j = position.get(int(u))
            if j is not None:
                eligible[t, j] = False
    return eligible


def hit_matrix(topk: np.ndarray, test_items: list[np.ndarray]) -> np.ndarray:
    """(users, k) booleans: whether each ranked item is one of the user's test items."""
    n_users, k = topk.shape
    if n_users == 0:
        return np.zeros((0, k), dtype=bool)
    lengths = np.array([len(t) for t in test_items])
    flat = np.concatenate(test_items).astype(np.int64) if lengths.sum() else np.zeros(0, np.int64)
    owner = np.repeat(np.arange(n_users), lengths)
    n_items = int(max(topk.max(initial=0), flat.max(initial=0))) + 1
    wanted = np.sort(owner * n_items + flat)
    if len(wanted) == 0:
        return np.zeros((n_users, k), dtype=bool)
    keys = np.arange(n_users)[:, None] * n_items + topk
    pos = np.searchsorted(wanted, keys)
    return (pos < len(wanted)) & (wanted[np.minimum(pos, len(wanted) - 1)] == keys)
