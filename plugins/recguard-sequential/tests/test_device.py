"""Device selection of the sequential backbones: ``device=auto`` is the CPU without CUDA and
gives the very model ``device=cpu`` gives; a GPU asked for without CUDA is a one-line error."""

import numpy as np
import pytest

from recguard import FitContext, RecguardError, build_config
from recguard.testing import tiny_interactions
from recguard_sequential import BACKBONES
from recguard_sequential.sasrec import SASRecBackbone

torch = pytest.importorskip("torch")


def fit(cls, data, **options):
    backbone = cls(build_config(cls.Config, {k: str(v) for k, v in options.items()}, cls.name))
    return backbone.fit(data, FitContext(seed=0))


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize("cls", BACKBONES, ids=lambda c: c.name)
def test_auto_without_cuda_is_the_cpu_and_the_same_model(cls, no_cuda):
    assert cls.Config().device == "auto"
    data = tiny_interactions(feedback="implicit")
    auto = fit(cls, data, epochs=2, dim=8)
    on_cpu = fit(cls, data, epochs=2, dim=8, device="cpu")
    assert auto.device.type == on_cpu.device.type == "cpu"
    users = np.arange(data.n_users)
    np.testing.assert_array_equal(auto.score(users), on_cpu.score(users))
    np.testing.assert_array_equal(auto.item_embeddings(), on_cpu.item_embeddings())


def test_cuda_without_cuda_is_a_one_line_error(no_cuda):
    data = tiny_interactions(feedback="implicit")
    with pytest.raises(RecguardError, match="cuda:1") as raised:
        fit(SASRecBackbone, data, epochs=1, device="cuda:1")
    assert "\n" not in str(raised.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("cls", BACKBONES, ids=lambda c: c.name)
def test_cuda_trains_on_the_gpu_and_answers_in_numpy(cls):
    data = tiny_interactions(feedback="implicit")
    options = dict(epochs=2, dim=8, dropout=0.0)   # no dropout: the two devices draw alike
    model = fit(cls, data, device="cuda", **options)
    assert model.device.type == "cuda" and all(p.is_cuda for p in model.parameters())
    users = np.arange(data.n_users)
    scores = model.score(users)
    assert isinstance(scores, np.ndarray) and scores.shape == (data.n_users, data.n_items)
    k, mask = model.composite_embeddings(model.windows(data)[:3])
    assert k.is_cuda and mask.is_cuda
    # same initial weights and batches: close to the CPU's model, up to rounding
    np.testing.assert_allclose(scores, fit(cls, data, device="cpu", **options).score(users),
                               rtol=1e-3, atol=1e-3)
