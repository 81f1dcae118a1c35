"""Backdoor triggers in item titles: where a trigger word or sentence goes."""

from __future__ import annotations

import numpy as np

from recguard.errors import RecguardError


TRIGGER_POSITIONS = ("end", "random")


def insert_trigger(title: str, trigger: str, position: str, rng: np.random.Generator) -> str:
    """``title`` with ``trigger`` inserted, the I(Y, t) of BadRec (Ning et al. 2025, Eq. 1);
    shared by the attack and by defenses that synthesise poisoned titles (P-Scanner).

    ``end`` (BadRec-End): appended after a space. ``random`` (BadRec-Random):
    placed between two words, at a boundary drawn uniformly from the title's
    inner word boundaries; a title of one word (or none) has no inner boundary,
    so the trigger goes at its end. Words are separated by single spaces after.
    """
    if position not in TRIGGER_POSITIONS:
        raise RecguardError(f"trigger position {position!r} is not one of {', '.join(TRIGGER_POSITIONS)}")
    if not trigger.strip():
        raise RecguardError("a backdoor trigger must hold some non-space text")
    words = title.split()
    if position == "random" and len(words) >= 2:
        cut = int(rng.integers(1, len(words)))
        return " ".join(words[:cut] + [trigger.strip()] + words[cut:])
    return " ".join(words + [trigger.strip()])
