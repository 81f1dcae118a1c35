"""How well a defense told fake users from genuine ones (recguard knows who is fake)."""

from __future__ import annotations

import numpy as np

from recguard.contracts import DefenseContext


DETECTION_METRIC = "Detect-AUC"
# Mean final loss weight of the injected (fake) and of the genuine users, when a defense
# leaves per-user weights: recguard knows who is fake, so it can show what the defense did.
FAKE_WEIGHT, GENUINE_WEIGHT = "Weight-fake", "Weight-genuine"
DETECTION_METRICS = {DETECTION_METRIC: True, FAKE_WEIGHT: False, GENUINE_WEIGHT: True}


def detection_metrics(dctx: DefenseContext, is_fake: np.ndarray) -> dict[str, float]:
    """Detect-AUC of the defense's fraud scores and the mean final weight of fake and of
    genuine users, for whichever of the two the defense left in ``dctx``."""
    out = {}
    n = len(is_fake)
    if dctx.user_scores is not None:
        out[DETECTION_METRIC] = roc_auc(np.asarray(dctx.user_scores)[:n], is_fake)
    if dctx.user_weights is not None:
        weights = np.asarray(dctx.user_weights, dtype=np.float64)[:n]
        out[FAKE_WEIGHT] = float(weights[is_fake].mean())
        out[GENUINE_WEIGHT] = float(weights[~is_fake].mean())
    return out


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a random positive outscores a random negative (ties count half)."""
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
