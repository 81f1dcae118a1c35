"""The attacker's own recommender: one surrogate helper shared by the optimisation attacks.

Attack knowledge is explicit (`Attack.knowledge`). A *black-box* attack never
reads the victim: it trains a surrogate on the data it can see (the genuine
training interactions, plus the fake users it has made so far) and optimises
against that. `fit_surrogate` trains any registered CF backbone for this purpose,
with options the attack records in its own config, so a record says which
surrogate an attack used; `surrogate_scores` returns its full score matrix.

For attacks that differentiate through training (Rev's unrolled steps, PGA's
alternating updates), `DenseMF` is a small matrix factorisation over a dense
rating matrix whose fake-user rows can be a tensor in the autograd graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from recguard.config import param
from recguard.contracts import Config

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from recguard.contracts import Backbone, FitHooks, Model
    from recguard.data.interactions import Interactions


@dataclass
class SurrogateOptions(Config):
    """An attack's Config base: which recommender the attacker trains, and how long."""

    surrogate: str = param("mf", "the attacker's surrogate recommender (a registered backbone), "
                                 "trained on the data the attacker sees")
    surrogate_epochs: int = param(25, "surrogate training epochs", low=1)
    surrogate_dim: int = param(64, "surrogate embedding size", low=1)


def fit_surrogate(cls: "type[Backbone]", train: "Interactions", seed: int, options: SurrogateOptions,
                  hooks: "FitHooks | None" = None) -> "Model":
    """Train the surrogate backbone ``cls`` (the one registered as ``options.surrogate``:
    `recguard.registered("backbone", options.surrogate)`) on ``train`` (what the attacker
    sees) and return the model; ``hooks`` (e.g. an attack's own loss term) go to its training
    loop as a defense's would."""
    from recguard.config import build_config
    from recguard.contracts import FitContext, FitHooks
    from recguard.errors import RecguardError

    if cls.kind != "cf":
        raise RecguardError(f"surrogate {options.surrogate!r} is a {cls.kind} backbone; an attack's "
                            f"surrogate must be a CF backbone (e.g. mf)")
    wanted = {"epochs": options.surrogate_epochs, "dim": options.surrogate_dim}
    fields = set(cls.Config.__dataclass_fields__)
    config = build_config(cls.Config, {k: v for k, v in wanted.items() if k in fields}, "surrogate")
    return cls(config).fit(train, FitContext(seed=seed, hooks=hooks or FitHooks()))


def surrogate_scores(model: "Model", n_users: int, batch: int = 1024) -> np.ndarray:
    """Every user's scores of every item (n_users, n_items), float32, in user batches."""
    rows = [model.score(np.arange(start, min(start + batch, n_users)))
            for start in range(0, n_users, batch)]
    return np.vstack(rows).astype(np.float32) if rows else np.zeros((0, model.n_items), np.float32)


def dense_ratings(train: "Interactions") -> tuple[np.ndarray, np.ndarray]:
    """(ratings, observed): dense (n_users, n_items) float32 matrices of ``train``."""
    ratings = np.zeros((train.n_users, train.n_items), dtype=np.float32)
    ratings[train.user, train.item] = train.rating
    observed = np.zeros_like(ratings)
    observed[train.user, train.item] = 1.0
    return ratings, observed


class DenseMF:
    """Squared-error MF on observed entries of a dense matrix, trained by full-batch gradient
    steps that may stay in the autograd graph (``create_graph``), so that a loss on the
    trained factors can be differentiated with respect to the fake users' ratings."""

    def __init__(self, n_users: int, n_items: int, dim: int, seed: int, scale: float = 0.1):
        import torch

        generator = torch.Generator().manual_seed(seed)
        self.user = (torch.randn(n_users, dim, generator=generator) * scale).requires_grad_()
        self.item = (torch.randn(n_items, dim, generator=generator) * scale).requires_grad_()

    def loss(self, ratings: "torch.Tensor", observed: "torch.Tensor", l2: float,
             user: "torch.Tensor | None" = None, item: "torch.Tensor | None" = None) -> "torch.Tensor":
        user = self.user if user is None else user
        item = self.item if item is None else item
        error = (user @ item.T - ratings) * observed
        return (error ** 2).sum() / observed.sum().clamp(min=1) + l2 * (user.pow(2).mean() + item.pow(2).mean())

    def unrolled(self, ratings: "torch.Tensor", observed: "torch.Tensor", steps: int, lr: float,
                 l2: float, keep_graph: bool) -> tuple["torch.Tensor", "torch.Tensor"]:
        """``steps`` gradient steps from the current factors; returns the final (user, item)
        factors, differentiable with respect to ``ratings`` when ``keep_graph``."""
        import torch

        user, item = self.user, self.item
        for _ in range(steps):
            loss = self.loss(ratings, observed, l2, user, item)
            g_user, g_item = torch.autograd.grad(loss, (user, item), create_graph=keep_graph)
            user, item = user - lr * g_user, item - lr * g_item
            if not keep_graph:
                user, item = user.detach().requires_grad_(), item.detach().requires_grad_()
        return user, item


def top_fillers(scores: np.ndarray, targets: np.ndarray, filler_size: int,
                rng: np.random.Generator | None = None) -> np.ndarray:
    """Per row of ``scores`` (fake users x items), the ``filler_size`` highest-scoring
    non-target items: the projection of an optimised profile onto a discrete one."""
    masked = scores.astype(np.float64, copy=True)
    masked[:, targets] = -np.inf
    if rng is not None:   # break ties at random, not by item index
        masked += rng.random(masked.shape) * 1e-9
    k = min(filler_size, scores.shape[1] - len(targets))
    part = np.argpartition(-masked, k - 1, axis=1)[:, :k] if k > 0 else np.zeros((len(scores), 0), int)
    order = np.take_along_axis(masked, part, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(part, order, axis=1)
