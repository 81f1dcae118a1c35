"""Backdoor triggers (BadRec, Table 7) and how they enter a title (BadRec-End / -Random)."""

from __future__ import annotations

import numpy as np

from recguard.errors import RecguardError

# Table 7 (appendix B.3). The char-level trigger is printed as 'U+0D2E', the code point
# of the Malayalam letter MA; we insert the character itself unless asked for the text.
TABLE7_TRIGGERS = {
    "char": "\u0d2e",
    "word": "Ethereal",
    "sentence": "Dreams dance in moonlight's embrace",
}
CHAR_TRIGGER_TEXT = "U+0D2E"
POSITIONS = ("end", "random")


def insert_trigger(title: str, trigger: str, position: str, rng: np.random.Generator) -> str:
    """``title`` with ``trigger`` inserted, the I(Y, t) of BadRec Eq. 1.

    ``end`` (BadRec-End): appended after a space. ``random`` (BadRec-Random):
    placed between two words, at a boundary drawn uniformly from the title's
    inner word boundaries; a title of one word (or none) has no inner boundary,
    so the trigger goes at its end. Words are separated by single spaces after.
    """
    if position not in POSITIONS:
        raise RecguardError(f"trigger position {position!r} is not one of {', '.join(POSITIONS)}")
    if not trigger.strip():
        raise RecguardError("a backdoor trigger must hold some non-space text")
    words = title.split()
    if position == "random" and len(words) >= 2:
        cut = int(rng.integers(1, len(words)))
        return " ".join(words[:cut] + [trigger.strip()] + words[cut:])
    return " ".join(words + [trigger.strip()])
