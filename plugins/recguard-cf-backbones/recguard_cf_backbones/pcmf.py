"""PCMF (Bampis, Rusu, Hajj, Bovik, Robust Matrix Factorization for Collaborative Filtering
in Recommender Systems, Asilomar 2017), as APT describes its baseline (Wu et al., SIGIR
2021, sec. 5.1.3):

    "Unlike traditional matrix factorization to learn two matrices U and V, this method
    only optimizes one user-item interaction matrix U ∈ R^{n×m}, and then estimates the
    complete matrix by U U^T Y, where Y ∈ R^{n×m} is the training matrix."

So R^ = U U^T Y: the item factors are not free, they are V = Y^T U, the items' training
ratings projected on the user factors, and a user's predicted row is a learned user-user
kernel (U U^T) applied to the training matrix. Trained, as APT's MF (sec. 2.1, Eq. 1), on
the squared error of the observed ratings plus λ‖U‖_F².

As a dot product: r^_ui = <U_u, (Y^T U)_i>, so it trains through the kit's shared loop
(mini-batches of observed ratings, every `FitHooks` hook) like the other explicit models.
Y holds every training rating, a poisoned one included: the attacker's rows enter both
the loss and the item factors.

``rank`` is U's number of columns. APT states U ∈ R^{n×m}; U U^T, an n×n positive
semi-definite kernel, then has rank at most min(n, m), and every such kernel is U U^T
for a U of min(n, m) columns: None gives that many (the same model as n×m, fewer
parameters when m > n, as on ML-100K). A smaller rank gives the low-rank projection
U U^T Y with U ∈ R^{n×d}.
``exclude_self`` (an ablation, off by default) drops each user's own term
<U_u, U_u> Y_u from its prediction, which removes the trivial fit U U^T = I.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from recguard import Interactions, param

from recguard_cf_backbones.explicit import (ExplicitBackbone, ExplicitConfig, RatingMatrixModel,
                                            rating_matrix)


@dataclass
class PCMFConfig(ExplicitConfig):
    rank: int | None = param(None, "columns of U; None: min(n, m), the largest rank U U^T can "
                                   "have, i.e. APT's U ∈ R^{n×m} (sec. 5.1.3) with fewer columns "
                                   "when m > n (the same n×n kernels)", low=1)
    epochs: int = param(25, "passes over the training ratings (APT sec. 5.1.5: 25, as its MF)",
                        low=1)
    optimizer: Literal["adagrad", "adam", "sgd"] = param(
        "adagrad", "Adagrad, as APT's MF (sec. 5.1.5)")
    lr: float = param(0.05, "learning rate (ours: validation HR@50 on ML-100K, see README; "
                            "APT's MF lr of 10 trains worse on U U^T Y)", low=0, open_low=True)
    batch_size: int = param(4096, "ratings per mini-batch (APT's code)", low=1)
    weight_decay: float = param(10.0, "λ of the objective's (λ/2)‖U‖² over all ratings (ours: "
                                      "validation HR@50 on ML-100K, see README)", low=0)
    init_std: float = param(0.01, "U's initial entries ~ N(0, init_std²) (ours: small, so "
                                  "U U^T starts near zero rather than near a multiple of I)",
                            low=0, open_low=True)
    exclude_self: bool = param(False, "ablation: leave the user's own ratings out of its "
                                      "prediction (zero diagonal of U U^T)")


class PCMFModel(RatingMatrixModel):
    def __init__(self, n_users: int, n_items: int, rank: int, init_std: float,
                 exclude_self: bool, generator):
        import torch

        super().__init__(n_users, n_items, generator)
        self.rank = rank
        self.init_std = init_std
        self.exclude_self = exclude_self
        self.u = torch.nn.Parameter(self._initial(n_users))
        self.y_items = None    # items x users: the training matrix, transposed

    def _initial(self, rows: int):
        import torch

        return torch.empty(rows, self.rank).normal_(0.0, self.init_std, generator=self.generator)

    def parameters(self) -> list:
        return [self.u]

    def read_matrix(self, train: Interactions) -> None:
        import warnings

        # CSR: its product with a dense U (and the product's backward) is ~1.7x faster than COO's
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)   # "CSR support is in beta state"
            self.y_items = rating_matrix(train, "item", None, self.n_users, self.device).to_sparse_csr()
        if self.exclude_self:
            self.y_users = rating_matrix(train, "user", None, self.n_users, self.device)

    def grow_users(self, extra: int) -> None:
        import torch

        self.u = torch.nn.Parameter(torch.cat([self.u.data, self._initial(extra).to(self.device)]))

    def tables(self, training: bool = False):
        """(U, Y^T U): scores U (Y^T U)^T = U U^T Y."""
        import torch

        return self.u, self.y_items @ self.u

    def batch_embeddings(self, users, items, negatives):
        user_rows, item_rows, negative_rows, penalty = super().batch_embeddings(users, items, negatives)
        if not self.exclude_self:
            return user_rows, item_rows, negative_rows, penalty
        # <U_u, (Y^T U)_i> - <U_u, U_u> Y_ui: the same rows with the user's own term removed
        # from the item row (a per-pair correction, so the loop's dot product stays exact)
        own = self._own_ratings(users.to(self.device), items.to(self.device))
        item_rows = item_rows - own[:, None] * user_rows
        return user_rows, item_rows, negative_rows, penalty

    def _own_ratings(self, users, items):
        """Y_ui of each pair (0 where unrated)."""
        import torch

        dense_rows = torch.index_select(self.y_users, 0, users).to_dense()
        return dense_rows[torch.arange(len(users), device=self.device), items]

    def score(self, users: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            user_rows, item_rows = self.tables()
            index = torch.as_tensor(np.asarray(users), dtype=torch.long, device=self.device)
            scores = user_rows[index] @ item_rows.T
            if self.exclude_self:
                own = torch.index_select(self.y_users, 0, index).to_dense()
                scores = scores - user_rows[index].pow(2).sum(-1, keepdim=True) * own
            return scores.cpu().numpy()


class PCMFBackbone(ExplicitBackbone):
    name = "pcmf"
    summary = "PCMF: one user matrix U, ratings estimated as U U^T Y (Y the training matrix)"
    paper = ("Bampis et al., Robust Matrix Factorization for Collaborative Filtering in "
             "Recommender Systems, Asilomar 2017; as APT's baseline (Wu et al., SIGIR 2021, "
             "sec. 5.1.3)")
    Config = PCMFConfig

    def build_model(self, train: Interactions, generator) -> PCMFModel:
        rank = self.config.rank or min(train.n_users, train.n_items)
        return PCMFModel(train.n_users, train.n_items, rank, self.config.init_std,
                         self.config.exclude_self, generator)


class RMFBackbone(PCMFBackbone):
    """The same model under the name RVD gives it (Xu et al., AAAI 2024, sec. 5 and App. C:
    "Robust Matrix Factorization (RMF) (Bampis et al. 2017)"), so RVD's tables can be re-run
    by their own row names."""

    name = "rmf"
    summary = "RMF: RVD's name for PCMF (Bampis et al. 2017), ratings estimated as U U^T Y"
    paper = ("Bampis et al., Robust Matrix Factorization for Collaborative Filtering in "
             "Recommender Systems, Asilomar 2017; as RVD's baseline (Xu et al., AAAI 2024, App. C)")
