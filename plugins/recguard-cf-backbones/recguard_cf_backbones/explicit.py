"""What the explicit-rating victims of RVD (AutoRec, CDAE, NSVD) share.

Each of them predicts a rating as a dot product of a *user row* and an *item row*
that the model computes from its parameters and the training rating matrix
(I-AutoRec: the decoder row of u and the hidden code of item i's rating vector;
CDAE: the hidden code of u's rating vector and the decoder row of i; NSVD: the
sum of the factors of u's items and q_i), a bias folded in as a column of ones.
So they train through the kit's shared loop (`recguard.kit.cf.embedding.fit_dot_product`:
mini-batches of observed ratings, squared error, every `FitHooks` hook) and RVD
fine-tunes them through `recguard.kit.cf.finetune_restore` (the generic path),
with no code of their own for either.

Objective. The papers' objective, sum over the observed ratings of the squared
error plus (lambda / 2) * ||theta||^2, divided by the number of training
ratings N so that a mini-batch's mean error plus ``weight_decay * penalty / (2N)``
(`RatingMatrixModel.batch_embeddings`) is an unbiased estimate of it:
``weight_decay`` is the papers' lambda.

Device. ``device=auto`` trains on this process's GPU when CUDA is available,
else on the CPU (`recguard.kit.lm.models.resolve_device`, as the sequential
backbones). Parameters are initialised on the CPU from the seed and then moved,
so a seed gives the same initial model on every device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from recguard import Backbone, Config, FitContext, Interactions, RecguardError, param


@dataclass
class ExplicitConfig(Config):
    """Training options every model here has; each model restates the defaults of its paper."""

    epochs: int = param(25, "passes over the training ratings", low=1)
    optimizer: Literal["adagrad", "adam", "sgd"] = param("adam", "optimizer of the mini-batch loop")
    lr: float = param(1e-3, "learning rate", low=0, open_low=True)
    batch_size: int = param(4096, "training ratings per mini-batch", low=1)
    weight_decay: float = param(0.0, "lambda of the objective's (lambda/2)||theta||^2", low=0)
    threads: int = param(1, "torch threads while training; 0 keeps torch's setting", low=0)
    device: str = param("auto", "cpu, cuda, cuda:1 ... or auto (this process's GPU when CUDA is "
                                "available, else the CPU)")


def rating_matrix(train: Interactions, by: Literal["user", "item"], values: np.ndarray | None,
                  n_users: int, device):
    """The training ratings as a sparse torch matrix, users x items (``by="user"``) or items x
    users; ``values`` None: the ratings. A pair rated twice keeps its last row."""
    import torch

    keys = train.user * train.n_items + train.item
    _, last = np.unique(keys[::-1], return_index=True)
    rows = len(keys) - 1 - last
    users, items = train.user[rows], train.item[rows]
    vals = (train.rating if values is None else values)[rows]
    index = np.stack([users, items] if by == "user" else [items, users])
    shape = (n_users, train.n_items) if by == "user" else (train.n_items, n_users)
    return torch.sparse_coo_tensor(torch.as_tensor(index), torch.as_tensor(vals, dtype=torch.float32),
                                   shape, check_invariants=True).coalesce().to(device)


def xavier(rows: int, cols: int, generator):
    """A (rows, cols) float32 tensor, uniform in +-sqrt(6 / (rows + cols)), on the CPU."""
    import torch

    bound = float(np.sqrt(6.0 / (rows + cols)))
    return torch.empty(rows, cols).uniform_(-bound, bound, generator=generator)


class RatingMatrixModel:
    """A model whose user and item rows are computed (``tables``) from parameters and the
    training matrix; scores are <user row, item row>. Subclasses list their ``parameters``,
    compute ``tables``, sum the squares of the regularised parameters in ``penalty`` (all
    of them unless overridden), grow
    their per-user parameters in ``grow_users`` and build their matrices in ``read_matrix``."""

    def __init__(self, n_users: int, n_items: int, generator):
        import torch

        self.n_users, self.n_items = n_users, n_items
        self.generator = generator        # the fit's seeded CPU generator: new rows, noise
        self.device = torch.device("cpu")
        self.n_ratings = 1                # N of the objective: ratings in the training set
        self.training = False             # True only inside the backbone's own fit

    # ---------------------------------------------------------------- for subclasses
    def parameters(self) -> list:
        raise NotImplementedError

    def tables(self, training: bool = False):
        """(users x d, items x d) rows in the autograd graph; ``training``: the training-time
        forward pass (CDAE corrupts its input)."""
        raise NotImplementedError

    def penalty(self):
        """||theta||^2 of the regularised parameters: by default every one (CDAE, NSVD)."""
        return sum(p.pow(2).sum() for p in self.parameters())

    def grow_users(self, extra: int) -> None:
        raise NotImplementedError

    def read_matrix(self, train: Interactions) -> None:
        raise NotImplementedError

    # ---------------------------------------------------------------- the kit's model protocol
    def to(self, device) -> "RatingMatrixModel":
        """Move every parameter (those ``parameters()`` lists are attributes) to ``device``."""
        import torch

        self.device = torch.device(device)
        for name, value in list(vars(self).items()):
            if isinstance(value, torch.nn.Parameter):
                setattr(self, name, torch.nn.Parameter(value.data.to(self.device)))
        return self

    def ensure_users(self, n_users: int) -> None:
        """Grow the per-user parameters when a defense injects users (APT's ERM users)."""
        if n_users > self.n_users:
            self.grow_users(n_users - self.n_users)
            self.n_users = n_users

    def set_training_data(self, train: Interactions) -> None:
        """Called before training and whenever a defense replaces the training set."""
        self.n_ratings = max(len(train), 1)
        self.read_matrix(train)

    def batch_embeddings(self, users, items, negatives):
        """The batch's (user, item, None) rows and the penalty scaled to one rating:
        ``||theta||^2 / (2N)`` (see the module docstring)."""
        user_rows, item_rows = self.tables(training=self.training)
        users, items = users.to(self.device), items.to(self.device)
        negative_rows = None if negatives is None else item_rows[negatives.to(self.device)]
        return user_rows[users], item_rows[items], negative_rows, self.penalty() / (2 * self.n_ratings)

    def score(self, users: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            user_rows, item_rows = self.tables()
            index = torch.as_tensor(np.asarray(users), dtype=torch.long, device=self.device)
            return (user_rows[index] @ item_rows.T).cpu().numpy()

    def user_embeddings(self) -> np.ndarray:
        """The user rows scores are dot products of (RVD's neighbour search reads them)."""
        import torch

        with torch.no_grad():
            return self.tables()[0].cpu().numpy().copy()

    def item_embeddings(self) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.tables()[1].cpu().numpy().copy()


class ExplicitBackbone(Backbone):
    """Fits a `RatingMatrixModel` through the kit's shared loop; subclasses build the model."""

    kind = "cf"
    feedback = frozenset({"explicit"})
    default_protocol = "apt"
    offers = frozenset({"embeddings", "user_weights", "loss_terms", "embedding_batch",
                        "epoch_callbacks", "twice_differentiable", "finetune"})
    Config = ExplicitConfig

    def build_model(self, train: Interactions, generator) -> RatingMatrixModel:
        raise NotImplementedError

    def resolved_config(self, protocol) -> dict:
        return self.config.to_dict()   # what RVD fine-tunes with ("as the original model")

    def fit(self, train: Interactions, ctx: FitContext) -> RatingMatrixModel:
        from recguard.kit.cf.embedding import fit_dot_product
        from recguard.kit.lm.models import resolve_device

        if train.feedback != "explicit":
            raise RecguardError(f"backbone {self.name!r} predicts explicit ratings; use an explicit "
                                f"protocol (apt)")
        device = resolve_device(self.config.device)   # before any work: a missing GPU fails at once

        def make(generator):
            model = self.build_model(train, generator).to(device)
            model.training = True
            return model

        model = fit_dot_product(make, train, ctx, self.config.to_dict())
        model.training = False   # fine-tuning (RVD) and scoring see the uncorrupted input
        return model
