"""Adversarial training of embedding CF models: losses at perturbed embeddings, the
perturbations themselves, and the `FitHooks` that add such a loss to every batch.

The batch is what `recguard.kit.cf.embedding.fit_dot_product` hands to
``FitHooks.extra_loss`` (the backbone's ``embedding_batch`` capability): the
batch's ``user_emb``, ``pos_emb``, ``neg_emb`` (None on explicit ratings) in the
autograd graph of the parameters, ``loss_fn`` (the per-row training loss as a
function of them), ``ratings``, ``users``, ``rows`` (the rows of the training
set) and ``row_weight``.

- `adversarial_loss`: APR's one-step perturbation (He et al., SIGIR 2018), the
  gradient of the batch loss L2-normalised per row and scaled to a magnitude
  (APR, PamaCF).
- `sgd_perturbation`: the inner maximisation of the min-max objective
  min_θ max_{‖Δ‖ ≤ ε} L(θ) + λ L(θ + Δ) solved by projected SGD steps on Δ
  (adversarial training as in APT's baseline, Wu et al., SIGIR 2021, sec. 2.2
  and 5.1.3).
- `TrajectoryWindow`: each training row's prediction in the last E epochs, for
  a trajectory loss ‖ŷ(θ_t) − ŷ(θ_{t−E})‖² (SharpCF, Chen et al., RecSys 2023).
- `PerturbationHooks`: adds ``weight · term(batch)`` to the batch loss from
  epoch ``start`` on; a defense supplies the term (and optionally per-user
  magnitudes recomputed at each epoch's start).

Everything runs on the device of the batch's embeddings (a model on a GPU keeps
its perturbations and its stored predictions there).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from recguard.contracts import FitHooks


def embeddings_of(batch: dict) -> list:
    """[user, positive, negative] embedding rows of the batch (negative None on explicit data)."""
    return [batch["user_emb"], batch["pos_emb"], batch["neg_emb"]]


def loss_at(batch: dict, embeddings: list) -> "torch.Tensor":  # noqa: F821
    """The batch's mean training loss (per-row weights applied) at the given embeddings."""
    loss = batch["loss_fn"](*embeddings, batch["ratings"])
    if batch.get("row_weight") is not None:
        loss = loss * batch["row_weight"]
    return loss.mean()


def uniform_magnitude(batch: dict, value: float) -> "torch.Tensor":  # noqa: F821
    """One magnitude per row of the batch, on the embeddings' device."""
    import torch

    return torch.full((len(batch["users"]),), float(value), device=batch["user_emb"].device)


def adversarial_loss(batch: dict, magnitude) -> "torch.Tensor":  # noqa: F821
    """The batch loss at Θ + Δ, Δ = magnitude · Γ / ‖Γ‖ per row (APR; PamaCF Eq. 9-10), Γ the
    gradient of the batch loss w.r.t. each embedding; the direction is a constant (no gradient
    through it). ``magnitude``: one value per row."""
    import torch

    embeddings = embeddings_of(batch)
    present = [e for e in embeddings if e is not None]
    base = batch["loss_fn"](*embeddings, batch["ratings"])
    grads = torch.autograd.grad(base.sum(), present, retain_graph=True, allow_unused=True)
    magnitude = magnitude.to(present[0].device)
    steps = iter(torch.zeros_like(e) if g is None
                 else magnitude[:, None] * torch.nn.functional.normalize(g.detach(), dim=-1)
                 for e, g in zip(present, grads))
    perturbed = [None if e is None else e + next(steps) for e in embeddings]
    return loss_at(batch, perturbed)


def project_rows(delta: "torch.Tensor", radius) -> "torch.Tensor":  # noqa: F821
    """Each row of ``delta`` scaled back onto the L2 ball of its ``radius`` if it lies outside."""
    import torch

    norms = delta.norm(dim=-1, keepdim=True)
    radius = torch.as_tensor(radius, dtype=delta.dtype, device=delta.device)
    if radius.dim() == 1:
        radius = radius[:, None]
    return delta * torch.clamp(radius / torch.clamp(norms, min=1e-12), max=1.0)


def sgd_perturbation(batch: dict, eps, steps: int, lr: float) -> list:
    """The inner maximisation max_{‖Δ_r‖ ≤ ε} L(θ + Δ) by projected SGD ascent on Δ.

    Δ starts at zero; each of ``steps`` iterations moves every row's Δ (user, positive and
    negative embedding) by ``lr`` times the gradient of the summed per-row loss at θ + Δ and
    projects it back onto the ball of radius ε (per row; ``eps`` a number or one value per
    row). The parameters are constants here (no gradient reaches them). Returns the
    perturbations, detached (None where the batch has no negative embedding)."""
    import torch

    embeddings = [None if e is None else e.detach() for e in embeddings_of(batch)]
    deltas = [None if e is None else torch.zeros_like(e) for e in embeddings]
    for _ in range(steps):
        leaves = [None if d is None else d.requires_grad_(True) for d in deltas]
        moved = [None if e is None else e + d for e, d in zip(embeddings, leaves)]
        loss = batch["loss_fn"](*moved, batch["ratings"]).sum()
        present = [d for d in leaves if d is not None]
        grads = iter(torch.autograd.grad(loss, present, allow_unused=True))
        new = []
        for d in leaves:
            if d is None:
                new.append(None)
                continue
            g = next(grads)
            step = d.detach() if g is None else d.detach() + lr * g
            new.append(project_rows(step, eps))
        deltas = new
    return deltas


def perturbed_loss(batch: dict, deltas: list) -> "torch.Tensor":  # noqa: F821
    """The batch loss at the embeddings moved by constant ``deltas``."""
    moved = [None if e is None else e + (0 if d is None else d)
             for e, d in zip(embeddings_of(batch), deltas)]
    return loss_at(batch, moved)


def pair_predictions(model, batch: dict) -> "torch.Tensor":  # noqa: F821
    """ŷ of the batch's (user, positive item) pairs, in the autograd graph: the model's
    ``pair_scores`` (NeuMF's MLP) or the dot product."""
    scores = getattr(model, "pair_scores", None)
    if scores is not None:
        return scores(batch["user_emb"], batch["pos_emb"])
    return (batch["user_emb"] * batch["pos_emb"]).sum(-1)


class TrajectoryWindow:
    """Every training row's prediction in each of the last ``length`` epochs (a ring of
    ``length`` slots). At epoch t, `past` gives the predictions recorded at epoch t − length
    (NaN where none was) and `record` overwrites them with epoch t's."""

    def __init__(self, length: int):
        self.length = length
        self.slots = None   # (length, training rows) tensor on the predictions' device

    def _ensure(self, n_rows: int, like) -> None:
        import torch

        if self.slots is None or self.slots.shape[1] != n_rows or self.slots.device != like.device:
            # a replaced training set (e.g. injected users) has other rows: start afresh
            self.slots = torch.full((self.length, n_rows), float("nan"), dtype=like.dtype,
                                    device=like.device)

    def past(self, epoch: int, rows, n_rows: int, like) -> "torch.Tensor":  # noqa: F821
        self._ensure(n_rows, like)
        return self.slots[epoch % self.length, rows.to(like.device)]

    def record(self, epoch: int, rows, predictions) -> None:
        """Store epoch ``epoch``'s predictions of ``rows`` (call `past` for them first)."""
        self.slots[epoch % self.length, rows.to(predictions.device)] = predictions.detach()


def trajectory_loss(current, past) -> "torch.Tensor | None":  # noqa: F821
    """(1/|B|) Σ (ŷ_t − ŷ_{t−E})² over the rows that have a past prediction (None if none)."""
    known = ~past.isnan()
    if not bool(known.any()):
        return None
    diff = current[known] - past[known]
    return diff.pow(2).sum() / len(current)


class PerturbationHooks(FitHooks):
    """``extra_loss = weight · term(batch, magnitude)`` from epoch ``start`` on.

    ``magnitudes(model)``, if given, is called at the start of every adversarial epoch and
    returns one magnitude per user (or None for the uniform ``eps``); the batch's rows then
    get their users' values. ``notes`` (a defense context's) records the number of
    adversarial epochs and the mean magnitude per epoch."""

    def __init__(self, term: Callable, weight: float, start: int, eps: float = 0.0,
                 magnitudes: Callable | None = None, notes: dict | None = None):
        self.term = term
        self.weight = weight
        self.start = start
        self.eps = eps
        self.magnitudes = magnitudes
        self.notes = {} if notes is None else notes
        self.per_user: np.ndarray | None = None
        self.active_epochs = 0

    def on_epoch_start(self, epoch, model, train):
        if epoch >= self.start and self.magnitudes is not None:
            self.per_user = self.magnitudes(model)
            if self.per_user is not None:
                self.notes.setdefault("mean_magnitude", []).append(float(self.per_user.mean()))
        return None

    def magnitude(self, batch):
        import torch

        if self.per_user is None:
            return uniform_magnitude(batch, self.eps)
        return torch.as_tensor(self.per_user, dtype=torch.float32)[batch["users"]].to(
            batch["user_emb"].device)

    def extra_loss(self, epoch, model, batch):
        if epoch < self.start:
            return None
        term = self.term(batch, self.magnitude(batch))
        return None if term is None else self.weight * term

    def on_epoch_end(self, epoch, model):
        if epoch >= self.start:
            self.active_epochs += 1
            self.notes["adversarial_epochs"] = self.active_epochs
