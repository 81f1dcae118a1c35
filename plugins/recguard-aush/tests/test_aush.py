"""Tests of the AUSH attack: contract, selected items, the GAN's pieces, the output profiles."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from recguard import APT, AttackContext, Interactions, PAMACF, Poisoned, build_config
from recguard.testing import check_attack, eval_record, tiny_interactions
from recguard_aush.attack import AUSHAttack, AUSHConfig, AUSHTrainer, choose_selected

TARGETS = np.array([57, 58, 59])
FAST = {"epochs": "20"}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """As `AUSHAttack.poison` does (torch_threads=1): tests that drive the trainer directly."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def skewed(n_users=200, n_items=60, per_user=15, seed=0) -> Interactions:
    """Ratings 3-5 (mean about 4.4): far from an untrained generator's sigmoid(.) * 5."""
    data = tiny_interactions(n_users=n_users, n_items=n_items, per_user=per_user, seed=seed)
    rng = np.random.default_rng(seed + 1)
    rating = rng.choice([3.0, 4.0, 5.0], size=len(data.rating), p=[0.1, 0.4, 0.5]).astype(np.float32)
    return dataclasses.replace(data, rating=rating)


def normalised(data: Interactions) -> Interactions:
    """As under the APT protocol: ratings / 5, maximum 1.0."""
    return dataclasses.replace(data, rating=(data.rating / 5.0).astype(np.float32), rating_max=1.0)


def implicit() -> Interactions:
    return tiny_interactions(n_users=120, n_items=60, per_user=12, feedback="implicit")


def poison(data, n_fake=6, filler=8, seed=0, targets=TARGETS, **options) -> Poisoned:
    ctx = AttackContext(targets=targets, n_fake=n_fake, filler_size=filler,
                        rng=np.random.default_rng(seed),
                        protocol=APT if data.feedback == "explicit" else PAMACF)
    config = build_config(AUSHConfig, {**FAST, **options}, "aush")
    return AUSHAttack(config).poison(data, ctx)


def profiles(out: Poisoned):
    for fake in range(out.n_fake):
        rows = out.user == fake
        yield out.item[rows], out.rating[rows]


# ---------------------------------------------------------------- contract


def test_host_contract():
    check_attack(AUSHAttack, FAST)
    assert AUSHAttack.knowledge == "black-box" and AUSHAttack.paper and AUSHAttack.summary
    assert AUSHAttack.feedback == frozenset({"explicit", "implicit"})


def test_plugin_registers_aush():
    import recguard_aush

    registered = []
    recguard_aush.register_attacks(registered.append)
    assert [c.name for c in registered] == ["aush"]


# ---------------------------------------------------------------- selected items


def test_selected_items_are_the_most_co_liked_popular_items():
    # six equally popular items; 3, 4, 5 are liked together by users 0-49, while 0, 1, 2 are
    # liked independently (about 12 users like all three); users 90-99 rated a target
    rng = np.random.default_rng(0)
    user, item, rating = [], [], []
    for u in range(100):
        for i in range(6):
            liked = rng.random() < 0.5 if i < 3 else u < 50 or u >= 90
            user.append(u), item.append(i), rating.append(5.0 if liked else 1.0)
        if u >= 90:
            user.append(u), item.append(TARGETS[0]), rating.append(5.0)
    data = Interactions(user=np.array(user), item=np.array(item), rating=np.array(rating, np.float32),
                        timestamp=np.arange(len(user)), n_users=100, n_items=60,
                        user_ids=np.arange(100).astype(str), item_ids=np.arange(60).astype(str))
    assert choose_selected(data, TARGETS, 3, 20).tolist() == [3, 4, 5]
    chosen = choose_selected(data, TARGETS, 2, 20)
    assert len(chosen) == 2 and not np.isin(chosen, TARGETS).any()
    assert len(choose_selected(data, TARGETS, 0, 20)) == 0


# ---------------------------------------------------------------- the GAN


def trainer(data, seed=0, **options) -> AUSHTrainer:
    config = build_config(AUSHConfig, options, "aush")
    return AUSHTrainer(data, TARGETS, np.array([0, 1, 2]), 8, config, np.random.default_rng(seed))


def test_discriminator_separates_real_from_untrained_generated_profiles():
    t = trainer(skewed(), lr_d="0.001")
    assert t.monitor()["d_accuracy"] <= 0.6   # an untrained D guesses
    for _ in range(40):                       # train D only; G stays at its initialisation
        fillers = t.sample_fillers(t.templates)
        for start in range(0, len(t.templates), 64):
            t.d_step(t.templates[start:start + 64], fillers[start:start + 64])
    assert t.monitor()["d_accuracy"] > 0.9


def test_training_moves_generated_ratings_toward_the_real_ones():
    t = trainer(skewed())
    before = t.monitor()
    t.fit(60, monitor_every=20)
    after = t.history[-1]
    assert abs(before["filler_mean_gap"]) > 1.0           # sigmoid(~0) * 5 vs mean 4.4
    assert abs(after["filler_mean_gap"]) < 0.5 * abs(before["filler_mean_gap"])
    assert after["selected_mean"] > 4.0                   # L_shill pushes I_S to the maximum


def test_fillers_are_sampled_from_each_templates_rated_candidates():
    data = skewed()
    t = trainer(data)
    users = t.templates[:20]
    fillers = t.sample_fillers(users)
    rated = set(zip(data.user.tolist(), data.item.tolist()))
    for u, row in zip(users, fillers):
        assert len(set(row.tolist())) == 8
        assert all((u, i) in rated for i in row)
        assert not np.isin(row, TARGETS).any() and not np.isin(row, [0, 1, 2]).any()


# ---------------------------------------------------------------- profiles


@pytest.mark.parametrize("make", [skewed, lambda: normalised(skewed())], ids=["raw", "apt"])
def test_explicit_profiles(make):
    data = make()
    out = poison(data, n_fake=6, filler=8)
    levels = set(np.unique(data.rating).tolist())
    top = data.rating_max
    selected = choose_selected(data, TARGETS, 3, 20)
    assert out.n_fake == 6 and len(out.user) == 6 * (3 + 3 + 8)
    for items, ratings in profiles(out):
        assert len(set(items.tolist())) == len(items) == 3 + 3 + 8
        rating_of = dict(zip(items.tolist(), ratings.tolist()))
        assert all(rating_of[t] == top for t in TARGETS)
        assert all(rating_of[s] == top for s in selected)
        fillers = [i for i in items if i not in TARGETS and i not in selected]
        assert len(fillers) == 8
        assert {rating_of[i] for i in fillers} <= levels   # on the data's rating levels
    assert np.all(np.diff(out.timestamp) > 0) and out.timestamp.min() > data.timestamp.max()


def test_generated_selected_ratings_are_rounded_to_levels():
    data = skewed()
    out = poison(data, selected_rating="generated")
    assert set(np.unique(out.rating).tolist()) <= set(np.unique(data.rating).tolist())


def test_implicit_profiles_are_items_chosen_by_the_generator():
    data = implicit()
    out = poison(data, n_fake=5, filler=6)
    assert np.all(out.rating == 1.0)
    for items, _ in profiles(out):
        assert len(set(items.tolist())) == len(items) == 3 + 3 + 6
        assert np.isin(TARGETS, items).all()


def test_same_seed_same_profiles_other_seed_differs():
    data = skewed()
    a, b, c = poison(data, seed=3), poison(data, seed=3), poison(data, seed=4)
    assert np.array_equal(a.item, b.item) and np.array_equal(a.rating, b.rating)
    assert not (np.array_equal(a.item, c.item) and np.array_equal(a.rating, c.rating))


def test_short_profiles_are_topped_up_to_filler_size():
    data = skewed(per_user=6)           # at most 6 candidate ratings per user
    out = poison(data, n_fake=4, filler=10)
    for items, _ in profiles(out):
        assert len(set(items.tolist())) == 3 + 3 + 10


def test_explicit_selected_items_option_and_bad_values():
    from recguard import RecguardError

    out = poison(skewed(), selected_items="5,6")
    for items, ratings in profiles(out):
        assert {5, 6} <= set(items.tolist())
    with pytest.raises(RecguardError, match="selected_items"):
        poison(skewed(), selected_items="58")


# ---------------------------------------------------------------- a real cell


@pytest.mark.integration
def test_cli_cell_on_ml100k_raises_target_hit_ratio(tmp_path):
    record = eval_record(tmp_path, "--attack", "aush", "--budget", "0.01", "--seeds", "0",
                         "--attack-opt", "epochs=50")
    clean = record["metrics"]["clean"]["T-HR@50"]["mean"]
    attacked = record["metrics"]["attacked"]["T-HR@50"]["mean"]
    assert attacked > clean + 0.05, (clean, attacked)
