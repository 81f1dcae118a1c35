"""CL4SRec: the three augmentations (Eq. 3-5) and the InfoNCE loss (Eq. 6) on hand-made
cases, that the contrastive term is really trained, its reuse of SASRec, and the defenses
that wrap SASRec (LLM4Dec, LoRec) accepting it."""

import math

import numpy as np
import pytest

from recguard import LOREC, FitContext, FitHooks, build_config, registered
from recguard.testing import cell_record, check_backbone, check_combination, tiny_interactions
from recguard_sequential.cl4srec import MASK, CL4SRecBackbone, augment, info_nce, two_views
from recguard_sequential.sasrec import SASRecBackbone

torch = pytest.importorskip("torch")

PAD = 99
WINDOW = np.array([PAD, PAD, PAD, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19])   # n = 10 real items


def config(**options):
    return build_config(CL4SRecBackbone.Config, {k: str(v) for k, v in options.items()}, "cl4srec")


def real(view):
    return view[view != PAD]


def test_contract_and_declarations():
    check_backbone(CL4SRecBackbone)
    assert CL4SRecBackbone.Config().augmentations == ("crop",)   # LoRec sec. 6.1.3
    assert CL4SRecBackbone.offers == SASRecBackbone.offers
    assert CL4SRecBackbone.encode is SASRecBackbone.encode     # the SASRec encoder, not a copy


def test_crop_keeps_a_contiguous_floor_eta_n_span_left_padded():
    cfg = config(crop_ratio=0.6)
    for seed in range(20):
        view = augment(WINDOW, "crop", cfg, PAD, np.random.default_rng(seed))
        kept = real(view)
        assert len(view) == len(WINDOW) and len(kept) == 6          # floor(0.6 * 10)
        assert (view[:len(view) - 6] == PAD).all()                  # left-padded
        assert np.array_equal(kept, np.arange(kept[0], kept[0] + 6))  # contiguous, in order
    tiny = np.array([PAD, 7])                                       # n = 1: at least one item
    assert real(augment(tiny, "crop", cfg, PAD, np.random.default_rng(0))).tolist() == [7]


def test_mask_replaces_floor_gamma_n_items_and_keeps_the_rest():
    cfg = config(mask_ratio=0.3, augmentations="mask")
    view = augment(WINDOW, "mask", cfg, PAD, np.random.default_rng(0))
    assert (view == MASK).sum() == 3                                 # floor(0.3 * 10)
    untouched = view != MASK
    assert np.array_equal(view[untouched], WINDOW[untouched])


def test_reorder_shuffles_one_contiguous_span_of_floor_beta_n():
    cfg = config(reorder_ratio=0.6)
    moved = set()
    for seed in range(20):
        view = augment(WINDOW, "reorder", cfg, PAD, np.random.default_rng(seed))
        assert sorted(real(view)) == list(range(10, 20))             # the same items
        changed = np.flatnonzero(view != WINDOW)
        if len(changed):
            assert changed[-1] - changed[0] < 6                      # inside one span of 6
            moved.add(int(changed[0]))
    assert moved                                                     # and it does shuffle


def test_two_views_draw_from_the_enabled_operators_only():
    windows = np.stack([WINDOW] * 50)
    first, second = two_views(windows, config(augmentations="crop"), PAD, np.random.default_rng(0))
    assert ((first != PAD).sum(1) == 6).all() and ((second != PAD).sum(1) == 6).all()
    assert not (first == MASK).any()
    both = config(augmentations="mask,reorder")
    first, second = two_views(windows, both, PAD, np.random.default_rng(0))
    masked = (first == MASK).any(1)
    assert masked.any() and (~masked).any()                          # both operators are drawn
    assert ((first != PAD).sum(1) == 10).all()                       # neither crops


def test_info_nce_by_hand_positives_are_the_two_views_of_a_sequence():
    # two sequences; their views agree with each other and are orthogonal to the other's
    first = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    second = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # anchor first[0]: positive second[0] (sim 1), negatives first[1], second[1] (sim 0 each);
    # the anchor itself is excluded. Same for every anchor by symmetry.
    expected = -math.log(math.e / (math.e + 1 + 1))
    assert info_nce(first, second).item() == pytest.approx(expected, rel=1e-6)
    # pairing each view with the other sequence's makes every positive a stranger: higher loss
    # (anchor first[0]: positive second[1] at sim 0, a negative at sim 1): log(2 + e) = expected + 1
    assert info_nce(first, second.flip(0)).item() == pytest.approx(math.log(2 + math.e), rel=1e-6)
    # temperature divides the inner product
    assert info_nce(first, second, temperature=0.5).item() == pytest.approx(
        -math.log(math.e ** 2 / (math.e ** 2 + 2)), rel=1e-6)
    # a weight per sequence weights its two anchor terms; all-equal weights: the plain mean
    w = torch.tensor([2.0, 2.0])
    assert info_nce(first, second, weights=w).item() == pytest.approx(expected, rel=1e-6)


def test_info_nce_gradient_pulls_the_views_together():
    first = torch.tensor([[1.0, 0.2], [0.1, 1.0], [-1.0, 0.3]], requires_grad=True)
    second = torch.tensor([[0.5, 0.5], [0.5, 0.4], [-0.2, 0.9]])
    info_nce(first, second).backward()
    step = first.detach() - 0.1 * first.grad
    agree = lambda a: (a * second).sum(1)                           # noqa: E731
    assert (agree(step) > agree(first.detach())).all()


def test_the_contrastive_term_is_added_and_trains_the_encoder():
    data = tiny_interactions(feedback="implicit")
    seen = []

    class Watch(FitHooks):
        def extra_loss(self, epoch, model, batch):
            seen.append(batch)
            return None

    backbone = CL4SRecBackbone(config(epochs=1, dim=16, augmentations="crop,mask,reorder"))
    aux = backbone.auxiliary(data, FitContext(seed=0))
    model = backbone.fit(data, FitContext(seed=0, hooks=Watch()))
    model.modules.train()
    loss = aux(0, model, seen[0])
    assert loss.ndim == 0 and loss.item() > 0
    loss.backward()
    assert model.net.mask_token.grad is not None and model.net.position.weight.grad.abs().sum() > 0
    assert backbone.auxiliary.__func__ is not SASRecBackbone.auxiliary
    assert SASRecBackbone(build_config(SASRecBackbone.Config, {}, "sasrec")).auxiliary(
        data, FitContext(seed=0)) is None


def test_lambda_zero_is_sasrec():
    data = tiny_interactions(feedback="implicit")
    cl = CL4SRecBackbone(config(epochs=2, dim=16, cl_weight=0)).fit(data, FitContext(seed=0))
    sas = SASRecBackbone(build_config(SASRecBackbone.Config, {"epochs": "2", "dim": "16"}, "sasrec"))
    users = np.arange(data.n_users)
    np.testing.assert_array_equal(cl.score(users), sas.fit(data, FitContext(seed=0)).score(users))
    with_cl = CL4SRecBackbone(config(epochs=2, dim=16)).fit(data, FitContext(seed=0))
    assert not np.array_equal(with_cl.score(users), cl.score(users))


def test_an_empty_augmentation_set_is_refused():
    from recguard import RecguardError

    with pytest.raises((ValueError, RecguardError)):
        build_config(CL4SRecBackbone.Config, {"augmentations": ""}, "cl4srec")


@pytest.mark.parametrize("defense", ["llm4dec", "lorec"])
def test_the_defenses_that_wrap_sasrec_wrap_cl4srec(defense):
    check_combination(CL4SRecBackbone, registered("attack", "random"), registered("defense", defense),
                      LOREC)


@pytest.mark.integration
def test_cl4srec_cell_on_ml100k_under_lorec():
    record = cell_record(backbone="cl4srec", attack="random", protocol="lorec", seeds=(0,),
                         backbone_options={"epochs": "2"})
    assert record["conditions"] == ["clean", "attacked"]
    assert record["metrics"]["clean"]["HR@10"]["mean"] > 0.02   # random ranking: 0.006
