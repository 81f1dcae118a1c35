"""Fake-profile helpers shared by attacks (recguard.kit.poison.profiles)."""

import dataclasses

import numpy as np
import pytest
import torch

from recguard.kit.poison.profiles import discrete_profiles, project_relaxed, snap_to_levels
from recguard.testing import tiny_interactions

TARGETS = np.array([37, 38])


def explicit01():
    """Tiny explicit data with ratings / 5 (APT's normalisation)."""
    data = tiny_interactions(n_users=60, n_items=40, per_user=12)
    return dataclasses.replace(data, rating=data.rating / 5.0, rating_max=1.0)


def test_projection_keeps_the_box_the_targets_and_the_filler_budget():
    x = torch.randn(5, 40) * 3
    out = project_relaxed(x.clone(), TARGETS, 1.0, filler_size=7)
    free = np.setdiff1d(np.arange(40), TARGETS)
    assert out.min() >= 0 and out.max() <= 1 and (out[:, TARGETS] == 1).all()
    assert torch.allclose(out[:, free].sum(1), torch.full((5,), 7.0), atol=1e-4)
    box = project_relaxed(x.clone(), TARGETS, 1.0)
    assert torch.equal(box[:, free], x[:, free].clamp(0, 1))
    # projection preserves the order of a row's entries (a shift, then a clip)
    row = x[0, free].numpy()
    assert np.all(np.diff(out[0, free].numpy()[np.argsort(row)]) >= -1e-6)


def test_fillers_are_the_top_optimised_items_with_snapped_ratings():
    data = explicit01()
    relaxed = np.zeros((2, 40), np.float32)
    relaxed[:, TARGETS] = 1.0
    relaxed[0, [3, 5, 9]] = [0.95, 0.55, 0.33]
    relaxed[1, [1, 2, 4]] = [0.75, 0.65, 0.1]
    out = discrete_profiles(data, relaxed, TARGETS, 3, np.random.default_rng(0))
    for fake, fillers, values in ((0, [3, 5, 9], [1.0, 0.6, 0.4]), (1, [1, 2, 4], [0.8, 0.6, 0.2])):
        rows = out.user == fake
        got = dict(zip(out.item[rows].tolist(), out.rating[rows].tolist()))
        assert set(got) == set(fillers) | set(TARGETS.tolist())
        assert all(got[t] == 1.0 for t in TARGETS)
        assert [got[i] for i in fillers] == pytest.approx(values)
    assert np.all(np.diff(out.timestamp) > 0) and out.timestamp.min() == data.timestamp.max() + 1
    assert snap_to_levels(np.array([-1.0, 0.29, 0.31, 2.0]), np.array([0.2, 0.4, 1.0])).tolist() == \
        pytest.approx([0.2, 0.2, 0.4, 1.0])


def test_snap_to_levels_clips_and_rounds_ties_up():
    got = snap_to_levels(np.array([-3.0, 1.49, 1.5, 2.6, 4.4, 9.0]), np.array([5.0, 1.0, 2.0, 3.0, 4.0]))
    assert got.tolist() == [1.0, 1.0, 2.0, 3.0, 4.0, 5.0] and got.dtype == np.float32
