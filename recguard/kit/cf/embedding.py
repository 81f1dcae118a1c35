"""Shared pieces of the embedding-based CF backbones (MF, LightGCN, NeuMF, AutoRec, CDAE, NSVD).

`DotProductConfig` holds the training options whose None means "the paper's
default for this feedback type" (APT's MF on explicit ratings, PamaCF's code
on implicit data); `fit_dot_product` is the one training loop: BPR with one
uniform negative per positive on implicit data, squared error on explicit
ratings, every `FitHooks` hook honoured (through `recguard.kit.cf.loop.run_epochs`)
and the batch's embeddings handed to ``extra_loss`` (``embedding_batch``).

A model trained here provides ``parameters()``, ``ensure_users(n)``,
``set_training_data(train)``, ``batch_embeddings(users, items, negatives)``
returning the (user, positive, negative) embedding rows in the autograd graph
and the L2 regulariser of the batch's parameters, and optionally
``pair_scores(user_emb, item_emb)`` (default: the dot product; NeuMF scores
through its MLP) and ``device`` (a model on a GPU: the batch's ratings and weights
are put there, its index tensors stay on the CPU for the model to move).
`per_row_loss` evaluates the training loss of any rows, for defenses that need it
outside the loop (APT's influence, RVD's fine-tuning).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from recguard.config import param
from recguard.contracts import Backbone, Config, FitContext
from recguard.data.interactions import Interactions

# Paper defaults per feedback type; a None option takes the value from here.
DEFAULTS = {
    # APT's code (Daftstone/APT): observed ratings only, Adagrad lr 10 (TF's initial
    # accumulator 0.1), batch 4096, 25 epochs, xavier init, L2 1e-12.
    "explicit": {"epochs": 25, "optimizer": "adagrad", "lr": 10.0, "batch_size": 4096,
                 "weight_decay": 1e-12, "init": "xavier"},
    # PamaCF's code: Adam lr 1e-3, weight decay 1e-4, batch 2048, 30 epochs.
    "implicit": {"epochs": 30, "optimizer": "adam", "lr": 1e-3, "batch_size": 2048,
                 "weight_decay": 1e-4, "init": "normal"},
}


@dataclass
class DotProductConfig(Config):
    dim: int = param(64, "embedding size (APT, PamaCF: 64)", low=1)
    epochs: int | None = param(None, "epochs; None: 25 explicit (APT), 30 implicit (PamaCF)", low=1)
    optimizer: Literal["adagrad", "adam", "sgd"] | None = param(
        None, "None: adagrad explicit (APT), adam implicit (PamaCF)")
    lr: float | None = param(None, "learning rate; None: 10 explicit (APT's Adagrad), 1e-3 implicit",
                             low=0, open_low=True)
    batch_size: int | None = param(None, "None: 4096 explicit (APT), 2048 implicit (PamaCF)", low=1)
    weight_decay: float | None = param(None, "L2 on the batch's embeddings; None: 1e-12 "
                                             "explicit (APT), 1e-4 implicit (PamaCF)", low=0)
    init: Literal["xavier", "normal"] | None = param(
        None, "xavier (APT) or normal std 0.1 (PamaCF); None: by feedback type")
    threads: int = param(1, "torch threads while training (one is fastest for small tables); "
                            "0 keeps torch's setting", low=0)

    def resolved(self, feedback: str) -> dict:
        out = self.to_dict()
        for key, value in DEFAULTS[feedback].items():
            if out.get(key) is None:
                out[key] = value
        return out


def embedding_table(n: int, dim: int, init: str, generator):
    """A trainable (n, dim) table: xavier-uniform or normal with std 0.1."""
    import torch

    weight = torch.empty(n, dim)
    if init == "xavier":
        bound = float(np.sqrt(6.0 / (n + dim)))
        weight.uniform_(-bound, bound, generator=generator)
    else:
        weight.normal_(0.0, 0.1, generator=generator)
    return torch.nn.Parameter(weight)


class EmbeddingModel:
    """User and item embedding tables trained by `fit_dot_product`; scores <p_u, q_i>.

    Subclasses change how embeddings are produced (LightGCN propagates them) or
    how a pair is scored (``pair_scores``: NeuMF's MLP)."""

    def __init__(self, n_users: int, n_items: int, dim: int, init: str, generator):
        self._new_rows = lambda n: embedding_table(n, dim, init, generator)
        self.user_emb = self._new_rows(n_users)
        self.item_emb = self._new_rows(n_items)
        self.n_items = n_items

    def parameters(self) -> list:
        return [self.user_emb, self.item_emb]

    def ensure_users(self, n_users: int) -> None:
        """Grow the user table when a defense injects users (e.g. APT's ERM users)."""
        import torch

        extra = n_users - self.user_emb.shape[0]
        if extra > 0:
            self.user_emb = torch.nn.Parameter(torch.cat([self.user_emb.data, self._new_rows(extra).data]))

    def set_training_data(self, train: Interactions) -> None:
        """Called before training and whenever a defense replaces the training set."""

    # F.embedding's backward is markedly faster than indexing a Parameter on the CPU.
    def users(self, index):
        import torch

        return torch.nn.functional.embedding(index, self.user_emb)

    def items(self, index):
        import torch

        return torch.nn.functional.embedding(index, self.item_emb)

    def batch_embeddings(self, users, items, negatives):
        """(user, positive, negative) rows and the L2 term: the mean square on explicit
        data (APT's code), half the summed squares per row with BPR (PamaCF's code)."""
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


def make_optimizer(name: str, lr: float, params):
    import torch

    if name == "adagrad":  # TF's Adagrad, as in APT's code, starts its accumulator at 0.1
        return torch.optim.Adagrad(params, lr=lr, initial_accumulator_value=0.1)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.SGD(params, lr=lr)


def model_loss_fn(model, implicit: bool):
    """The per-row training loss of ``model`` as a function of the batch's embeddings."""
    from recguard.kit.cf.loop import pair_loss

    return pair_loss(getattr(model, "pair_scores", None), implicit)


def per_row_loss(model, users, items, negatives, ratings, implicit: bool):
    """(per-row training loss, L2 regulariser) of the given rows (index tensors;
    ``negatives`` None on explicit data), in the autograd graph of the parameters.
    The ratings are moved to the embeddings' device (a model on a GPU gets CPU rows)."""
    pu, qi, qj, reg = model.batch_embeddings(users, items, negatives)
    return model_loss_fn(model, implicit)(pu, qi, qj, ratings.to(pu.device)), reg


def fit_dot_product(make_model, train: Interactions, ctx: FitContext, cfg: dict):
    """Build ``make_model(generator)`` and train it on ``train`` with the resolved options
    ``cfg``; one seeded generator drives the initialisation and the batch order."""
    from recguard.kit.cf.loop import seed_everything, torch_generator, torch_threads

    with torch_threads(cfg["threads"]):
        seed_everything(ctx.seed)
        generator = torch_generator(ctx.seed)
        model = make_model(generator)
        _train(model, train, ctx, cfg, generator)
    return model


def _train(model, train: Interactions, ctx: FitContext, cfg: dict, generator) -> None:
    import torch

    from recguard.kit.cf.loop import run_epochs, sample_negatives

    rng = np.random.default_rng([ctx.seed, 0xB1])
    implicit = train.feedback == "implicit"
    # a model on a GPU declares ``device``: ratings and weights go there, indices stay on
    # the CPU (drawn by the CPU generator) and the model moves them in batch_embeddings
    device = getattr(model, "device", None)
    loss_fn = model_loss_fn(model, implicit)
    model.set_training_data(train)  # before any hook may ask the model for its embeddings
    state = {"optimizer": make_optimizer(cfg["optimizer"], cfg["lr"], model.parameters()),
             "data": train}

    def train_epoch(epoch, epoch_state):
        data = epoch_state.train
        if data is not state["data"]:  # a defense replaced the training set
            if data.n_users != state["data"].n_users:
                # injected users grew the user table: the optimizer needs the new parameters
                state["optimizer"] = make_optimizer(cfg["optimizer"], cfg["lr"], model.parameters())
            model.set_training_data(data)
            state["data"] = data
        optimizer = state["optimizer"]
        users, items = torch.as_tensor(data.user), torch.as_tensor(data.item)
        ratings = torch.as_tensor(data.rating, device=device)
        weights = None if epoch_state.row_weight is None else torch.as_tensor(epoch_state.row_weight,
                                                                              device=device)
        negatives = torch.as_tensor(sample_negatives(data, data.user, rng)) if implicit else None
        order = torch.randperm(len(data), generator=generator)
        total = 0.0
        for start in range(0, len(order), cfg["batch_size"]):
            rows = order[start:start + cfg["batch_size"]]
            u, i, r = users[rows], items[rows], ratings[rows]
            j = negatives[rows] if implicit else None
            pu, qi, qj, reg = model.batch_embeddings(u, i, j)
            per_row = loss_fn(pu, qi, qj, r)
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
        return total / max(len(order), 1)

    run_epochs(model, train, cfg["epochs"], ctx, train_epoch)


class EmbeddingBackbone(Backbone):
    """A backbone whose models are `EmbeddingModel`s trained by `fit_dot_product`;
    a subclass names itself and builds its model in `build_model`."""

    kind = "cf"
    offers = frozenset({"embeddings", "user_weights", "loss_terms", "embedding_batch",
                        "epoch_callbacks", "twice_differentiable", "finetune"})
    Config = DotProductConfig

    def build_model(self, train: Interactions, cfg: dict, generator) -> EmbeddingModel:
        raise NotImplementedError

    def resolved_config(self, protocol) -> dict:
        return self.config.resolved(protocol.feedback)

    def fit(self, train: Interactions, ctx: FitContext) -> EmbeddingModel:
        cfg = self.config.resolved(train.feedback)
        return fit_dot_product(lambda generator: self.build_model(train, cfg, generator), train, ctx, cfg)
