"""Matrix factorisation: r_ui = p_u . q_i.

Explicit ratings (APT protocol): squared loss on the observed, normalised
ratings, trained with Adagrad as in APT's code (Wu et al., SIGIR 2021, sec. 2.1
and 5.1.5: d = 64, 25 epochs, Adagrad). Implicit data (PamaCF protocol): BPR
with one uniformly drawn negative per positive, Adam, lr 1e-3, L2 1e-4 on the
batch's embeddings, batch 2048, 30 epochs (PamaCF's public code; Rendle et al.,
UAI 2009 for BPR). The training loop is the shared `recguard.kit.cf.embedding.fit_dot_product`.
"""

from __future__ import annotations

from dataclasses import dataclass

from recguard import Interactions
from recguard.kit.cf.embedding import DotProductConfig, EmbeddingBackbone, EmbeddingModel


@dataclass
class MFConfig(DotProductConfig):
    pass


class MFModel(EmbeddingModel):
    """Trained factors; scores are p_u . q_i for every item."""

    local_parameters = True  # a user's scores read only its row and the item table (recguard.kit.cf.finetune_restore)


class MFBackbone(EmbeddingBackbone):
    name = "mf"
    summary = "Matrix factorisation: squared loss on explicit ratings, BPR on implicit data"
    paper = "Koren et al., IEEE Computer 2009; Rendle et al., BPR, UAI 2009"
    default_protocol = "apt"
    Config = MFConfig

    def build_model(self, train: Interactions, cfg: dict, generator) -> MFModel:
        return MFModel(train.n_users, train.n_items, cfg["dim"], cfg["init"], generator)
