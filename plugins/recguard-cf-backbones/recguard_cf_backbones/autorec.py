"""I-AutoRec (Sedhain et al., AutoRec: Autoencoders Meet Collaborative Filtering, WWW 2015).

Item-based: each item's partially observed rating vector r_i (one entry per user,
unobserved entries 0) is encoded and reconstructed,

    h(r_i) = f(W g(V r_i + mu) + b),   g = sigmoid, f = identity,

V (k x users), mu (k), W (users x k), b (users), and the prediction of user u's
rating of item i is h(r_i)_u. The objective (paper eq. 2) counts observed ratings
only, sum_i ||r_i - h(r_i)||^2_O + (lambda / 2)(||W||^2 + ||V||^2).

As a dot product: h(r_i)_u = <[W_u, b_u], [g(V r_i + mu), 1]>, so the user row is
W's row u with its bias and the item row is item i's hidden code. Training on
mini-batches of observed ratings (the kit's loop) minimises the same sum as the
paper's per-item reconstruction; the codes of all items are one sparse product
R^T V^T per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from recguard import Interactions, param

from recguard_cf_backbones.explicit import (ExplicitBackbone, ExplicitConfig, RatingMatrixModel,
                                            rating_matrix, xavier)


@dataclass
class AutoRecConfig(ExplicitConfig):
    hidden: int = param(500, "hidden units k (the paper: 500)", low=1)
    epochs: int = param(25, "passes over the training ratings; the paper gives none (ours: as "
                            "APT's MF; 50 gave the same validation HR@50)", low=1)
    optimizer: Literal["adagrad", "adam", "sgd"] = param(
        "adam", "the paper uses full-batch RProp / L-BFGS; ours: mini-batch Adam")
    lr: float = param(1e-3, "learning rate (ours)", low=0, open_low=True)
    batch_size: int = param(4096, "ratings per mini-batch (ours; APT's batch)", low=1)
    weight_decay: float = param(10.0, "lambda (the paper tunes it per dataset in {0.001, 0.01, 0.1, "
                                      "1, 100, 1000}; ours: best validation RMSE on ML-100K)", low=0)


class AutoRecModel(RatingMatrixModel):
    def __init__(self, n_users: int, n_items: int, hidden: int, generator):
        import torch

        super().__init__(n_users, n_items, generator)
        self.hidden = hidden
        self.V = torch.nn.Parameter(xavier(hidden, n_users, generator))    # encoder
        self.mu = torch.nn.Parameter(torch.zeros(hidden))
        self.W = torch.nn.Parameter(xavier(n_users, hidden, generator))    # decoder
        self.b = torch.nn.Parameter(torch.zeros(n_users))
        self.items_by_user = None   # items x users: the rating vectors r_i as rows

    def parameters(self) -> list:
        return [self.V, self.mu, self.W, self.b]

    def read_matrix(self, train: Interactions) -> None:
        self.items_by_user = rating_matrix(train, "item", None, self.n_users, self.device)

    def grow_users(self, extra: int) -> None:
        import torch

        new_v = xavier(self.hidden, extra, self.generator).to(self.device)
        new_w = xavier(extra, self.hidden, self.generator).to(self.device)
        self.V = torch.nn.Parameter(torch.cat([self.V.data, new_v], dim=1))
        self.W = torch.nn.Parameter(torch.cat([self.W.data, new_w]))
        self.b = torch.nn.Parameter(torch.cat([self.b.data, torch.zeros(extra, device=self.device)]))

    def codes(self):
        """g(V r_i + mu) for every item: (items, k)."""
        import torch

        return torch.sigmoid(torch.sparse.mm(self.items_by_user, self.V.T) + self.mu)

    def reconstruct(self):
        """h(r_i) for every item: (items, users), the paper's network output."""
        return self.codes() @ self.W.T + self.b

    def tables(self, training: bool = False):
        import torch

        user_rows = torch.cat([self.W, self.b[:, None]], dim=1)
        codes = self.codes()
        return user_rows, torch.cat([codes, torch.ones(len(codes), 1, device=self.device)], dim=1)

    def penalty(self):
        return self.W.pow(2).sum() + self.V.pow(2).sum()


class AutoRecBackbone(ExplicitBackbone):
    name = "autorec"
    summary = "I-AutoRec: an autoencoder reconstructs each item's observed rating vector (sigmoid code)"
    paper = "Sedhain et al., AutoRec: Autoencoders Meet Collaborative Filtering, WWW 2015 (eq. 1-2); " \
            "RVD (2023) victim, sec. Experiments"
    Config = AutoRecConfig

    def build_model(self, train: Interactions, generator) -> AutoRecModel:
        return AutoRecModel(train.n_users, train.n_items, self.config.hidden, generator)
