"""Training helpers shared by torch backbones (imported only by code that trains).

Backbones call `run_epochs`, which applies the defense hooks they offer in one
place: a replacement training set at the start of each epoch, per-user and
per-row loss weights, extra loss terms, end-of-epoch callbacks and progress.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import numpy as np

from recguard.contracts import FitContext
from recguard.data.interactions import Interactions


def seed_everything(seed: int) -> None:
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


@contextmanager
def torch_threads(n: int | None):
    """Run with ``n`` intra-op threads (small embedding models are fastest on one)."""
    import torch

    if not n:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def torch_generator(seed: int):
    import torch

    g = torch.Generator()
    g.manual_seed(seed)
    return g


def sample_negatives(train: Interactions, users: np.ndarray, rng: np.random.Generator,
                     tries: int = 5) -> np.ndarray:
    """One item per user drawn uniformly among the items the user has not interacted with
    (rejection sampling; after ``tries`` rounds a rare collision is left as is)."""
    seen = np.unique(train.user * train.n_items + train.item)
    items = rng.integers(0, train.n_items, size=len(users))
    for _ in range(tries):
        keys = users * train.n_items + items
        pos = np.searchsorted(seen, keys)
        clash = (pos < len(seen)) & (seen[np.minimum(pos, len(seen) - 1)] == keys)
        if not clash.any():
            break
        items[clash] = rng.integers(0, train.n_items, size=int(clash.sum()))
    return items


def dot_scores(user, item):
    return (user * item).sum(-1)


def pair_loss(pair_scores: Callable | None, implicit: bool) -> Callable:
    """The per-row loss as a function of the batch's embeddings: BPR,
    -ln sigmoid(s(u, i) - s(u, j)), on implicit data; (s(u, i) - r)^2 on explicit
    ratings; s is ``pair_scores`` (None: the dot product <u, i>).

    Backbones pass it to `FitHooks.extra_loss` (batch key ``loss_fn``) so adversarial
    defenses can evaluate the loss at perturbed embeddings (PamaCF's Corollary 1 covers
    any dot-product-based loss)."""
    import torch

    score = pair_scores or dot_scores

    def bpr(user, pos, neg, ratings):
        return -torch.nn.functional.logsigmoid(score(user, pos) - score(user, neg))

    def squared(user, pos, neg, ratings):
        return (score(user, pos) - ratings).pow(2)

    return bpr if implicit else squared


def dot_product_loss(implicit: bool) -> Callable:
    """`pair_loss` with dot-product scores."""
    return pair_loss(None, implicit)


@dataclass
class EpochState:
    """What one epoch trains on: the (possibly replaced) data and per-row loss weights."""

    train: Interactions
    row_weight: np.ndarray | None


def run_epochs(model, train: Interactions, epochs: int, ctx: FitContext,
               train_epoch: Callable[[int, EpochState], float]) -> list[float]:
    """The epoch loop every CF backbone shares; returns the mean loss of each epoch.

    ``train_epoch(epoch, state)`` trains one pass over ``state.train`` applying
    ``state.row_weight`` (None = all ones) and returns its mean loss.
    """
    hooks = ctx.hooks
    losses = []
    current = train
    for epoch in range(epochs):
        replaced = hooks.on_epoch_start(epoch, model, current)
        if replaced is not None:
            current = replaced
            model.ensure_users(current.n_users)
        weights = hooks.user_weights(epoch, model, current)
        if weights is None and current.user_weight is not None:
            weights = current.user_weight
        row_weight = None if weights is None else np.asarray(weights, dtype=np.float32)[current.user]
        rows = hooks.row_weights(epoch, model, current)
        if rows is not None:   # per-row weights (e.g. LTSMF's trimming) multiply the user weights
            rows = np.asarray(rows, dtype=np.float32)
            row_weight = rows if row_weight is None else row_weight * rows
        losses.append(train_epoch(epoch, EpochState(current, row_weight)))
        hooks.on_epoch_end(epoch, model)
        ctx.progress(epoch + 1, epochs)
    return losses
