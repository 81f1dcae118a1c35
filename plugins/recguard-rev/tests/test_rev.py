"""Tests of the Rev attack: contract, gradient sign, projection, fillers, seeds, a real cell."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from recguard.components import AttackContext
from recguard.config import build_config
from recguard.errors import RecguardError
from recguard.plugins import get_host
from recguard.protocols import APT, PAMACF
from recguard.surrogate import DenseMF, dense_ratings
from recguard.testing import check_attack, tiny_interactions
from recguard_rev.attack import (RevAttack, RevConfig, adversarial_loss, discrete_profiles,
                                 fit_graph_free, project, snap, surrogate_inputs)

TARGETS = np.array([37, 38])
FAST = {"adv_epochs": "4", "surrogate_epochs": "20", "refit_steps": "2", "unroll_steps": "3"}


def explicit01():
    data = tiny_interactions(n_users=60, n_items=40, per_user=12)
    return dataclasses.replace(data, rating=data.rating / 5.0, rating_max=1.0)


def attack(**options) -> RevAttack:
    return RevAttack(build_config(RevConfig, {**FAST, **options}, "rev"))


def poison(data, seed=0, n_fake=4, filler=6, **options):
    ctx = AttackContext(targets=TARGETS, n_fake=n_fake, filler_size=filler,
                        rng=np.random.default_rng(seed),
                        protocol=APT if data.feedback == "explicit" else PAMACF)
    return attack(**options).poison(data, ctx)


def test_contract():
    check_attack(RevAttack, FAST)


def test_registered_black_box_cf_attack():
    cls = get_host().attacks.get("rev")
    assert cls is RevAttack and cls.knowledge == "black-box" and cls.backbone_kinds == {"cf"}
    assert RevConfig().unroll_steps == 5 and RevConfig().adv_lr == 1.0
    with pytest.raises(RecguardError):
        build_config(RevConfig, {"surrogate": "lightgcn"}, "rev")


@pytest.mark.parametrize("feedback", ["explicit", "implicit"])
def test_a_step_against_the_gradient_lowers_the_outer_loss(feedback):
    data = explicit01() if feedback == "explicit" else tiny_interactions(60, 40, 12, feedback="implicit")
    genuine, observed = dense_ratings(data)
    rev = attack()
    fake = project(torch.tensor(genuine[:3].copy()), TARGETS, 1.0)
    mf = DenseMF(63, 40, 8, seed=0)
    ratings, weights = surrogate_inputs(genuine, observed, fake, feedback == "explicit", 20.0)
    fit_graph_free(mf, torch.optim.Adam([mf.user, mf.item], lr=0.05), ratings, weights, 100, 1e-4)
    eligible = 1.0 - observed[:, TARGETS]
    rng = np.random.default_rng(0)
    grad, loss = rev.outer_gradient(mf, genuine, observed, eligible, fake, TARGETS,
                                    feedback == "explicit", rng)
    assert grad.shape == fake.shape and grad.abs().sum() > 0
    step = fake - 0.05 * grad / grad.norm()
    _, lower = rev.outer_gradient(mf, genuine, observed, eligible, step, TARGETS,
                                  feedback == "explicit", rng)
    _, higher = rev.outer_gradient(mf, genuine, observed, eligible, fake + 0.05 * grad / grad.norm(),
                                   TARGETS, feedback == "explicit", rng)
    assert lower < loss < higher


def test_outer_loss_is_the_targets_cross_entropy_over_eligible_pairs():
    scores = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    eligible = torch.tensor([[1.0], [0.0]])
    assert adversarial_loss(scores, np.array([2]), eligible).item() == pytest.approx(np.log(4))


def test_projection_keeps_the_box_the_targets_and_the_filler_budget():
    x = torch.randn(5, 40) * 3
    out = project(x.clone(), TARGETS, 1.0, filler_size=7)
    free = np.setdiff1d(np.arange(40), TARGETS)
    assert out.min() >= 0 and out.max() <= 1 and (out[:, TARGETS] == 1).all()
    assert torch.allclose(out[:, free].sum(1), torch.full((5,), 7.0), atol=1e-4)
    box = project(x.clone(), TARGETS, 1.0)
    assert torch.equal(box[:, free], x[:, free].clamp(0, 1))
    # projection preserves the order of a row's entries (a shift, then a clip)
    row = x[0, free].numpy()
    assert np.all(np.diff(out[0, free].numpy()[np.argsort(row)]) >= -1e-6)


def test_fillers_are_the_top_optimised_items_with_snapped_ratings():
    data = explicit01()
    relaxed = np.zeros((2, 40), np.float32)
    relaxed[:, TARGETS] = 1.0
    relaxed[0, [3, 5, 9]] = [0.95, 0.55, 0.33]
    relaxed[1, [1, 2, 4]] = [0.75, 0.65, 0.1]
    out = discrete_profiles(data, relaxed, TARGETS, 3, np.random.default_rng(0))
    for fake, fillers, values in ((0, [3, 5, 9], [1.0, 0.6, 0.4]), (1, [1, 2, 4], [0.8, 0.6, 0.2])):
        rows = out.user == fake
        got = dict(zip(out.item[rows].tolist(), out.rating[rows].tolist()))
        assert set(got) == set(fillers) | set(TARGETS.tolist())
        assert all(got[t] == 1.0 for t in TARGETS)
        assert [got[i] for i in fillers] == pytest.approx(values)
    assert np.all(np.diff(out.timestamp) > 0) and out.timestamp.min() == data.timestamp.max() + 1
    assert snap(np.array([-1.0, 0.29, 0.31, 2.0]), np.array([0.2, 0.4, 1.0])).tolist() == \
        pytest.approx([0.2, 0.2, 0.4, 1.0])


@pytest.mark.parametrize("feedback", ["explicit", "implicit"])
def test_same_seed_same_profiles_other_seed_differs(feedback):
    data = explicit01() if feedback == "explicit" else tiny_interactions(60, 40, 12, feedback="implicit")
    a, b, c = poison(data, seed=1), poison(data, seed=1), poison(data, seed=2)
    assert np.array_equal(a.item, b.item) and np.array_equal(a.rating, b.rating)
    assert not np.array_equal(a.item, c.item)
    assert len(a.item) == 4 * (len(TARGETS) + 6)
    if feedback == "implicit":
        assert (a.rating == 1.0).all()


def test_edge_cases():
    data = explicit01()
    assert poison(data, n_fake=0).n_fake == 0
    only_targets = poison(data, filler=0)
    assert sorted(set(only_targets.item.tolist())) == TARGETS.tolist()
    with pytest.raises(RecguardError, match="target"):
        ctx = AttackContext(targets=np.array([99]), n_fake=2, filler_size=3,
                            rng=np.random.default_rng(0), protocol=APT)
        attack().poison(data, ctx)


@pytest.mark.integration
def test_a_real_cell_on_ml100k_promotes_the_targets(tmp_path, capsys):
    from recguard.cli import main

    args = ["eval", "--attack", "rev", "--budget", "0.01", "--seeds", "0", "-q", "--json",
            "--output", str(tmp_path), "--attack-opt", "adv_epochs=10"]
    try:
        main(args)
    except SystemExit as exc:
        assert not exc.code
    record = json.loads(capsys.readouterr().out)
    hr = record["metrics"]
    assert hr["attacked"]["T-HR@50"]["mean"] > hr["clean"]["T-HR@50"]["mean"] + 0.02
