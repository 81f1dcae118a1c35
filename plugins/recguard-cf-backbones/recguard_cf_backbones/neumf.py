"""NeuMF (He et al., Neural Collaborative Filtering, WWW 2017, sec. 3.4).

Two towers over separate embeddings: GMF, the element-wise product
p^G_u * q^G_i, and an MLP over the concatenation [p^M_u; q^M_i] with a tower
of ReLU layers, each half the width of the one before (sec. 4.1: "a tower
structure ... halving the layer size"). The prediction is h^T [GMF; MLP].

Each user's (item's) two embeddings are stored side by side in one row,
[p^G_u, p^M_u], so the shared training loop, the defenses that perturb the
batch's embeddings (APR, PamaCF: their ``embedding_batch``) and the embedding
norms PamaCF's c(u, t) reads all see one vector per user; `pair_scores` splits
the rows again. Trained like every CF backbone here: BPR on implicit data (the
PamaCF protocol; NCF's own log loss with sampled negatives is not used, so all
backbones share one loss), squared error on explicit ratings; no pre-training
of the towers (NCF's optional sec. 3.4.1 step).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recguard import Interactions, param
from recguard.kit.cf.embedding import DotProductConfig, EmbeddingBackbone, EmbeddingModel

SCORE_CHUNK = 256  # users scored at once: (chunk x items) pairs go through the MLP


@dataclass
class NeuMFConfig(DotProductConfig):
    mlp_layers: int = param(3, "ReLU layers of the MLP tower, widths 2d -> d -> d/2 ... (NCF: 3)", low=1)


def mlp_tower(dim: int, layers: int, generator):
    """Linear + ReLU layers from 2*dim, each half the width of the previous (at least 1)."""
    import torch

    modules, width = [], 2 * dim
    for _ in range(layers):
        out = max(width // 2, 1)
        linear = torch.nn.Linear(width, out)
        bound = float(np.sqrt(6.0 / (width + out)))  # xavier-uniform, as NCF initialises layers
        with torch.no_grad():
            linear.weight.uniform_(-bound, bound, generator=generator)
            linear.bias.zero_()
        modules += [linear, torch.nn.ReLU()]
        width = out
    return torch.nn.Sequential(*modules), width


class NeuMFModel(EmbeddingModel):
    # a user's scores read only its row, the item table and the (shared) towers (recguard.kit.cf.finetune_restore)
    local_parameters = True

    def __init__(self, n_users: int, n_items: int, dim: int, init: str, layers: int, generator):
        import torch

        super().__init__(n_users, n_items, 2 * dim, init, generator)  # rows are [GMF | MLP]
        self.dim = dim
        self.mlp, mlp_out = mlp_tower(dim, layers, generator)
        self.predict = torch.nn.Linear(dim + mlp_out, 1)
        bound = float(np.sqrt(6.0 / (dim + mlp_out + 1)))
        with torch.no_grad():
            self.predict.weight.uniform_(-bound, bound, generator=generator)
            self.predict.bias.zero_()

    def parameters(self) -> list:
        return super().parameters() + list(self.mlp.parameters()) + list(self.predict.parameters())

    def pair_scores(self, user, item):
        """h^T [p^G * q^G; MLP([p^M; q^M])] for rows of users and items (broadcasting)."""
        import torch

        d = self.dim
        user, item = torch.broadcast_tensors(user, item)
        gmf = user[..., :d] * item[..., :d]
        mlp = self.mlp(torch.cat([user[..., d:], item[..., d:]], dim=-1))
        return self.predict(torch.cat([gmf, mlp], dim=-1)).squeeze(-1)

    def score(self, users: np.ndarray) -> np.ndarray:
        import torch

        users = torch.as_tensor(np.asarray(users), dtype=torch.long)
        out = np.empty((len(users), self.n_items), dtype=np.float32)
        with torch.no_grad():
            items = self.item_emb[None, :, :]
            for start in range(0, len(users), SCORE_CHUNK):
                rows = self.user_emb[users[start:start + SCORE_CHUNK]][:, None, :]
                out[start:start + len(rows)] = self.pair_scores(rows, items).numpy()
        return out


class NeuMFBackbone(EmbeddingBackbone):
    name = "neumf"
    summary = "NeuMF: GMF and an MLP tower over separate embeddings, fused by a linear layer"
    paper = "He et al., Neural Collaborative Filtering, WWW 2017 (sec. 3.4); PamaCF (NeurIPS 2024) backbone"
    default_protocol = "pamacf"
    Config = NeuMFConfig

    def build_model(self, train: Interactions, cfg: dict, generator) -> NeuMFModel:
        return NeuMFModel(train.n_users, train.n_items, cfg["dim"], cfg["init"], cfg["mlp_layers"], generator)
