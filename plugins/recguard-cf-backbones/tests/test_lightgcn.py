import dataclasses

import numpy as np
import pytest
import torch

from recguard import FitContext, FitHooks, build_config
from recguard.testing import check_backbone, check_learns_implicit, tiny_interactions
from recguard_cf_backbones.lightgcn import LightGCNBackbone, LightGCNConfig, normalised_adjacency


def test_contract():
    check_backbone(LightGCNBackbone)


def test_normalised_adjacency_by_hand():
    # user 0 - item 0, user 0 - item 1, user 1 - item 1 (a duplicate row is ignored)
    data = dataclasses.replace(tiny_interactions(n_users=2, n_items=2, per_user=1),
                               user=np.array([0, 0, 1, 1]), item=np.array([0, 1, 1, 1]),
                               rating=np.ones(4, np.float32), timestamp=np.arange(4))
    dense = normalised_adjacency(data, 2).to_dense().numpy()
    # nodes: u0, u1, i0, i1 with degrees 2, 1, 1, 2
    expected = np.zeros((4, 4))
    for u, i in [(0, 2), (0, 3), (1, 3)]:
        degree = {0: 2, 1: 1, 2: 1, 3: 2}
        expected[u, i] = expected[i, u] = 1 / np.sqrt(degree[u] * degree[i])
    assert np.allclose(dense, expected)


def test_final_embeddings_are_the_layer_mean():
    data = tiny_interactions(feedback="implicit")
    model = LightGCNBackbone(build_config(LightGCNConfig, {"epochs": "1", "layers": "2"}, "l")).fit(
        data, FitContext(seed=0))
    graph = model.graph.to_dense()
    e0 = torch.cat([model.user_emb, model.item_emb]).detach()
    e1 = graph @ e0
    e2 = graph @ e1
    users, items = model.propagate()
    assert torch.allclose(torch.cat([users, items]).detach(), (e0 + e1 + e2) / 3, atol=1e-5)
    assert model.score(np.arange(3)).shape == (3, data.n_items)


def test_fits_the_training_positives():
    check_learns_implicit(LightGCNBackbone, {"epochs": 60, "lr": 0.01})


def test_injected_users_rebuild_the_graph():
    data = tiny_interactions(feedback="implicit")

    class Inject(FitHooks):
        def on_epoch_start(self, epoch, model, train):
            if epoch != 1:
                return None
            extra = dataclasses.replace(train, user=np.array([train.n_users] * 3), item=np.array([0, 1, 2]),
                                        rating=np.ones(3, np.float32), timestamp=np.arange(3))
            grown = train.with_rows(extra)
            return dataclasses.replace(grown, n_users=train.n_users + 1, is_fake=np.append(train.is_fake, True))

    model = LightGCNBackbone(build_config(LightGCNConfig, {"epochs": "2"}, "l")).fit(
        data, FitContext(seed=0, hooks=Inject()))
    assert model.graph.shape[0] == data.n_users + 1 + data.n_items
    assert model.user_embeddings().shape[0] == data.n_users + 1


@pytest.mark.parametrize("defense", ["apr", "pamacf"])
def test_adversarial_defenses_run_on_lightgcn(defense):
    from recguard import DefenseContext
    from recguard import registered
    from recguard import PAMACF

    cls = registered("defense", defense)
    d = cls(build_config(cls.Config, {"adv_start": "0"}, defense))
    data = tiny_interactions(feedback="implicit")
    ctx = DefenseContext(0, PAMACF, LightGCNBackbone())
    backbone = LightGCNBackbone(build_config(LightGCNConfig, {"epochs": "2"}, "l"))
    model = backbone.fit(data, FitContext(seed=0, hooks=d.during_fit(data, ctx)))
    assert ctx.notes["adversarial_epochs"] == 2 and np.isfinite(model.score(np.arange(2))).all()
