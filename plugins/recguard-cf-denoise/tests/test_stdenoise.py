import numpy as np
import pytest

from recguard import PAMACF, DefenseContext, FitContext, Interactions, build_config
from recguard.kit.cf.graph import normalised_adjacency
from recguard.kit.cf.loop import run_epochs
from recguard.testing import cell_record, check_defense, tiny_interactions
from recguard_cf_backbones.lightgcn import LightGCNBackbone
from recguard_mf.backbone import MFBackbone
from recguard_cf_denoise.stdenoise import (StDenoiseDefense, StDenoiseHooks, denoised_weights,
                                           reliabilities)


def graph(users, items, n_users, n_items):
    n = len(users)
    return Interactions(user=np.array(users), item=np.array(items), rating=np.ones(n, np.float32),
                        timestamp=np.arange(n), n_users=n_users, n_items=n_items,
                        user_ids=np.arange(n_users).astype(str), item_ids=np.arange(n_items).astype(str),
                        feedback="implicit")


# user 0 = (1, 0); items 0..2 at cos 1, 0 and -1 from it; user 1 = (0, 1)
USERS = np.array([[1.0, 0.0], [0.0, 2.0]])
ITEMS = np.array([[3.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
DATA = graph([0, 0, 0, 1, 1], [0, 1, 2, 1, 2], 2, 3)


def test_reliability_is_the_rescaled_cosine():
    s = reliabilities(USERS, ITEMS, DATA.user, DATA.item)
    assert s == pytest.approx([1.0, 0.5, 0.0, 1.0, 0.5])


def test_denoising_rule_on_a_hand_made_graph():
    s = reliabilities(USERS, ITEMS, DATA.user, DATA.item)
    # hard: (0, 2) at s = 0 < β = 0.02 leaves; soft: the kept pairs of a user by |N'(u)| s / Σ s
    assert denoised_weights(DATA.user, s, 2, 0.02, soft=False) == pytest.approx([1, 1, 0, 1, 1])
    assert denoised_weights(DATA.user, s, 2, 0.02, soft=True) == pytest.approx(
        [2 * 1 / 1.5, 2 * 0.5 / 1.5, 0, 2 * 1 / 1.5, 2 * 0.5 / 1.5])
    # β = 0: nothing is pruned, user 0's three pairs share 1.5
    assert denoised_weights(DATA.user, s, 2, 0.0, soft=True) == pytest.approx(
        [3 * 1 / 1.5, 3 * 0.5 / 1.5, 0, 2 * 1 / 1.5, 2 * 0.5 / 1.5])


def test_graph_backbones_get_the_row_normalised_pruned_reliabilities():
    class GraphModel:
        def user_embeddings(self):
            return USERS

        def item_embeddings(self):
            return ITEMS

        def set_edge_weights(self, train, weight, norm):
            self.graph = normalised_adjacency(train, 2, edge_weight=weight, norm=norm)

    model = GraphModel()
    ctx = DefenseContext(0, PAMACF, None)
    hooks = StDenoiseDefense().during_fit(DATA, ctx)
    assert hooks.on_epoch_start(0, model, DATA) is None
    dense = model.graph.to_dense().numpy()
    # D^-1 S over users then items (2 + 3 nodes); the pruned edge (0, item 2) is gone
    expected = np.zeros((5, 5))
    expected[0, 2], expected[0, 3] = 1 / 1.5, 0.5 / 1.5          # user 0: items 0 and 1
    expected[1, 3], expected[1, 4] = 1 / 1.5, 0.5 / 1.5          # user 1: items 1 and 2
    expected[2, 0] = 1.0                                          # item 0: user 0
    expected[3, 0], expected[3, 1] = 0.5 / 1.5, 1 / 1.5           # item 1: users 0, 1
    expected[4, 1] = 1.0                                          # item 2: user 1 only
    assert dense == pytest.approx(expected)
    assert hooks.row_weight is None and ctx.notes["denoised"] == "graph"
    assert ctx.notes["pruned_share"] == [0.2]


def test_row_weights_turn_the_batch_loss_into_the_denoised_loss():
    class MFLike:
        def user_embeddings(self):
            return USERS

        def item_embeddings(self):
            return ITEMS

        def ensure_users(self, n):
            return None

    hooks = StDenoiseHooks(StDenoiseDefense.Config(), DefenseContext(0, PAMACF, None))
    seen = []
    run_epochs(MFLike(), DATA, 1, FitContext(seed=0, hooks=hooks),
               lambda epoch, state: seen.append(state.row_weight) or 0.0)
    expected = denoised_weights(DATA.user, reliabilities(USERS, ITEMS, DATA.user, DATA.item),
                                DATA.n_users, 0.02, True)
    assert seen[0] == pytest.approx(expected)
    assert seen[0][2] == 0.0                       # the pruned pair: no loss, no gradient
    # the backbone's mean(l * w) is |N'(u)|-scaled D^-1 S: the kept rows of a user average to 1
    kept = seen[0] > 0
    for user in np.unique(DATA.user):
        rows = (DATA.user == user) & kept
        assert seen[0][rows].mean() == pytest.approx(1.0)


def test_no_denoising_before_start_epoch():
    config = build_config(StDenoiseDefense.Config, {"start_epoch": "2"}, "stdenoise")
    hooks = StDenoiseDefense(config).during_fit(DATA, DefenseContext(0, PAMACF, None))
    assert hooks.on_epoch_start(1, None, DATA) is None and hooks.row_weight is None


@pytest.mark.parametrize("backbone", [MFBackbone, LightGCNBackbone])
def test_contract(backbone):
    check_defense(StDenoiseDefense, backbone)


def test_denoising_changes_the_model():
    data = tiny_interactions(feedback="implicit")
    plain = MFBackbone().fit(data, FitContext(seed=0))
    config = build_config(StDenoiseDefense.Config, {"prune_threshold": "0.45"}, "stdenoise")
    ctx = DefenseContext(0, PAMACF, MFBackbone())
    denoised = MFBackbone().fit(data, FitContext(seed=0, hooks=StDenoiseDefense(config).during_fit(data, ctx)))
    assert not np.allclose(plain.score(np.arange(3)), denoised.score(np.arange(3)))
    assert len(ctx.notes["pruned_share"]) == 30 and max(ctx.notes["pruned_share"]) > 0


@pytest.mark.integration
def test_small_cell_with_stdenoise():
    record = cell_record(defense="stdenoise", attack="random", seeds=(0,), backbone_options={"epochs": "3"})
    assert record["spec"]["protocol"]["name"] == "pamacf"
    assert record["conditions"] == ["clean", "attacked", "clean+defense", "attacked+defense"]
    assert len(record["notes"]["attacked+defense"][0]["pruned_share"]) == 3
    assert record["metrics"]["clean+defense"]["Recall@20"]["mean"] > 0.02
