"""AT (APT's adversarial-training baseline): the inner SGD on a hand-made case, its ε-ball,
the loss it adds, the contract checks and a small real cell."""

import dataclasses

import numpy as np
import pytest
import torch

from recguard import APT, DefenseContext, FitContext, build_config, registered
from recguard.kit.cf.adversarial import loss_at, perturbed_loss, project_rows, sgd_perturbation
from recguard.kit.cf.loop import dot_product_loss
from recguard.testing import cell_record, check_defense, tiny_interactions
from recguard_apt.at import ATDefense
from recguard_mf.backbone import MFBackbone


def at(**options):
    return ATDefense(build_config(ATDefense.Config, {k: str(v) for k, v in options.items()}, "at"))


def batch_of(implicit=False, rows=6, dim=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    emb = [torch.randn(rows, dim, generator=g, requires_grad=True) for _ in range(3)]
    return {"user_emb": emb[0], "pos_emb": emb[1], "neg_emb": emb[2] if implicit else None,
            "ratings": torch.rand(rows, generator=g), "loss_fn": dot_product_loss(implicit),
            "users": torch.arange(rows), "row_weight": None}


def test_contract_on_mf():
    check_defense(ATDefense, MFBackbone)


def test_registered_with_the_host():
    assert registered("defense", "at") is ATDefense


def test_projection_keeps_rows_inside_the_ball():
    delta = torch.tensor([[3.0, 4.0], [0.01, 0.0]])
    out = project_rows(delta, 0.5)
    assert out[0].tolist() == pytest.approx([0.3, 0.4])      # norm 5 scaled to 0.5
    assert out[1].tolist() == pytest.approx([0.01, 0.0])     # inside: unchanged


def test_inner_sgd_by_hand_on_a_linear_loss():
    # L = sum of the embeddings' entries: the gradient is all ones, so each SGD step adds lr
    # to every entry; 2 steps of 0.1 on 4 entries give a row of norm 0.4, inside eps = 1
    batch = batch_of(rows=3)
    linear = dict(batch, loss_fn=lambda u, p, n, r: u.sum(-1) + p.sum(-1))
    deltas = sgd_perturbation(linear, 1.0, steps=2, lr=0.1)
    assert torch.allclose(deltas[0], torch.full((3, 4), 0.2)) and deltas[2] is None
    # with eps = 0.3 the second step is projected back: every row ends on the sphere
    deltas = sgd_perturbation(linear, 0.3, steps=2, lr=0.1)
    assert deltas[0].norm(dim=-1).tolist() == pytest.approx([0.3] * 3)
    assert torch.allclose(deltas[0], torch.full((3, 4), 0.15))


@pytest.mark.parametrize("implicit", [False, True])
def test_inner_sgd_raises_the_loss_and_respects_eps(implicit):
    batch = batch_of(implicit)
    base = loss_at(batch, [batch["user_emb"], batch["pos_emb"], batch["neg_emb"]]).item()
    eps = torch.linspace(0.01, 0.06, 6)   # one bound per row
    previous = base
    for steps in (1, 3, 10):
        deltas = sgd_perturbation(batch, eps, steps=steps, lr=0.05)
        for d in deltas:
            if d is not None:
                assert not d.requires_grad
                assert (d.norm(dim=-1) <= eps + 1e-6).all()
        adv = perturbed_loss(batch, deltas).item()
        assert adv > base and adv >= previous - 1e-6   # more ascent steps: no lower loss
        previous = adv
    # the parameters get the gradient of L(θ + Δ) with Δ constant
    loss = perturbed_loss(batch, sgd_perturbation(batch, eps, steps=3, lr=0.05))
    loss.backward()
    assert batch["user_emb"].grad is not None


def test_hooks_add_lambda_times_the_perturbed_loss_from_adv_start():
    defense = at(adv_weight=0.5, adv_start=1, inner_steps=2)
    hooks = defense.during_fit(tiny_interactions(), DefenseContext(0, APT, MFBackbone()))
    batch = batch_of()
    assert hooks.extra_loss(0, None, batch) is None
    torch.manual_seed(0)
    term = hooks.extra_loss(1, None, batch)
    expected = 0.5 * perturbed_loss(batch, sgd_perturbation(batch, 0.03, 2, 0.1))
    assert term.item() == pytest.approx(expected.item(), rel=1e-6)


def test_at_changes_the_model():
    data = tiny_interactions()
    data = dataclasses.replace(data, rating=data.rating / 5.0, rating_max=1.0)
    options = build_config(MFBackbone.Config, {"epochs": "4", "lr": "1"}, "mf")
    plain = MFBackbone(options).fit(data, FitContext(seed=0))
    ctx = DefenseContext(0, APT, MFBackbone())
    robust = MFBackbone(options).fit(data, FitContext(seed=0, hooks=at(eps=0.3).during_fit(data, ctx)))
    assert not np.allclose(plain.score(np.arange(3)), robust.score(np.arange(3)))
    assert ctx.notes["adversarial_epochs"] == 4


@pytest.mark.integration
def test_small_cell_with_at():
    record = cell_record(defense="at", attack="average", seeds=(0,), backbone_options={"epochs": "4"})
    assert record["spec"]["protocol"]["name"] == "apt"   # the defense's default protocol
    assert record["notes"]["attacked+defense"][0]["adversarial_epochs"] == 4
    assert record["metrics"]["clean+defense"]["HR@50"]["mean"] > 0.05
