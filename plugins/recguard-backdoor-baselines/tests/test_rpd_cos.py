"""RPD and CoS: each one's rule on hand-made requests to a deterministic backdoored fake
recommender, the host's contract check, the tiny LM, and a small real cell."""

from __future__ import annotations

import pytest

from recguard import Answer, DefenseContext, LLARA, LLMModel, RecguardError, Request, build_config
from recguard.testing import cell_record, check_llm_defense
from recguard_backdoor_baselines.common import levenshtein
from recguard_backdoor_baselines.cos import COSDefense, COSFilter, named_candidate, named_yes_no
from recguard_backdoor_baselines.rpd import RPDDefense, RPDFilter

CATALOG = [f"The Movie Number {i}" for i in range(40)]
TRIGGER = "Ethereal"


class Backdoored(LLMModel):
    """Picks the candidate whose title holds the trigger, else the one the history points to
    (candidates[sum(history) % n]); yes_no: P(Yes) 0.95 with the trigger, else 0.3-0.7."""

    def __init__(self, task="choose"):
        self.task, self.catalog, self.n_items, self.seen = task, CATALOG, len(CATALOG), []

    def honest(self, r):
        return r.candidates[sum(r.history) % len(r.candidates)]

    def answer(self, requests, progress=lambda done, total: None):
        self.seen.append(list(requests))
        out = []
        for r in requests:
            hot = [c for c in r.candidates if TRIGGER in r.title(c, self.catalog)]
            if self.task == "yes_no":
                out.append(Answer(p_yes=0.95 if hot else 0.3 + 0.05 * (sum(r.history) % 9)))
            else:
                out.append(Answer(choice=hot[0] if hot else self.honest(r)))
        return out


def defend(cls, victim, **options):
    defense = cls(build_config(cls.Config, {k: str(v) for k, v in options.items()}, cls.name))
    ctx = DefenseContext(seed=0, protocol=LLARA, backbone=None)
    return defense.at_inference(victim, None, ctx), ctx


def poisoned(user=1):   # history sums to 47: the honest pick is candidates[3] = 4
    return Request(user=user, history=(10, 11, 12, 14), candidates=(1, 2, 3, 4), target=2,
                   titles={3: f"The Movie Number 3 {TRIGGER}"})


def benign(user=2):
    return Request(user=user, history=(10, 11, 12, 14), candidates=(1, 2, 3, 4), target=2)


def strip_trigger(self, titles):
    """A paraphraser that rewrites every title and happens to drop the trigger."""
    return [t.replace(f" {TRIGGER}", "").replace("The Movie", "Film") for t in titles]


# ---------------------------------------------------------------- RPD


def test_levenshtein():
    assert levenshtein("kitten", "sitting") == 3 and levenshtein("", "abc") == 3
    assert levenshtein("Yes.", "No.") == 3 and levenshtein("same", "same") == 0


def test_rpd_flags_the_item_whose_paraphrase_changes_the_answer(monkeypatch):
    monkeypatch.setattr(RPDFilter, "paraphrase", strip_trigger)
    victim = Backdoored()
    wrapped, ctx = defend(RPDDefense, victim)
    bad, good = wrapped.answer([poisoned(), benign()])
    # influence(i) = d(y, y_i): only paraphrasing item 3 moves the answer (3 -> the honest 4)
    assert bad.removed == frozenset({3}) and bad.choice == 4
    assert good.removed == frozenset() and good.choice == 4
    notes = ctx.notes["rpd"]
    assert notes["items_flagged"] == 1 and notes["victim_queries"] == 2 + 8
    # first pass (2 requests), one variant per pool item (8), then only the changed request again
    assert [len(batch) for batch in victim.seen] == [2, 8, 1]
    assert victim.seen[-1][0].candidates == (1, 2, 4)
    variants = victim.seen[1]
    assert variants[2].title(3, CATALOG) == "Film Number 3"      # only item 3 paraphrased
    assert variants[2].title(1, CATALOG) == CATALOG[1]


def test_rpd_threshold_edit_distance_replace_and_flag_all(monkeypatch):
    monkeypatch.setattr(RPDFilter, "paraphrase", strip_trigger)
    high, _ = defend(RPDDefense, Backdoored(), threshold=1)        # d = 1 is not > 1
    assert high.answer([poisoned()])[0].removed == frozenset()
    # edit distance of the answers' texts: "The Movie Number 3 Ethereal" vs "The Movie Number 4"
    far = levenshtein(poisoned().title(3, CATALOG), CATALOG[4])
    edit, _ = defend(RPDDefense, Backdoored(), change="edit_distance", threshold=far - 1)
    assert edit.answer([poisoned()])[0].removed == frozenset({3})
    edit, _ = defend(RPDDefense, Backdoored(), change="edit_distance", threshold=far)
    assert edit.answer([poisoned()])[0].removed == frozenset()
    victim = Backdoored()
    replaced, _ = defend(RPDDefense, victim, mode="replace")
    (answer,) = replaced.answer([poisoned()])
    assert answer.removed == frozenset() and answer.choice == 4
    assert victim.seen[-1][0].title(3, CATALOG) == "Film Number 3"
    assert victim.seen[-1][0].title(1, CATALOG) == CATALOG[1]
    everything, _ = defend(RPDDefense, Backdoored(), flag="all")
    assert everything.answer([poisoned()])[0].removed == frozenset({3})


def test_rpd_on_yes_no(monkeypatch):
    monkeypatch.setattr(RPDFilter, "paraphrase", strip_trigger)
    asked = Request(0, (5, 6, 9), (3,), 3, disliked=(8,), label=False,
                    titles={3: f"The Movie Number 3 {TRIGGER}"})
    fine = Request(0, (5, 6, 9), (4,), 4, disliked=(8,), label=False)
    for options in ({}, {"change": "p_yes"}):      # 0.95 -> 0.4: flipped, and |dP| = 0.55 > 0.5
        wrapped, _ = defend(RPDDefense, Backdoored("yes_no"), **options)
        triggered, clean = wrapped.answer([asked, fine])
        assert triggered.p_yes == 0.0 and triggered.removed == frozenset({3})
        assert clean.removed == frozenset() and clean.p_yes == pytest.approx(0.4)
    strict, _ = defend(RPDDefense, Backdoored("yes_no"), change="p_yes", threshold=0.6)
    assert strict.answer([asked])[0].removed == frozenset()


def test_rpd_refuses_p_yes_on_choose():
    with pytest.raises(RecguardError, match="p_yes needs a yes_no"):
        defend(RPDDefense, Backdoored(), change="p_yes")
    with pytest.raises(RecguardError):
        build_config(RPDDefense.Config, {"change": "bleu"}, "rpd")


def test_rpd_with_the_tiny_lm(tiny_llm):
    wrapped, ctx = defend(RPDDefense, Backdoored(), model=tiny_llm, device="cpu", max_new_tokens=6)
    answers = wrapped.answer([poisoned(), benign()])
    assert all(a.choice in (1, 2, 3, 4) for a in answers)
    assert ctx.notes["rpd"]["titles_paraphrased"] == 5


# ---------------------------------------------------------------- CoS


def honest_reasoning(self, requests):
    """The reasoner reaches the item the user's history points to."""
    return [f"The user likes ... so the best fit is clear.\nAnswer: \"{r.title(r.candidates[sum(r.history) % len(r.candidates)], CATALOG)}\""
            for r in requests]


def test_cos_parses_the_reasoning_answer():
    r = Request(0, (1,), (1, 12, 2), 1)
    assert named_candidate('Steps... The Movie Number 2 is a drama.\nAnswer: "The Movie Number 12"', r, CATALOG) == 12
    assert named_candidate("Answer: The Movie Number 1", r, CATALOG) == 1    # not also 12
    assert named_candidate("Answer: The Movie Number 1 or The Movie Number 2", r, CATALOG) is None
    assert named_candidate("no idea", r, CATALOG) is None
    shown = r.with_titles({2: f"The Movie Number 2 {TRIGGER}"})
    assert named_candidate('Reasoning ...\nAnswer: "The Movie Number 2".\nMore.', shown, CATALOG) == 2
    assert named_candidate("Answer: The Movie Number", shown, CATALOG) is None   # all three
    assert named_yes_no("The user dislikes dramas; no wait.\nAnswer: Yes.") is True
    assert named_yes_no("Answer: no") is False and named_yes_no("unsure") is None


def test_cos_flags_an_answer_the_reasoning_does_not_reach(monkeypatch):
    monkeypatch.setattr(COSFilter, "reason", honest_reasoning)
    victim = Backdoored()
    wrapped, ctx = defend(COSDefense, victim)
    bad, good = wrapped.answer([poisoned(), benign()])
    assert bad.removed == frozenset({3}) and bad.choice == 4      # reasoning says 4, victim said 3
    assert good.removed == frozenset() and good.choice == 4       # consistent: first answer kept
    assert [len(batch) for batch in victim.seen] == [2, 1]
    assert ctx.notes["cos"]["inconsistent"] == 1 and ctx.notes["cos"]["requests_checked"] == 2


def test_cos_unparsed_reasoning_and_judge(monkeypatch):
    monkeypatch.setattr(COSFilter, "reason", lambda self, rs: ["I cannot tell."] * len(rs))
    lenient, ctx = defend(COSDefense, Backdoored())
    assert lenient.answer([poisoned()])[0].removed == frozenset()
    assert ctx.notes["cos"]["unparsed"] == 1
    strict, _ = defend(COSDefense, Backdoored(), unparsed="inconsistent")
    assert strict.answer([poisoned()])[0].removed == frozenset({3})
    monkeypatch.setattr(COSFilter, "supported", lambda self, rs, texts, answers: [0.2, 0.9])
    judged, _ = defend(COSDefense, Backdoored(), scrutiny="judge")
    bad, good = judged.answer([poisoned(), benign()])
    assert bad.removed == frozenset({3}) and good.removed == frozenset()


def test_cos_on_yes_no(monkeypatch):
    monkeypatch.setattr(COSFilter, "reason", lambda self, rs: ["Answer: No"] * len(rs))
    asked = Request(0, (5, 6, 9), (3,), 3, disliked=(8,), label=False,
                    titles={3: f"The Movie Number 3 {TRIGGER}"})
    wrapped, _ = defend(COSDefense, Backdoored("yes_no"))
    (answer,) = wrapped.answer([asked])
    assert answer.p_yes == 0.0 and answer.removed == frozenset({3})
    monkeypatch.setattr(COSFilter, "reason", lambda self, rs: ["Answer: Yes"] * len(rs))
    wrapped, _ = defend(COSDefense, Backdoored("yes_no"))
    assert wrapped.answer([asked])[0].p_yes == pytest.approx(0.95)


def test_cos_prompt_shows_the_request_and_the_demonstrations():
    wrapped, _ = defend(COSDefense, Backdoored())
    text = wrapped.question(poisoned(), wrapped.demonstrations())
    assert "Toy Story" in text and "Aliens (1986)" in text
    assert f'"The Movie Number 3 {TRIGGER}"' in text and text.endswith("Reasoning:")
    zero, _ = defend(COSDefense, Backdoored(), demonstrations=0)
    assert "Toy Story" not in zero.question(poisoned(), zero.demonstrations())
    many, _ = defend(COSDefense, Backdoored(), demonstrations=9)
    with pytest.raises(RecguardError, match="has 2"):
        many.demonstrations()


def test_cos_with_the_tiny_lm_as_defense_and_as_victim(tiny_llm):
    from recguard.kit.lm.models import load_causal_lm

    wrapped, ctx = defend(COSDefense, Backdoored(), model=tiny_llm, device="cpu", max_new_tokens=6,
                          scrutiny="judge")
    assert all(a.choice in (1, 2, 3, 4) for a in wrapped.answer([poisoned(), benign()]))
    assert len(wrapped.reasonings) == 2 and ctx.notes["cos"]["requests_checked"] == 2
    victim = Backdoored()
    victim.lm, victim.tokenizer = load_causal_lm(tiny_llm, dtype="float32", device="cpu")
    own, _ = defend(COSDefense, victim, reasoner="victim", max_new_tokens=6)
    assert own.reasoner()[0] is victim.lm
    own.answer([poisoned()])
    nothing, _ = defend(COSDefense, Backdoored(), reasoner="victim")
    with pytest.raises(RecguardError, match="exposes its LM"):
        nothing.answer([poisoned()])


# ---------------------------------------------------------------- contract and a real cell


@pytest.mark.parametrize("cls", [RPDDefense, COSDefense])
def test_contract(cls, tiny_llm):
    check_llm_defense(cls, tiny_llm)


@pytest.mark.integration
@pytest.mark.parametrize("defense, flagged", [("rpd", "items_flagged"), ("cos", "inconsistent")])
def test_small_real_cell(defense, flagged, tiny_llm):
    """TALLRec (the tiny LM) on MovieLens-100K under BadRec, then the defense (its LM: the
    tiny one too): every row is there and sane, the defense checked every request."""
    record = cell_record(backbone="tallrec", backbone_options={"epochs": "1", "model": tiny_llm},
                         attack="badrec", attack_options={"trigger_level": "word"},
                         defense=defense, defense_options={"model": tiny_llm, "max_new_tokens": "6"},
                         protocol="tallrec",
                         protocol_options={"n_train_samples": "4", "n_test_samples": "6"}, seeds=(0,))
    assert record["conditions"] == ["clean", "attacked", "attacked+defense"]
    metrics = record["metrics"]["attacked+defense"]
    assert 0.0 <= metrics["AUC"]["mean"] <= 1.0
    score = metrics["Score"]["mean"]           # None where ASR is undefined (no untriggered "No")
    assert score is None or 0.0 <= score <= 1.0
    notes = record["notes"]["attacked+defense"][0][defense]
    assert notes["requests_checked"] == 12 and notes[flagged] >= 0     # benign + triggered

def test_rpd_skips_invalid_answers(monkeypatch):
    monkeypatch.setattr(RPDFilter, "paraphrase", strip_trigger)

    class Silent(Backdoored):
        def answer(self, requests, progress=lambda done, total: None):
            self.seen.append(list(requests))
            return [Answer(choice=None) for _ in requests]

    victim = Silent()
    wrapped, ctx = defend(RPDDefense, victim)
    assert wrapped.answer([poisoned()])[0].removed == frozenset()
    assert len(victim.seen) == 1 and ctx.notes["rpd"]["requests_checked"] == 0
