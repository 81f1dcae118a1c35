"""LLM4Dec: the detector's loss (Eq. 3-5), its training, and hard / soft detection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recguard import DefenseContext, LOREC, build_config, registered, roc_auc
from recguard.testing import check_defense, tiny_interactions
from recguard_lorec.detection import fraud_loss
from recguard_lorec.llm4dec import LLM4DecConfig, LLM4DecDefense, train_detector


pytestmark = pytest.mark.usefixtures("fresh_cache")


def config(**options):
    return build_config(LLM4DecConfig, {k: str(v) for k, v in options.items()}, "llm4dec")


def test_loss_is_eq3_plus_the_entropy_of_the_observed_users():
    p_atk, p_obs = torch.tensor([0.9, 0.8]), torch.tensor([0.1, 0.3, 0.2])
    q = np.array([0.1, 0.3, 0.2])
    entropy = -(q * np.log(q) + (1 - q) * np.log(1 - q))
    expected = -np.log([0.9, 0.8]).mean() - np.log(1 - q).mean() + 0.5 * entropy.mean()
    assert float(fraud_loss(p_atk, p_obs, 0.5)) == pytest.approx(expected, rel=1e-5)
    # the regulariser alone is largest at p = 1/2 and falls toward the extremes (Eq. 4's
    # direction), and stays bounded, unlike Eq. 4's printed log p + log(1 - p)
    values = [float(fraud_loss(torch.tensor([0.5]), torch.tensor([p]), 1.0))
              - float(fraud_loss(torch.tensor([0.5]), torch.tensor([p]), 0.0)) for p in (0.5, 0.9, 1.0)]
    assert values[0] > values[1] > values[2] >= 0.0
    # a batch without supervised fraudsters keeps only U's terms
    assert float(fraud_loss(p_atk[:0], p_obs, 0.0)) == pytest.approx(-np.log(1 - q).mean(), rel=1e-5)


def test_detector_finds_hidden_fraudsters_that_resemble_the_supervised_ones():
    rng = np.random.default_rng(0)
    genuine = rng.normal(0.0, 1.0, size=(200, 16))
    hidden = rng.normal(0.0, 1.0, size=(10, 16)) + 3.0     # fraudsters inside U, unlabelled
    supervised = rng.normal(0.0, 1.0, size=(20, 16)) + 3.0
    embeddings = np.vstack([genuine, hidden, supervised])
    p = train_detector(embeddings, 210, config(), seed=0)
    truth = np.arange(210) >= 200
    assert roc_auc(p, truth) > 0.95
    assert p[truth].mean() > p[~truth].mean() + 0.3


def test_entropy_regulariser_sharpens_the_observed_users_predictions():
    rng = np.random.default_rng(1)
    embeddings = np.vstack([rng.normal(size=(100, 8)), rng.normal(size=(10, 8)) + 3.0])

    def mean_entropy(p):
        p = np.clip(p, 1e-9, 1 - 1e-9)
        return float(-(p * np.log(p) + (1 - p) * np.log(1 - p)).mean())

    plain = train_detector(embeddings, 100, config(entropy_weight=0), seed=0)
    sharp = train_detector(embeddings, 100, config(entropy_weight=2.0), seed=0)
    assert mean_entropy(sharp) < mean_entropy(plain)


def run(defense, data, backbone="mf", use_cache=True):
    ctx = DefenseContext(seed=0, protocol=LOREC, backbone=registered("backbone", backbone)(),
                         use_cache=use_cache)
    return defense.before_fit(data, ctx), ctx


def test_no_cache_embeds_the_users_again_and_keeps_nothing(tiny_llm, fresh_cache):
    """`--no-cache` and `leaderboard verify` reach the user encoder as ctx.use_cache=False."""
    data = tiny_interactions(feedback="implicit")
    _, plain = run(LLM4DecDefense(config(llm=tiny_llm, epochs=5)), data, use_cache=False)
    assert not (fresh_cache / "llm-user-embeddings").exists()
    _, cached = run(LLM4DecDefense(config(llm=tiny_llm, epochs=5)), data)
    assert (fresh_cache / "llm-user-embeddings").is_dir()
    np.testing.assert_allclose(plain.user_scores, cached.user_scores, rtol=1e-5)


def test_hard_mode_drops_the_flagged_users_and_soft_mode_weights_by_one_minus_p(tiny_llm):
    data = tiny_interactions(feedback="implicit")
    hard, ctx = run(LLM4DecDefense(config(llm=tiny_llm, epochs=50, threshold=0.5)), data)
    p = ctx.user_scores
    assert p.shape == (data.n_users,) and ((p > 0) & (p < 1)).all()
    kept = set(np.unique(hard.user))
    assert kept == set(np.flatnonzero(p < 0.5)) & set(np.unique(data.user))
    assert ctx.notes["supervised_fraudsters"] == 3  # 10% of 30 users
    soft, ctx_soft = run(LLM4DecDefense(config(llm=tiny_llm, epochs=50, mode="soft")), data)
    assert len(soft) == len(data)
    np.testing.assert_allclose(soft.user_weight, 1 - ctx_soft.user_scores, rtol=1e-6)
    np.testing.assert_allclose(ctx_soft.user_weights, soft.user_weight, rtol=1e-6)
    np.testing.assert_array_equal(ctx.user_weights, (p < 0.5).astype(float))  # hard: 0 or 1


def test_contract_on_mf(tiny_llm):
    from recguard_mf.backbone import MFBackbone

    check_defense(LLM4DecDefense, MFBackbone, {"llm": tiny_llm, "epochs": "5"})
