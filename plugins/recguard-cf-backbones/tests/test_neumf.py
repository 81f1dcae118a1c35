import numpy as np
import pytest
import torch

from recguard import DefenseContext, FitContext, PAMACF, build_config, registered
from recguard.testing import check_backbone, check_learns_implicit, tiny_interactions
from recguard_cf_backbones.neumf import NeuMFBackbone, NeuMFConfig


def fit(data, **options):
    config = build_config(NeuMFConfig, {k: str(v) for k, v in options.items()}, "neumf")
    return NeuMFBackbone(config).fit(data, FitContext(seed=0))


def test_contract():
    check_backbone(NeuMFBackbone)


def test_tower_halves_and_rows_hold_both_embeddings():
    model = fit(tiny_interactions(feedback="implicit"), epochs=1, dim=16, mlp_layers=3)
    widths = [m.out_features for m in model.mlp if isinstance(m, torch.nn.Linear)]
    assert widths == [16, 8, 4]
    assert model.user_emb.shape[1] == 32 and model.predict.in_features == 16 + 4


def test_score_is_gmf_plus_mlp_by_hand():
    model = fit(tiny_interactions(feedback="implicit"), epochs=1, dim=8, mlp_layers=2)
    u, i = model.user_emb[3].detach(), model.item_emb[5].detach()
    with torch.no_grad():
        mlp = model.mlp(torch.cat([u[8:], i[8:]]))
        expected = model.predict(torch.cat([u[:8] * i[:8], mlp])).item()
    assert model.score(np.array([3]))[0, 5] == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_scoring_in_chunks_matches_one_pass(monkeypatch):
    import recguard_cf_backbones.neumf as neumf

    model = fit(tiny_interactions(feedback="implicit"), epochs=1)
    whole = model.score(np.arange(20))
    monkeypatch.setattr(neumf, "SCORE_CHUNK", 3)
    assert np.allclose(model.score(np.arange(20)), whole, atol=1e-6)


def test_fits_the_training_positives():
    check_learns_implicit(NeuMFBackbone, {"epochs": 60, "lr": 0.01})


def test_learns_explicit_ratings():
    data = tiny_interactions(n_users=40, n_items=30, per_user=10)
    data.rating[:] = data.rating / 5.0
    model = fit(data, epochs=40, lr=0.05, optimizer="adam")
    predicted = model.score(np.arange(data.n_users))[data.user, data.item]
    assert np.mean((predicted - data.rating) ** 2) < np.var(data.rating) * 0.5


@pytest.mark.parametrize("defense", ["apr", "pamacf"])
def test_adversarial_defenses_perturb_both_towers(defense):
    cls = registered("defense", defense)
    d = cls(build_config(cls.Config, {"adv_start": "0"}, defense))
    data = tiny_interactions(feedback="implicit")
    ctx = DefenseContext(seed=0, protocol=PAMACF, backbone=NeuMFBackbone())
    config = build_config(NeuMFConfig, {"epochs": "2"}, "neumf")
    plain = NeuMFBackbone(config).fit(data, FitContext(seed=0))
    defended = NeuMFBackbone(config).fit(data, FitContext(seed=0, hooks=d.during_fit(data, ctx)))
    assert ctx.notes["adversarial_epochs"] == 2
    assert not np.allclose(plain.score(np.arange(5)), defended.score(np.arange(5)))
