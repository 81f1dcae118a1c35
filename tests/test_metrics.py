import math

import numpy as np
import pytest

from recguard.contracts import RankingView
from recguard.metrics.ranking import HR, NDCG, RCHR, RCNDCG, Recall, TargetHR, TargetNDCG
from recguard.metrics.top_k import hit_matrix, target_eligibility, top_k


def view(topk, tests, targets=(), eligible=None, reference=None):
    topk = np.asarray(topk)
    eligible = np.ones((len(targets), len(topk)), bool) if eligible is None else np.asarray(eligible)
    return RankingView(np.arange(len(topk)), topk, [np.asarray(t, dtype=np.int64) for t in tests],
                       np.asarray(targets), eligible, reference or {})


def test_hand_computed_hr_recall_ndcg():
    v = view([[0, 1, 2], [3, 4, 5], [2, 0, 1]], [[1], [9], [2, 0]])
    assert HR().compute(v, 3) == pytest.approx(2 / 3)
    assert HR().compute(v, 1) == pytest.approx(1 / 3)
    assert Recall().compute(v, 3) == pytest.approx((1 + 0 + 1) / 3)
    assert Recall().compute(v, 1) == pytest.approx((0 + 0 + 0.5) / 3)
    ndcg_u0 = 1 / math.log2(3)  # hit at rank 1 (0-based), ideal 1
    ndcg_u2 = 1.0               # hits at ranks 0 and 1, ideal 2
    assert NDCG().compute(v, 3) == pytest.approx((ndcg_u0 + 0 + ndcg_u2) / 3)


def test_users_without_test_items_are_ignored():
    v = view([[0, 1], [0, 1]], [[0], []])
    assert HR().compute(v, 2) == 1.0 and Recall().compute(v, 2) == 1.0


def test_target_metrics_follow_lorec_eq22():
    # target 7: users 0 and 1 eligible; user 0 has it at rank 2, user 1 not at all
    # target 8: user 2 only eligible, it sits at rank 0
    v = view([[1, 2, 7], [1, 2, 3], [8, 7, 1]], [[1], [1], [1]], targets=[7, 8],
             eligible=[[True, True, False], [False, False, True]])
    assert TargetHR().compute(v, 3) == pytest.approx((0.5 + 1.0) / 2)
    assert TargetHR().compute(v, 2) == pytest.approx((0.0 + 1.0) / 2)
    assert TargetNDCG().compute(v, 3) == pytest.approx(((1 / math.log2(4)) / 2 + 1.0) / 2)
    assert not TargetHR.higher_is_better


def test_consistency_against_the_clean_reference():
    v = view([[0, 1], [2, 3]], [[0], [9]], reference={"HR@2": 0.25, "NDCG@2": 0.5})
    assert RCHR().compute(v, 2) == pytest.approx(1 - abs(0.5 - 0.25) / 0.25)
    assert RCNDCG().compute(v, 2) == pytest.approx(1 - abs(0.5 - 0.5) / 0.5)
    assert math.isnan(RCHR().compute(view([[0]], [[0]]), 1))


def test_top_k_masks_and_breaks_ties_by_index():
    scores = np.array([[0.5, 0.9, 0.9, 0.1], [1.0, 0.2, 0.3, 0.4]])
    ranked = top_k(lambda users: scores[users], np.array([0, 1]), [np.array([1]), np.array([])], 3,
                   batch_size=1)
    assert ranked.tolist() == [[2, 0, 3], [0, 3, 2]]
    assert top_k(lambda u: scores[u], np.array([0]), [np.array([], dtype=int)], 10).shape == (1, 4)


def test_target_eligibility():
    mask = target_eligibility(np.array([0, 1, 2]), np.array([5, 6]), np.array([0, 2, 1]), np.array([5, 5, 7]))
    assert mask.tolist() == [[False, True, False], [True, True, True]]


def test_vectorised_metrics_match_a_plain_loop():
    rng = np.random.default_rng(0)
    n_users, n_items, k = 50, 30, 10
    topk = np.array([rng.permutation(n_items)[:k] for _ in range(n_users)])
    tests = [rng.choice(n_items, size=rng.integers(0, 4), replace=False) for _ in range(n_users)]
    v = view(topk, tests)
    hits = hit_matrix(topk, v.test_items)
    hr, rec, ndcg, n = 0.0, 0.0, 0.0, 0
    for u in range(n_users):
        if len(tests[u]) == 0:
            continue
        n += 1
        found = [r for r, item in enumerate(topk[u]) if item in set(tests[u])]
        assert hits[u].sum() == len(found)
        hr += bool(found)
        rec += len(found) / len(tests[u])
        ideal = sum(1 / math.log2(r + 2) for r in range(min(len(tests[u]), k)))
        ndcg += sum(1 / math.log2(r + 2) for r in found) / ideal
    assert HR().compute(v, k) == pytest.approx(hr / n)
    assert Recall().compute(v, k) == pytest.approx(rec / n)
    assert NDCG().compute(v, k) == pytest.approx(ndcg / n)
