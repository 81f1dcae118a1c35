"""Matrix factorisation: r_ui = p_u . q_i.

Explicit ratings (APT protocol): squared loss on the observed, normalised
ratings, trained with Adagrad as in APT's code (Wu et al., SIGIR 2021, sec. 2.1
and 5.1.5: d = 64, 25 epochs, Adagrad). Implicit data (PamaCF protocol): BPR
with one uniformly drawn negative per positive, Adam, lr 1e-3, L2 1e-4 on the
batch's embeddings, batch 2048, 30 epochs (PamaCF's public code; Rendle et al.,
UAI 2009 for BPR). The training loop is the shared `recguard.cf.fit_dot_product`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recguard.cf import DotProductConfig, embedding_table, fit_dot_product
from recguard.components import Backbone, FitContext
from recguard.data.interactions import Interactions


@dataclass
class MFConfig(DotProductConfig):
    pass


class MFModel:
    """Trained factors; scores are p_u . q_i for every item."""

    def __init__(self, n_users: int, n_items: int, dim: int, init: str, generator):
        self._new_rows = lambda n: embedding_table(n, dim, init, generator)
        self.user_emb = self._new_rows(n_users)
        self.item_emb = self._new_rows(n_items)
        self.n_items = n_items

    def parameters(self):
        return [self.user_emb, self.item_emb]

    def ensure_users(self, n_users: int) -> None:
        """Grow the user table when a defense injects users (e.g. APT's ERM users)."""
        import torch

        extra = n_users - self.user_emb.shape[0]
        if extra > 0:
            self.user_emb = torch.nn.Parameter(torch.cat([self.user_emb.data, self._new_rows(extra).data]))

    def set_training_data(self, train: Interactions) -> None:
        """MF needs nothing from the training set beyond its batches."""

    # F.embedding's backward is markedly faster than indexing a Parameter on the CPU.
    def users(self, index):
        import torch

        return torch.nn.functional.embedding(index, self.user_emb)

    def items(self, index):
        import torch

        return torch.nn.functional.embedding(index, self.item_emb)

    def batch_embeddings(self, users, items, negatives):
        pu, qi = self.users(users), self.items(items)
        if negatives is None:
            return pu, qi, None, pu.pow(2).mean() + qi.pow(2).mean()
        qj = self.items(negatives)
        reg = (pu.pow(2).sum() + qi.pow(2).sum() + qj.pow(2).sum()) / (2 * len(users))
        return pu, qi, qj, reg

    def score(self, users: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            u = self.user_emb[torch.as_tensor(users, dtype=torch.long)]
            return (u @ self.item_emb.T).numpy()

    def user_embeddings(self) -> np.ndarray:
        return self.user_emb.detach().numpy().copy()

    def item_embeddings(self) -> np.ndarray:
        return self.item_emb.detach().numpy().copy()


class MFBackbone(Backbone):
    name = "mf"
    summary = "Matrix factorisation: squared loss on explicit ratings, BPR on implicit data"
    paper = "Koren et al., IEEE Computer 2009; Rendle et al., BPR, UAI 2009"
    kind = "cf"
    default_protocol = "apt"
    offers = frozenset({"embeddings", "user_weights", "loss_terms", "embedding_batch",
                        "epoch_callbacks", "twice_differentiable"})
    Config = MFConfig

    def resolved_config(self, protocol) -> dict:
        return self.config.resolved(protocol.feedback)

    def fit(self, train: Interactions, ctx: FitContext) -> MFModel:
        cfg = self.config.resolved(train.feedback)
        return fit_dot_product(
            lambda generator: MFModel(train.n_users, train.n_items, cfg["dim"], cfg["init"], generator),
            train, ctx, cfg)
