"""Backdoor triggers (BadRec, Table 7); `recguard.kit.lm.triggers.insert_trigger` puts one
into a title (BadRec-End / -Random)."""

from __future__ import annotations

# Table 7 (appendix B.3). The char-level trigger is printed as 'U+0D2E', the code point
# of the Malayalam letter MA; we insert the character itself unless asked for the text.
TABLE7_TRIGGERS = {
    "char": "\u0d2e",
    "word": "Ethereal",
    "sentence": "Dreams dance in moonlight's embrace",
}
CHAR_TRIGGER_TEXT = "U+0D2E"
