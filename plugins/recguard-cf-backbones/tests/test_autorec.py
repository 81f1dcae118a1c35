import dataclasses

import numpy as np
import pytest
import torch

from recguard.kit.cf.embedding import per_row_loss
from recguard.testing import check_backbone, tiny_interactions
from recguard_cf_backbones.autorec import AutoRecBackbone, AutoRecModel


def hand_made():
    """4 users x 3 items, ratings in (0, 1]; user 3 rated nothing."""
    data = tiny_interactions(n_users=4, n_items=3, per_user=1)
    return dataclasses.replace(data, user=np.array([0, 0, 1, 2, 2]), item=np.array([0, 2, 1, 0, 1]),
                               rating=np.array([0.8, 0.4, 1.0, 0.6, 0.2], np.float32),
                               timestamp=np.arange(5), rating_max=1.0)


def model_on(data, hidden=3):
    model = AutoRecModel(data.n_users, data.n_items, hidden, torch.Generator().manual_seed(0))
    with torch.no_grad():   # non-zero biases, so the test sees where they enter
        model.mu.uniform_(-1, 1, generator=model.generator)
        model.b.uniform_(-1, 1, generator=model.generator)
    model.set_training_data(data)
    return model


def by_hand(model, data):
    """h(r_i) = W sigmoid(V r_i + mu) + b for every item i: (items, users)."""
    V, mu, W, b = (p.detach().numpy().copy() for p in model.parameters())
    R = np.zeros((data.n_items, data.n_users))   # rows: the items' rating vectors r_i
    R[data.item, data.user] = data.rating
    return np.stack([W @ (1 / (1 + np.exp(-(V @ R[i] + mu)))) + b for i in range(data.n_items)])


def test_contract():
    check_backbone(AutoRecBackbone, {"hidden": 8})


def test_scores_are_the_reconstruction_of_the_item_vectors():
    data = hand_made()
    model = model_on(data)
    expected = by_hand(model, data)
    assert np.allclose(model.reconstruct().detach().numpy(), expected, atol=1e-6)
    # user u's score of item i is the u-th entry of h(r_i)
    assert np.allclose(model.score(np.arange(4)), expected.T, atol=1e-6)
    assert np.allclose(model.user_embeddings() @ model.item_embeddings().T, expected.T, atol=1e-6)


def test_loss_counts_only_observed_ratings():
    data = hand_made()
    model = model_on(data)
    per_row, reg = per_row_loss(model, torch.as_tensor(data.user), torch.as_tensor(data.item), None,
                                torch.as_tensor(data.rating), implicit=False)
    observed = np.zeros((data.n_items, data.n_users), dtype=bool)
    observed[data.item, data.user] = True
    R = np.zeros(observed.shape)
    R[data.item, data.user] = data.rating
    assert per_row.sum().item() == pytest.approx(((R - by_hand(model, data)) ** 2)[observed].sum(), rel=1e-5)
    per_row.sum().backward()
    # user 3 rated nothing: its output unit gets no gradient from the data term
    assert model.b.grad[3] == 0 and torch.all(model.W.grad[3] == 0)
    assert model.b.grad[:3].abs().min() > 0
    # the regulariser is (||W||^2 + ||V||^2) / (2N): lambda/2 ||.||^2 of the paper per rating
    norms = model.W.pow(2).sum() + model.V.pow(2).sum()
    assert reg.item() == pytest.approx(norms.item() / (2 * len(data)), rel=1e-6)
