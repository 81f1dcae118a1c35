"""Tests of the TNA attack (work in progress: contract and determinism only so far)."""

import numpy as np

from recguard.components import AttackContext
from recguard.config import build_config
from recguard.protocols import APT
from recguard.testing import check_attack, tiny_interactions
from recguard_tna.attack import TNAAttack

FAST = {"surrogate_epochs": "3", "surrogate_dim": "8", "steps": "5"}


def test_host_contract():
    check_attack(TNAAttack, FAST)
    assert TNAAttack.knowledge == "black-box" and TNAAttack.feedback == frozenset({"explicit"})


def test_influence_scores_exist_for_users_and_s_is_the_top_share():
    data = tiny_interactions()
    attack = TNAAttack(build_config(TNAAttack.Config, {**FAST, "wmw_width": "0.1"}, "tna"))
    ctx = AttackContext(targets=np.array([37, 38]), n_fake=2, filler_size=5,
                        rng=np.random.default_rng(0), protocol=APT)
    attack.poison(data, ctx)
    assert attack.influence.shape == (data.n_users,) and np.isfinite(attack.influence).all()
    assert len(attack.influential) == 3     # 10% of 30 users
    top = np.abs(attack.influence[attack.influential]).min()
    assert (np.abs(attack.influence) > top).sum() <= 3
