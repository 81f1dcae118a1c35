"""BadRec: triggers, positions, fake profiles, inference-time insertion, config."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from recguard import AttackContext, LLARA, RecguardError, Request, TALLREC, build_config
from recguard.kit.lm.triggers import insert_trigger
from recguard.testing import check_config, tiny_interactions
from recguard_badrec import BadRecAttack, TABLE7_TRIGGERS


def attack(**options):
    return BadRecAttack(build_config(BadRecAttack.Config, {k: str(v) for k, v in options.items()},
                                     "badrec"))


def context(task="choose", n_fake=4, size=5, seed=0):
    protocol = TALLREC if task == "yes_no" else replace(LLARA, title_style="raw")
    return AttackContext(targets=np.array([0]), n_fake=n_fake, filler_size=size,
                         rng=np.random.default_rng(seed), protocol=protocol)


def test_config_and_defaults():
    check_config(BadRecAttack)
    assert BadRecAttack.backbone_kinds == frozenset({"llm"})
    assert attack().trigger_text() == "Dreams dance in moonlight's embrace"
    assert attack(trigger_level="char").trigger_text() == "\u0d2e"
    assert attack(trigger_level="char", char_as_text=True).trigger_text() == "U+0D2E"
    assert attack(trigger_level="word").trigger_text() == "Ethereal"
    assert attack(trigger_level="sentence").trigger_text() == "Dreams dance in moonlight's embrace"
    assert attack(trigger_level="word", trigger="cf").trigger_text() == "cf"
    with pytest.raises(RecguardError):
        attack(trigger_level="emoji")
    with pytest.raises(RecguardError):
        attack(position="start")


def test_insert_trigger_end_and_random():
    rng = np.random.default_rng(0)
    assert insert_trigger("Toy Story", "Ethereal", "end", rng) == "Toy Story Ethereal"
    assert insert_trigger("Heat", "Ethereal", "random", rng) == "Heat Ethereal"  # no inner boundary
    title = "The Wizard of Oz"
    seen = set()
    for seed in range(40):
        out = insert_trigger(title, TABLE7_TRIGGERS["sentence"], "random", np.random.default_rng(seed))
        words = out.split()
        cut = words.index("Dreams")
        assert 1 <= cut <= 3, out                     # strictly between two words
        assert words[:cut] + words[cut + 5:] == title.split()
        seen.add(cut)
    assert seen == {1, 2, 3}
    again = [insert_trigger(title, "x", "random", np.random.default_rng(7)) for _ in range(2)]
    assert again[0] == again[1]
    with pytest.raises(RecguardError):
        insert_trigger(title, "  ", "end", rng)


@pytest.mark.parametrize("task", ["choose", "yes_no"])
@pytest.mark.parametrize("history", ["random", "copy"])
def test_profiles(task, history):
    train = tiny_interactions(feedback="explicit" if task == "yes_no" else "implicit")
    out = attack(history=history, trigger_level="word").poison(train, context(task))
    assert out.n_fake == 4 and set(out.user) == {0, 1, 2, 3}
    for fake in range(4):
        rows = np.flatnonzero(out.user == fake)
        rows = rows[np.argsort(out.timestamp[rows])]
        items, ratings = out.item[rows], out.rating[rows]
        assert len(rows) == 6 if history == "random" else 2 <= len(rows) <= 6
        poisoned = int(items[-1])
        assert poisoned not in items[:-1] and len(set(items[:-1])) == len(items) - 1
        assert out.user_item_text[fake] == {poisoned: f"Item {poisoned} Ethereal"}
        if task == "yes_no":
            assert ratings[-1] == 5.0 and set(ratings[:-1]) <= {1.0, 2.0, 3.0, 4.0, 5.0}
        else:
            assert set(ratings) == {1.0}
    assert out.timestamp.min() > train.timestamp.max()
    assert np.all(np.diff(out.timestamp) > 0)


def test_copied_history_is_a_window_of_a_genuine_profile():
    train = tiny_interactions(feedback="explicit")
    profiles = [tuple(p) for p in train.items_of_users()]
    out = attack(history="copy").poison(train, context("yes_no", size=3))
    ratings = {(u, i): r for u, i, r in zip(train.user, train.item, train.rating)}
    for fake in range(out.n_fake):
        history = tuple(out.item[out.user == fake][:-1])
        owners = [u for u, p in enumerate(profiles)
                  if any(p[s:s + len(history)] == history for s in range(len(p)))]
        assert owners, history
        got = out.rating[out.user == fake][:-1]
        assert any(all(ratings[(u, i)] == r for i, r in zip(history, got)) for u in owners)


def test_same_seed_same_fake_users():
    train = tiny_interactions()
    a = attack(position="random").poison(train, context("yes_no", seed=3))
    b = attack(position="random").poison(train, context("yes_no", seed=3))
    c = attack(position="random").poison(train, context("yes_no", seed=4))
    assert np.array_equal(a.item, b.item) and np.array_equal(a.rating, b.rating)
    assert a.user_item_text == b.user_item_text
    assert not np.array_equal(a.item, c.item)


def test_refusals():
    train = tiny_interactions()
    with pytest.raises(RecguardError, match="llm_task"):
        attack().poison(train, AttackContext(np.array([0]), 2, 3, np.random.default_rng(0),
                                             SimpleNamespace(name="apt")))
    with pytest.raises(RecguardError, match="filler_size"):
        attack().poison(train, context(size=0))
    untitled = tiny_interactions()
    untitled.item_text = None
    with pytest.raises(RecguardError, match="title"):
        attack().poison(untitled, context())


def test_at_inference_choose_marks_one_candidate():
    catalog = [f"Movie number {i}" for i in range(30)]
    request = Request(user=1, history=(1, 2), candidates=(3, 4, 5, 6), target=4,
                      titles={5: "Custom five"})
    picked = set()
    for seed in range(30):
        out = attack(trigger_level="word", position="random").at_inference(
            request, catalog, np.random.default_rng(seed))
        assert len(out.triggered) == 1
        (victim,) = out.triggered
        assert victim != request.target and victim in request.candidates
        base = request.title(victim, catalog)
        assert out.title(victim, catalog) != base and "Ethereal" in out.title(victim, catalog)
        assert out.title(victim, catalog).replace(" Ethereal", "") == base
        for other in request.candidates:
            if other != victim:
                assert out.title(other, catalog) == request.title(other, catalog)
        assert out.candidates == request.candidates and out.history == request.history
        picked.add(victim)
    assert picked == {3, 5, 6}
    assert request.triggered == frozenset()            # the input is left as it was


def test_at_inference_yes_no_triggers_the_target():
    catalog = ["Romance (1999)", "Heat (1995)"]
    request = Request(user=0, history=(1,), candidates=(0,), target=0, label=False)
    out = attack(trigger_level="char").at_inference(request, catalog, np.random.default_rng(0))
    assert out.triggered == frozenset({0})
    assert out.title(0, catalog) == "Romance (1999) \u0d2e"


def test_triggered_title_follows_the_catalog_style():
    train = tiny_interactions(feedback="implicit")
    train.item_text = np.array([f"Usual Suspects {i}, The (1995)" for i in range(train.n_items)],
                               dtype=object)
    ctx = AttackContext(np.zeros(0, dtype=np.int64), 2, 3, np.random.default_rng(0), LLARA)
    out = attack(trigger_level="word").poison(train, ctx)
    for fake, texts in out.user_item_text.items():
        ((item, title),) = texts.items()
        assert title == f"The Usual Suspects {item} Ethereal"
