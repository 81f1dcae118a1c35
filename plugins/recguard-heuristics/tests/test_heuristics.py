import dataclasses

import numpy as np
import pytest

from recguard.components import AttackContext
from recguard.protocols import APT, PAMACF
from recguard.testing import check_attack, tiny_interactions
from recguard_heuristics.attacks import AverageAttack, BandwagonAttack, RandomAttack

ATTACKS = [RandomAttack, AverageAttack, BandwagonAttack]
TARGETS = np.array([35, 38])


def normalised():
    data = tiny_interactions(n_users=60, n_items=40, per_user=12)
    return dataclasses.replace(data, rating=data.rating / 5.0, rating_max=1.0)


def poison(cls, data, n_fake=6, filler=10, seed=0, **options):
    ctx = AttackContext(targets=TARGETS, n_fake=n_fake, filler_size=filler,
                        rng=np.random.default_rng(seed), protocol=APT if data.feedback == "explicit" else PAMACF)
    return cls(cls.Config(**options)).poison(data, ctx)


@pytest.mark.parametrize("cls", ATTACKS)
def test_contract(cls):
    check_attack(cls)


@pytest.mark.parametrize("cls", ATTACKS)
@pytest.mark.parametrize("feedback", ["explicit", "implicit"])
def test_profiles_hold_every_target_and_distinct_fillers(cls, feedback):
    data = normalised() if feedback == "explicit" else tiny_interactions(n_users=60, n_items=40, feedback="implicit")
    out = poison(cls, data)
    assert out.n_fake == 6
    for fake in range(6):
        items = out.item[out.user == fake]
        assert len(items) == len(TARGETS) + 10 and len(set(items)) == len(items)
        assert set(TARGETS) <= set(items)
    targets = np.isin(out.item, TARGETS)
    if feedback == "explicit":
        assert (out.rating[targets] == 1.0).all()
        assert set(np.round(out.rating, 4)) <= set(np.round(np.unique(data.rating), 4))
    else:
        assert (out.rating == 1.0).all()
    assert out.timestamp.min() > data.timestamp.max()
    assert np.all(np.diff(out.timestamp) > 0)


@pytest.mark.parametrize("cls", ATTACKS)
def test_seeded(cls):
    data = normalised()
    a, b, c = poison(cls, data, seed=1), poison(cls, data, seed=1), poison(cls, data, seed=2)
    assert np.array_equal(a.item, b.item) and np.array_equal(a.rating, b.rating)
    assert not np.array_equal(a.item, c.item)


def test_average_ratings_track_item_means():
    data = normalised()
    # give item 0 a low and item 1 a high mean, with no spread
    rating = data.rating.copy()
    rating[data.item == 0] = 0.2
    rating[data.item == 1] = 1.0
    data = dataclasses.replace(data, rating=rating)
    out = poison(AverageAttack, data, n_fake=40, filler=37)
    assert np.allclose(out.rating[out.item == 0], 0.2) and np.allclose(out.rating[out.item == 1], 1.0)


def test_bandwagon_takes_popular_items_rated_max():
    data = normalised()
    out = poison(BandwagonAttack, data, n_fake=20, filler=10, popular_share=0.5, popular_pool=5)
    counts = data.item_counts()
    candidates = np.setdiff1d(np.arange(data.n_items), TARGETS)
    top5 = candidates[np.argsort(-counts[candidates], kind="stable")[:5]]
    for fake in range(20):
        items = out.item[out.user == fake]
        popular = np.intersect1d(items, top5)
        assert len(popular) >= 5
        assert (out.rating[(out.user == fake) & np.isin(out.item, top5)] == 1.0).all()


def test_filler_size_capped_by_available_items():
    data = normalised()
    out = poison(RandomAttack, data, n_fake=2, filler=500)
    assert (np.bincount(out.user) == data.n_items).all()  # every non-target item plus the targets
