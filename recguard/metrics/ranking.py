"""The built-in ranking metrics: HR, Recall, NDCG, T-HR, T-NDCG (LoRec Eq. 22), RC-HR, RC-NDCG (Eq. 23).

Each is computed on a `RankingView` at cut-off k, vectorised over users.
"""

from __future__ import annotations

import numpy as np

from recguard.contracts import Metric, RankingView
from recguard.metrics.top_k import hit_matrix

LOREC = "Zhang et al., LoRec: LLM for Robust Sequential Recommendation (2024)"


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(k) + 2.0)


def _with_tests(view: RankingView, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The hit matrix at k and the number of test items, for users that have test items."""
    sizes = np.array([len(t) for t in view.test_items])
    hits = hit_matrix(view.topk[:, :k], view.test_items)
    keep = sizes > 0
    return hits[keep], sizes[keep]


class HR(Metric):
    name = "HR"
    summary = "Hit ratio: share of users with a test item in their top k"
    paper = "standard; e.g. Kang & McAuley, SASRec (ICDM 2018)"

    def compute(self, view: RankingView, k: int) -> float:
        hits, sizes = _with_tests(view, k)
        return float(hits.any(axis=1).mean()) if len(sizes) else float("nan")


class Recall(Metric):
    name = "Recall"
    summary = "Share of each user's test items in the top k, averaged over users"
    paper = "He et al., LightGCN (SIGIR 2020) convention"

    def compute(self, view: RankingView, k: int) -> float:
        hits, sizes = _with_tests(view, k)
        return float((hits.sum(axis=1) / sizes).mean()) if len(sizes) else float("nan")


class NDCG(Metric):
    name = "NDCG"
    summary = "Normalised discounted cumulative gain of the top k (binary relevance)"
    paper = "Jarvelin & Kekalainen (TOIS 2002)"

    def compute(self, view: RankingView, k: int) -> float:
        hits, sizes = _with_tests(view, k)
        if not len(sizes):
            return float("nan")
        width = hits.shape[1]
        disc = _discounts(width)
        dcg = (hits * disc).sum(axis=1)
        ideal = np.cumsum(disc)[np.minimum(sizes, width) - 1]
        return float((dcg / ideal).mean())


def _target_ranks(view: RankingView, k: int):
    """Per target: the rank of the target in each eligible user's top k (-1 if absent)."""
    top = view.topk[:, :k]
    for t, target in enumerate(view.targets):
        eligible = view.target_eligible[t]
        if not eligible.any():
            continue
        found = top[eligible] == target
        yield np.where(found.any(axis=1), found.argmax(axis=1), -1)


class TargetHR(Metric):
    name = "T-HR"
    higher_is_better = False  # it measures the attack's success: lower is a better defense
    summary = "Target hit ratio: share of genuine users (who never had a target) with it in top k"
    paper = f"{LOREC}, Eq. 22; PamaCF Eq. 7"

    def compute(self, view: RankingView, k: int) -> float:
        values = [float((ranks >= 0).mean()) for ranks in _target_ranks(view, k)]
        return float(np.mean(values)) if values else float("nan")


class TargetNDCG(Metric):
    name = "T-NDCG"
    higher_is_better = False
    summary = "Target NDCG: T-HR with the rank discount 1/log2(rank+2)"
    paper = f"{LOREC}, Eq. 22 (its NDCG version)"

    def compute(self, view: RankingView, k: int) -> float:
        values = [float(np.where(ranks >= 0, 1.0 / np.log2(np.maximum(ranks, 0) + 2.0), 0.0).mean())
                  for ranks in _target_ranks(view, k)]
        return float(np.mean(values)) if values else float("nan")


class _Consistency(Metric):
    """1 - |M@k - M@k_clean| / M@k_clean (LoRec Eq. 23), M = `reference_of`."""

    needs_reference = True
    reference_of: type[Metric] = HR
    paper = f"{LOREC}, Eq. 23"

    def compute(self, view: RankingView, k: int) -> float:
        clean = view.reference.get(f"{self.reference_of.name}@{k}")
        if not clean:
            return float("nan")
        value = self.reference_of().compute(view, k)
        return float(1.0 - abs(value - clean) / clean)


class RCHR(_Consistency):
    name = "RC-HR"
    summary = "Recommendation consistency of HR@k with the clean model (1 = unchanged)"
    reference_of = HR


class RCNDCG(_Consistency):
    name = "RC-NDCG"
    summary = "Recommendation consistency of NDCG@k with the clean model (1 = unchanged)"
    reference_of = NDCG


METRICS = (HR, Recall, NDCG, TargetHR, TargetNDCG, RCHR, RCNDCG)
