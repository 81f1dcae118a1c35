"""recguard.kit.cf.finetune_restore: the local (gathered rows) and generic (snapshot/restore) paths agree,
leave the trained model untouched and really train on the given rows."""

import dataclasses

import numpy as np
import pytest
import torch

from recguard.config import build_config
from recguard.contracts import FitContext
from recguard.kit.cf.finetune_restore import (FinetuneJob, FinetuneOptions, finetuned,
                                              finetuned_scores, n_steps, schedule, supports_local)
from recguard.testing import tiny_interactions
from recguard_cf_backbones.lightgcn import LightGCNBackbone
from recguard_mf.backbone import MFBackbone, MFModel


def explicit(n_users=30, n_items=40):
    data = tiny_interactions(n_users=n_users, n_items=n_items)
    return dataclasses.replace(data, rating=data.rating / 5.0, rating_max=1.0)


def data_of(feedback):
    return explicit() if feedback == "explicit" else tiny_interactions(feedback="implicit")


def fit(cls, data, **options):
    return cls(build_config(cls.Config, {"epochs": "3", **options}, cls.name)).fit(data, FitContext(seed=0))


def rows_of_users(data, users):
    return np.flatnonzero(np.isin(data.user, users))


def jobs_for(data, groups, seed=0):
    """One job per (users whose rows are trained, users scored afterwards)."""
    return [FinetuneJob(rows_of_users(data, train_users), np.asarray(served), [seed, k])
            for k, (train_users, served) in enumerate(groups)]


GROUPS = [([0, 1, 2], [0]), ([3, 4], [3, 7]), ([5, 6, 7, 8, 9], [5]), ([10], [11]),
          ([12, 13, 14], [12, 14]), ([15, 16], [16])]


def snapshot(model):
    return [p.detach().clone() for p in model.parameters()]


def unchanged(model, saved):
    return all(torch.equal(p.detach(), s) for p, s in zip(model.parameters(), saved))


@pytest.mark.parametrize("feedback,optimizer,lr", [("explicit", "adagrad", 1.0), ("explicit", "sgd", 5.0),
                                                   ("implicit", "adam", 0.01), ("implicit", "adagrad", 0.5)])
@pytest.mark.parametrize("group", [1, 4])
def test_local_and_generic_paths_agree_on_mf(feedback, optimizer, lr, group):
    data = data_of(feedback)
    model = fit(MFBackbone, data)
    # a small batch size gives jobs different numbers of steps (grouped by step count)
    options = FinetuneOptions(epochs=3, optimizer=optimizer, lr=lr, batch_size=12, weight_decay=1e-3)
    jobs = jobs_for(data, GROUPS)
    assert len({n_steps(len(j.rows), options) for j in jobs}) > 1
    fast = finetuned_scores(model, data, jobs, options, path="local", group=group)
    slow = finetuned_scores(model, data, jobs, options, path="generic")
    base = model.score(np.arange(data.n_users))
    for job, a, b in zip(jobs, fast, slow):
        assert a.shape == (len(job.users), data.n_items)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
        assert not np.allclose(a, base[job.users])  # fine-tuning changed the scores


def test_the_trained_model_is_left_as_it_was():
    data = explicit()
    model = fit(MFBackbone, data)
    model.user_emb.grad = torch.ones_like(model.user_emb)  # a stale gradient is restored too
    item_grad = model.item_emb.grad
    saved, before = snapshot(model), model.score(np.arange(5))
    options = FinetuneOptions(epochs=2, optimizer="adagrad", lr=1.0, batch_size=64, weight_decay=0.0)
    for path in ("local", "generic"):
        finetuned_scores(model, data, jobs_for(data, GROUPS), options, path=path)
        assert unchanged(model, saved), path
        assert torch.equal(model.user_emb.grad, torch.ones_like(model.user_emb))
        assert model.item_emb.grad is item_grad
        np.testing.assert_array_equal(model.score(np.arange(5)), before)


def test_generic_restores_after_an_error():
    data = explicit()
    model = fit(MFBackbone, data)
    saved = snapshot(model)
    options = FinetuneOptions(epochs=2, optimizer="sgd", lr=5.0, batch_size=64, weight_decay=0.0)
    with pytest.raises(RuntimeError):
        with finetuned(model, data, rows_of_users(data, [0, 1]), options, 0) as tuned:
            assert not unchanged(tuned, saved)
            raise RuntimeError("scoring failed")
    assert unchanged(model, saved)


def test_finetuning_fits_the_given_rows():
    data = explicit()
    model = fit(MFBackbone, data, epochs="1")
    rows = rows_of_users(data, [0, 1, 2])
    options = FinetuneOptions(epochs=30, optimizer="adagrad", lr=0.5, batch_size=4096, weight_decay=0.0)
    [after] = finetuned_scores(model, data, [FinetuneJob(rows, np.array([0, 1, 2]), 0)], options)
    before = model.score(np.array([0, 1, 2]))
    local_user = data.user[rows]  # 0, 1, 2 are rows 0, 1, 2 of the scored block
    err_before = np.mean((before[local_user, data.item[rows]] - data.rating[rows]) ** 2)
    err_after = np.mean((after[local_user, data.item[rows]] - data.rating[rows]) ** 2)
    assert err_after < 0.25 * err_before


def test_schedule_is_seeded_and_covers_each_row_once_per_epoch():
    data = tiny_interactions(feedback="implicit")
    rows = rows_of_users(data, [0, 1, 2, 3])
    options = FinetuneOptions(epochs=2, optimizer="adam", lr=0.01, batch_size=10, weight_decay=0.0)
    steps = schedule(data, rows, options, [3, 4])
    assert len(steps) == n_steps(len(rows), options) == 2 * 4  # 32 rows in batches of 10
    first_epoch = np.concatenate([b for b, _ in steps[:4]])
    assert sorted(first_epoch) == sorted(rows)
    seen = set(zip(data.user.tolist(), data.item.tolist()))
    for batch, negatives in steps:
        assert not any((u, j) in seen for u, j in zip(data.user[batch].tolist(), negatives.tolist()))
    again = schedule(data, rows, options, [3, 4])
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(steps, again))
    other = schedule(data, rows, options, [3, 5])
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(steps, other))


class ScaledMF(MFModel):
    """MF with a shared weight vector in its scores (a stand-in for NeuMF's MLP)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.w = torch.nn.Parameter(torch.ones(self.user_emb.shape[1]))

    def parameters(self):
        return [self.user_emb, self.item_emb, self.w]

    def pair_scores(self, user, item):
        return (user * item * self.w).sum(-1)

    def score(self, users):
        with torch.no_grad():
            return ((self.user_emb[torch.as_tensor(users)] * self.w) @ self.item_emb.T).numpy()


def test_shared_parameters_run_one_job_at_a_time_and_are_restored():
    data = explicit()
    model = ScaledMF(data.n_users, data.n_items, 8, "xavier", torch.Generator().manual_seed(0))
    assert supports_local(model)
    saved = snapshot(model)
    options = FinetuneOptions(epochs=3, optimizer="adam", lr=0.05, batch_size=16, weight_decay=1e-3)
    jobs = jobs_for(data, GROUPS)
    fast = finetuned_scores(model, data, jobs, options, path="local", group=8)
    slow = finetuned_scores(model, data, jobs, options, path="generic")
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert unchanged(model, saved)


def test_lightgcn_takes_the_generic_path_and_is_restored():
    data = tiny_interactions(feedback="implicit")
    model = fit(LightGCNBackbone, data)
    assert not supports_local(model)
    with pytest.raises(ValueError, match="local_parameters"):
        finetuned_scores(model, data, jobs_for(data, GROUPS[:1]), FinetuneOptions(1, "adam", 0.01, 64, 0.0),
                         path="local")
    saved, before = snapshot(model), model.score(np.arange(data.n_users))
    options = FinetuneOptions(epochs=3, optimizer="adam", lr=0.05, batch_size=64, weight_decay=1e-4)
    jobs = jobs_for(data, GROUPS[:3])
    first = finetuned_scores(model, data, jobs, options)  # auto: generic
    second = finetuned_scores(model, data, jobs, options)
    assert unchanged(model, saved)
    for job, a, b in zip(jobs, first, second):
        np.testing.assert_array_equal(a, b)  # same seed, same fine-tune
        assert not np.allclose(a, before[job.users])


def test_negatives_drawn_against_the_users_histories_match_the_whole_training_set():
    from recguard.kit.cf.finetune_restore import Histories
    from recguard.kit.cf.loop import sample_negatives

    data = tiny_interactions(n_users=40, n_items=25, per_user=10, feedback="implicit")
    rows = rows_of_users(data, [2, 5, 11])[::2]  # a subset of the users' rows
    options = FinetuneOptions(epochs=3, optimizer="adam", lr=0.01, batch_size=7, weight_decay=0.0)
    steps = schedule(data, rows, options, 9, Histories(data))
    rng = np.random.default_rng(9)
    expected = []
    for _ in range(3):
        order = rows[rng.permutation(len(rows))]
        expected.append(sample_negatives(data, data.user[order], rng))
    np.testing.assert_array_equal(np.concatenate([n for _, n in steps]), np.concatenate(expected))


def test_neumf_on_the_local_path_matches_the_generic_path():
    from recguard_cf_backbones.neumf import NeuMFBackbone

    data = tiny_interactions(feedback="implicit")
    model = fit(NeuMFBackbone, data, dim="8")
    model.local_parameters = True  # its scores read the user's row, the item rows and the MLP
    saved = snapshot(model)
    options = FinetuneOptions(epochs=2, optimizer="adam", lr=0.05, batch_size=16, weight_decay=1e-4)
    jobs = jobs_for(data, GROUPS[:4])
    fast = finetuned_scores(model, data, jobs, options, path="local", group=8)
    slow = finetuned_scores(model, data, jobs, options, path="generic")
    base = model.score(np.arange(data.n_users))
    for job, a, b in zip(jobs, fast, slow):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
        assert not np.allclose(a, base[job.users])
    assert unchanged(model, saved)
