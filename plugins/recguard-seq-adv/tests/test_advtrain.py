"""ADVTrain: the simplex ascent on a hand-made loss (direction, projection, the epsilon bound),
that on a real SASRec batch it raises the loss, the substitution switch, the contract
checks, and a small real cell."""

import math

import numpy as np
import pytest

from recguard import LOREC, FitContext, FitHooks, build_config, registered
from recguard.testing import (check_combination, check_config, check_defense, eval_record,
                              tiny_interactions)
from recguard_seq_adv.advtrain import AdvTrainConfig, AdvTrainDefense, AdvTrainHooks, simplex_ascent

torch = pytest.importorskip("torch")


def sasrec(**options):
    cls = registered("backbone", "sasrec")
    return cls(build_config(cls.Config, {k: str(v) for k, v in options.items()}, "sasrec"))


def test_contract():
    check_config(AdvTrainDefense)
    check_defense(AdvTrainDefense, registered("backbone", "sasrec"))
    check_defense(AdvTrainDefense, registered("backbone", "cl4srec"))
    for backbone in ("sasrec", "gru4rec", "fmlprec", "cl4srec"):
        check_combination(registered("backbone", backbone), registered("attack", "random"),
                          AdvTrainDefense, LOREC)
    assert AdvTrainDefense.Config().step == 1.0 and AdvTrainDefense.Config().iterations == 3
    assert AdvTrainDefense.Config().ratio == 0.5


def test_cf_backbones_are_refused():
    with pytest.raises(Exception, match="advtrain"):
        check_combination(registered("backbone", "mf"), registered("attack", "random"),
                          AdvTrainDefense, registered("protocol", "apt"))


def hand_made():
    """One sequence of 3 positions over 4 items: items 0, 2 and a padding slot; the loss is
    linear, L(x) = sum_t x_t . c_t, so its gradient on every position is c_t."""
    x0 = torch.zeros(1, 3, 4)
    x0[0, 0, 0] = 1.0
    x0[0, 1, 2] = 1.0
    real = torch.tensor([[True, True, False]])
    c = torch.tensor([[[0.0, 3.0, 0.0, 0.0], [1.0, 0.0, -1.0, 0.0], [5.0, 5.0, 5.0, 5.0]]])
    return x0, real, c, (lambda x: (x * c).sum())


def test_one_step_moves_along_the_normalised_gradient_then_back_onto_the_simplex():
    x0, real, c, loss = hand_made()
    x1 = simplex_ascent(loss, x0, real, step=1.0, iterations=1)
    # position 0: e_0 + (0, 1, 0, 0) -> clamp -> (1, 1, 0, 0) / 2
    assert torch.allclose(x1[0, 0], torch.tensor([0.5, 0.5, 0.0, 0.0]))
    # position 1: e_2 + (1, 0, -1, 0)/sqrt(2) -> (0.707, 0, 0.293, 0), sums to 1 already
    s = 1 / math.sqrt(2)
    assert torch.allclose(x1[0, 1], torch.tensor([s, 0.0, 1 - s, 0.0]), atol=1e-6)
    assert (x1[0, 2] == 0).all()                                    # padding stays empty
    assert loss(x1) > loss(x0)                                      # the ascent raises the loss
    on_simplex = x1[real]
    assert (on_simplex >= 0).all() and torch.allclose(on_simplex.sum(-1), torch.ones(2))


def test_more_steps_keep_raising_it_and_epsilon_bounds_the_move():
    x0, real, c, loss = hand_made()
    values = [loss(simplex_ascent(loss, x0, real, step=0.3, iterations=k)).item() for k in (1, 2, 3)]
    assert values[0] > loss(x0).item() and values == sorted(values)
    for eps in (0.05, 0.2):
        x = simplex_ascent(loss, x0, real, step=1.0, iterations=3, epsilon=eps)
        moved = (x - x0)[real].norm(dim=-1)
        assert (moved <= eps + 1e-6).all() and (moved > eps - 1e-6).all()   # on the ball's edge
        assert loss(x) > loss(x0)
        assert (x[real] >= 0).all() and torch.allclose(x[real].sum(-1), torch.ones(2))
    small, large = (loss(simplex_ascent(loss, x0, real, 1.0, 3, epsilon=e)).item() for e in (0.05, 0.2))
    assert loss(x0).item() < small < large


def capture_batch(**options):
    """A trained tiny SASRec and one batch of its last epoch (the dict extra_loss receives)."""
    data = tiny_interactions(feedback="implicit")
    seen = {}

    class Capture(FitHooks):
        def extra_loss(self, epoch, model, batch):
            seen["batch"] = batch
            return None

    model = sasrec(epochs=3, dim=16, **options).fit(data, FitContext(seed=0, hooks=Capture()))
    return model, seen["batch"]


def test_on_a_real_batch_the_perturbation_raises_the_training_loss():
    model, batch = capture_batch()
    n = model.n_items
    table = batch["item_vectors"](torch.arange(n)).detach()
    items, real = batch["items"], batch["mask"]
    x0 = torch.nn.functional.one_hot(items.clamp(max=n - 1), n).float() * real.unsqueeze(-1)
    clean = batch["loss_at"](x0 @ table, dropout=False)
    # the one-hot inputs give exactly the model's own embeddings, hence its own loss
    with torch.no_grad():
        assert torch.allclose(x0 @ table, batch["item_vectors"](items), atol=1e-6)
    loss = lambda x: batch["loss_at"](x @ table, dropout=False)     # noqa: E731
    xk = simplex_ascent(loss, x0, real, step=1.0, iterations=3)
    assert loss(xk).item() > clean.item() + 1e-3
    assert torch.allclose(xk[real].sum(-1), torch.ones(int(real.sum())), atol=1e-5)
    assert (xk[~real] == 0).all()
    x_eps = simplex_ascent(loss, x0, real, step=1.0, iterations=3, epsilon=0.1)
    assert ((x_eps - x0)[real].norm(dim=-1) <= 0.1 + 1e-5).all()
    assert clean.item() < loss(x_eps).item() < loss(xk).item()


def test_no_substitution_gives_the_clean_loss_and_full_substitution_more():
    model, batch = capture_batch(dropout=0.0)
    clean = batch["loss_at"](batch["item_vectors"](batch["items"]).detach(), dropout=False).item()
    none = AdvTrainHooks(build_config(AdvTrainConfig, {"ratio": "0"}, "advtrain"), seed=0)
    assert none.extra_loss(0, model, batch).item() == pytest.approx(clean, rel=1e-5)
    notes = {}
    every = AdvTrainHooks(build_config(AdvTrainConfig, {"ratio": "1", "adv_weight": "2"}, "advtrain"),
                          seed=0, notes=notes)
    assert every.extra_loss(0, model, batch).item() > 2 * clean
    every.on_epoch_end(0, model)
    assert notes["advtrain_mean_loss_gain"] > 0
    late = AdvTrainHooks(build_config(AdvTrainConfig, {"adv_start": "5"}, "advtrain"), seed=0)
    assert late.extra_loss(4, model, batch) is None


def test_the_adversarial_term_trains_the_item_table():
    model, batch = capture_batch()
    hooks = AdvTrainHooks(AdvTrainConfig(), seed=0)
    model.modules.zero_grad()
    hooks.extra_loss(0, model, batch).backward()
    assert model.items.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.net.blocks.parameters())


@pytest.mark.integration
def test_advtrain_cell_on_ml100k_under_lorec(tmp_path):
    record = eval_record(tmp_path, "--backbone", "sasrec", "--attack", "random", "--defense",
                         "advtrain", "--protocol", "lorec", "--seeds", "0",
                         "--backbone-opt", "epochs=1")
    assert record["conditions"] == ["clean", "attacked", "clean+defense", "attacked+defense"]
    assert record["metrics"]["attacked+defense"]["HR@10"]["mean"] > 0.01
    gains = [n["advtrain_mean_loss_gain"] for n in record["notes"]["attacked+defense"]]
    assert all(g > 0 for g in gains)
