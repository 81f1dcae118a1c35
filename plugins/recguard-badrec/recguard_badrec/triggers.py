"""Backdoor triggers (BadRec, Table 7) and how they enter a title (BadRec-End / -Random)."""

from __future__ import annotations

from recguard.kit.lm.triggers import (TRIGGER_POSITIONS as POSITIONS, insert_trigger)  # noqa: F401 (re-exported)

# Table 7 (appendix B.3). The char-level trigger is printed as 'U+0D2E', the code point
# of the Malayalam letter MA; we insert the character itself unless asked for the text.
TABLE7_TRIGGERS = {
    "char": "\u0d2e",
    "word": "Ethereal",
    "sentence": "Dreams dance in moonlight's embrace",
}
CHAR_TRIGGER_TEXT = "U+0D2E"
