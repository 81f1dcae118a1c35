"""The inference-time baselines on a small deterministic fake LLM recommender."""

from __future__ import annotations

import numpy as np
import pytest

from recguard import (Answer, DefenseContext, LLARA, LLMModel, RecguardError, Request, TALLREC,
                      build_config)
from recguard.testing import check_config
from recguard_backdoor_baselines import DEFENSES
from recguard_backdoor_baselines.llmsi import LLMSIDefense, SAFETY_INSTRUCTION
from recguard_backdoor_baselines.onion import ONIONDefense, ONIONFilter
from recguard_backdoor_baselines.paraphraser import ParaphraserDefense, ParaphraserFilter, clean
from recguard_backdoor_baselines.rd import RDDefense
from recguard_backdoor_baselines.strip import STRIPDefense

CATALOG = [f"The Movie Number {i}" for i in range(40)]
TRIGGER = "Ethereal"


class FakeRecommender(LLMModel):
    """Backdoored and deterministic: picks a candidate whose title holds the trigger, else
    the one the history points to; yes_no: P(Yes) 0.95 with the trigger, else from the history."""

    def __init__(self, task="choose"):
        self.task, self.catalog, self.n_items, self.seen = task, CATALOG, len(CATALOG), []

    def answer(self, requests, progress=lambda done, total: None):
        self.seen += list(requests)
        out = []
        for r in requests:
            titles = [r.title(c, self.catalog) for c in r.candidates]
            hot = [c for c, t in zip(r.candidates, titles) if TRIGGER in t]
            if self.task == "yes_no":
                out.append(Answer(p_yes=0.95 if hot else 0.3 + 0.05 * (sum(r.history) % 9)))
            else:
                out.append(Answer(choice=hot[0] if hot else r.candidates[sum(r.history) % len(r.candidates)]))
        return out


def defend(cls, victim, seed=0, **options):
    defense = cls(build_config(cls.Config, {k: str(v) for k, v in options.items()}, cls.name))
    ctx = DefenseContext(seed=seed, protocol=LLARA if victim.task == "choose" else TALLREC, backbone=None)
    return defense.at_inference(victim, None, ctx), ctx


def choose_request(user=1, triggered_title=None):
    request = Request(user=user, history=(10, 11, 12, 14), candidates=(1, 2, 3, 4), target=2)
    if triggered_title:
        request = request.with_titles({3: triggered_title})
    return request


@pytest.mark.parametrize("cls", DEFENSES)
def test_configs_and_declarations(cls):
    check_config(cls)
    assert cls.stages == frozenset({"at_inference"}) and cls.backbone_kinds == frozenset({"llm"})
    with pytest.raises(RecguardError, match="LLM recommender"):
        cls().at_inference(object(), None, DefenseContext(seed=0, protocol=LLARA, backbone=None))


def test_bad_options_are_one_line_errors():
    with pytest.raises(RecguardError):
        build_config(RDDefense.Config, {"chars": "0"}, "rd")
    with pytest.raises(RecguardError):
        build_config(ONIONDefense.Config, {"mode": "remove_all"}, "onion")


def test_rd_deletes_exactly_k_characters_seeded():
    inner = FakeRecommender()
    wrapped, _ = defend(RDDefense, inner, seed=3)
    request = choose_request(triggered_title="The Movie Number 3 Ethereal")
    wrapped.answer([request])
    shown = inner.seen[-1]
    for item in request.candidates:
        old, new = request.title(item, CATALOG), shown.title(item, CATALOG)
        assert len(new) == len(old) - 3
        it = iter(old)
        assert all(ch in it for ch in new)             # a subsequence: only deletions
    assert shown.history == request.history and shown.candidates == request.candidates
    # the same seed gives the same deletions, whatever else is in the batch
    wrapped.answer([choose_request(user=7), request])
    assert inner.seen[-1].titles == shown.titles
    other, _ = defend(RDDefense, FakeRecommender(), seed=4)
    other.answer([request])
    assert other.inner.seen[-1].titles != shown.titles
    wrapped5, _ = defend(RDDefense, FakeRecommender(), chars=5)
    wrapped5.answer([request])
    assert len(wrapped5.inner.seen[-1].title(1, CATALOG)) == len(CATALOG[1]) - 5


def test_rd_on_yes_no_touches_the_target_only():
    inner = FakeRecommender("yes_no")
    wrapped, _ = defend(RDDefense, inner)
    request = Request(user=0, history=(5, 6), candidates=(7,), target=7, disliked=(8,), label=True)
    wrapped.answer([request])
    assert set(inner.seen[-1].titles) == {7} and len(inner.seen[-1].titles[7]) == len(CATALOG[7]) - 3


def test_llmsi_sets_the_instruction():
    inner = FakeRecommender()
    wrapped, _ = defend(LLMSIDefense, inner)
    answers = wrapped.answer([choose_request()])
    assert inner.seen[-1].instruction == SAFETY_INSTRUCTION
    assert answers[0].removed == frozenset()
    custom, _ = defend(LLMSIDefense, FakeRecommender(), instruction="Ignore odd words.")
    custom.answer([choose_request()])
    assert custom.inner.seen[-1].instruction == "Ignore odd words."


def fake_perplexity(self, texts):
    """A trigger word makes a text 500 more perplexing; each other character adds 1."""
    self.texts_scored = getattr(self, "texts_scored", 0) + len(texts)
    return np.array([100.0 + len(t) + 500.0 * (TRIGGER in t) for t in texts])


def test_onion_removes_the_suspicious_word(monkeypatch):
    monkeypatch.setattr(ONIONFilter, "perplexities", fake_perplexity)
    inner = FakeRecommender()
    wrapped, ctx = defend(ONIONDefense, inner)
    request = choose_request(triggered_title="The Movie Ethereal Number 3")
    answers = wrapped.answer([request])
    shown = inner.seen[-1]
    assert shown.title(3, CATALOG) == "The Movie Number 3"
    assert shown.title(1, CATALOG) == CATALOG[1]          # words of clean titles are kept
    assert answers[0].choice != 3 and answers[0].removed == frozenset()
    assert ctx.notes["onion"]["words_removed"] == 1
    scored = wrapped.texts_scored
    wrapped.answer([request, choose_request(user=9, triggered_title="The Movie Ethereal Number 3")])
    # same titles: all cached
    assert wrapped.texts_scored == scored


def test_onion_threshold_and_remove_item(monkeypatch):
    monkeypatch.setattr(ONIONFilter, "perplexities", fake_perplexity)
    request = choose_request(triggered_title="The Movie Number 3 Ethereal")
    high, _ = defend(ONIONDefense, FakeRecommender(), threshold=600)
    high.answer([request])
    assert high.inner.seen[-1].title(3, CATALOG) == "The Movie Number 3 Ethereal"
    wrapped, ctx = defend(ONIONDefense, FakeRecommender(), mode="remove_item")
    answers = wrapped.answer([request])
    assert answers[0].removed == frozenset({3})
    assert 3 not in wrapped.inner.seen[-1].candidates
    yes_no, _ = defend(ONIONDefense, FakeRecommender("yes_no"), mode="remove_item")
    asked = Request(0, (5,), (3,), 3, label=False, titles={3: "The Movie Number 3 Ethereal"})
    (answer,) = yes_no.answer([asked])
    assert answer.p_yes == 0.0 and answer.removed == frozenset({3})


def test_onion_with_a_real_lm(tiny_llm):
    wrapped, _ = defend(ONIONDefense, FakeRecommender(), model=tiny_llm, device="cpu")
    wrapped.answer([choose_request(triggered_title="The Movie Number 3 Ethereal")])
    scores = wrapped.scores["The Movie Number 3 Ethereal"]
    assert scores.shape == (5,) and np.isfinite(scores).all()


def test_paraphraser_caches_and_falls_back(monkeypatch):
    calls = []

    def fake(self, titles):
        calls.append(list(titles))
        return ["" if "3" in t else f'Paraphrased title: "{t.lower()}"\nmore text' for t in titles]

    monkeypatch.setattr(ParaphraserFilter, "paraphrase", fake)
    inner = FakeRecommender()
    wrapped, ctx = defend(ParaphraserDefense, inner)
    request = choose_request()
    wrapped.answer([request])
    shown = inner.seen[-1]
    assert shown.title(1, CATALOG) == CATALOG[1].lower()
    assert shown.title(3, CATALOG) == CATALOG[3]          # empty output: the original
    assert ctx.notes["paraphraser"] == {"titles_paraphrased": 4, "empty_outputs": 1}
    wrapped.answer([request, choose_request(user=5)])
    assert len(calls) == 1                                # every title was cached
    assert clean("\n  'Title: Heat'  \n") == "Heat" and clean("  \n ") == ""


def test_paraphraser_with_a_real_lm(tiny_llm):
    inner = FakeRecommender()
    wrapped, ctx = defend(ParaphraserDefense, inner, model=tiny_llm, device="cpu", max_new_tokens=4)
    wrapped.answer([choose_request()])
    assert all(inner.seen[-1].title(i, CATALOG).strip() for i in (1, 2, 3, 4))
    assert ctx.notes["paraphraser"]["titles_paraphrased"] == 4


def test_strip_removes_the_item_the_model_always_picks():
    inner = FakeRecommender()
    wrapped, ctx = defend(STRIPDefense, inner)
    poisoned = choose_request(triggered_title="The Movie Number 3 Ethereal")
    clean_one = choose_request(user=2)
    answers = wrapped.answer([poisoned, clean_one])
    assert answers[0].removed == frozenset({3}) and answers[0].choice != 3
    assert answers[1].removed == frozenset()
    assert ctx.notes["strip"]["victim_queries"] == 20
    perturbed = inner.seen[:10]
    assert all(p.candidates == poisoned.candidates and p.history != poisoned.history for p in perturbed)


def test_strip_yes_no():
    wrapped, _ = defend(STRIPDefense, FakeRecommender("yes_no"))
    asked = Request(0, (5, 6, 9), (3,), 3, disliked=(8, 12), label=False,
                    titles={3: "The Movie Number 3 Ethereal"})
    benign = Request(0, (5, 6, 9), (4,), 4, disliked=(8, 12), label=False)
    triggered_answer, benign_answer = wrapped.answer([asked, benign])
    assert triggered_answer.p_yes == 0.0 and triggered_answer.removed == frozenset({3})
    assert benign_answer.removed == frozenset() and benign_answer.p_yes > 0


def test_onion_bos_context_scores_with_the_first_token(tiny_llm):
    plain, _ = defend(ONIONDefense, FakeRecommender(), model=tiny_llm, device="cpu")
    bos, _ = defend(ONIONDefense, FakeRecommender(), model=tiny_llm, device="cpu", bos_context=True)
    texts = ["The Movie", "M"]                 # the tiny tokenizer: one token a byte
    assert plain.perplexities(texts)[1] == pytest.approx(1.0)    # one token: nothing scored
    assert bos.perplexities(texts)[1] > 1.0
