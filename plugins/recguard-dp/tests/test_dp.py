"""Tests of the DP attack (Huang et al., NDSS 2021) on tiny synthetic data."""

from __future__ import annotations

import numpy as np
import pytest

from recguard import APT, AttackContext, PAMACF, build_config
from recguard.testing import check_attack, eval_record, tiny_interactions
from recguard_dp.attack import DPAttack, pick_fillers

FAST = {"surrogate_epochs": "3", "surrogate_dim": "8"}
TARGETS = np.array([37, 38])


def poison(data, n_fake=4, filler=6, seed=0, **options):
    attack = DPAttack(build_config(DPAttack.Config, {**FAST, **options}, "dp"))
    ctx = AttackContext(targets=TARGETS, n_fake=n_fake, filler_size=filler,
                        rng=np.random.default_rng(seed),
                        protocol=APT if data.feedback == "explicit" else PAMACF)
    return attack, attack.poison(data, ctx)


def test_host_contract():
    check_attack(DPAttack, FAST)
    assert DPAttack.knowledge == "black-box" and DPAttack.paper


def test_registered_with_the_host():
    from recguard import registered

    assert registered("attack", "dp") is DPAttack


def test_the_decay_makes_fillers_differ_across_fake_users():
    scores = np.linspace(1.0, 0.0, 20)        # the same predicted scores for every fake user
    probability = np.ones(20)
    rng = np.random.default_rng(0)
    first = pick_fillers(scores, probability, np.array([0]), 5, rng)
    probability[first] *= 0.5
    second = pick_fillers(scores, probability, np.array([0]), 5, rng)
    assert first.tolist() == [1, 2, 3, 4, 5] and set(first) != set(second)
    probability[:] = 1.0
    assert pick_fillers(scores, probability, np.array([0]), 5, rng).tolist() == first.tolist()


@pytest.mark.parametrize("feedback", ["explicit", "implicit"])
def test_profiles_targets_distinct_fillers_and_varied(feedback):
    data = tiny_interactions(feedback=feedback)
    _, out = poison(data, retrain_every=2)
    for fake in range(4):
        items = out.item[out.user == fake]
        assert set(TARGETS) <= set(items) and len(items) == len(set(items)) == 2 + 6
    profiles = [frozenset(out.item[out.user == f]) for f in range(4)]
    assert len(set(profiles)) > 1    # the decay spreads the fillers
    if feedback == "implicit":
        assert (out.rating == 1).all()
    else:
        assert (out.rating[np.isin(out.item, TARGETS)] == data.rating_max).all()
        assert set(out.rating) <= set(np.unique(data.rating))


def test_later_fake_users_see_earlier_ones(monkeypatch):
    import recguard_dp.attack as module

    seen = []
    fit = module.fit_poison_model

    def spy(train, seed, options, hooks):
        seen.append((train.n_users, int(train.is_fake.sum()), len(train)))
        return fit(train, seed, options, hooks)

    monkeypatch.setattr(module, "fit_poison_model", spy)
    data = tiny_interactions()
    attack, _ = poison(data, n_fake=3, retrain_every=1)
    assert [s[:2] for s in seen] == [(31, 1), (32, 2), (33, 3)]
    # the earlier fake users join with their full profile (targets + 6 fillers), the new one
    # with its targets only
    assert seen[1][2] - seen[0][2] == 8 and seen[2][2] - seen[1][2] == 8
    seen.clear()
    poison(data, n_fake=5, retrain_every=2)
    assert [s[:2] for s in seen] == [(32, 2), (34, 4), (35, 5)]


def test_same_seed_same_profiles_and_seed_matters():
    data = tiny_interactions()
    _, a = poison(data, seed=1)
    _, b = poison(data, seed=1)
    assert np.array_equal(a.item, b.item) and np.array_equal(a.rating, b.rating)


@pytest.mark.integration
def test_small_cell_raises_the_target_hit_ratio(tmp_path):
    metrics = eval_record(tmp_path, "--attack", "dp", "--budget", "0.01", "--seeds", "0",
                          "--attack-opt", "retrain_every=3")["metrics"]
    assert metrics["attacked"]["T-HR@50"]["mean"] > metrics["clean"]["T-HR@50"]["mean"] + 0.05
