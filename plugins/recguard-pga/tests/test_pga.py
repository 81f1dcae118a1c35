"""Tests of the PGA attack: contract, ALS solves, gradient sign, projection, fillers, seeds, a real cell."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from recguard import APT, AttackContext, PAMACF, RecguardError, build_config, registered
from recguard.kit.poison.als import als_sweeps, entry_weights, solve_rows
from recguard.kit.poison.profiles import project_relaxed
from recguard.kit.poison.surrogate import dense_ratings
from recguard.testing import check_attack, eval_record, tiny_interactions
from recguard_pga.attack import PGAAttack, PGAConfig, integrity_utility

TARGETS = np.array([37, 38])
FAST = {"pga_steps": "4", "surrogate_epochs": "4", "refit_sweeps": "1"}


def explicit01():
    data = tiny_interactions(n_users=60, n_items=40, per_user=12)
    return dataclasses.replace(data, rating=data.rating / 5.0, rating_max=1.0)


def implicit():
    return tiny_interactions(n_users=60, n_items=40, per_user=12, feedback="implicit")


def poison(data, seed=0, n_fake=4, filler=6, **options):
    ctx = AttackContext(targets=TARGETS, n_fake=n_fake, filler_size=filler,
                        rng=np.random.default_rng(seed),
                        protocol=APT if data.feedback == "explicit" else PAMACF)
    return PGAAttack(build_config(PGAConfig, {**FAST, **options}, "pga")).poison(data, ctx)


def test_contract():
    check_attack(PGAAttack, FAST)


def test_registered_black_box_cf_attack():
    cls = registered("attack", "pga")
    assert cls is PGAAttack and cls.knowledge == "black-box" and cls.backbone_kinds == {"cf"}
    with pytest.raises(RecguardError):
        build_config(PGAConfig, {"surrogate": "lightgcn"}, "pga")


def test_solve_rows_is_weighted_ridge_regression():
    gen = torch.Generator().manual_seed(0)
    fixed = torch.randn(12, 3, generator=gen, dtype=torch.float64)
    ratings = torch.randn(2, 12, generator=gen, dtype=torch.float64)
    weights = torch.rand(2, 12, generator=gen, dtype=torch.float64)
    got = solve_rows(weights, ratings, fixed, 0.5).numpy()
    for r in range(2):
        w = weights[r].numpy()
        f = fixed.numpy()
        want = np.linalg.solve(f.T @ (w[:, None] * f) + 0.5 * np.eye(3), f.T @ (w * ratings[r].numpy()))
        assert np.allclose(got[r], want)


def test_als_decreases_the_objective():
    data = explicit01()
    genuine, observed = dense_ratings(data)
    weights, ratings = entry_weights(observed, torch.zeros(0, 40), genuine, True, 20.0)
    gen = torch.Generator().manual_seed(0)
    user, item = torch.randn(60, 4, generator=gen) * 0.1, torch.randn(40, 4, generator=gen) * 0.1

    def objective(u, v):
        return float((weights * (u @ v.T - ratings) ** 2).sum() + (u ** 2).sum() + (v ** 2).sum())

    values = [objective(user, item)]
    for _ in range(3):
        user, item = als_sweeps(user, item, weights, ratings, 1.0, 1)
        values.append(objective(user, item))
    assert values == sorted(values, reverse=True)


@pytest.mark.parametrize("make", [explicit01, implicit])
def test_a_step_along_the_gradient_raises_the_utility(make):
    data = make()
    explicit = data.feedback == "explicit"
    genuine, observed = dense_ratings(data)
    fake = project_relaxed(torch.tensor(genuine[:3].copy()), TARGETS, 1.0)
    gen = torch.Generator().manual_seed(0)
    user, item = torch.randn(63, 4, generator=gen) * 0.1, torch.randn(40, 4, generator=gen) * 0.1
    weights, ratings = entry_weights(observed, fake, genuine, explicit, 20.0)
    user, item = als_sweeps(user, item, weights, ratings, 1.0, 10)
    eligible = torch.as_tensor(1.0 - observed[:, TARGETS])

    def utility(x):
        return integrity_utility(x, user[:60], item, genuine, observed, eligible, TARGETS, explicit,
                                 20.0, 1.0)

    x = fake.clone().requires_grad_()
    value = utility(x)
    (grad,) = torch.autograd.grad(value, x)
    grad[:, TARGETS] = 0
    assert grad.abs().sum() > 0
    step = 0.01 * grad / grad.norm()
    assert float(utility(fake - step)) < float(value.detach()) < float(utility(fake + step))


@pytest.mark.parametrize("make", [explicit01, implicit])
def test_same_seed_same_profiles_other_seed_differs(make):
    data = make()
    a, b, c = poison(data, seed=1), poison(data, seed=1), poison(data, seed=2)
    assert np.array_equal(a.item, b.item) and np.array_equal(a.rating, b.rating)
    assert not np.array_equal(a.item, c.item)
    assert a.rating.min() >= 0 and a.rating.max() <= 1


def test_box_only_projection_runs():
    out = poison(explicit01(), budget_projection="false")
    assert out.n_fake == 4 and len(out.item) == 4 * 8


def test_the_ascent_fits_the_items_the_final_profiles_keep():
    # the surrogate the ascent climbs must be the one the final profiles give: with the dense
    # relaxation every fake entry was fitted, and the ascent lowered the final profiles' utility
    data = explicit01()
    config = build_config(PGAConfig, FAST, "pga")
    relaxed = PGAAttack(config).optimise(data, TARGETS, 4, 6, np.random.default_rng(3))
    out = poison(data, seed=3)
    for u in range(4):
        assert set(np.flatnonzero(relaxed[u])) == set(out.item[out.user == u])
    assert relaxed[relaxed > 0].min() >= data.rating.min()


@pytest.mark.parametrize("relaxation", ["support", "dense"])
def test_the_default_step_climbs_without_oscillating(relaxation):
    # step=0.5 (the former default) made the utility go up and down from one step to the next
    data = explicit01()
    config = build_config(PGAConfig, {"relaxation": relaxation, "pga_steps": "8"}, "pga")
    trace = []
    PGAAttack(config).optimise(data, TARGETS, 4, 6, np.random.default_rng(0), trace)
    assert len(trace) == 8 and np.all(np.diff(trace) > 0)


def test_filler_rating_max_and_dense_relaxation_run():
    out = poison(explicit01(), filler_rating="max")
    assert np.all(out.rating == 1.0)
    dense = poison(explicit01(), relaxation="dense")
    assert dense.n_fake == 4 and len(dense.item) == 4 * 8


@pytest.mark.integration
def test_a_real_cell_on_ml100k_promotes_the_targets(tmp_path):
    metrics = eval_record(tmp_path, "--attack", "pga", "--budget", "0.01", "--seeds", "0",
                          "--attack-opt", "pga_steps=10")["metrics"]
    assert metrics["attacked"]["T-HR@50"]["mean"] > metrics["clean"]["T-HR@50"]["mean"] + 0.02
