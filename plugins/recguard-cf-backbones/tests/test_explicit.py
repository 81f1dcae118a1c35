"""What AutoRec, CDAE and NSVD share (`recguard_cf_backbones.explicit`): the device option,
explicit feedback only, injected users, and RVD's fine-tune-and-restore on each."""

import dataclasses

import numpy as np
import pytest
import torch

from recguard import APT, PAMACF, DefenseContext, FitContext, FitHooks, RecguardError, build_config, registered
from recguard.testing import cell_record, check_combination, check_defense, tiny_interactions
from recguard_cf_backbones.autorec import AutoRecBackbone
from recguard_cf_backbones.cdae import CDAEBackbone
from recguard_cf_backbones.nsvd import NSVDBackbone

BACKBONES = [AutoRecBackbone, CDAEBackbone, NSVDBackbone]
SMALL = {"autorec": {"hidden": "16"}, "cdae": {"hidden": "8"}, "nsvd": {"dim": "8"}}


def explicit():
    data = tiny_interactions(n_users=30, n_items=40, per_user=8)
    return dataclasses.replace(data, rating=data.rating / 5.0, rating_max=1.0)


def fit(cls, data, hooks=None, **options):
    config = build_config(cls.Config, {**SMALL[cls.name], **options}, cls.name)
    return cls(config).fit(data, FitContext(seed=0, hooks=hooks or FitHooks()))


@pytest.mark.parametrize("cls", BACKBONES, ids=lambda c: c.name)
def test_device_auto_gives_the_cpu_model_here(cls):
    if torch.cuda.is_available():
        pytest.skip("auto is the GPU on this machine")
    data = explicit()
    auto, cpu = fit(cls, data, epochs="2"), fit(cls, data, epochs="2", device="cpu")
    assert auto.device.type == "cpu"
    assert np.array_equal(auto.score(np.arange(5)), cpu.score(np.arange(5)))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_asked_for_without_cuda_is_a_one_line_error():
    with pytest.raises(RecguardError, match="no CUDA GPU") as error:
        fit(AutoRecBackbone, explicit(), epochs="1", device="cuda:1")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("cls", BACKBONES, ids=lambda c: c.name)
def test_implicit_protocols_are_refused_in_one_line(cls):
    none_attack, none_defense = registered("attack", "none"), registered("defense", "none")
    with pytest.raises(RecguardError, match="explicit") as error:
        check_combination(cls, none_attack, none_defense, PAMACF)
    assert "\n" not in str(error.value) and "apt" in str(error.value)
    assert "tallrec" not in str(error.value)    # an explicit LLM protocol is no way out for a CF model
    with pytest.raises(RecguardError, match="explicit ratings"):
        fit(cls, tiny_interactions(feedback="implicit"), epochs="1")


@pytest.mark.parametrize("cls", BACKBONES, ids=lambda c: c.name)
def test_bad_options_are_one_line_errors(cls):
    with pytest.raises(RecguardError, match="accepted") as error:
        build_config(cls.Config, {"hiden": "3"}, cls.name)
    assert "\n" not in str(error.value)
    with pytest.raises(RecguardError):
        build_config(cls.Config, {"lr": "0"}, cls.name)


@pytest.mark.parametrize("cls", BACKBONES, ids=lambda c: c.name)
def test_injected_users_grow_the_model(cls):
    data = explicit()

    class Inject(FitHooks):
        def on_epoch_start(self, epoch, model, train):
            if epoch != 1:
                return None
            return train.with_new_users(1, np.zeros(3, np.int64), np.array([0, 1, 2]),
                                        np.ones(3, np.float32), np.zeros(3, np.int64), "erm", fake=False)

    model = fit(cls, data, Inject(), epochs="2")
    assert model.user_embeddings().shape[0] == data.n_users + 1
    assert np.isfinite(model.score(np.arange(data.n_users + 1))).all()


@pytest.mark.parametrize("cls", BACKBONES, ids=lambda c: c.name)
def test_rvd_finetunes_each_and_restores_it(cls):
    rvd = registered("defense", "rvd")
    assert rvd.needs <= cls.offers
    check_defense(rvd, cls, {"n_neighbors": "4"})
    data = explicit()
    model = fit(cls, data, epochs="2")
    before = [p.detach().clone() for p in model.parameters()]
    base = model.score(np.arange(4))
    ctx = DefenseContext(seed=0, protocol=APT, backbone=cls(build_config(cls.Config, SMALL[cls.name], cls.name)))
    defended = rvd(build_config(rvd.Config, {"n_neighbors": "4"}, "rvd")).at_inference(model, data, ctx)
    scores = defended.score(np.arange(4))
    assert ctx.notes["path"] == "generic" and ctx.notes["finetune"]["optimizer"] == "adam"
    assert np.isfinite(scores).all() and not np.allclose(scores, base)
    assert all(torch.equal(p.detach(), b) for p, b in zip(model.parameters(), before))
    assert np.array_equal(model.score(np.arange(4)), base)


@pytest.mark.parametrize("cls", BACKBONES, ids=lambda c: c.name)
def test_apt_runs_on_each(cls):
    check_defense(registered("defense", "apt"), cls, {"pretrain_epochs": "0", "items_per_user": "5"})


# options under which each fits a tiny rating matrix well, and a real cell's small options
LEARNING = {"autorec": {"epochs": "150", "lr": "0.01", "hidden": "32", "weight_decay": "0.01"},
            "cdae": {"epochs": "200", "lr": "0.01", "hidden": "32", "weight_decay": "0.01",
                     "corruption": "0.2"},
            "nsvd": {"epochs": "150", "lr": "0.01", "weight_decay": "0.01"}}
CELL = {"autorec": ({"epochs": "3", "hidden": "16"}, {}),
        "cdae": ({"epochs": "3"}, {}),
        "nsvd": ({"epochs": "3"}, {"n_neighbors": "25"})}   # RVD's Table 2 n for NSVD


@pytest.mark.parametrize("cls", BACKBONES, ids=lambda c: c.name)
def test_learns_the_observed_ratings(cls):
    data = tiny_interactions(n_users=40, n_items=30, per_user=10)
    data = dataclasses.replace(data, rating=data.rating / 5.0, rating_max=1.0)
    model = cls(build_config(cls.Config, LEARNING[cls.name], cls.name)).fit(data, FitContext(seed=0))
    assert not model.training       # scoring and fine-tuning see the uncorrupted input (CDAE)
    predicted = model.score(np.arange(data.n_users))[data.user, data.item]
    assert np.mean((predicted - data.rating) ** 2) < 0.5 * np.var(data.rating)


@pytest.mark.parametrize("cls", BACKBONES, ids=lambda c: c.name)
def test_small_real_cell_with_rvd(cls, tmp_path):
    data = tiny_interactions(n_users=80, n_items=200, per_user=12, seed=3)
    path = tmp_path / "tiny.csv"
    path.write_text("".join(f"u{u},i{i},{int(r)},{t}\n"
                            for u, i, r, t in zip(data.user, data.item, data.rating, data.timestamp)))
    backbone_options, defense_options = CELL[cls.name]
    record = cell_record(dataset="csv", data_path=str(path), backbone=cls.name, attack="average",
                         defense="rvd", seeds=(0,), backbone_options=backbone_options,
                         defense_options=defense_options)
    assert record["spec"]["protocol"]["name"] == "apt"
    assert record["notes"]["attacked+defense"][0]["path"] == "generic"
    for condition in ("clean", "attacked", "clean+defense", "attacked+defense"):
        assert all(np.isfinite(v["mean"]) for v in record["metrics"][condition].values())
