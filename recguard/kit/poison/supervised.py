"""Supervised fake users for detectors that learn from a known attack: a registered attack
injects them, numbered after the observed users, on targets of their own (the defender does
not know the real ones). LLM4Dec and LoRec call them U_atk; GraphRfi trains its forest on them.
"""

from __future__ import annotations

import numpy as np

from recguard import AttackContext, Interactions, RecguardError


def with_supervised_fakes(train: Interactions, attack: str, fraction: float, n_targets: int,
                          rng: np.random.Generator, protocol, *, filler_size: int,
                          owner: str) -> Interactions:
    """``train`` plus round(``fraction`` x users) fake users (at least one) made by the
    registered ``attack`` on ``n_targets`` items drawn from ``rng``, with ``filler_size``
    fillers each. ``owner`` names who asked, for the error when the attack is not installed."""
    from recguard import inject, registered

    try:
        made_by = registered("attack", attack)()
    except RecguardError:
        raise RecguardError(f"{owner} are made by attack {attack!r}, which is not installed") from None
    n_fake = max(1, int(round(fraction * train.n_users)))
    targets = rng.choice(train.n_items, size=min(n_targets, train.n_items), replace=False)
    ctx = AttackContext(targets=targets, n_fake=n_fake, filler_size=max(1, filler_size), rng=rng,
                        protocol=protocol)
    return inject(train, made_by.poison(train, ctx))


def mean_profile_size(train: Interactions) -> int:
    """The genuine users' mean number of interactions, rounded."""
    return int(round(len(train) / max(train.n_users, 1)))
