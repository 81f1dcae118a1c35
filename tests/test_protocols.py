import numpy as np
import pytest

from recguard.data.prepare import k_core, prepare, preprocess
from recguard.data.splits import chrono_ratio, leave_one_out, random_holdout
from recguard.data.targets import select_targets
from recguard.errors import RecguardError
from recguard.protocols import APT, LOREC, PAMACF, parse_metric, resolve
from recguard.testing import tiny_interactions


def test_presets_follow_their_papers():
    assert (APT.feedback, APT.split, APT.budget, APT.normalise_ratings) == ("explicit", "random_holdout", 0.03, True)
    assert "HR@50" in APT.metrics and APT.unpopular_below == 5
    assert (PAMACF.feedback, PAMACF.split, tuple(PAMACF.split_ratios), PAMACF.budget) == \
        ("implicit", "chrono_ratio", (0.7, 0.1, 0.2), 0.01)
    assert PAMACF.metrics[0] == "Recall@20" and PAMACF.min_item_interactions == 10
    assert (LOREC.split, LOREC.budget) == ("leave_one_out", 0.01) and "RC-HR@10" in LOREC.metrics


def test_resolve_overrides_and_refuses_bad_values():
    p = resolve(APT, {"budget": "0.05", "metrics": "HR@10,T-HR@20"})
    assert p.budget == 0.05 and p.metrics == ("HR@10", "T-HR@20") and p.name == "apt"
    for bad, fragment in [({"budget": "1.5"}, "outside (0, 1)"), ({"budget": "0"}, "outside (0, 1)"),
                          ({"metrics": "HR@0"}, "k must be a positive integer"),
                          ({"metrics": "HR"}, "not of the form NAME@k"),
                          ({"splt": "x"}, "did you mean 'split'"),
                          ({"split": "chrono_ratio", "split_ratios": "0.5,0.5,0.5"}, "summing to 1")]:
        with pytest.raises(RecguardError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
            resolve(APT, bad)


def test_parse_metric():
    assert parse_metric("T-HR@50") == ("T-HR", 50)
    with pytest.raises(RecguardError):
        parse_metric("HR@-1")


def _rows(part):
    return set(zip(part.user.tolist(), part.item.tolist()))


def test_leave_one_out_holds_out_the_last_two():
    data = tiny_interactions()
    split = leave_one_out(data)
    for u in range(data.n_users):
        rows = np.flatnonzero(data.user == u)
        last = rows[np.argsort(data.timestamp[rows])]
        assert split.test.item[split.test.user == u].tolist() == [data.item[last[-1]]]
        assert split.valid.item[split.valid.user == u].tolist() == [data.item[last[-2]]]
    assert len(split.train) + len(split.valid) + len(split.test) == len(data)


def test_chrono_ratio_is_chronological_per_user():
    data = tiny_interactions(per_user=10)
    split = chrono_ratio(data, (0.7, 0.1, 0.2))
    assert len(split.train) == 7 * data.n_users and len(split.test) == 2 * data.n_users
    for u in range(data.n_users):
        assert split.train.timestamp[split.train.user == u].max() < split.valid.timestamp[split.valid.user == u].min()
        assert split.valid.timestamp[split.valid.user == u].max() < split.test.timestamp[split.test.user == u].min()


def test_random_holdout_one_positive_test_item_per_user_and_seeded():
    data = tiny_interactions(per_user=10)
    a = random_holdout(data, np.random.default_rng(1), 4.0, 0.1)
    b = random_holdout(data, np.random.default_rng(1), 4.0, 0.1)
    c = random_holdout(data, np.random.default_rng(2), 4.0, 0.1)
    assert np.bincount(a.test.user, minlength=data.n_users).tolist() == [1] * data.n_users
    has_positive = np.bincount(data.user[data.rating >= 4], minlength=data.n_users) > 0
    assert (a.test.rating[has_positive[a.test.user]] >= 4).all()
    assert np.bincount(a.valid.user, minlength=data.n_users).tolist() == [0] * data.n_users  # floor(9*0.1)=0
    assert _rows(a.test) == _rows(b.test) and _rows(a.test) != _rows(c.test)
    assert not (_rows(a.train) & _rows(a.test))


def test_k_core_filters_iteratively_and_renumbers():
    data = tiny_interactions(n_users=20, n_items=40, per_user=6)
    core = k_core(data, 4, 3)
    assert core.user_counts().min() >= 4 and core.item_counts().min() >= 3
    assert core.n_items == len(np.unique(core.item)) and core.n_items < data.n_items


def test_targets_by_rule_and_errors():
    counts = np.array([1, 2, 3, 10, 20, 30, 4, 0])
    rng = np.random.default_rng(0)
    assert set(select_targets(counts, "unpopular", 3, rng, 5)) <= {0, 1, 2, 6}
    assert 7 not in select_targets(counts, "random", 7, rng, 5)
    with pytest.raises(RecguardError, match="only 4 items qualify as unpopular"):
        select_targets(counts, "unpopular", 5, rng, 5)


def test_prepare_is_a_function_of_the_seed():
    protocol = resolve(APT, {"target_rule": "random"})
    data = preprocess(tiny_interactions(n_users=40, per_user=10), protocol)
    a, b = prepare(data, protocol, 3), prepare(data, protocol, 3)
    assert np.array_equal(a.targets, b.targets) and _rows(a.split.test) == _rows(b.split.test)
    assert a.split.train.rating.max() == 1.0  # APT normalises ratings to [0, 1]


def test_implicit_protocol_refuses_nothing_but_explicit_needs_ratings():
    implicit = tiny_interactions(feedback="implicit")
    with pytest.raises(RecguardError, match="evaluates explicit ratings"):
        preprocess(implicit, APT)
    assert preprocess(implicit, resolve(PAMACF, {"min_item_interactions": "0", "min_user_interactions": "0"})).feedback == "implicit"
