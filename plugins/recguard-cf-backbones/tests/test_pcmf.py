"""PCMF: U U^T Y on a hand-made matrix (with and without the user's own term), the
training loop's rows reproducing the scores, the contract checks and a small real cell."""

import dataclasses

import numpy as np
import pytest
import torch

from recguard import APT, FitContext, FitHooks, build_config, registered
from recguard.testing import cell_record, check_backbone, check_defense, tiny_interactions
from recguard_cf_backbones.pcmf import PCMFBackbone, PCMFModel


def hand_made():
    """3 users x 4 items; user 0 rated items 0, 1, 3; user 1 item 2 and 3; user 2 item 0."""
    data = tiny_interactions(n_users=3, n_items=4, per_user=1)
    return dataclasses.replace(data, user=np.array([0, 0, 0, 1, 1, 2]), item=np.array([0, 1, 3, 2, 3, 0]),
                               rating=np.array([0.8, 0.4, 1.0, 0.6, 0.2, 1.0], np.float32),
                               timestamp=np.arange(6), rating_max=1.0)


def model_on(data, exclude_self=False, rank=2):
    model = PCMFModel(data.n_users, data.n_items, rank, 0.5, exclude_self, torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.u.copy_(torch.tensor([[1.0, 0.0], [0.5, 2.0], [-1.0, 1.0]]))
    model.set_training_data(data)
    return model


Y = np.array([[0.8, 0.4, 0.0, 1.0],
              [0.0, 0.0, 0.6, 0.2],
              [1.0, 0.0, 0.0, 0.0]])
U = np.array([[1.0, 0.0], [0.5, 2.0], [-1.0, 1.0]])


def test_scores_are_u_ut_y():
    model = model_on(hand_made())
    assert np.allclose(model.score(np.arange(3)), U @ U.T @ Y, atol=1e-6)
    # by hand for user 0, item 0: <U0,U0> 0.8 + <U0,U1> 0 + <U0,U2> 1.0 = 0.8 - 1.0
    assert model.score(np.array([0]))[0, 0] == pytest.approx(-0.2)


def test_exclude_self_drops_the_users_own_term():
    model = model_on(hand_made(), exclude_self=True)
    kernel = U @ U.T
    np.fill_diagonal(kernel, 0.0)
    assert np.allclose(model.score(np.arange(3)), kernel @ Y, atol=1e-6)


@pytest.mark.parametrize("exclude_self", [False, True])
def test_the_training_rows_give_the_same_predictions(exclude_self):
    data = hand_made()
    model = model_on(data, exclude_self)
    users, items = torch.as_tensor(data.user), torch.as_tensor(data.item)
    pu, qi, qj, penalty = model.batch_embeddings(users, items, None)
    assert qj is None
    predicted = (pu * qi).sum(-1).detach().numpy()
    assert np.allclose(predicted, model.score(np.arange(3))[data.user, data.item], atol=1e-6)
    # penalty ||U||^2 / (2N), N = 6 ratings
    assert penalty.item() == pytest.approx((U ** 2).sum() / 12)


def test_rank_defaults_to_min_users_items():
    data = hand_made()      # 3 users, 4 items: U U^T has rank <= 3 whatever m
    model = PCMFBackbone(build_config(PCMFBackbone.Config, {"epochs": "1"}, "pcmf")).fit(data, FitContext(seed=0))
    assert model.u.shape == (3, 3)


def test_contract():
    check_backbone(PCMFBackbone, {"rank": "8"})


def test_learns_the_observed_ratings():
    data = tiny_interactions(n_users=40, n_items=30, per_user=10)
    data = dataclasses.replace(data, rating=data.rating / 5.0, rating_max=1.0)
    options = {"epochs": "150", "lr": "0.05", "weight_decay": "0.01", "optimizer": "adam", "init_std": "0.1"}
    model = PCMFBackbone(build_config(PCMFBackbone.Config, options, "pcmf")).fit(data, FitContext(seed=0))
    predicted = model.score(np.arange(data.n_users))[data.user, data.item]
    assert np.mean((predicted - data.rating) ** 2) < 0.5 * np.var(data.rating)


def test_injected_users_grow_u():
    data = hand_made()

    class Inject(FitHooks):
        def on_epoch_start(self, epoch, model, train):
            if epoch != 1:
                return None
            return train.with_new_users(1, np.zeros(2, np.int64), np.array([0, 2]),
                                        np.ones(2, np.float32), np.zeros(2, np.int64), "erm", fake=False)

    model = PCMFBackbone(build_config(PCMFBackbone.Config, {"epochs": "2"}, "pcmf")).fit(
        data, FitContext(seed=0, hooks=Inject()))
    assert model.u.shape[0] == data.n_users + 1
    assert np.isfinite(model.score(np.arange(data.n_users + 1))).all()


def test_the_apt_defenses_run_on_it():
    check_defense(registered("defense", "apt"), PCMFBackbone, {"pretrain_epochs": "0", "items_per_user": "5"})
    check_defense(registered("defense", "at"), PCMFBackbone)


@pytest.mark.integration
def test_small_real_cell(tmp_path):
    data = tiny_interactions(n_users=80, n_items=200, per_user=12, seed=3)
    path = tmp_path / "tiny.csv"
    path.write_text("".join(f"u{u},i{i},{int(r)},{t}\n"
                            for u, i, r, t in zip(data.user, data.item, data.rating, data.timestamp)))
    record = cell_record(dataset="csv", data_path=str(path), backbone="pcmf", attack="average",
                         seeds=(0,), backbone_options={"epochs": "3"})
    assert record["spec"]["protocol"]["name"] == "apt"
    for condition in ("clean", "attacked"):
        assert all(np.isfinite(v["mean"]) for v in record["metrics"][condition].values())


def test_rmf_is_pcmf_under_rvds_name():
    from recguard_cf_backbones.pcmf import RMFBackbone

    assert registered("backbone", "rmf") is RMFBackbone and issubclass(RMFBackbone, PCMFBackbone)
    assert RMFBackbone.Config is PCMFBackbone.Config
    data = tiny_interactions()
    data = dataclasses.replace(data, rating=data.rating / 5.0, rating_max=1.0)
    fits = [cls(build_config(cls.Config, {"epochs": "1", "rank": "4"}, cls.name)).fit(data, FitContext(seed=0))
            for cls in (PCMFBackbone, RMFBackbone)]
    assert np.array_equal(fits[0].score(np.arange(3)), fits[1].score(np.arange(3)))
