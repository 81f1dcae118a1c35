import numpy as np
import pytest
import torch

from recguard import PAMACF, DefenseContext, FitContext, build_config
from recguard.testing import cell_record, check_defense, tiny_interactions
from recguard_cf_backbones.lightgcn import LightGCNBackbone
from recguard_mf.backbone import MFBackbone
from recguard_cf_denoise.graphrfi import (GraphRfiDefense, GraphRfiTrainer, forest_probabilities,
                                          joint_loss, supervised_fake_users, user_features)

SMALL = {"trees": "3", "depth": "2", "epochs": "2", "batch_size": "256"}


def one_tree(depth, weight, bias, leaf_logits):
    """A single tree reading the single feature: (mask, weight, bias, leaf logits) tensors."""
    return (torch.ones(1, 1), torch.tensor(weight, dtype=torch.float32).view(1, 1, -1),
            torch.tensor(bias, dtype=torch.float32).view(1, -1),
            torch.tensor(leaf_logits, dtype=torch.float32).view(1, 2 ** depth, 2))


def test_routing_probabilities_of_a_depth_two_tree():
    # node decisions d = sigmoid(w x + b): root 0.5 (b=0), left child sig(ln 3) = 0.75,
    # right child sig(-ln 3) = 0.25, at x = 1 with w = (0, 0, 0)
    mask, w, b, logits = one_tree(2, [0.0, 0.0, 0.0], [0.0, np.log(3), -np.log(3)],
                                  [[0, 0], [0, 0], [0, 0], [0, 0]])
    # leaf distributions pi: leaves LL, LR, RL, RR put all their mass on class 0, 0, 1, 1
    logits = torch.tensor([[[50.0, 0.0], [50.0, 0.0], [0.0, 50.0], [0.0, 50.0]]])
    p = forest_probabilities(torch.ones(1, 1), mask, w, b, logits, depth=2)
    # mu = (0.5*0.75, 0.5*0.25, 0.5*0.25, 0.5*0.75): P(class 1) = mu_RL + mu_RR = 0.5
    assert p[0].tolist() == pytest.approx([0.5, 0.5], abs=1e-6)
    logits = torch.tensor([[[0.0, 50.0], [50.0, 0.0], [50.0, 0.0], [50.0, 0.0]]])
    p = forest_probabilities(torch.ones(1, 1), mask, w, b, logits, depth=2)
    assert p[0, 1].item() == pytest.approx(0.5 * 0.75, abs=1e-6)   # only leaf LL says class 1


def test_a_user_the_forest_calls_a_fraudster_weighs_less_in_the_rating_loss():
    # a depth-1 tree on one feature: x = +4 goes left (d = sig(8)), x = -4 right; the left
    # leaf says fraudster with 0.9, the right one with 0.1
    mask, w, b, _ = one_tree(1, [2.0], [0.0], [[0, 0], [0, 0]])
    logits = torch.log(torch.tensor([[[0.1, 0.9], [0.9, 0.1]]]))
    x = torch.tensor([[4.0], [-4.0]])                        # user 0 (suspect), user 1
    probs = forest_probabilities(x, mask, w, b, logits, depth=1)
    p_fraud = probs[:, 1]
    assert p_fraud[0].item() > 0.85 and p_fraud[1].item() < 0.15
    # the same rating error for each user's row
    pred = torch.tensor([0.0, 0.0], requires_grad=True)
    target = torch.tensor([1.0, 1.0])
    users = torch.tensor([0, 1])
    loss = joint_loss(pred, target, p_fraud[users].detach(), torch.log(probs), torch.tensor([0, 0]),
                      fraud_weight=0.0)
    loss.backward()
    # d/dpred of mean((1 - p_u)(pred - r)^2) = 2 (pred - r)(1 - p_u) / n
    expected = [2 * (0 - 1) * (1 - p_fraud[0].item()) / 2, 2 * (0 - 1) * (1 - p_fraud[1].item()) / 2]
    assert pred.grad.tolist() == pytest.approx(expected, rel=1e-5)
    ratio = pred.grad[0] / pred.grad[1]
    assert ratio.item() == pytest.approx((1 - p_fraud[0].item()) / (1 - p_fraud[1].item()), rel=1e-5)
    assert abs(pred.grad[0].item()) < 0.2 * abs(pred.grad[1].item())
    # the ablation without weighting: both rows pull equally
    pred.grad = None
    joint_loss(pred, target, p_fraud[users].detach(), torch.log(probs), torch.tensor([0, 0]),
               fraud_weight=0.0, weighting=False).backward()
    assert pred.grad[0].item() == pytest.approx(pred.grad[1].item())


def test_the_nrf_term_is_the_labels_negative_log_likelihood():
    probs = torch.tensor([[0.8, 0.2], [0.3, 0.7]])
    loss = joint_loss(torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.log(probs),
                      torch.tensor([0, 1]), fraud_weight=5.0)
    assert loss.item() == pytest.approx(5.0 * -(np.log(0.8) + np.log(0.7)) / 2, rel=1e-6)


def test_supervised_fake_users_are_labelled_after_the_observed_users():
    data = tiny_interactions(feedback="implicit")
    cfg = build_config(GraphRfiDefense.Config, SMALL, "graphrfi")
    combined = supervised_fake_users(data, cfg, 0, PAMACF)
    assert combined.n_users == data.n_users + 3   # 10% of 30
    assert combined.is_fake[data.n_users:].all()
    trainer = GraphRfiTrainer(data, cfg, DefenseContext(0, PAMACF, MFBackbone()))
    assert trainer.labels.tolist() == [0] * 30 + [1] * 3
    assert user_features(combined).shape == (33, 6)


def test_weights_are_one_minus_the_fraud_probability_and_scores_are_recorded():
    data = tiny_interactions(feedback="implicit")
    defense = GraphRfiDefense(build_config(GraphRfiDefense.Config, SMALL, "graphrfi"))
    ctx = DefenseContext(0, PAMACF, MFBackbone())
    hooks = defense.during_fit(data, ctx)
    w = hooks.user_weights(0, None, data)
    assert w == pytest.approx(1.0 - ctx.user_scores) and ctx.user_weights == pytest.approx(w)
    hooks.user_weights(1, None, data)
    hooks.user_weights(2, None, data)
    assert ctx.notes["graphrfi_epochs"] == 2          # `epochs` GraphRfi epochs, then the weights stay
    hard = GraphRfiDefense(build_config(GraphRfiDefense.Config, {**SMALL, "mode": "hard",
                                                                 "threshold": "0.0"}, "graphrfi"))
    ctx = DefenseContext(0, PAMACF, MFBackbone())
    assert hard.during_fit(data, ctx).user_weights(0, None, data).tolist() == [0.0] * 30


def test_training_lowers_the_joint_loss():
    data = tiny_interactions(feedback="implicit", n_users=60, n_items=50)
    cfg = build_config(GraphRfiDefense.Config, {**SMALL, "supervised_fraction": "0.2"}, "graphrfi")
    trainer = GraphRfiTrainer(data, cfg, DefenseContext(0, PAMACF, None))
    losses = [trainer.epoch() for _ in range(8)]
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("backbone", [MFBackbone, LightGCNBackbone])
def test_contract(backbone):
    check_defense(GraphRfiDefense, backbone, SMALL)


def test_explicit_ratings_use_their_levels():
    data = tiny_interactions(feedback="explicit")
    cfg = build_config(GraphRfiDefense.Config, SMALL, "graphrfi")
    trainer = GraphRfiTrainer(data, cfg, DefenseContext(0, PAMACF, None))
    assert len(trainer.model.levels) == len(np.unique(data.rating)) > 1
    trainer.epoch()
    assert np.isfinite(trainer.scores()).all()


def test_device_follows_the_backbone_config():
    from recguard_cf_denoise.graphrfi import resolve_device

    assert resolve_device("backbone", MFBackbone()).type == "cpu"            # MF declares none
    with_device = type("B", (), {"config": type("C", (), {"device": "cpu"})()})()
    assert resolve_device("backbone", with_device).type == "cpu"


@pytest.mark.integration
def test_small_cell_reports_detect_auc():
    record = cell_record(defense="graphrfi", attack="random", seeds=(0,),
                         backbone_options={"epochs": "2"}, defense_options=SMALL)
    defended = record["metrics"]["attacked+defense"]
    assert 0.0 <= defended["Detect-AUC"]["mean"] <= 1.0
    assert {"Weight-fake", "Weight-genuine"} <= set(defended)
    assert record["notes"]["attacked+defense"][0]["graphrfi_epochs"] == 2
