"""NSVD (Paterek, Improving Regularized Singular Value Decomposition for Collaborative
Filtering, KDD Cup and Workshop 2007).

A user has no free factor; it is represented by the items it rated, N(u):

    r^_ui = b_u + b_i + q_i^T ( |N(u)|^-1/2 * sum_{j in N(u)} y_j ),

with item factors q_i and y_j and biases b_u, b_i, trained on the squared error
of the observed ratings plus (lambda / 2)(||q||^2 + ||y||^2 + ||b_u||^2 + ||b_i||^2).
N(u) is the set of items u rated in the training set (which ratings it gave does
not enter). The user factors of every user are one sparse product N Y, N the
users x items matrix with |N(u)|^-1/2 at u's items.

As a dot product: r^_ui = <[x_u, b_u, 1], [q_i, 1, b_i]>, x_u the sum above.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from recguard import Interactions, param

from recguard_cf_backbones.explicit import (ExplicitBackbone, ExplicitConfig, RatingMatrixModel,
                                            rating_matrix)


@dataclass
class NSVDConfig(ExplicitConfig):
    dim: int = param(64, "factors per item (the paper's sizes are for Netflix; ours: 64, as "
                         "APT's MF)", low=1)
    epochs: int = param(50, "passes over the training ratings (ours: validation RMSE on ML-100K)",
                        low=1)
    optimizer: Literal["adagrad", "adam", "sgd"] = param(
        "adam", "the paper uses SGD per rating; ours: mini-batch Adam")
    lr: float = param(1e-3, "learning rate (ours)", low=0, open_low=True)
    batch_size: int = param(4096, "ratings per mini-batch (ours; APT's batch)", low=1)
    weight_decay: float = param(10.0, "lambda of the objective over all ratings (the paper's "
                                      "constants are for per-rating SGD on Netflix; ours: best "
                                      "validation RMSE on ML-100K)", low=0)


class NSVDModel(RatingMatrixModel):
    def __init__(self, n_users: int, n_items: int, dim: int, generator):
        import torch

        super().__init__(n_users, n_items, generator)
        self.q = torch.nn.Parameter(torch.empty(n_items, dim).normal_(0.0, 0.1, generator=generator))
        self.y = torch.nn.Parameter(torch.empty(n_items, dim).normal_(0.0, 0.1, generator=generator))
        self.b_user = torch.nn.Parameter(torch.zeros(n_users))
        self.b_item = torch.nn.Parameter(torch.zeros(n_items))
        self.neighbourhood = None   # users x items, |N(u)|^-1/2 at u's rated items

    def parameters(self) -> list:
        return [self.q, self.y, self.b_user, self.b_item]

    def read_matrix(self, train: Interactions) -> None:
        rated = np.zeros(self.n_users, dtype=np.int64)
        pairs = np.unique(train.user * train.n_items + train.item)
        np.add.at(rated, pairs // train.n_items, 1)
        weight = 1.0 / np.sqrt(np.maximum(rated, 1))
        self.neighbourhood = rating_matrix(train, "user", weight[train.user].astype(np.float32),
                                           self.n_users, self.device)

    def grow_users(self, extra: int) -> None:
        import torch

        self.b_user = torch.nn.Parameter(torch.cat([self.b_user.data,
                                                    torch.zeros(extra, device=self.device)]))

    def user_factors(self):
        """|N(u)|^-1/2 sum_{j in N(u)} y_j for every user: (users, dim)."""
        import torch

        return torch.sparse.mm(self.neighbourhood, self.y)

    def tables(self, training: bool = False):
        import torch

        ones = lambda n: torch.ones(n, 1, device=self.device)  # noqa: E731
        user_rows = torch.cat([self.user_factors(), self.b_user[:, None], ones(self.n_users)], dim=1)
        item_rows = torch.cat([self.q, ones(self.n_items), self.b_item[:, None]], dim=1)
        return user_rows, item_rows


class NSVDBackbone(ExplicitBackbone):
    name = "nsvd"
    summary = "NSVD: a user is the normalised sum of the factors of the items it rated, plus biases"
    paper = "Paterek, Improving Regularized SVD for Collaborative Filtering, KDD Cup 2007 (NSVD); " \
            "RVD (2023) victim, sec. Experiments"
    Config = NSVDConfig

    def build_model(self, train: Interactions, generator) -> NSVDModel:
        return NSVDModel(train.n_users, train.n_items, self.config.dim, generator)
