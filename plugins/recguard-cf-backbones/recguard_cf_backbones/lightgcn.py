"""LightGCN (He et al., SIGIR 2020): embeddings smoothed over the user-item graph.

E^(k+1) = D^-1/2 A D^-1/2 E^(k) on the bipartite graph of the training
interactions, the final embeddings the mean of layers 0..K (Eq. 8-9 of the
paper, alpha_k = 1/(K+1)); score <e_u, e_i>. The normalised adjacency is a
sparse matrix (never a dense (U+I)^2 one) rebuilt whenever the training set
changes (a defense injecting users). Trained by the shared dot-product loop:
BPR on implicit data (as in LightGCN and PamaCF), squared error on explicit
ratings; L2 on the batch's layer-0 embeddings, as LightGCN regularises.
The graph code is `recguard.kit.cf.graph`; ``set_edge_weights`` lets a defense
weight the edges (StDenoise's reliabilities).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recguard import Interactions, param
from recguard.kit.cf.embedding import DotProductConfig, EmbeddingBackbone, EmbeddingModel
from recguard.kit.cf.graph import normalised_adjacency, propagate


@dataclass
class LightGCNConfig(DotProductConfig):
    layers: int = param(3, "propagation layers K (LightGCN's default, also PamaCF's code)", low=0)


class LightGCNModel(EmbeddingModel):
    def __init__(self, n_users: int, n_items: int, dim: int, init: str, layers: int, generator):
        super().__init__(n_users, n_items, dim, init, generator)
        self.layers = layers
        self.graph = None
        self.edge_weight = None

    def set_training_data(self, train: Interactions) -> None:
        self.edge_weight = None
        self.graph = normalised_adjacency(train, self.user_emb.shape[0])

    def set_edge_weights(self, train: Interactions, weight, norm: str = "row") -> None:
        """Propagate over ``train``'s interactions weighted by ``weight`` (one per row; 0
        removes the edge), normalised by ``norm`` (`recguard.kit.cf.graph`); a denoising
        defense (RGCF's soft denoising) calls it, ``set_training_data`` resets it."""
        self.edge_weight = weight
        self.graph = normalised_adjacency(train, self.user_emb.shape[0], edge_weight=weight, norm=norm)

    def propagate(self):
        """Final (user, item) embeddings: the mean of the K+1 layers."""
        return propagate(self.graph, self.user_emb, self.item_emb, self.layers)

    def batch_embeddings(self, users, items, negatives):
        final_users, final_items = self.propagate()
        pu, qi = final_users[users], final_items[items]
        qj = None if negatives is None else final_items[negatives]
        ego = [self.users(users), self.items(items)]
        if negatives is not None:
            ego.append(self.items(negatives))
            reg = sum(e.pow(2).sum() for e in ego) / (2 * len(users))
        else:
            reg = sum(e.pow(2).mean() for e in ego)
        return pu, qi, qj, reg

    def _final_numpy(self):
        import torch

        with torch.no_grad():
            users, items = self.propagate()
        return users.numpy(), items.numpy()

    def score(self, users: np.ndarray) -> np.ndarray:
        final_users, final_items = self._final_numpy()
        return final_users[np.asarray(users)] @ final_items.T

    def user_embeddings(self) -> np.ndarray:
        """The propagated user embeddings: those that enter the dot-product loss."""
        return self._final_numpy()[0].copy()

    def item_embeddings(self) -> np.ndarray:
        return self._final_numpy()[1].copy()


class LightGCNBackbone(EmbeddingBackbone):
    name = "lightgcn"
    summary = "LightGCN: embeddings propagated over the sparse user-item graph, layer mean"
    paper = "He et al., LightGCN, SIGIR 2020 (Eq. 8-9); PamaCF (NeurIPS 2024) backbone"
    default_protocol = "pamacf"
    Config = LightGCNConfig

    def build_model(self, train: Interactions, cfg: dict, generator) -> LightGCNModel:
        return LightGCNModel(train.n_users, train.n_items, cfg["dim"], cfg["init"], cfg["layers"], generator)
