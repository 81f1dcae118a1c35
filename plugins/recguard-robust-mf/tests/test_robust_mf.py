import dataclasses

import numpy as np
import pytest
import torch

from recguard import (APT, PAMACF, DefenseContext, FitContext, FitHooks, Interactions, RecguardError,
                      build_config, registered)
from recguard.kit.cf.loop import dot_product_loss, run_epochs
from recguard.testing import cell_record, check_combination, check_defense, tiny_interactions
from recguard_robust_mf.ltsmf import LTSMFDefense, squared_residuals, trim_weights, trimmed_rows

MF = registered("backbone", "mf")


def defense(cls, **options):
    return cls(build_config(cls.Config, {k: str(v) for k, v in options.items()}, cls.name))


def ratings(users, items, values, n_users, n_items):
    n = len(users)
    return Interactions(user=np.asarray(users, dtype=np.int64), item=np.asarray(items, dtype=np.int64),
                        rating=np.asarray(values, dtype=np.float32), timestamp=np.arange(n, dtype=np.int64),
                        n_users=n_users, n_items=n_items, user_ids=np.arange(n_users), item_ids=np.arange(n_items),
                        feedback="explicit", rating_max=1.0)


class Tables:
    """A hand-made MF model: fixed user and item factors, scores <p_u, q_i>."""

    def __init__(self, p, q):
        self.user_emb = torch.nn.Parameter(torch.tensor(p, dtype=torch.float32))
        self.item_emb = torch.nn.Parameter(torch.tensor(q, dtype=torch.float32))
        self.n_items = len(q)

    def batch_embeddings(self, users, items, negatives):
        pu, qi = self.user_emb[users], self.item_emb[items]
        return pu, qi, None, pu.pow(2).mean() + qi.pow(2).mean()


# ------------------------------------------------------------------------- contracts


def test_contract_on_mf():
    check_defense(LTSMFDefense, MF, {"trim_start": "0"})


@pytest.mark.parametrize("backbone", ["autorec", "cdae", "nsvd", "lightgcn", "neumf"])
def test_contract_on_the_other_explicit_backbones(backbone):
    check_defense(LTSMFDefense, registered("backbone", backbone), {"trim_start": "0"})


def test_refused_on_implicit_data_and_on_sequential_backbones():
    cls = LTSMFDefense
    none = registered("attack", "none")
    with pytest.raises(RecguardError, match="explicit"):
        check_combination(MF, none, cls, PAMACF)
    with pytest.raises(RecguardError, match="cf backbones"):
        check_combination(registered("backbone", "sasrec"), none, cls, PAMACF)


def test_bad_options_are_refused_in_one_line():
    with pytest.raises(RecguardError, match="trim"):
        defense(LTSMFDefense, trim=1.0)


# ------------------------------------------------------------------------- LTSMF


def test_exactly_the_largest_residuals_are_trimmed():
    residuals = np.array([0.1, 5.0, 0.2, 3.0, 0.0, 1.0, 0.3, 0.05, 2.0, 0.4])
    assert trimmed_rows(residuals, 0.3).tolist() == [1, 3, 8]      # top 30%: 5, 3, 2
    assert trim_weights(residuals, 0.3).tolist() == [1, 0, 1, 0, 1, 1, 1, 1, 0, 1]
    assert trimmed_rows(residuals, 0.0).tolist() == []
    assert trimmed_rows(np.ones(4), 0.5).tolist() == [0, 1]          # ties: deterministic


def hand_made_case():
    """Users 0-2 rate close to <p_u, q_i> = 1; user 3 rates 0 where the model predicts 1:
    its three pairs have squared residual 1, the others at most 0.01."""
    p = [[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]
    q = [[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]
    users = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    items = [0, 1, 2] * 4
    values = [0.9, 0.95, 0.9, 1.05, 1.1, 1.0, 0.92, 0.95, 0.98, 0.0, 0.0, 0.0]
    return Tables(p, q), ratings(users, items, values, 4, 3)


def test_the_hook_zeroes_exactly_the_top_share_and_those_pairs_get_no_gradient():
    model, data = hand_made_case()
    residuals = squared_residuals(model, data)
    assert residuals == pytest.approx((1.0 - data.rating) ** 2, abs=1e-6)
    ctx = DefenseContext(0, APT, MF())
    hooks = defense(LTSMFDefense, trim=0.25, trim_start=0).during_fit(data, ctx)
    weights = hooks.row_weights(0, model, data)
    assert weights.tolist() == [1.0] * 9 + [0.0] * 3                # 25% of 12 rows: user 3's
    # the loss the kit's loop minimises: mean of per-row squared errors times the row weights
    pu, qi, _, _ = model.batch_embeddings(torch.as_tensor(data.user), torch.as_tensor(data.item), None)
    loss = (dot_product_loss(False)(pu, qi, None, torch.as_tensor(data.rating)) * torch.as_tensor(weights)).mean()
    loss.backward()
    assert torch.all(model.user_emb.grad[3] == 0)                   # only trimmed pairs: no gradient
    assert torch.all(model.user_emb.grad[:3].abs().sum(1) > 0)
    # the trimmed share is LTS's outlier score (-> Detect-AUC), the kept share its weight
    assert ctx.user_scores.tolist() == [0.0, 0.0, 0.0, 1.0]
    assert ctx.user_weights.tolist() == [1.0, 1.0, 1.0, 0.0]
    assert ctx.notes["trimmed_rows"] == [3]


def test_no_trimming_before_trim_start_and_refresh_reuses_the_set():
    model, data = hand_made_case()
    hooks = defense(LTSMFDefense, trim=0.25, trim_start=2, refresh=2).during_fit(data, DefenseContext(0, APT, MF()))
    assert hooks.row_weights(0, model, data) is None and hooks.row_weights(1, model, data) is None
    first = hooks.row_weights(2, model, data)
    with torch.no_grad():
        model.item_emb[:] = 0.0                                     # residuals change ...
    assert hooks.row_weights(3, model, data) is first               # ... but epoch 3 keeps epoch 2's set
    assert hooks.row_weights(4, model, data) is not first


def test_run_epochs_multiplies_row_weights_into_the_user_weights():
    data = ratings([0, 0, 1, 1], [0, 1, 0, 1], [1.0, 0.5, 0.5, 1.0], 2, 2)

    class Hooks(FitHooks):
        def user_weights(self, epoch, model, train):
            return np.array([2.0, 3.0])

        def row_weights(self, epoch, model, train):
            return np.array([1.0, 0.0, 1.0, 0.5])

    seen = []

    class Model:
        def ensure_users(self, n):
            pass

    run_epochs(Model(), data, 1, FitContext(seed=0, hooks=Hooks()),
               lambda epoch, state: seen.append(state.row_weight.tolist()) or 0.0)
    assert seen == [[2.0, 0.0, 3.0, 1.5]]


def test_trimming_changes_the_fit_and_trim_zero_is_plain_mf():
    data = tiny_interactions()
    data = dataclasses.replace(data, rating=data.rating / 5.0, rating_max=1.0)
    mf = MF(build_config(MF.Config, {"epochs": "3"}, "mf"))
    plain = mf.fit(data, FitContext(seed=0)).score(np.arange(3))
    ctx = DefenseContext(0, APT, mf)
    off = mf.fit(data, FitContext(seed=0, hooks=defense(LTSMFDefense, trim=0).during_fit(data, ctx))).score(np.arange(3))
    trimmed = mf.fit(data, FitContext(seed=0, hooks=defense(LTSMFDefense).during_fit(data, ctx))).score(np.arange(3))
    assert np.allclose(plain, off) and not np.allclose(plain, trimmed)
    assert ctx.notes["trimmed_rows"] == [int(0.1 * len(data))] * 2  # epochs 1 and 2


# ------------------------------------------------------------------------- real cells


@pytest.mark.integration
def test_small_real_cell():
    record = cell_record(defense="ltsmf", attack="average", seeds=(0,), backbone_options={"epochs": "3"})
    assert record["spec"]["protocol"]["name"] == "apt" and record["spec"]["backbone"]["name"] == "mf"
    assert record["conditions"] == ["clean", "attacked", "clean+defense", "attacked+defense"]
    assert record["metrics"]["clean+defense"]["HR@50"]["mean"] > 0.05
    assert record["notes"]["attacked+defense"][0]["trimmed_rows"][0] > 0
    assert 0.0 <= record["metrics"]["attacked+defense"]["Detect-AUC"]["mean"] <= 1.0
