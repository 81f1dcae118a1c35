import dataclasses

import numpy as np
import pytest
import torch

import recguard.pipeline.kinds.ranking
from recguard import (APT, Backbone, DefenseContext, FitContext, FitHooks, RecguardError,
                      build_config, registered)
from recguard.kit.poison.influence import HessianOperator, conjugate_gradient
from recguard.testing import cell_record, check_combination, check_defense, tiny_interactions
from recguard_apt.defense import APTConfig, APTDefense, APTHooks, APTRandDefense
from recguard_apt.erm import (ERM_META_KEY, ItemStats, choose_items, erm_ratings, gumbel_top_k,
                              item_statistics, random_items, selection_logits)
from recguard_apt.influence_vector import InfluenceSettings, influence_vector
from recguard_mf.backbone import MFBackbone


def normalised(data):
    return dataclasses.replace(data, rating=(data.rating / 5.0).astype(np.float32), rating_max=1.0)


def small_data(n_users=8, n_items=6, per_user=3, seed=0):
    return normalised(tiny_interactions(n_users=n_users, n_items=n_items, per_user=per_user, seed=seed))


def fitted_mf(data, dim=3, epochs=5):
    # a small learning rate: APT's Adagrad lr of 10 blows up the embeddings of a 10-user problem
    options = {"epochs": str(epochs), "dim": str(dim), "lr": "1"}
    backbone = MFBackbone(build_config(MFBackbone.Config, options, "mf"))
    return backbone.fit(data, FitContext(seed=0))


def apt(overrides=None, cls=APTDefense):
    return cls(build_config(cls.Config, overrides or {}, cls.name))


# ---------------------------------------------------------------- influence (Eq. 5)


def explicit_problem(model, data, wd):
    """An independent implementation of MF's training loss on a flat parameter vector."""
    users, items = torch.as_tensor(data.user), torch.as_tensor(data.item)
    ratings = torch.as_tensor(data.rating).double()
    U0, V0 = (p.detach().double() for p in model.parameters())
    n, d = U0.shape

    def split(flat):
        return flat[:n * d].view(n, d), flat[n * d:].view(-1, d)

    def loss(flat):
        U, V = split(flat)
        pu, qi = U[users], V[items]
        return ((pu * qi).sum(-1) - ratings).pow(2).mean() + wd * (pu.pow(2).mean() + qi.pow(2).mean())

    return torch.cat([U0.reshape(-1), V0.reshape(-1)]), split, loss


def test_implicit_hvp_equals_the_explicit_hessian_times_v():
    data = small_data()
    model = fitted_mf(data)
    wd = 0.01
    flat, split, loss = explicit_problem(model, data, wd)
    hessian = torch.autograd.functional.hessian(loss, flat)
    v = torch.randn(len(flat), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    op = HessianOperator(model, torch.as_tensor(data.user), torch.as_tensor(data.item),
                         torch.as_tensor(data.rating), weight_decay=wd, damping=0.0)
    hv = torch.cat([h.reshape(-1) for h in op([t.float() for t in split(v)])]).double()
    assert torch.allclose(hv, hessian @ v, rtol=1e-4, atol=1e-6)
    op.damping = 0.5
    hv = torch.cat([h.reshape(-1) for h in op([t.float() for t in split(v)])]).double()
    assert torch.allclose(hv, hessian @ v + 0.5 * v, rtol=1e-4, atol=1e-6)


def test_conjugate_gradient_solves_spd_and_flags_negative_curvature():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(12, 12, generator=g)
    spd = a @ a.T + 0.5 * torch.eye(12)
    b = [torch.randn(12, generator=g)]
    x, info = conjugate_gradient(lambda v: [spd @ v[0]], b, max_iter=100, tol=1e-7)
    assert torch.allclose(x[0], torch.linalg.solve(spd, b[0]), rtol=1e-3, atol=1e-4)
    assert info.residual <= 1e-6 and not info.negative_curvature
    indefinite = torch.diag(torch.tensor([1.0, -2.0, 3.0]))
    _, info = conjugate_gradient(lambda v: [indefinite @ v[0]], [torch.ones(3)], max_iter=10, tol=1e-9)
    assert info.negative_curvature


@pytest.mark.parametrize("risk", ["sigmoid", "training"])
def test_influence_vector_equals_eq5_with_the_explicit_hessian(risk):
    data = small_data(n_users=10, n_items=7)
    model = fitted_mf(data)
    wd, damping = 0.01, 0.2
    flat, split, loss = explicit_problem(model, data, wd)
    hessian = torch.autograd.functional.hessian(loss, flat)
    assert torch.linalg.eigvalsh(hessian + damping * torch.eye(len(flat))).min() > 0
    users, items = torch.as_tensor(data.user), torch.as_tensor(data.item)
    ratings = torch.as_tensor(data.rating).double()

    def risk_of(f):
        U, V = split(f)
        err = ((U[users] * V[items]).sum(-1) - ratings).pow(2)
        if risk == "sigmoid":
            return torch.sigmoid(err).sum()
        return err.sum() + len(err) * wd * (U[users].pow(2).mean() + V[items].pow(2).mean())

    g = torch.func.grad(risk_of)(flat)
    norms = np.bincount(data.user, weights=data.rating.astype(float) ** 2, minlength=data.n_users)
    z = int(np.argmin(norms))
    z_ratings = torch.zeros(data.n_items, dtype=torch.float64)
    z_ratings[torch.as_tensor(data.item[data.user == z])] = ratings[torch.as_tensor(data.user == z)]

    def grad_theta_of_user_loss(zr):  # ∇θ L(z, θ), L the loss of z on every item
        def user_loss(f):
            U, V = split(f)
            return ((U[z] * V).sum(-1) - zr).pow(2).sum()
        return torch.func.grad(user_loss)(flat)

    mixed = torch.autograd.functional.jacobian(grad_theta_of_user_loss, z_ratings)  # (P, m)
    solution = torch.linalg.solve(hessian + damping * torch.eye(len(flat)), g)
    expected = -(solution @ mixed) / len(data)
    settings = InfluenceSettings(risk=risk, base_users=1, damping=damping, cg_iterations=500,
                                 cg_tolerance=1e-7, hessian_rows=0, weight_decay=wd)
    result = influence_vector(model, data, settings)
    assert result.info["base_users"] == [z]
    assert np.allclose(result.influence, expected.numpy(), rtol=2e-3, atol=1e-5 * np.abs(expected.numpy()).max())


def test_influence_on_lightgcn_runs_through_the_same_loss():
    from recguard_cf_backbones.lightgcn import LightGCNBackbone

    data = small_data(n_users=12, n_items=9)
    model = LightGCNBackbone(build_config(LightGCNBackbone.Config, {"epochs": "2", "dim": "4"}, "l")
                             ).fit(data, FitContext(seed=0))
    result = influence_vector(model, data, InfluenceSettings(hessian_rows=0))
    assert result.influence.shape == (data.n_items,) and np.isfinite(result.influence).all()
    assert result.info["cg_iterations"] > 0


# ---------------------------------------------------------------- ERM users


def test_softmax_choice_follows_exp_minus_t_influence_over_negative_items():
    influence = np.array([-0.9, -0.5, -0.1, 0.2, 0.6, -0.3])
    candidates, logits = selection_logits(influence, temperature=2.0, normalise=False)
    assert list(candidates) == [0, 1, 2, 5]
    want = np.exp(-2.0 * influence[candidates])
    want /= want.sum()
    draws = gumbel_top_k(logits, 40000, 1, np.random.default_rng(0))[:, 0]
    got = np.bincount(draws, minlength=4) / len(draws)
    assert np.allclose(got, want, atol=0.01)  # the Gumbel trick samples the softmax


def test_influence_choice_prefers_the_most_negative_items():
    influence = np.linspace(-1.0, 0.5, 31)  # items 0..19 negative, 20 zero, 21..30 positive
    items = choose_items(influence, n_users=500, per_user=5, temperature=3.0,
                         rng=np.random.default_rng(0))
    assert items.shape == (500, 5)
    assert all(len(set(row)) == 5 for row in items)  # without replacement
    assert items.max() < 20  # only Φ = {i | I_i < 0}
    counts = np.bincount(items.ravel(), minlength=31)
    assert counts[:5].sum() > 2 * counts[15:20].sum()  # lower influence, chosen more often
    # the authors' normalisation: the most negative item gets weight e^t against the least negative
    _, logits = selection_logits(influence, temperature=20.0, normalise=True)
    assert logits.max() == pytest.approx(20.0) and logits.min() == pytest.approx(0.0)
    # t = 0 is uniform over Φ; without the Φ restriction positive items can be chosen
    flat = choose_items(influence, 2000, 5, 0.0, np.random.default_rng(1))
    assert np.bincount(flat.ravel(), minlength=20).min() > 300
    anywhere = choose_items(influence, 200, 5, 0.0, np.random.default_rng(2), negative_only=False)
    assert anywhere.max() > 20


def test_fewer_negative_items_than_m_star_takes_all_of_phi():
    items = choose_items(np.array([-1.0, 0.3, -0.2, 0.1]), 3, 400, 20.0, np.random.default_rng(0))
    assert items.tolist() == [[0, 2]] * 3


def test_random_items_are_uniform_over_all_items():
    items = random_items(30, 6000, 5, np.random.default_rng(0))
    freq = np.bincount(items.ravel(), minlength=30) / 6000
    assert np.allclose(freq, 5 / 30, atol=0.02)


def test_item_statistics_and_rating_rule():
    data = small_data(n_users=30, n_items=10, per_user=4)
    stats = item_statistics(data)
    for i in range(data.n_items):
        r = data.rating[data.item == i]
        if len(r):
            assert stats.mean[i] == pytest.approx(r.mean(), abs=1e-6)
            assert stats.std[i] == pytest.approx(r.std(), abs=1e-6)
    assert (stats.low, stats.high) == (pytest.approx(0.2), 1.0)

    stats = ItemStats(mean=np.array([0.3, 0.5, 0.9]), std=np.array([0.05, 0.1, 0.2]), low=0.2, high=1.0)
    items = np.tile(np.arange(3), (20000, 1))
    raw = erm_ratings(items, stats, 0.2, np.random.default_rng(0), step=0.0)
    assert raw.min() >= 0.2 and raw.max() <= 1.0
    assert raw[:, 0].mean() == pytest.approx(0.5, abs=0.005)   # N(μ + r+, σ)
    assert raw[:, 1].mean() == pytest.approx(0.7, abs=0.005)
    assert raw[:, 1].std() == pytest.approx(0.1, abs=0.005)
    assert (raw[:, 2] == 1.0).mean() == pytest.approx(0.69, abs=0.02)  # clipped at the maximum
    grid = erm_ratings(items, stats, 0.2, np.random.default_rng(0), step=0.2)
    assert np.allclose(np.round(grid / 0.2) * 0.2, grid, atol=1e-6)
    assert set(np.round(grid.ravel().astype(float), 4).tolist()) <= {0.2, 0.4, 0.6, 0.8, 1.0}


def test_genuine_item_stats_leave_the_fake_users_out():
    """item_stats=genuine (the authors' code: statistics of the data before the attack) reads
    the genuine users' ratings only; the default reads every rating the defense is given."""
    data = small_data(n_users=30, n_items=10, per_user=4)
    fake_item = 3
    attacked = data.with_new_users(5, np.arange(5), np.full(5, fake_item), np.ones(5, np.float32),
                                   np.zeros(5, np.int64), "fake", fake=True)
    ctx = DefenseContext(0, APT, MFBackbone())
    observed = APTHooks(APTConfig(), attacked, ctx).stats
    genuine = APTHooks(APTConfig(item_stats="genuine"), attacked, ctx).stats
    assert np.allclose(genuine.mean, item_statistics(data).mean)
    assert np.allclose(observed.mean, item_statistics(attacked).mean)
    assert observed.mean[fake_item] > genuine.mean[fake_item]
    assert np.allclose(np.delete(observed.mean, fake_item), np.delete(genuine.mean, fake_item))


@pytest.mark.parametrize("scale", [1.0, 5.0])
def test_r_plus_is_given_in_stars(scale):
    data = tiny_interactions()
    if scale == 1.0:
        data = normalised(data)
    hooks = APTHooks(APTConfig(), data, DefenseContext(0, APT, MFBackbone()))
    assert hooks.shift == pytest.approx(1.0 * scale / 5.0)  # r+ = 1 star
    assert hooks.step == pytest.approx(scale / 5.0)


class Recorder(FitHooks):
    """Records the training set of every epoch."""

    def __init__(self, inner):
        self.inner = inner
        self.sets = []

    def on_epoch_start(self, epoch, model, train):
        out = self.inner.on_epoch_start(epoch, model, train)
        self.sets.append(train if out is None else out)
        return out

    def on_epoch_end(self, epoch, model):
        self.inner.on_epoch_end(epoch, model)


def run_apt(cls=APTDefense, data=None, epochs=8, **options):
    data = data if data is not None else small_data(n_users=40, n_items=30, per_user=8)
    options = {"pretrain_epochs": 3, "interval": 2, "erm_fraction": 0.1, "items_per_user": 5,
               "hessian_rows": 0, **options}
    defense = apt({k: str(v) for k, v in options.items()}, cls)
    ctx = DefenseContext(0, APT, MFBackbone())
    recorder = Recorder(defense.during_fit(data, ctx))
    backbone = MFBackbone(build_config(MFBackbone.Config, {"epochs": str(epochs), "dim": "8", "lr": "1"},
                                       "mf"))
    model = backbone.fit(data, FitContext(seed=0, hooks=recorder))
    return data, model, recorder, ctx


def erm_profiles(train, first):
    rows = train.user >= first
    return sorted(zip(train.user[rows].tolist(), train.item[rows].tolist(), train.rating[rows].tolist()))


@pytest.mark.parametrize("cls", [APTDefense, APTRandDefense])
def test_erm_users_follow_algorithm_1(cls):
    data, model, recorder, ctx = run_apt(cls)
    n_erm = 4  # 10% of 40 users
    assert ctx.notes["erm_users"] == [40, 44]
    assert [g["epoch"] for g in ctx.notes["generations"]] == [3, 5, 7]
    assert model.user_embeddings().shape[0] == 44
    sets = recorder.sets
    for epoch, train in enumerate(sets):
        assert train.n_users == 40 + n_erm  # the ERM users exist from the start (Alg. 1 line 1)
        assert train.meta[ERM_META_KEY] == [40, 44]
        assert not train.is_fake.any()
        assert np.array_equal(train.user[:len(data)], data.user)  # D itself is never changed
        erm = train.user >= 40
        if epoch < 3:
            assert not erm.any()  # T_pre epochs of standard training on D
            continue
        note = ctx.notes["generations"][(epoch - 3) // 2]
        m_star = min(5, note.get("negative_items", 5))  # m* items, or all of Φ if it is smaller
        assert note["items_per_user"] == m_star
        assert np.array_equal(np.bincount(train.user[erm] - 40, minlength=n_erm), [m_star] * n_erm)
        for u in range(40, 44):
            assert len(set(train.item[train.user == u])) == m_star
        r = train.rating[erm]
        assert r.min() >= data.rating.min() and r.max() <= 1.0
        assert np.allclose(np.round(r / 0.2) * 0.2, r, atol=1e-6)
    profiles = [erm_profiles(t, 40) for t in sets]
    assert profiles[4] == profiles[3] and profiles[6] == profiles[5]  # kept between generations
    assert profiles[5] != profiles[3] and profiles[7] != profiles[5]  # regenerated every T_inter
    assert sets[0] is not data and len(sets[0]) == len(data)


def test_apt_rand_differs_from_apt_only_in_the_item_choice():
    a, r = APTDefense.Config().to_dict(), APTRandDefense.Config().to_dict()
    assert a.pop("item_choice") == "influence" and r.pop("item_choice") == "random"
    assert a == r
    _, _, apt_rec, apt_ctx = run_apt(APTDefense)
    _, _, rand_rec, rand_ctx = run_apt(APTRandDefense)
    assert "cg_iterations" in apt_ctx.notes["generations"][0]
    assert "cg_iterations" not in rand_ctx.notes["generations"][0]
    assert [g["items_per_user"] for g in apt_ctx.notes["generations"]] == \
           [g["items_per_user"] for g in rand_ctx.notes["generations"]]
    assert erm_profiles(apt_rec.sets[3], 40) != erm_profiles(rand_rec.sets[3], 40)


def test_apt_picks_items_of_negative_influence_during_the_fit():
    defense = apt({"pretrain_epochs": "2", "interval": "2", "erm_fraction": "0.1",
                   "items_per_user": "5", "hessian_rows": "0"})
    data = small_data(n_users=40, n_items=30, per_user=8)
    ctx = DefenseContext(0, APT, MFBackbone())
    hooks = defense.during_fit(data, ctx)
    seen = {}

    class Spy(FitHooks):
        def on_epoch_start(self, epoch, model, train):
            if epoch == 2:  # the influence at the model the generation sees
                seen["I"] = influence_vector(model, data, hooks.settings).influence
            return hooks.on_epoch_start(epoch, model, train)

    backbone = MFBackbone(build_config(MFBackbone.Config, {"epochs": "3", "dim": "8"}, "mf"))
    backbone.fit(data, FitContext(seed=0, hooks=Spy()))
    items, _ = hooks.last
    assert (seen["I"][items] < 0).all()


def test_apt_refuses_implicit_data_clearly():
    data = tiny_interactions(feedback="implicit")
    with pytest.raises(RecguardError, match="explicit ratings"):
        apt().during_fit(data, DefenseContext(0, APT, MFBackbone()))


def test_host_refuses_a_backbone_without_second_derivatives():
    class NoHessian(Backbone):
        name = "no-hessian"
        summary = "a backbone offering no second derivatives"
        kind = "cf"
        offers = frozenset({"embeddings", "epoch_callbacks"})

    average = registered("attack", "average")
    with pytest.raises(RecguardError, match="twice_differentiable"):
        check_combination(NoHessian, average, APTDefense, APT)
    check_combination(MFBackbone, average, APTDefense, APT)


@pytest.mark.parametrize("cls", [APTDefense, APTRandDefense])
def test_contract_on_mf(cls):
    check_defense(cls, MFBackbone, {"pretrain_epochs": "0"})


def test_contract_on_lightgcn():
    from recguard_cf_backbones.lightgcn import LightGCNBackbone

    check_defense(APTDefense, LightGCNBackbone, {"pretrain_epochs": "0", "hessian_rows": "0"})


def test_registered_with_the_host():
    assert registered("defense", "apt") is APTDefense and registered("defense", "apt-rand") is APTRandDefense


@pytest.mark.integration
def test_small_cell_with_apt_never_ranks_erm_users(monkeypatch):
    ranked = []
    top_k = recguard.pipeline.kinds.ranking.top_k

    def spy(score, users, exclude, k, **kw):
        ranked.append(np.asarray(users).copy())
        return top_k(score, users, exclude, k, **kw)

    monkeypatch.setattr(recguard.pipeline.kinds.ranking, "top_k", spy)
    record = cell_record(defense="apt", attack="average", seeds=(0,), backbone_options={"epochs": "6"},
                         defense_options={"pretrain_epochs": "2"})
    assert record["spec"]["protocol"]["name"] == "apt"  # the defense's default protocol
    assert record["conditions"] == ["clean", "attacked", "clean+defense", "attacked+defense"]
    notes = record["notes"]["attacked+defense"][0]
    genuine, fake = record["counts"]["users"], record["counts"]["fake_users"]
    assert notes["erm_users"] == [genuine + fake, genuine + fake + round(0.05 * (genuine + fake))]
    assert [g["epoch"] for g in notes["generations"]] == [2, 4]
    assert all(g["items_per_user"] == 400 for g in notes["generations"])
    assert len(ranked) == 4 and all(u.max() < genuine for u in ranked)
    assert record["metrics"]["clean+defense"]["HR@50"]["mean"] > 0.05
