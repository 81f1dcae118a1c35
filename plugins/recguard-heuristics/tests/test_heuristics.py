"""Tests of the Random, Average and Bandwagon attacks on tiny synthetic data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from recguard import APT, AttackContext, Interactions, PAMACF, Poisoned, RecguardError, build_config
from recguard.testing import check_attack, tiny_interactions
from recguard_heuristics.attacks import (AverageAttack, BandwagonAttack, BandwagonConfig,
                                         RandomAttack, RatingStats)

ATTACKS = [RandomAttack, AverageAttack, BandwagonAttack]
TARGETS = np.array([35, 38])
GRID_01 = np.array([0.2, 0.4, 0.6, 0.8, 1.0], dtype=np.float32)


def explicit01() -> Interactions:
    """Ratings 1..5 normalised to 0.2..1.0, as under the APT protocol."""
    data = tiny_interactions(n_users=60, n_items=40, per_user=12)
    return dataclasses.replace(data, rating=data.rating / 5.0, rating_max=1.0)


def explicit15() -> Interactions:
    return tiny_interactions(n_users=60, n_items=40, per_user=12)


def implicit() -> Interactions:
    return tiny_interactions(n_users=60, n_items=40, per_user=12, feedback="implicit")


DATA = {"explicit01": explicit01, "explicit15": explicit15, "implicit": implicit}


def supports(cls, data: Interactions) -> bool:
    return data.feedback in cls.feedback


def poison(cls, data, n_fake=6, filler=10, seed=0, targets=TARGETS, **options) -> Poisoned:
    ctx = AttackContext(targets=targets, n_fake=n_fake, filler_size=filler,
                        rng=np.random.default_rng(seed),
                        protocol=APT if data.feedback == "explicit" else PAMACF)
    return cls(build_config(cls.Config, options, cls.name)).poison(data, ctx)


def profiles(out: Poisoned):
    """(items, ratings, timestamps) of each fake user, rows in time order."""
    for fake in range(out.n_fake):
        rows = np.flatnonzero(out.user == fake)
        rows = rows[np.argsort(out.timestamp[rows], kind="stable")]
        yield out.item[rows], out.rating[rows], out.timestamp[rows]


# ---------------------------------------------------------------- contract and shapes


@pytest.mark.parametrize("cls", ATTACKS)
def test_host_contract(cls):
    check_attack(cls)
    assert cls.knowledge == "black-box" and cls.paper and cls.summary


def test_plugin_registers_the_three_attacks():
    import recguard_heuristics

    registered = []
    recguard_heuristics.register_attacks(registered.append)
    assert [c.name for c in registered] == ["random", "average", "bandwagon"]


@pytest.mark.parametrize("cls", ATTACKS)
@pytest.mark.parametrize("kind", sorted(DATA))
def test_profiles_hold_every_target_and_distinct_fillers(cls, kind):
    data = DATA[kind]()
    if not supports(cls, data):
        pytest.skip(f"{cls.name} refuses {data.feedback} data")
    out = poison(cls, data, n_fake=7, filler=10)
    assert out.n_fake == 7
    assert set(np.unique(out.user)) == set(range(7))
    assert len(out.user) == len(out.item) == len(out.rating) == len(out.timestamp) == 7 * 12
    assert out.user.dtype == np.int64 and out.item.dtype == np.int64
    assert out.rating.dtype == np.float32
    for items, _, _ in profiles(out):
        assert len(set(items.tolist())) == len(items) == len(TARGETS) + 10
        assert set(TARGETS.tolist()) <= set(items.tolist())
        fillers = items[~np.isin(items, TARGETS)]
        assert len(fillers) == 10
        assert ((fillers >= 0) & (fillers < data.n_items)).all()


@pytest.mark.parametrize("cls", ATTACKS)
@pytest.mark.parametrize("kind", ["explicit01", "explicit15"])
def test_explicit_ratings(cls, kind):
    data = DATA[kind]()
    out = poison(cls, data, n_fake=20, filler=20)
    is_target = np.isin(out.item, TARGETS)
    assert (out.rating[is_target] == np.float32(data.rating_max)).all()
    levels = np.unique(data.rating)
    assert np.isin(out.rating, levels).all(), "every rating lies on the data's rating grid"
    if kind == "explicit01":
        assert np.isin(out.rating, GRID_01).all()
    # fillers are not all at the maximum: they follow a distribution
    assert len(np.unique(out.rating[~is_target])) > 1


@pytest.mark.parametrize("cls", [RandomAttack, BandwagonAttack])
def test_implicit_rows_are_positives(cls):
    out = poison(cls, implicit(), n_fake=5, filler=15)
    assert (out.rating == 1.0).all()


def test_average_refuses_implicit_data():
    assert AverageAttack.feedback == frozenset({"explicit"})
    assert "implicit" in RandomAttack.feedback and "implicit" in BandwagonAttack.feedback
    with pytest.raises(RecguardError, match="explicit"):
        poison(AverageAttack, implicit())


# ---------------------------------------------------------------- rating distributions


def skewed_items(n_users=200, n_items=30, per_user=15, seed=3) -> Interactions:
    """Items 0..14 are disliked (mostly 1-2), items 15..29 liked (mostly 4-5), with spread."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), per_user)
    items = np.concatenate([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
    centre = np.where(items < n_items // 2, 1.6, 4.4)
    ratings = np.clip(np.rint(rng.normal(centre, 0.8)), 1, 5).astype(np.float32)
    return Interactions(user=users, item=items, rating=ratings / 5.0,
                        timestamp=np.arange(len(users)), n_users=n_users, n_items=n_items,
                        user_ids=np.arange(n_users).astype(str), item_ids=np.arange(n_items).astype(str),
                        feedback="explicit", rating_max=1.0)


def per_item_means(out: Poisoned, n_items: int, targets) -> tuple[np.ndarray, np.ndarray]:
    filler = ~np.isin(out.item, targets)
    counts = np.bincount(out.item[filler], minlength=n_items)
    sums = np.bincount(out.item[filler], weights=out.rating[filler], minlength=n_items)
    return sums / np.maximum(counts, 1), counts


def test_average_filler_ratings_track_item_means():
    data = skewed_items()
    targets = np.array([0])
    out = poison(AverageAttack, data, n_fake=300, filler=10, targets=targets, seed=7)
    fake_means, counts = per_item_means(out, data.n_items, targets)
    stats = RatingStats.of(data)
    seen = counts >= 30
    assert seen.sum() >= 25
    assert np.corrcoef(fake_means[seen], stats.item_mean[seen])[0, 1] > 0.9
    assert np.abs(fake_means[seen] - stats.item_mean[seen]).max() < 0.1  # half a star on 0.2..1.0
    # the Random attack ignores items: its per-item means do not separate the two groups
    rnd, rnd_counts = per_item_means(poison(RandomAttack, data, n_fake=300, filler=10,
                                            targets=targets, seed=7), data.n_items, targets)
    low, high = rnd[1:15][rnd_counts[1:15] >= 30], rnd[15:][rnd_counts[15:] >= 30]
    assert abs(low.mean() - high.mean()) < 0.05
    avg_low, avg_high = fake_means[1:15][seen[1:15]], fake_means[15:][seen[15:]]
    assert avg_high.mean() - avg_low.mean() > 0.4


def test_average_copies_items_without_spread_and_falls_back_for_unrated_items():
    data = explicit01()
    rating = data.rating.copy()
    rating[data.item == 0] = 0.2
    rating[data.item == 1] = 1.0
    keep = data.item != 2  # item 2 has no rating: global mean / std
    data = dataclasses.replace(data, rating=rating).take(keep)
    out = poison(AverageAttack, data, n_fake=40, filler=38)  # every non-target item
    assert np.allclose(out.rating[out.item == 0], 0.2)
    assert np.allclose(out.rating[out.item == 1], 1.0)
    assert (out.item == 2).sum() == 40 and np.isin(out.rating[out.item == 2], GRID_01).all()
    assert len(np.unique(out.rating[out.item == 2])) > 1


def test_random_filler_ratings_follow_the_global_distribution():
    data = skewed_items()
    targets = np.array([0])
    out = poison(RandomAttack, data, n_fake=300, filler=10, targets=targets, seed=1)
    filler = out.rating[~np.isin(out.item, targets)]
    assert abs(filler.mean() - data.rating.mean()) < 0.03
    assert abs(filler.std() - data.rating.std()) < 0.08  # snapping to the grid moves the std a little


# ---------------------------------------------------------------- bandwagon


def top_items(data: Interactions, n: int) -> np.ndarray:
    counts = data.item_counts()
    candidates = np.setdiff1d(np.arange(data.n_items), TARGETS)
    return candidates[np.argsort(-counts[candidates], kind="stable")[:n]]


@pytest.mark.parametrize("kind", ["explicit01", "implicit"])
def test_bandwagon_fixed_selected_set(kind):
    """popular_pool == number of popular fillers: every profile holds the whole pool."""
    data = DATA[kind]()
    out = poison(BandwagonAttack, data, n_fake=20, filler=10, popular_share=0.5, popular_pool=5)
    pool = top_items(data, 5)
    for items, ratings, _ in profiles(out):
        assert set(pool.tolist()) <= set(items.tolist())
        assert (ratings[np.isin(items, pool)] == np.float32(data.rating_max)).all()


def test_bandwagon_default_draws_a_share_from_the_popular_pool():
    data = tiny_interactions(n_users=300, n_items=400, per_user=30)
    config = BandwagonConfig()
    assert (config.popular_share, config.popular_pool) == (0.1, 50)
    out = poison(BandwagonAttack, data, n_fake=50, filler=40)
    pool = top_items(data, 50)
    for items, ratings, _ in profiles(out):
        in_pool = np.isin(items, pool)
        assert in_pool.sum() >= 4  # round(0.1 * 40) popular fillers, plus any random hits
        assert (ratings[in_pool] == 5.0).sum() >= 4
    # popular items are far more frequent among the fillers than other items
    freq = np.bincount(out.item, minlength=data.n_items) / out.n_fake
    others = np.setdiff1d(np.arange(data.n_items), np.concatenate([pool, TARGETS]))
    assert freq[pool].mean() > 1.5 * freq[others].mean()


def test_bandwagon_share_zero_is_a_random_attack_in_kind():
    data = explicit01()
    out = poison(BandwagonAttack, data, n_fake=10, filler=10, popular_share=0.0)
    assert len(np.unique(out.rating[~np.isin(out.item, TARGETS)])) > 1


def test_bandwagon_options_are_range_checked():
    for bad in ({"popular_share": "1.5"}, {"popular_share": "-0.1"}, {"popular_pool": "0"},
                {"popular_pool": "many"}, {"pool": "3"}):
        with pytest.raises(RecguardError):
            build_config(BandwagonConfig, bad, "bandwagon")
    assert build_config(BandwagonConfig, {"popular_share": "0.3"}, "bandwagon").popular_share == 0.3


# ---------------------------------------------------------------- seeds, time, edge cases


@pytest.mark.parametrize("cls", ATTACKS)
@pytest.mark.parametrize("kind", ["explicit01", "implicit"])
def test_same_seed_same_output_other_seed_differs(cls, kind):
    data = DATA[kind]()
    if not supports(cls, data):
        pytest.skip(f"{cls.name} refuses {data.feedback} data")
    a, b, c = poison(cls, data, seed=1), poison(cls, data, seed=1), poison(cls, data, seed=2)
    for field in ("user", "item", "rating", "timestamp"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.item, c.item)


@pytest.mark.parametrize("cls", ATTACKS)
def test_timestamps_follow_the_genuine_ones_in_a_random_order(cls):
    data = explicit01()
    out = poison(cls, data, n_fake=30, filler=10)
    assert out.timestamp.min() == data.timestamp.max() + 1
    assert np.all(np.diff(out.timestamp) > 0), "strictly increasing, one profile after another"
    first_item = [items[0] for items, _, _ in profiles(out)]
    target_slots = [np.flatnonzero(np.isin(items, TARGETS))[0] for items, _, _ in profiles(out)]
    assert len(set(first_item)) > 1 and len(set(target_slots)) > 1, "profiles are shuffled"


@pytest.mark.parametrize("cls", ATTACKS)
def test_filler_size_larger_than_available_items(cls):
    data = explicit01()
    out = poison(cls, data, n_fake=3, filler=500)
    for items, _, _ in profiles(out):
        assert sorted(items.tolist()) == list(range(data.n_items))  # every item, once


@pytest.mark.parametrize("cls", ATTACKS)
def test_no_fake_users_and_no_fillers(cls):
    data = explicit01()
    empty = poison(cls, data, n_fake=0)
    assert empty.n_fake == 0 and len(empty.user) == 0 and len(empty.timestamp) == 0
    only_targets = poison(cls, data, n_fake=4, filler=0)
    assert len(only_targets.item) == 4 * len(TARGETS)
    assert (only_targets.rating == 1.0).all()


def test_targets_out_of_range_are_refused():
    with pytest.raises(RecguardError, match="target"):
        poison(RandomAttack, explicit01(), targets=np.array([3, 99]))


def test_snap_clips_and_rounds_to_the_nearest_level():
    stats = RatingStats.of(explicit15())
    assert stats.levels.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    got = stats.snap(np.array([-3.0, 1.49, 1.5, 2.6, 4.4, 9.0]))
    assert got.tolist() == [1.0, 1.0, 2.0, 3.0, 4.0, 5.0]
