import dataclasses

import numpy as np
import pytest
import torch

from recguard.testing import check_backbone, tiny_interactions
from recguard_cf_backbones.cdae import CDAEBackbone, CDAEModel


def hand_made():
    """3 users x 4 items, ratings in (0, 1]."""
    data = tiny_interactions(n_users=3, n_items=4, per_user=1)
    return dataclasses.replace(data, user=np.array([0, 0, 1, 2, 2, 2]), item=np.array([0, 3, 1, 0, 1, 2]),
                               rating=np.array([0.8, 0.4, 1.0, 0.6, 0.2, 1.0], np.float32),
                               timestamp=np.arange(6), rating_max=1.0)


def model_on(data, corruption=0.5):
    model = CDAEModel(data.n_users, data.n_items, 5, corruption, torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.b.uniform_(-1, 1, generator=model.generator)
        model.b_out.uniform_(-1, 1, generator=model.generator)
    model.set_training_data(data)
    return model


def ratings_matrix(data):
    Y = np.zeros((data.n_users, data.n_items))
    Y[data.user, data.item] = data.rating
    return Y


def test_contract():
    check_backbone(CDAEBackbone, {"hidden": 8})


def test_hidden_layer_has_the_user_node_and_output_is_linear():
    data = hand_made()
    model = model_on(data)
    W, V, b, W_out, b_out = (p.detach().numpy().copy() for p in model.parameters())
    z = 1 / (1 + np.exp(-(ratings_matrix(data) @ W + V + b)))   # z_u = h(W^T y_u + V_u + b)
    assert np.allclose(model.hidden_codes().detach().numpy(), z, atol=1e-6)
    assert np.allclose(model.score(np.arange(3)), z @ W_out.T + b_out, atol=1e-6)
    # the user node: moving V_0 changes user 0's code and scores only
    before = model.score(np.arange(3))
    with torch.no_grad():
        model.V[0] += 1.0
    after = model.score(np.arange(3))
    z0 = 1 / (1 + np.exp(-(ratings_matrix(data)[0] @ W + V[0] + 1.0 + b)))
    assert np.allclose(after[0], z0 @ W_out.T + b_out, atol=1e-6)
    assert not np.allclose(after[0], before[0]) and np.allclose(after[1:], before[1:])


def test_corruption_drops_entries_and_rescales_the_rest():
    data = hand_made()
    model = model_on(data, corruption=0.25)
    y = model.users_by_item.to_dense().numpy()
    kept_total = np.zeros_like(y)
    for _ in range(400):
        noisy = model.corrupted().to_dense().numpy()
        dropped = noisy == 0
        assert np.allclose(noisy[~dropped], y[~dropped] / 0.75)   # survivors scaled by 1/(1-q)
        kept_total += noisy
    assert np.allclose(kept_total / 400, y, atol=0.12)           # unbiased: E[y~] = y
    # scoring and the code outside training use the clean input
    assert np.allclose(model.hidden_codes(training=False).detach().numpy(),
                       model.hidden_codes().detach().numpy())


def test_loss_is_on_observed_ratings_and_penalty_covers_every_parameter():
    data = hand_made()
    model = model_on(data)
    model.training = False
    users, items = torch.as_tensor(data.user), torch.as_tensor(data.item)
    pu, qi, _, reg = model.batch_embeddings(users, items, None)
    expected = model.score(np.arange(3))[data.user, data.item]
    assert np.allclose((pu * qi).sum(1).detach().numpy(), expected, atol=1e-6)
    norms = sum(p.pow(2).sum().item() for p in model.parameters())
    assert reg.item() == pytest.approx(norms / (2 * len(data)), rel=1e-6)
