"""Matrix factorisation: r_ui = p_u . q_i.

Explicit ratings (APT protocol): squared loss on the observed, normalised
ratings, trained with Adagrad as in APT's code (Wu et al., SIGIR 2021, sec. 2.1
and 5.1.5: d = 64, 25 epochs, Adagrad). Implicit data (PamaCF protocol): BPR
with one uniformly drawn negative per positive, Adam, lr 1e-3, L2 1e-4 on the
batch's embeddings, batch 2048, 30 epochs (PamaCF's public code; Rendle et al.,
UAI 2009 for BPR).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from recguard.components import Backbone, Config, FitContext
from recguard.config import param
from recguard.data.interactions import Interactions

# Paper defaults per feedback type; a None option takes the value from here.
DEFAULTS = {
    "explicit": {"epochs": 25, "optimizer": "adagrad", "lr": 10.0, "batch_size": 4096,
                 "weight_decay": 1e-12, "init": "xavier"},
    "implicit": {"epochs": 30, "optimizer": "adam", "lr": 1e-3, "batch_size": 2048,
                 "weight_decay": 1e-4, "init": "normal"},
}


@dataclass
class MFConfig(Config):
    dim: int = param(64, "latent factors (APT, PamaCF: 64)", low=1)
    epochs: int | None = param(None, "epochs; None: 25 explicit (APT), 30 implicit (PamaCF)", low=1)
    optimizer: Literal["adagrad", "adam", "sgd"] | None = param(
        None, "None: adagrad explicit (APT), adam implicit (PamaCF)")
    lr: float | None = param(None, "learning rate; None: the feedback type's default",
                             low=0, open_low=True)
    batch_size: int | None = param(None, "None: 4096 explicit (APT), 2048 implicit (PamaCF)", low=1)
    weight_decay: float | None = param(None, "L2 on the batch's embeddings; None: 1e-12 "
                                             "explicit (APT), 1e-4 implicit (PamaCF)", low=0)
    init: Literal["xavier", "normal"] | None = param(
        None, "xavier (APT) or normal std 0.1 (PamaCF); None: by feedback type")
    threads: int = param(1, "torch threads while training (one is fastest for small tables); "
                            "0 keeps torch's setting", low=0)


class MFModel:
    """Trained factors; scores are p_u . q_i for every item."""

    def __init__(self, n_users: int, n_items: int, dim: int, init: str, generator):
        import torch

        def table(n):
            w = torch.empty(n, dim)
            if init == "xavier":
                bound = float(np.sqrt(6.0 / (n + dim)))
                w.uniform_(-bound, bound, generator=generator)
            else:
                w.normal_(0.0, 0.1, generator=generator)
            return torch.nn.Parameter(w)

        self._table = table
        self.user_emb = table(n_users)
        self.item_emb = table(n_items)
        self.n_items = n_items

    def parameters(self):
        return [self.user_emb, self.item_emb]

    def ensure_users(self, n_users: int) -> None:
        """Grow the user table when a defense injects users (e.g. APT's ERM users)."""
        import torch

        extra = n_users - self.user_emb.shape[0]
        if extra > 0:
            grown = torch.cat([self.user_emb.data, self._table(extra).data])
            self.user_emb = torch.nn.Parameter(grown)

    # F.embedding's backward is markedly faster than indexing a Parameter on the CPU.
    def users(self, index):
        import torch

        return torch.nn.functional.embedding(index, self.user_emb)

    def items(self, index):
        import torch

        return torch.nn.functional.embedding(index, self.item_emb)

    def predict(self, users, items):
        return (self.users(users) * self.items(items)).sum(-1)

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
        return self._resolve(protocol.feedback)

    def _resolve(self, feedback: str) -> dict:
        out = self.config.to_dict()
        for key, value in DEFAULTS[feedback].items():
            if out.get(key) is None:
                out[key] = value
        return out

    def fit(self, train: Interactions, ctx: FitContext) -> MFModel:
        from recguard.training import torch_threads

        with torch_threads(self.config.threads):
            return self._fit(train, ctx)

    def _fit(self, train: Interactions, ctx: FitContext) -> MFModel:
        import torch

        from recguard.training import (dot_product_loss, run_epochs, sample_negatives,
                                       seed_everything, torch_generator)

        cfg = self._resolve(train.feedback)
        seed_everything(ctx.seed)
        gen = torch_generator(ctx.seed)
        rng = np.random.default_rng([ctx.seed, 0xB1])
        model = MFModel(train.n_users, train.n_items, cfg["dim"], cfg["init"], gen)
        make_optimizer = {"adagrad": lambda p: torch.optim.Adagrad(
                              p, lr=cfg["lr"], initial_accumulator_value=0.1),
                          "adam": lambda p: torch.optim.Adam(p, lr=cfg["lr"]),
                          "sgd": lambda p: torch.optim.SGD(p, lr=cfg["lr"])}[cfg["optimizer"]]
        state = {"optimizer": make_optimizer(model.parameters()), "n_users": train.n_users}
        implicit = train.feedback == "implicit"
        loss_fn = dot_product_loss(implicit)

        def train_epoch(epoch, epoch_state):
            data = epoch_state.train
            if data.n_users != state["n_users"]:  # users were injected: new parameters
                state["optimizer"] = make_optimizer(model.parameters())
                state["n_users"] = data.n_users
            optimizer = state["optimizer"]
            users = torch.as_tensor(data.user)
            items = torch.as_tensor(data.item)
            ratings = torch.as_tensor(data.rating)
            weights = None if epoch_state.row_weight is None else torch.as_tensor(epoch_state.row_weight)
            negatives = torch.as_tensor(sample_negatives(data, data.user, rng)) if implicit else None
            order = torch.randperm(len(data), generator=gen)
            total, count = 0.0, 0
            for start in range(0, len(order), cfg["batch_size"]):
                rows = order[start:start + cfg["batch_size"]]
                u, i = users[rows], items[rows]
                j = negatives[rows] if implicit else None
                r = ratings[rows]
                pu, qi = model.users(u), model.items(i)
                qj = model.items(j) if implicit else None
                per_row = loss_fn(pu, qi, qj, r)
                if implicit:
                    reg = (pu.pow(2).sum() + qi.pow(2).sum() + qj.pow(2).sum()) / (2 * len(rows))
                else:
                    reg = pu.pow(2).mean() + qi.pow(2).mean()
                row_weight = None if weights is None else weights[rows]
                loss = (per_row if row_weight is None else per_row * row_weight).mean() \
                    + cfg["weight_decay"] * reg
                extra = ctx.hooks.extra_loss(epoch, model, {
                    "users": u, "items": i, "negatives": j, "ratings": r, "rows": rows,
                    "row_weight": row_weight, "user_emb": pu, "pos_emb": qi, "neg_emb": qj,
                    "loss_fn": loss_fn})
                if extra is not None:
                    loss = loss + extra
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(rows)
                count += len(rows)
            return total / max(count, 1)

        run_epochs(model, train, cfg["epochs"], ctx, train_epoch)
        return model

