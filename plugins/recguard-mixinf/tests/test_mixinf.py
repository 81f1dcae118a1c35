"""Tests of MixRand and MixInf: Usermix on hand-made users, the influence equations on a
hand-made MF, the threat estimator against real retraining, the host contract, real cells."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from recguard import APT, AttackContext, Interactions, Poisoned, RecguardError, build_config
from recguard.testing import check_attack, eval_record, tiny_interactions
from recguard_mixinf.attacks import (MixInfAttack, MixRandAttack, objective, threat_from_model,
                                     threat_of, with_fakes)
from recguard_mixinf.usermix import discretise, draw_pairs, interpolate, parent_pool, usermix

LEVELS = np.array([1.0, 2.0, 3.0, 4.0, 5.0], dtype=np.float32)
FAST = {"surrogate_epochs": "5", "candidates": "5"}


def explicit01(n_users=60, n_items=40, per_user=12, seed=0) -> Interactions:
    """Ratings 1..5 normalised to 0.2..1.0, as under the APT protocol."""
    data = tiny_interactions(n_users=n_users, n_items=n_items, per_user=per_user, seed=seed)
    return dataclasses.replace(data, rating=data.rating / 5.0, rating_max=1.0)


def poison(cls, data, n_fake=6, filler=8, seed=0, targets=(35, 38), **options) -> Poisoned:
    ctx = AttackContext(targets=np.array(targets), n_fake=n_fake, filler_size=filler,
                        rng=np.random.default_rng(seed), protocol=APT)
    return cls(build_config(cls.Config, {k: str(v) for k, v in options.items()}, cls.name)).poison(data, ctx)


# ---------------------------------------------------------------- Usermix on hand-made users


def test_usermix_interpolates_a_hand_made_pair():
    a = np.array([5, 0, 3, 0, 1, 4], dtype=np.float32)
    b = np.array([1, 4, 3, 0, 0, 2], dtype=np.float32)
    mixed = interpolate(a[None], b[None], 0.25)[0]          # 0.25 a + 0.75 b
    assert np.allclose(mixed, [2.0, 3.0, 3.0, 0.0, 0.25, 2.5])
    # rounded to {0, 1..5}: 0.25 is nearer "no rating" than 1 (an item only a rated, at 1/4
    # weight); 2.5 is a tie and goes up; nothing is capped below filler_size=10
    rows = discretise(mixed, LEVELS, np.array([], np.int64), 10, np.random.default_rng(0))
    assert rows.tolist() == [[2.0, 3.0, 3.0, 0.0, 0.0, 3.0]]
    # λ = 1 copies a, λ = 0 copies b
    assert np.array_equal(interpolate(a[None], b[None], 1.0)[0], a)
    assert np.array_equal(interpolate(a[None], b[None], 0.0)[0], b)
    # one λ per row
    both = interpolate(np.stack([a, a]), np.stack([b, b]), np.array([1.0, 0.0]))
    assert np.array_equal(both, np.stack([a, b]))


def test_discretise_clears_targets_and_keeps_at_most_filler_size():
    row = np.array([[5, 4, 3, 2, 1, 0, 5, 4]], dtype=np.float32)
    out = discretise(row, LEVELS, np.array([0, 6]), 3, np.random.default_rng(1))[0]
    assert out[0] == 0 and out[6] == 0                    # targets cleared
    assert (out > 0).sum() == 3                           # 5 rated non-targets, 3 kept
    kept = np.flatnonzero(out)
    assert np.array_equal(out[kept], row[0, kept])        # kept entries keep their values
    # the kept set is drawn at random: several seeds give several sets
    sets = {tuple(np.flatnonzero(discretise(row, LEVELS, np.array([0, 6]), 3,
                                            np.random.default_rng(s))[0])) for s in range(20)}
    assert len(sets) > 3


def test_pairs_are_distinct_users_of_the_pool():
    pool = np.array([2, 5, 7, 11])
    first, second = draw_pairs(pool, 500, np.random.default_rng(0))
    assert np.isin(first, pool).all() and np.isin(second, pool).all()
    assert (first != second).all()
    assert len(set(zip(first.tolist(), second.tolist()))) == 12   # every ordered pair occurs


def test_usermix_rows_come_from_their_parents():
    data = explicit01()
    dense = np.zeros((data.n_users, data.n_items), np.float32)
    dense[data.user, data.item] = data.rating
    levels = np.unique(data.rating)
    mixed = usermix(dense, parent_pool(data.user, data.n_users), 50, 1.0, levels,
                    np.array([35, 38]), 8, np.random.default_rng(3))
    for row, a, b, lam in zip(mixed.rows, mixed.first, mixed.second, mixed.weight):
        rated = np.flatnonzero(row)
        assert len(rated) <= 8 and not np.isin([35, 38], rated).any()
        assert ((dense[a, rated] > 0) | (dense[b, rated] > 0)).all()
        expected = discretise(interpolate(dense[a][None], dense[b][None], lam), levels,
                              np.array([35, 38]), data.n_items, np.random.default_rng(0))[0]
        assert np.array_equal(row[rated], expected[rated])


# ---------------------------------------------------------------- the attacks' profiles


@pytest.mark.parametrize("cls,options", [
    (MixRandAttack, {}), (MixInfAttack, FAST), (MixInfAttack, {**FAST, "rounds": "2"}),
    (MixInfAttack, {**FAST, "context": "probe", "estimator": "perturbation", "objective": "score"})])
def test_profiles_rate_targets_at_the_maximum_and_fillers_on_the_grid(cls, options):
    data = explicit01()
    out = poison(cls, data, n_fake=7, filler=8, **options)
    assert out.n_fake == 7 and set(np.unique(out.user)) == set(range(7))
    targets = np.isin(out.item, [35, 38])
    assert (out.rating[targets] == 1.0).all()
    assert np.isin(out.rating[~targets], np.unique(data.rating)).all()
    for fake in range(7):
        items = out.item[out.user == fake]
        assert len(items) == len(set(items.tolist())) and 2 < len(items) <= 10
    assert np.all(np.diff(out.timestamp) > 0) and out.timestamp.min() > data.timestamp.max()


def test_no_fake_users_and_refusals():
    data = explicit01()
    assert poison(MixRandAttack, data, n_fake=0).n_fake == 0
    implicit = tiny_interactions(feedback="implicit")
    for cls in (MixRandAttack, MixInfAttack):
        with pytest.raises(RecguardError, match="explicit"):
            poison(cls, implicit)
    with pytest.raises(RecguardError, match="target items must lie"):
        poison(MixRandAttack, data, targets=(99,))
    with pytest.raises(RecguardError, match="candidates"):
        build_config(MixInfAttack.Config, {"candidates": "0"}, "mixinf")


@pytest.mark.parametrize("cls,options", [(MixRandAttack, None), (MixInfAttack, FAST)])
def test_host_contract(cls, options):
    check_attack(cls, options)
    assert cls.knowledge == "black-box" and "TPAMI" in cls.paper


def test_plugin_registers_both_attacks():
    import recguard_mixinf

    registered = []
    recguard_mixinf.register_attacks(registered.append)
    assert [c.name for c in registered] == ["mixinf", "mixrand"]


def test_mixinf_keeps_the_candidate_of_largest_estimated_threat():
    data = explicit01()
    attack = MixInfAttack(build_config(MixInfAttack.Config, FAST, "mixinf"))
    poison_ctx = AttackContext(targets=np.array([35, 38]), n_fake=4, filler_size=8,
                               rng=np.random.default_rng(0), protocol=APT)
    attack.poison(data, poison_ctx)
    levels = np.unique(data.rating)
    # replay the draws: the same seed gives the same candidates after the probe and context
    rng = np.random.default_rng(0)
    dense = np.zeros((data.n_users, data.n_items), np.float32)
    dense[data.user, data.item] = data.rating
    pool = parent_pool(data.user, data.n_users)
    draw = lambda k: usermix(dense, pool, k, 1.0, levels, np.array([35, 38]), 8, rng).rows  # noqa: E731
    draw(1), draw(3)
    rng.integers(2 ** 31 - 1)
    assert len(attack.influence_info) == 1 and attack.influence_info[0]["cg_products"] > 0
    for chosen in attack.chosen_threat:
        assert chosen == pytest.approx(threat_of(draw(5), attack.table, levels).max())


# ---------------------------------------------------------------- the influence equations


class TinyMF:
    """A hand-made MF the kit's influence code can differentiate (per_row_loss's protocol)."""

    def __init__(self, p, q, dtype=None):
        import torch

        dtype = dtype or torch.float32
        self.user = torch.tensor(p, dtype=dtype, requires_grad=True)
        self.item = torch.tensor(q, dtype=dtype, requires_grad=True)

    def parameters(self):
        return [self.user, self.item]

    def batch_embeddings(self, users, items, negatives):
        return self.user[users], self.item[items], None, self.user.pow(2).sum() * 0

    def score(self, users):
        return (self.user[users] @ self.item.T).detach().numpy()


def test_rating_and_row_influence_follow_their_equations():
    """For MF, ℓ(u, j, r) = (p_u.q_j - r)^2, so with s = (s_P, s_Q):
    rows:          -(1/n) s . ∇θ ℓ = -(2/n)(p_u.q_j - r)(s_p_u . q_j + s_q_j . p_u)
    perturbation:  -(1/n) ∂/∂r s . ∇θ ℓ = (2/n)(s_p_u . q_j + s_q_j . p_u)."""
    import torch

    from recguard.kit.poison.influence import rating_influence, row_influence

    rng = np.random.default_rng(0)
    p, q = rng.normal(size=(3, 2)), rng.normal(size=(4, 2))
    model = TinyMF(p, q)
    s = [torch.tensor(rng.normal(size=(3, 2)), dtype=torch.float32),
         torch.tensor(rng.normal(size=(4, 2)), dtype=torch.float32)]
    n = 10
    train = Interactions(user=np.array([1, 1, 0]), item=np.array([0, 2, 3]),
                         rating=np.array([4.0, 2.0, 5.0], np.float32), timestamp=np.arange(3),
                         n_users=3, n_items=4, user_ids=np.array(["a", "b", "c"]),
                         item_ids=np.array(["w", "x", "y", "z"]), feedback="explicit", rating_max=5.0)
    u = 1
    sp, sq = s[0].numpy().astype(np.float64), s[1].numpy().astype(np.float64)
    cross = sp[u] @ q.T + (sq * p[u]).sum(axis=1)                   # s_p_u . q_j + s_q_j . p_u
    slope = rating_influence(model, train, u, s, n=n)
    assert np.allclose(slope, 2.0 / n * cross, rtol=1e-5)
    r = np.array([1.0, 3.0, 5.0, 2.0], np.float32)
    rows = row_influence(model, torch.full((4,), u), torch.arange(4), torch.as_tensor(r), s, n)
    assert np.allclose(rows, -2.0 / n * (p[u] @ q.T - r) * cross, rtol=1e-5)
    # the perturbation influence is the slope of the row influence in the rating
    rows2 = row_influence(model, torch.full((4,), u), torch.arange(4), torch.as_tensor(r + 1), s, n)
    assert np.allclose(rows2 - rows, slope, rtol=1e-4)


def test_inverse_hvp_solves_the_damped_system():
    import torch

    from recguard.kit.poison.influence import HessianOperator, inverse_hvp, training_tensors

    data = explicit01(n_users=12, n_items=8, per_user=4)
    rng = np.random.default_rng(1)
    model = TinyMF(rng.normal(size=(12, 3)) * 0.5, rng.normal(size=(8, 3)) * 0.5)
    b = [torch.tensor(rng.normal(size=(12, 3)), dtype=torch.float32),
         torch.tensor(rng.normal(size=(8, 3)), dtype=torch.float32)]
    x, info = inverse_hvp(model, data, b, damping=1.0, max_iter=200, tol=1e-6)
    hx = HessianOperator(model, *training_tensors(data), damping=info["damping"])(x)
    assert all(torch.allclose(h, v, atol=1e-4) for h, v in zip(hx, b))


# ---------------------------------------------------------------- the estimator vs retraining


class RegularisedMF(TinyMF):
    """TinyMF in float64 whose regulariser is every parameter's squares: with weight decay its
    training loss has a minimum (unique up to rotations, which leave every score unchanged),
    and float64 resolves the small change one profile makes to it."""

    def __init__(self, p, q):
        import torch

        super().__init__(p, q, torch.float64)

    def batch_embeddings(self, users, items, negatives):
        return self.user[users], self.item[items], None, self.user.pow(2).sum() + self.item.pow(2).sum()


def train_to_convergence(model, data: Interactions, weight_decay: float) -> None:
    """Full-batch L-BFGS on mean squared error + weight_decay x regulariser (the loss the
    influence code differentiates), from the model's current parameters."""
    import torch

    from recguard.kit.cf.embedding import per_row_loss
    from recguard.kit.poison.influence import training_tensors

    tensors = training_tensors(data)
    optimiser = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=500, tolerance_grad=1e-10,
                                  tolerance_change=1e-14, history_size=50,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        per_row, reg = per_row_loss(model, tensors[0], tensors[1], None, tensors[2], implicit=False)
        loss = per_row.mean() + weight_decay * reg
        loss.backward()
        return loss

    for _ in range(3):
        optimiser.step(closure)


def test_threat_ranking_matches_retraining_on_a_tiny_dataset():
    """The estimated threat T(x) of candidate profiles in the probe's place ranks them as
    actually retraining the surrogate with each of them does (f: the targets' mean predicted
    rating over the genuine users). Retraining starts from the trained parameters and runs to
    convergence, as in Koh & Liang's checks of influence functions."""
    import torch
    from scipy.stats import spearmanr

    from recguard.kit.poison.surrogate import dense_ratings

    data = explicit01(n_users=40, n_items=30, per_user=10, seed=2)
    targets = np.array([27, 29])
    cfg = build_config(MixInfAttack.Config, {"objective": "score", "damping": "0", "cg_iterations": "500",
                                             "cg_tolerance": "1e-10"}, "mixinf")
    levels = np.unique(data.rating)
    dense, _ = dense_ratings(data)
    rng = np.random.default_rng(5)
    pool = parent_pool(data.user, data.n_users)
    probe = usermix(dense, pool, 1, 1.0, levels, targets, 10, rng).rows
    decay = 1e-2
    with_probe = with_fakes(data, probe, targets)
    init = np.random.default_rng(0)
    model = RegularisedMF(init.normal(size=(with_probe.n_users, 3)) * 0.3,
                          init.normal(size=(data.n_items, 3)) * 0.3)
    train_to_convergence(model, with_probe, decay)
    table, info = threat_from_model(model, with_probe, data.n_users, targets, levels, cfg, decay)
    assert not info["negative_curvature"]
    candidates = usermix(dense, pool, 12, 1.0, levels, targets, 10, rng).rows
    estimated = threat_of(candidates, table, levels)

    def f_after(row):
        train = with_fakes(data, row[None], targets)
        retrained = RegularisedMF(model.user.detach().numpy(), model.item.detach().numpy())
        train_to_convergence(retrained, train, decay)
        with torch.no_grad():
            return float(objective(retrained, train, data.n_users, targets))

    actual = np.array([f_after(row) for row in candidates])
    assert spearmanr(estimated, actual).statistic > 0.9
    assert np.argmax(estimated) == np.argmax(actual)


# ---------------------------------------------------------------- real cells


@pytest.mark.integration
@pytest.mark.parametrize("attack,options", [
    ("mixrand", []),
    ("mixinf", ["--attack-opt", "candidates=20", "--attack-opt", "surrogate_epochs=10"])])
def test_a_real_cell_on_ml100k_promotes_the_targets(tmp_path, attack, options):
    metrics = eval_record(tmp_path, "--attack", attack, "--backbone", "mf", "--seeds", "0",
                          *options)["metrics"]
    assert metrics["attacked"]["T-HR@50"]["mean"] > metrics["clean"]["T-HR@50"]["mean"] + 0.3
