import dataclasses

import numpy as np

from recguard import FitContext, FitHooks, build_config
from recguard.testing import check_backbone, check_learns_implicit, tiny_interactions
from recguard_mf.backbone import MFBackbone, MFConfig


def explicit():
    data = tiny_interactions(n_users=40, n_items=30, per_user=10)
    return dataclasses.replace(data, rating=data.rating / 5.0, rating_max=1.0)


def fit(data, hooks=None, **options):
    backbone = MFBackbone(build_config(MFConfig, options, "mf"))
    return backbone.fit(data, FitContext(seed=0, hooks=hooks or FitHooks()))


def test_contract():
    check_backbone(MFBackbone)


def test_explicit_fits_the_observed_ratings():
    data = explicit()
    model = fit(data)
    predicted = model.score(np.arange(data.n_users))[data.user, data.item]
    rmse = np.sqrt(np.mean((predicted - data.rating) ** 2))
    assert rmse < 0.5 * data.rating.std()


def test_implicit_ranks_training_positives_first():
    check_learns_implicit(MFBackbone, {"epochs": 60, "lr": 0.01})


def test_same_seed_same_model():
    data = explicit()
    assert np.array_equal(fit(data, epochs=3).score(np.arange(5)), fit(data, epochs=3).score(np.arange(5)))


def test_user_weights_zero_freezes_a_user():
    data = explicit()

    class ZeroFirst(FitHooks):
        def user_weights(self, epoch, model, train):
            w = np.ones(train.n_users, dtype=np.float32)
            w[0] = 0.0
            return w

    untrained = fit(data, epochs=1, lr=1e-9).user_embeddings()[0]
    trained = fit(data, ZeroFirst(), epochs=5).user_embeddings()
    assert np.allclose(trained[0], untrained, atol=1e-5)
    assert not np.allclose(trained[1], fit(data, epochs=1, lr=1e-9).user_embeddings()[1], atol=1e-3)


def test_hooks_inject_users_add_loss_and_see_every_epoch():
    data = explicit()
    seen = {"start": [], "end": [], "extra": 0}

    class Inject(FitHooks):
        def on_epoch_start(self, epoch, model, train):
            seen["start"].append(epoch)
            if epoch == 1:  # one extra user who rated item 0
                extra = dataclasses.replace(train, user=np.array([train.n_users]), item=np.array([0]),
                                            rating=np.array([1.0], dtype=np.float32),
                                            timestamp=np.array([0]))
                grown = train.with_rows(extra)
                return dataclasses.replace(grown, n_users=train.n_users + 1,
                                           is_fake=np.append(train.is_fake, True))
            return None

        def extra_loss(self, epoch, model, batch):
            seen["extra"] += 1
            return None

        def on_epoch_end(self, epoch, model):
            seen["end"].append(epoch)

    model = fit(data, Inject(), epochs=3)
    assert seen["start"] == [0, 1, 2] and seen["end"] == [0, 1, 2] and seen["extra"] >= 3
    assert model.user_embeddings().shape[0] == data.n_users + 1
