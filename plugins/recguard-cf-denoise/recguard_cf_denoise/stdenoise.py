"""StDenoise: structural denoising of the training interactions (PamaCF's and LoRec's
denoise-based baseline, after Tian et al., RGCF, SIGIR 2022, sec. 3.2, and Ye et al.,
TOIS 41(3) 2023).

Every interaction (u, i) gets a reliability from the similarity of the current user
and item representations,

    s_ui = (cos(e_u, e_i) + 1) / 2                       (RGCF's graph denoising module)

Hard denoising drops the interactions with s_ui < β; soft denoising weights the rest by
their reliability, normalised per user, s_ui / sum_{j kept} s_uj (RGCF's D^-1 S). On a
graph backbone (one whose model offers ``set_edge_weights``, i.e. LightGCN) the
reliabilities are the edge weights of message passing, as in RGCF: pruned edges leave
the graph, kept ones enter with D^-1 S. On a backbone without a graph (MF, NeuMF) the
"structure" is the set of training pairs: a pruned pair leaves the loss and a kept one
is weighted by w_ui = |N'(u)| s_ui / sum_{j kept} s_uj, the same D^-1 S scaled so
that a user whose pairs are equally reliable keeps weight 1. Reliabilities are
recomputed from the model's embeddings at the start of every epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recguard import Config, Defense, DefenseContext, FitHooks, Interactions, param
from recguard.kit.cf.graph import edge_cosine

PAPER = ("Tian et al., Learning to Denoise Unreliable Interactions for Graph Collaborative "
         "Filtering (RGCF), SIGIR 2022, sec. 3.2; Ye et al., TOIS 41(3), 2023; as PamaCF's "
         "StDenoise baseline (NeurIPS 2024, App. C.1)")


@dataclass
class StDenoiseConfig(Config):
    prune_threshold: float = param(0.02, "β: interactions with reliability (cos+1)/2 below it are "
                                         "dropped (RGCF's prune_threshold, config/model-rgcf.yaml); "
                                         "0 turns hard denoising off", low=0, high=1)
    soft: bool = param(True, "weight the kept interactions by their normalised reliability "
                             "(RGCF's soft denoising); false: hard pruning only (ablation)")
    start_epoch: int = param(0, "first denoised epoch (RGCF denoises from the first step)", low=0)


def reliabilities(user_emb: np.ndarray, item_emb: np.ndarray, users: np.ndarray,
                  items: np.ndarray) -> np.ndarray:
    """s_ui = (cos(e_u, e_i) + 1) / 2 for each given pair, in [0, 1]."""
    return (edge_cosine(user_emb, item_emb, users, items) + 1.0) / 2.0


def denoised_weights(users: np.ndarray, s: np.ndarray, n_users: int, threshold: float,
                     soft: bool) -> np.ndarray:
    """Per-interaction weights: 0 where s < threshold (hard); otherwise
    |N'(u)| s_ui / sum_{j in N'(u)} s_uj with soft denoising (1 without), N'(u) the
    user's kept interactions."""
    keep = s >= threshold if threshold > 0 else np.ones(len(s), dtype=bool)
    weights = keep.astype(np.float64)
    if soft:
        kept_s = np.where(keep, s, 0.0)
        total = np.bincount(users, weights=kept_s, minlength=n_users)
        count = np.bincount(users, weights=keep, minlength=n_users)
        weights = np.where(keep, kept_s * count[users] / np.maximum(total[users], 1e-12), 0.0)
    return weights


class StDenoiseHooks(FitHooks):
    def __init__(self, config: StDenoiseConfig, ctx: DefenseContext):
        self.config = config
        self.ctx = ctx
        self.row_weight = None   # per row of the epoch's data, for backbones without a graph

    def on_epoch_start(self, epoch, model, train):
        self.row_weight = None
        if epoch < self.config.start_epoch:
            return None
        cfg = self.config
        s = reliabilities(model.user_embeddings(), model.item_embeddings(), train.user, train.item)
        keep = s >= cfg.prune_threshold if cfg.prune_threshold > 0 else np.ones(len(s), dtype=bool)
        notes = self.ctx.notes
        notes.setdefault("pruned_share", []).append(round(float(1.0 - keep.mean()), 6))
        notes.setdefault("mean_reliability", []).append(round(float(s.mean()), 6))
        if hasattr(model, "set_edge_weights"):
            # RGCF: the pruned reliabilities, row-normalised (D^-1 S), are the propagation
            # weights; hard only: the kept edges with the backbone's own normalisation
            if cfg.soft:
                model.set_edge_weights(train, np.where(keep, s, 0.0), norm="row")
            else:
                model.set_edge_weights(train, keep.astype(np.float64), norm="symmetric")
            notes["denoised"] = "graph"
        else:
            self.row_weight = denoised_weights(train.user, s, train.n_users, cfg.prune_threshold,
                                               cfg.soft).astype(np.float32)
            notes["denoised"] = "loss"
        return None

    def row_weights(self, epoch, model, train):
        """The denoising weights of the epoch's training rows (None on a graph backbone, whose
        edges carry them); `recguard.kit.cf.loop.run_epochs` multiplies them into the loss."""
        return self.row_weight


class StDenoiseDefense(Defense):
    name = "stdenoise"
    summary = ("StDenoise: prunes interactions whose user-item embedding similarity is low and "
               "weights the rest by it (RGCF's structural denoising)")
    paper = PAPER
    Config = StDenoiseConfig
    stages = frozenset({"during_fit"})
    backbone_kinds = frozenset({"cf"})
    needs = frozenset({"embeddings", "epoch_callbacks", "user_weights"})
    default_protocol = "pamacf"
    default_backbone = "mf"

    def during_fit(self, train: Interactions, ctx: DefenseContext) -> FitHooks:
        return StDenoiseHooks(self.config, ctx)
