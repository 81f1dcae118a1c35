"""The attacker's surrogate helper (recguard.kit.poison.surrogate)."""

import numpy as np
import pytest
import torch

from recguard import RecguardError, registered
from recguard.kit.poison.surrogate import (DenseMF, SurrogateOptions, dense_ratings, fit_surrogate,
                                           surrogate_scores, top_fillers)
from recguard.testing import tiny_interactions


def test_the_surrogate_is_a_registered_backbone_trained_on_what_the_attacker_sees():
    train = tiny_interactions()
    options = SurrogateOptions(surrogate_epochs=3, surrogate_dim=8)
    model = fit_surrogate(registered("backbone", "mf"), train, seed=0, options=options)
    scores = surrogate_scores(model, train.n_users, batch=7)
    assert scores.shape == (train.n_users, train.n_items) and np.isfinite(scores).all()
    again = surrogate_scores(fit_surrogate(registered("backbone", "mf"), train, 0, options), train.n_users)
    assert np.allclose(scores, again, rtol=1e-4, atol=1e-3)   # fixed by the seed


def test_a_sequential_surrogate_is_refused():
    with pytest.raises(RecguardError, match="must be a CF backbone"):
        fit_surrogate(registered("backbone", "sasrec"), tiny_interactions(), 0, SurrogateOptions(surrogate="sasrec"))


def test_top_fillers_skip_targets_and_come_best_first():
    scores = np.array([[0.1, 0.9, 0.5, 0.7, 0.3], [0.8, 0.1, 0.2, 0.3, 0.9]])
    fillers = top_fillers(scores, np.array([1]), 3)
    assert fillers.tolist() == [[3, 2, 4], [4, 0, 3]]


def test_unrolled_training_differentiates_through_to_the_ratings():
    train = tiny_interactions()
    ratings, observed = dense_ratings(train)
    assert observed.sum() == len(train) and ratings[train.user, train.item].tolist() == train.rating.tolist()
    mf = DenseMF(train.n_users, train.n_items, dim=8, seed=0)
    fake = torch.tensor(ratings, requires_grad=True)
    before = mf.loss(fake, torch.tensor(observed), 1e-3).item()
    user, item = mf.unrolled(fake, torch.tensor(observed), steps=20, lr=0.5, l2=1e-3, keep_graph=True)
    assert mf.loss(fake, torch.tensor(observed), 1e-3, user, item).item() < before   # it trains
    (user @ item.T)[:, 3].mean().backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0


def test_surrogate_hooks_reach_its_training_loop():
    from recguard.contracts import FitHooks

    class Count(FitHooks):
        epochs = 0

        def on_epoch_end(self, epoch, model):
            Count.epochs += 1

    fit_surrogate(registered("backbone", "mf"), tiny_interactions(), 0,
                  SurrogateOptions(surrogate_epochs=3, surrogate_dim=8), Count())
    assert Count.epochs == 3
