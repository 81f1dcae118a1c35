"""CDAE (Wu et al., Collaborative Denoising Auto-Encoders for Top-N Recommender Systems, WSDM 2016).

User-based: user u's rating vector y_u (one entry per item, unobserved 0) is
corrupted by dropout noise, each entry kept with probability 1 - q and scaled
by 1 / (1 - q) (unbiased), then encoded with a user-specific input node V_u:

    z_u = h(W^T y~_u + V_u + b),   h = sigmoid,
    y^_ui = f(W'_i^T z_u + b'_i),  f = identity,

W, W' (items x K), V (users x K), b (K), b' (items); the regulariser is
(lambda / 2)(||W||^2 + ||W'||^2 + ||V||^2 + ||b||^2 + ||b'||^2), every parameter, as
the authors' code (jasonyaw/CDAE, ``penalty_loss``) penalises.

Loss on explicit ratings. The paper trains on a user's observed entries plus
sampled unobserved ones with target 0 (implicit feedback, top-N). RVD uses CDAE
as a rating predictor next to AutoRec, MF and NSVD under the same explicit
protocol, and argues that an unobserved rating is not a 0 rating (Related Work,
on matrix completion), so here the loss is the squared error on the observed,
normalised ratings only, the input y_u holds those ratings, and no negatives are
sampled. The input is corrupted afresh for every mini-batch during the
backbone's own training only; scoring and RVD's fine-tuning see y_u uncorrupted.

As a dot product: y^_ui = <[z_u, 1], [W'_i, b'_i]>.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from recguard import Interactions, param

from recguard_cf_backbones.explicit import (ExplicitBackbone, ExplicitConfig, RatingMatrixModel,
                                            rating_matrix)


@dataclass
class CDAEConfig(ExplicitConfig):
    hidden: int = param(50, "hidden units K (the authors' experiment script, apps/yelp/cdae.sh: 50)",
                        low=1)
    corruption: float = param(0.5, "dropout level q of the input (the authors' code's default; its "
                                   "script sweeps 0-1)", low=0, high=1, open_high=True)
    epochs: int = param(100, "passes over the training ratings; the paper gives none (ours: "
                             "validation RMSE on ML-100K)", low=1)
    optimizer: Literal["adagrad", "adam", "sgd"] = param(
        "adam", "the authors' code uses per-user AdaGrad (lr 0.1, beta 1); ours: mini-batch Adam")
    lr: float = param(1e-3, "learning rate (ours)", low=0, open_low=True)
    batch_size: int = param(4096, "ratings per mini-batch (ours; the paper updates per user)", low=1)
    weight_decay: float = param(10.0, "lambda of the objective over all ratings (the authors' code: "
                                      "0.01 per SGD update; ours: validation RMSE on ML-100K)", low=0)


class CDAEModel(RatingMatrixModel):
    def __init__(self, n_users: int, n_items: int, hidden: int, corruption: float, generator):
        import torch

        super().__init__(n_users, n_items, generator)
        self.hidden, self.corruption = hidden, corruption
        self.W = torch.nn.Parameter(self._initial(n_items))       # encoder
        self.V = torch.nn.Parameter(self._initial(n_users))       # user nodes
        self.b = torch.nn.Parameter(torch.zeros(hidden))
        self.W_out = torch.nn.Parameter(self._initial(n_items))   # W'
        self.b_out = torch.nn.Parameter(torch.zeros(n_items))     # b'
        self.users_by_item = None   # users x items: the rating vectors y_u as rows

    def _initial(self, rows: int):
        """(rows, K) uniform in +-4 sqrt(6 / (items + K)), as the authors' code draws W and V."""
        import torch

        bound = 4.0 * float(np.sqrt(6.0 / (self.n_items + self.hidden)))
        return torch.empty(rows, self.hidden).uniform_(-bound, bound, generator=self.generator)

    def parameters(self) -> list:
        return [self.W, self.V, self.b, self.W_out, self.b_out]

    def read_matrix(self, train: Interactions) -> None:
        self.users_by_item = rating_matrix(train, "user", None, self.n_users, self.device)

    def grow_users(self, extra: int) -> None:
        import torch

        new = self._initial(extra).to(self.device)
        self.V = torch.nn.Parameter(torch.cat([self.V.data, new]))

    def corrupted(self):
        """y~: each observed entry dropped with probability q, the rest scaled by 1/(1-q)."""
        import torch

        y = self.users_by_item
        if self.corruption <= 0:
            return y
        keep = torch.rand(y._nnz(), generator=self.generator) >= self.corruption
        values = y.values() * keep.to(self.device) / (1.0 - self.corruption)
        return torch.sparse_coo_tensor(y.indices(), values, y.shape,
                                       check_invariants=False, is_coalesced=True)

    def hidden_codes(self, training: bool = False):
        """z_u for every user: (users, K); ``training``: from the corrupted input."""
        import torch

        y = self.corrupted() if training else self.users_by_item
        return torch.sigmoid(torch.sparse.mm(y, self.W) + self.V + self.b)

    def tables(self, training: bool = False):
        import torch

        z = self.hidden_codes(training)
        user_rows = torch.cat([z, torch.ones(len(z), 1, device=self.device)], dim=1)
        return user_rows, torch.cat([self.W_out, self.b_out[:, None]], dim=1)


class CDAEBackbone(ExplicitBackbone):
    name = "cdae"
    summary = "CDAE: denoising autoencoder of each user's rating vector with a user node; " \
              "squared loss on observed ratings"
    paper = "Wu et al., Collaborative Denoising Auto-Encoders for Top-N Recommender Systems, " \
            "WSDM 2016; RVD (2023) victim, sec. Experiments"
    Config = CDAEConfig

    def build_model(self, train: Interactions, generator) -> CDAEModel:
        return CDAEModel(train.n_users, train.n_items, self.config.hidden, self.config.corruption,
                         generator)
