"""SharpCF: the trajectory term on a hand-made case, the window's epoch bookkeeping, the
contract checks and a small real cell."""

import numpy as np
import pytest
import torch

from recguard import PAMACF, DefenseContext, FitContext, build_config
from recguard.kit.cf.adversarial import TrajectoryWindow, trajectory_loss
from recguard.kit.cf.loop import dot_product_loss
from recguard.testing import cell_record, check_defense, tiny_interactions
from recguard_mf.backbone import MFBackbone
from recguard_pamacf.sharpcf import SharpCFDefense


def sharpcf(**options):
    return SharpCFDefense(build_config(SharpCFDefense.Config, {k: str(v) for k, v in options.items()},
                                       "sharpcf"))


def test_contract_on_mf():
    check_defense(SharpCFDefense, MFBackbone, {"adv_start": "0", "window": "1"})


def test_trajectory_loss_by_hand():
    current = torch.tensor([1.0, 2.0, 3.0, 4.0])
    past = torch.tensor([0.5, 2.0, float("nan"), 5.0])
    # rows with a past prediction: (0.5)^2 + 0 + (-1)^2 = 1.25, over the batch's 4 rows
    assert trajectory_loss(current, past).item() == pytest.approx(1.25 / 4)
    assert trajectory_loss(current, torch.full((4,), float("nan"))) is None


def test_window_compares_with_e_epochs_ago():
    window = TrajectoryWindow(2)
    rows = torch.tensor([0, 2])
    like = torch.zeros(2)
    for epoch, value in enumerate([10.0, 20.0, 30.0]):
        past = window.past(epoch, rows, 3, like)
        if epoch < 2:
            assert past.isnan().all()
        else:
            assert past.tolist() == [10.0, 10.0]   # epoch 2 sees epoch 0's predictions
        window.record(epoch, rows, torch.full((2,), value))
    # a training set of another size starts afresh
    assert window.past(3, rows, 5, like).isnan().all()


def batch_of(rows, seed=0, dim=4):
    g = torch.Generator().manual_seed(seed)
    emb = [torch.randn(len(rows), dim, generator=g, requires_grad=True) for _ in range(3)]
    return {"user_emb": emb[0], "pos_emb": emb[1], "neg_emb": emb[2], "rows": torch.as_tensor(rows),
            "users": torch.arange(len(rows)), "ratings": torch.ones(len(rows)),
            "loss_fn": dot_product_loss(True), "row_weight": None}


def test_hooks_add_lambda_times_the_trajectory_term_after_the_warm_up():
    hooks = sharpcf(weight=0.5, window=1, adv_start=1).during_fit(
        tiny_interactions(), DefenseContext(0, PAMACF, MFBackbone()))
    hooks.on_epoch_start(0, None, list(range(6)))
    first = batch_of([0, 1, 2])
    assert hooks.extra_loss(0, None, first) is None          # warm-up: recorded only
    second = batch_of([0, 1, 2], seed=1)
    hooks.on_epoch_start(1, None, list(range(6)))
    term = hooks.extra_loss(1, None, second)
    pred = lambda b: (b["user_emb"] * b["pos_emb"]).sum(-1)  # noqa: E731
    expected = 0.5 * (pred(second) - pred(first)).pow(2).mean()
    assert term.item() == pytest.approx(expected.item(), rel=1e-6)
    # the gradient pulls the current predictions towards the recorded ones, not the reverse
    term.backward()
    assert second["user_emb"].grad is not None and first["user_emb"].grad is None


def test_sharpcf_changes_the_model_and_the_ablation_does_not():
    data = tiny_interactions(feedback="implicit")
    ctx = lambda: DefenseContext(0, PAMACF, MFBackbone())  # noqa: E731
    fit = lambda hooks=None: MFBackbone().fit(data, FitContext(seed=0, **({"hooks": hooks} if hooks else {})))  # noqa: E731
    plain = fit().score(np.arange(3))
    sharp = fit(sharpcf(weight=1.0, adv_start=3).during_fit(data, ctx())).score(np.arange(3))
    off = fit(sharpcf(trajectory=False).during_fit(data, ctx())).score(np.arange(3))
    assert not np.allclose(plain, sharp)
    assert np.array_equal(plain, off)


@pytest.mark.integration
def test_small_cell_with_sharpcf():
    record = cell_record(defense="sharpcf", attack="random", seeds=(0,), backbone_options={"epochs": "8"})
    assert record["spec"]["protocol"]["name"] == "pamacf"
    notes = record["notes"]["attacked+defense"][0]
    assert notes["adversarial_epochs"] == 3 and len(notes["trajectory_loss"]) == 3
    assert record["metrics"]["clean+defense"]["Recall@20"]["mean"] > 0.05
