"""Tests of the TNA attack: contract, influence against re-fitting, the WMW loss, the
optimisation, determinism, refusals and a real cell."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recguard import APT, AttackContext, RecguardError, build_config, registered
from recguard.kit.poison.als import als_sweeps, entry_weights, fit_genuine
from recguard.kit.poison.surrogate import dense_ratings
from recguard.testing import check_attack, eval_record, tiny_interactions
from recguard_tna.attack import (Factors, TNAAttack, TNAConfig, attacker_view, top_lists,
                                 user_influence, wmw_loss)

FAST = {"surrogate_epochs": "4", "surrogate_dim": "4", "steps": "4", "refit_sweeps": "1"}
TARGETS = np.array([37, 38])


def attack(**options) -> TNAAttack:
    return TNAAttack(build_config(TNAConfig, {**FAST, **options}, "tna"))


def context(seed=0, n_fake=2, filler=5, targets=TARGETS):
    return AttackContext(targets=targets, n_fake=n_fake, filler_size=filler,
                         rng=np.random.default_rng(seed), protocol=APT)


def test_host_contract():
    check_attack(TNAAttack, FAST)


def test_registered_black_box_explicit_cf_attack():
    cls = registered("attack", "tna")
    assert cls is TNAAttack and cls.knowledge == "black-box"
    assert cls.feedback == {"explicit"} and cls.backbone_kinds == {"cf"}


def test_top_lists_skip_seen_items_and_targets():
    scores = np.array([[5.0, 4.0, 3.0, 2.0, 1.0]])
    seen = np.array([[True, False, False, False, False]])
    assert sorted(top_lists(scores, seen, np.array([1]), 2)[0]) == [2, 3]


def test_wmw_loss_counts_list_items_that_beat_eligible_targets():
    user = torch.tensor([[1.0]])
    item = torch.tensor([[3.0], [1.0], [0.0]])      # item 0 in the list; targets 1 and 2
    lists, targets = torch.tensor([[0]]), torch.tensor([1, 2])
    both = wmw_loss(user, item, torch.tensor([0]), lists, targets, torch.tensor([[1.0, 1.0]]), 0.01)
    one = wmw_loss(user, item, torch.tensor([0]), lists, targets, torch.tensor([[1.0, 0.0]]), 0.01)
    assert float(both) == pytest.approx(2.0) and float(one) == pytest.approx(1.0)
    wide = wmw_loss(user, item, torch.tensor([0]), lists, targets, torch.tensor([[1.0, 0.0]]), 1.0)
    assert float(wide) == pytest.approx(1 / (1 + np.exp(-2.0)))


def test_user_influence_predicts_the_loss_change_of_reweighting_a_user():
    """Koh & Liang's first-order estimate against re-fitting ALS: weighting user u's ratings by
    1 + eps changes the attacker's loss by about -eps * influence(u)."""
    torch.set_default_dtype(torch.float64)
    try:
        data = tiny_interactions(n_users=25, n_items=30, per_user=8)
        cfg = build_config(TNAConfig, {"surrogate_epochs": "400", "surrogate_dim": "3",
                                       "surrogate_l2": "2.0", "cg_iterations": "500",
                                       "cg_tolerance": "1e-10", "damping": "0"}, "tna")
        genuine, observed = (m.astype(np.float64) for m in dense_ratings(data))
        user, item = fit_genuine(genuine, observed, True, cfg, seed=0)
        targets = np.array([28, 29])
        users, lists, eligible = attacker_view(user, item, observed, targets, 5)

        def attacker_loss(u, i):
            return float(wmw_loss(u, i, torch.as_tensor(users), torch.as_tensor(lists),
                                  torch.as_tensor(targets), torch.as_tensor(eligible), cfg.wmw_width))

        influence, info = user_influence(Factors(user, item), data, cfg.surrogate_l2, users, lists,
                                         targets, eligible, cfg)
        assert info["cg_residual"] < 1e-6
        eps, predicted, actual = 0.05, [], []
        for u in np.argsort(-np.abs(influence))[:6]:
            weights, ratings = entry_weights(observed, torch.zeros(0, 30), genuine, True, 0.0)
            weights = weights.clone()
            weights[u] *= 1 + eps
            u2, i2 = als_sweeps(user, item, weights, ratings, cfg.surrogate_l2, 400)
            actual.append(attacker_loss(u2, i2) - attacker_loss(user, item))
            predicted.append(-eps * influence[u])
        actual, predicted = np.array(actual), np.array(predicted)
        assert np.all(np.sign(actual) == np.sign(predicted))
        assert np.abs(actual - predicted).max() < 0.2 * np.abs(actual).max()
    finally:
        torch.set_default_dtype(torch.float32)


def test_influential_users_are_the_top_share_by_absolute_influence():
    data = tiny_interactions()
    tna = attack()
    tna.poison(data, context())
    assert tna.influence.shape == (data.n_users,) and np.isfinite(tna.influence).all()
    assert len(tna.influential) == 3     # 10% of 30 users
    cut = np.abs(tna.influence[tna.influential]).min()
    assert (np.abs(tna.influence) > cut).sum() <= 3
    assert tna.influence_info["cg_products"] > 0


def test_gradient_steps_lower_the_loss_over_the_influential_users():
    data = tiny_interactions(n_users=60, n_items=40, per_user=12)
    trace: list[float] = []
    tna = attack(steps="8", surrogate_dim="8", surrogate_epochs="10")
    genuine_targets = np.array([37, 38])
    tna.optimise(data, genuine_targets, 4, 6, np.random.default_rng(0), trace)
    assert len(trace) == 8 and trace[-1] > trace[0]    # the trace is minus the loss


def test_profiles_rate_targets_highest_and_respect_the_filler_budget():
    data = tiny_interactions()
    out = attack().poison(data, context(n_fake=3, filler=5))
    assert out.n_fake == 3 and len(out.item) == 3 * (5 + len(TARGETS))
    assert set(np.unique(out.rating)) <= set(np.unique(data.rating))
    assert np.all(out.rating[np.isin(out.item, TARGETS)] == data.rating_max)


def test_same_seed_same_profiles_other_seed_differs():
    data = tiny_interactions()
    a, b, c = (attack().poison(data, context(seed=s)) for s in (1, 1, 2))
    assert np.array_equal(a.item, b.item) and np.array_equal(a.rating, b.rating)
    assert not np.array_equal(a.item, c.item)


def test_refuses_implicit_data_and_targets_out_of_range():
    with pytest.raises(RecguardError, match="explicit"):
        attack().poison(tiny_interactions(feedback="implicit"), context())
    with pytest.raises(RecguardError, match="0..39"):
        attack().poison(tiny_interactions(), context(targets=np.array([40])))


@pytest.mark.integration
def test_a_real_cell_on_ml100k_promotes_the_targets(tmp_path):
    metrics = eval_record(tmp_path, "--attack", "tna", "--budget", "0.01", "--seeds", "0",
                          "--attack-opt", "steps=10")["metrics"]
    assert metrics["attacked"]["T-HR@50"]["mean"] > metrics["clean"]["T-HR@50"]["mean"] + 0.05
