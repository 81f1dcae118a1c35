import dataclasses

import numpy as np
import pytest
import torch

from recguard.testing import check_backbone, tiny_interactions
from recguard_cf_backbones.nsvd import NSVDBackbone, NSVDModel


def hand_made():
    """3 users x 4 items; user 0 rated items 0, 1, 3; user 1 item 2; user 2 nothing."""
    data = tiny_interactions(n_users=3, n_items=4, per_user=1)
    return dataclasses.replace(data, user=np.array([0, 0, 0, 1]), item=np.array([0, 1, 3, 2]),
                               rating=np.array([0.8, 0.4, 1.0, 0.6], np.float32),
                               timestamp=np.arange(4), rating_max=1.0)


def model_on(data):
    model = NSVDModel(data.n_users, data.n_items, 2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.b_user.uniform_(-1, 1, generator=model.generator)
        model.b_item.uniform_(-1, 1, generator=model.generator)
    model.set_training_data(data)
    return model


def test_contract():
    check_backbone(NSVDBackbone, {"dim": 8})


def test_user_is_the_normalised_sum_of_its_items_factors():
    data = hand_made()
    model = model_on(data)
    q, y, b_user, b_item = (p.detach().numpy().copy() for p in model.parameters())
    x = np.stack([(y[0] + y[1] + y[3]) / np.sqrt(3), y[2] / np.sqrt(1), np.zeros(2)])
    assert np.allclose(model.user_factors().detach().numpy(), x, atol=1e-6)
    # r_ui = b_u + b_i + q_i^T x_u
    expected = b_user[:, None] + b_item[None, :] + x @ q.T
    assert np.allclose(model.score(np.arange(3)), expected, atol=1e-6)
    assert np.allclose(model.user_embeddings() @ model.item_embeddings().T, expected, atol=1e-6)


def test_no_free_user_factor_and_only_the_rated_set_counts():
    data = hand_made()
    model = model_on(data)
    assert [tuple(p.shape) for p in model.parameters()] == [(4, 2), (4, 2), (3,), (4,)]
    other = model_on(dataclasses.replace(data, rating=np.full(4, 0.2, np.float32)))
    with torch.no_grad():
        for mine, theirs in zip(other.parameters(), model.parameters()):
            mine.copy_(theirs)
    assert np.allclose(other.score(np.arange(3)), model.score(np.arange(3)))


def test_penalty_covers_factors_and_biases():
    data = hand_made()
    model = model_on(data)
    _, _, _, reg = model.batch_embeddings(torch.as_tensor(data.user), torch.as_tensor(data.item), None)
    norms = sum(p.pow(2).sum().item() for p in model.parameters())
    assert reg.item() == pytest.approx(norms / (2 * len(data)), rel=1e-6)
