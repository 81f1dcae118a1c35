import math

import numpy as np
import pytest
import torch

from recguard import DefenseContext, FitContext, PAMACF, build_config
from recguard.kit.cf.loop import dot_product_loss
from recguard.testing import cell_record, check_defense, tiny_interactions
from recguard_mf.backbone import MFBackbone
from recguard_pamacf.defenses import (APRDefense, PamaCFDefense, adversarial_loss,
                                      personal_coefficients)


def sig(x):
    return 1 / (1 + math.exp(-x))


@pytest.mark.parametrize("cls", [APRDefense, PamaCFDefense])
def test_contract_on_mf(cls):
    check_defense(cls, MFBackbone, {"adv_start": 0})


def test_personal_coefficients_follow_eq5():
    users = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])  # norms 1, 2, 3; mean 2
    assert personal_coefficients(users) == pytest.approx([sig(-0.5), sig(0.0), sig(0.5)])
    # the authors' code: squared norms (1, 4, 9; mean 14/3) and a factor 2
    squared = personal_coefficients(users, squared=True, scale=2.0)
    assert squared == pytest.approx([2 * sig(1 / (14 / 3) - 1), 2 * sig(4 / (14 / 3) - 1), 2 * sig(9 / (14 / 3) - 1)])


def batch_of(implicit=True, rows=6, dim=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    emb = [torch.randn(rows, dim, generator=g, requires_grad=True) for _ in range(3)]
    return {"user_emb": emb[0], "pos_emb": emb[1], "neg_emb": emb[2] if implicit else None,
            "ratings": torch.rand(rows, generator=g), "loss_fn": dot_product_loss(implicit),
            "users": torch.arange(rows), "row_weight": None}


@pytest.mark.parametrize("implicit", [True, False])
def test_adversarial_step_has_the_given_length_and_raises_the_loss(implicit):
    batch = batch_of(implicit)
    embeddings = [batch["user_emb"], batch["pos_emb"], batch["neg_emb"]]
    base = batch["loss_fn"](*embeddings, batch["ratings"]).mean()
    magnitude = torch.linspace(0.01, 0.05, 6)
    adv = adversarial_loss(batch, magnitude)
    assert adv.item() > base.item()  # a small step along the gradient increases the loss
    # the step of each row has exactly its magnitude: recover it from a linear loss
    lin = dict(batch, loss_fn=lambda u, p, n, r: (u.sum(-1) + p.sum(-1)))
    moved = adversarial_loss(lin, magnitude) - lin["loss_fn"](batch["user_emb"], batch["pos_emb"], None, None).mean()
    # for a linear loss the gradient is all-ones, so each embedding moves by magnitude * sqrt(dim)
    assert moved.item() == pytest.approx((2 * magnitude * math.sqrt(4)).mean().item(), rel=1e-5)


def test_no_adversarial_term_before_the_warm_up():
    defense = APRDefense(build_config(APRDefense.Config, {"adv_start": "2"}, "apr"))
    hooks = defense.during_fit(tiny_interactions(), DefenseContext(0, PAMACF, MFBackbone()))
    batch = batch_of()
    assert hooks.extra_loss(1, None, batch) is None
    assert hooks.extra_loss(2, None, batch).item() > 0


def test_pamacf_magnitudes_follow_c_and_the_ablation():
    class Model:
        def user_embeddings(self):
            return np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])

    pama = PamaCFDefense(build_config(PamaCFDefense.Config, {"rho": "0.5"}, "pamacf"))
    assert pama.magnitudes(Model()) == pytest.approx(0.5 * personal_coefficients(Model().user_embeddings()))
    flat = PamaCFDefense(build_config(PamaCFDefense.Config, {"rho": "0.5", "personalized": "false"}, "p"))
    assert flat.magnitudes(Model()) == pytest.approx([0.5, 0.5, 0.5])


def test_adversarial_training_changes_the_model():
    data = tiny_interactions(feedback="implicit")
    plain = MFBackbone().fit(data, FitContext(seed=0))
    defense = PamaCFDefense(build_config(PamaCFDefense.Config, {"adv_start": "0", "rho": "0.5"}, "p"))
    ctx = DefenseContext(0, PAMACF, MFBackbone())
    robust = MFBackbone().fit(data, FitContext(seed=0, hooks=defense.during_fit(data, ctx)))
    assert not np.allclose(plain.score(np.arange(3)), robust.score(np.arange(3)))
    assert ctx.notes["adversarial_epochs"] == 30 and len(ctx.notes["mean_magnitude"]) == 30


@pytest.mark.integration
def test_small_cell_with_pamacf():
    record = cell_record(defense="pamacf", attack="bandwagon", seeds=(0,), backbone_options={"epochs": "7"})
    assert record["spec"]["protocol"]["name"] == "pamacf"  # the defense's default protocol
    assert record["conditions"] == ["clean", "attacked", "clean+defense", "attacked+defense"]
    assert record["notes"]["attacked+defense"][0]["adversarial_epochs"] == 2
    assert record["metrics"]["clean+defense"]["Recall@20"]["mean"] > 0.05
