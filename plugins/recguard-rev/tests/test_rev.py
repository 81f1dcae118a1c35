"""Tests of the Rev attack: contract, gradient sign, projection, fillers, seeds, a real cell."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from recguard import APT, AttackContext, PAMACF, RecguardError, build_config, registered
from recguard.kit.poison.profiles import project_relaxed
from recguard.kit.poison.surrogate import DenseMF, dense_ratings
from recguard.testing import check_attack, eval_record, tiny_interactions
from recguard_rev.attack import (RevAttack, RevConfig, adversarial_loss, fit_graph_free,
                                 surrogate_inputs)

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


def test_registered_black_box_attack_of_cf_and_sequential_models():
    cls = registered("attack", "rev")
    # LoRec (sec. 6.1.4) runs Rev, black-box, against sequential recommenders
    assert cls is RevAttack and cls.knowledge == "black-box" and cls.backbone_kinds == {"cf", "sequential"}
    assert RevConfig().unroll_steps == 5 and RevConfig().adv_lr == 1.0
    with pytest.raises(RecguardError):
        build_config(RevConfig, {"surrogate": "lightgcn"}, "rev")


@pytest.mark.parametrize("feedback", ["explicit", "implicit"])
def test_a_step_against_the_gradient_lowers_the_outer_loss(feedback):
    data = explicit01() if feedback == "explicit" else tiny_interactions(60, 40, 12, feedback="implicit")
    genuine, observed = dense_ratings(data)
    rev = attack()
    fake = project_relaxed(torch.tensor(genuine[:3].copy()), TARGETS, 1.0)
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
def test_a_real_cell_on_ml100k_promotes_the_targets(tmp_path):
    metrics = eval_record(tmp_path, "--attack", "rev", "--budget", "0.01", "--seeds", "0",
                          "--attack-opt", "adv_epochs=10")["metrics"]
    assert metrics["attacked"]["T-HR@50"]["mean"] > metrics["clean"]["T-HR@50"]["mean"] + 0.02
