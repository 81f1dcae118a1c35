"""SharpCF (Chen et al., Adversarial Collaborative Filtering for Free, RecSys 2023).

APR's min-max objective min_θ max_{‖Δ‖≤ε} L(θ + Δ) is sharpness-aware
minimisation; SharpCF replaces the inner maximisation, which costs an extra
forward/backward pass per batch, by a *trajectory loss* that keeps the current
predictions close to those the model made for the same training pairs E epochs
earlier:

    L = L_rec(θ_t) + λ · (1/|B|) Σ_{(u,i) ∈ B} (ŷ_ui(θ_t) − ŷ_ui(θ_{t−E}))²,

ŷ_ui(θ_{t−E}) recorded (as constants) when the pair was visited in epoch t − E.
No perturbation is computed, so an epoch costs about what a plain epoch does.
The term starts after a warm-up (``adv_start``); the predictions are recorded
from the first epoch on. It runs on any backbone of the shared embedding loop
(MF, LightGCN, NeuMF; ``embedding_batch`` gives the batch's embeddings and rows).
"""

from __future__ import annotations

from dataclasses import dataclass

from recguard import Config, Defense, DefenseContext, FitHooks, Interactions, param
from recguard.kit.cf.adversarial import (PerturbationHooks, TrajectoryWindow, pair_predictions,
                                         trajectory_loss)

SHARPCF_PAPER = "Chen et al., Adversarial Collaborative Filtering for Free, RecSys 2023"


@dataclass
class SharpCFConfig(Config):
    weight: float = param(0.1, "λ of the trajectory loss (0.1: the public SharpCF training "
                               "script's free_lambda; the paper tunes it per dataset)", low=0)
    window: int = param(3, "E: compare with the predictions of E epochs earlier (the public "
                           "script's free_szwin, 3)", low=1)
    adv_start: int = param(5, "first epoch with the trajectory loss: the warm-up PamaCF's code "
                              "gives APR (5), so SharpCF and APR start together", low=0)
    trajectory: bool = param(True, "ablation: False trains the plain backbone (records nothing)")


class SharpCFHooks(PerturbationHooks):
    """Records every training pair's prediction each epoch and, from ``adv_start`` on, adds
    λ · mean (ŷ_t − ŷ_{t−E})² to the batch loss."""

    def __init__(self, config: SharpCFConfig, notes: dict):
        super().__init__(None, config.weight, config.adv_start, notes=notes)
        self.window = TrajectoryWindow(config.window)
        self.enabled = config.trajectory
        self.n_rows = 0
        self.epoch_terms: list[float] = []

    def on_epoch_start(self, epoch, model, train):
        self.n_rows = len(train)
        self.epoch_terms = []
        return None

    def on_epoch_end(self, epoch, model):
        super().on_epoch_end(epoch, model)
        if self.epoch_terms:   # the mean trajectory term (before λ) of the epoch's batches
            self.notes.setdefault("trajectory_loss", []).append(
                round(sum(self.epoch_terms) / len(self.epoch_terms), 8))

    def extra_loss(self, epoch, model, batch):
        if not self.enabled:
            return None
        current = pair_predictions(model, batch)
        past = self.window.past(epoch, batch["rows"], self.n_rows, current)
        term = trajectory_loss(current, past) if epoch >= self.start else None
        self.window.record(epoch, batch["rows"], current)
        if term is None:
            return None
        self.epoch_terms.append(float(term.detach()))
        return self.weight * term


class SharpCFDefense(Defense):
    name = "sharpcf"
    summary = "SharpCF: sharpness-aware CF; a trajectory loss to the predictions of E epochs ago"
    paper = f"{SHARPCF_PAPER} (PamaCF's baseline, NeurIPS 2024 Tables 1-2)"
    Config = SharpCFConfig
    stages = frozenset({"during_fit"})
    backbone_kinds = frozenset({"cf"})
    needs = frozenset({"embedding_batch", "loss_terms", "epoch_callbacks"})
    default_protocol = "pamacf"

    def during_fit(self, train: Interactions, ctx: DefenseContext) -> FitHooks:
        return SharpCFHooks(self.config, ctx.notes)
