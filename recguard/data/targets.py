"""Target items: unpopular, random or popular, drawn by seed."""

from __future__ import annotations

import numpy as np

from recguard.errors import RecguardError

POPULAR_SHARE = 0.1  # "popular" targets come from the top 10% of items by interactions


def select_targets(counts: np.ndarray, rule: str, n: int, rng: np.random.Generator,
                   unpopular_below: int) -> np.ndarray:
    """``n`` distinct item indices drawn without replacement from the rule's candidates.

    unpopular: items with 1 <= interactions < ``unpopular_below`` (APT: "items with
    the number of rates less than 5"); random: any item with an interaction;
    popular: the top 10% of items by interactions.
    """
    present = np.flatnonzero(counts > 0)
    if rule == "unpopular":
        candidates = present[counts[present] < unpopular_below]
        hint = f"raise unpopular_below (now {unpopular_below}) or use target_rule=random"
    elif rule == "random":
        candidates, hint = present, "lower n_targets"
    elif rule == "popular":
        top = max(n, int(np.ceil(len(present) * POPULAR_SHARE)))
        candidates = present[np.argsort(-counts[present], kind="stable")[:top]]
        hint = "lower n_targets"
    else:
        raise RecguardError(f"unknown target rule {rule!r}; available: popular, random, unpopular")
    if len(candidates) < n:
        raise RecguardError(f"only {len(candidates)} items qualify as {rule} targets but "
                            f"n_targets is {n}: {hint}")
    return np.sort(rng.choice(candidates, size=n, replace=False))
