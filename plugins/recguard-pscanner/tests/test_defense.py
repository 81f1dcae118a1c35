"""Training switches, the scanner cache and the detection phase (Eq. 9)."""

import numpy as np
import pytest

import recguard.kit.lm.generation
import recguard.kit.lm.sft
from recguard import APT, Answer, DefenseContext, LLMModel, RecguardError, Request, build_config
from recguard.testing import check_config

from recguard_pscanner import scanner as scanner_module
from recguard_pscanner.defense import PScannerConfig, PScannerDefense, ScanFilter, plan_of


def small(tiny_llm, **over):
    opts = dict(scanner_model=tiny_llm, agent_model=tiny_llm, rounds=2, n_items=6, n_heldout=4,
                batch_size=4, agent_max_new_tokens=4, agent_steps=1)
    return build_config(PScannerConfig, {**opts, **over}, "p-scanner")


def test_config():
    check_config(PScannerDefense)
    assert PScannerDefense.stages == frozenset({"at_inference"})
    assert PScannerDefense.backbone_kinds == frozenset({"llm"})
    with pytest.raises(RecguardError):
        build_config(PScannerConfig, {"position": "middle"}, "p-scanner")
    with pytest.raises(RecguardError, match="m1"):
        plan_of(build_config(PScannerConfig, {"m1": "7"}, "p-scanner"))


def test_the_scanner_and_the_agent_take_their_own_batch_sizes():
    plan = plan_of(build_config(PScannerConfig, {"batch_size": "2", "agent_batch_size": "16"},
                                "p-scanner"))
    assert plan.train.batch_size == 2 and plan.agent.batch_size == 16
    default = plan_of(build_config(PScannerConfig, {}, "p-scanner"))
    assert (default.train.batch_size, default.agent.batch_size) == (4, 8)


class Spy:
    """Counts calls to fine_tune and to the agent, passing them through."""

    def __init__(self, monkeypatch):
        self.fine_tune = self.agent = self.updates = 0
        self.labels = []      # the answers each fine-tune was given, in order
        real_ft, real_agent = recguard.kit.lm.sft.fine_tune, scanner_module.TriggerAgent
        spy = self

        def fine_tune(*args, **kwargs):
            spy.fine_tune += 1
            spy.labels.append(list(args[3]))
            assert kwargs["train"].shuffle is False           # the curriculum is an order
            return real_ft(*args, **kwargs)

        class Agent(real_agent):
            def __init__(self, *args, **kwargs):
                spy.agent += 1
                super().__init__(*args, **kwargs)

            def update(self, *args, **kwargs):
                spy.updates += 1
                return super().update(*args, **kwargs)

        monkeypatch.setattr(recguard.kit.lm.sft, "fine_tune", fine_tune)
        monkeypatch.setattr(scanner_module, "TriggerAgent", Agent)


def test_full_training_then_cache_hit(tiny_llm, fresh_cache, monkeypatch):
    spy = Spy(monkeypatch)
    plan = plan_of(small(tiny_llm))
    _, _, notes = scanner_module.prepare_scanner(plan, seed=3, log=lambda s: None)
    assert notes["cache"] == "miss" and spy.fine_tune == 2 and spy.agent == 1
    assert len(notes["rounds"]) == 2 and "accuracy" in notes["heldout"]
    assert any("n_agent" in r for r in notes["rounds"])          # the curriculum used rewrites
    folder = scanner_module.scanner_dir(plan, 3)
    assert (folder / "round0").is_dir() and (folder / "round1").is_dir()
    assert not [p for p in folder.parent.iterdir() if p.name.endswith(".tmp")]
    _, _, again = scanner_module.prepare_scanner(plan, seed=3, log=lambda s: None)
    assert again["cache"] == "hit" and spy.fine_tune == 2 and spy.agent == 1
    assert again["rounds"] == notes["rounds"]
    assert scanner_module.scanner_dir(plan, 4) != folder                   # keyed by seed
    assert scanner_module.scanner_dir(plan_of(small(tiny_llm, lr=0.01)), 3) != folder
    assert scanner_module.scanner_dir(plan_of(small(tiny_llm, threshold=0.9)), 3) == folder


def test_the_scanner_trains_on_as_many_no_as_yes_unless_told_otherwise(tiny_llm, fresh_cache,
                                                                       monkeypatch):
    spy = Spy(monkeypatch)
    scanner_module.prepare_scanner(plan_of(small(tiny_llm, n_items=12)), seed=3, log=lambda s: None)
    assert all(labels.count("Yes") == labels.count("No") for labels in spy.labels)
    assert all(len(labels) >= 12 for labels in spy.labels)
    spy.labels.clear()
    scanner_module.prepare_scanner(plan_of(small(tiny_llm, n_items=12, balance_labels=False)), seed=3,
                                   log=lambda s: None)
    assert [len(labels) for labels in spy.labels] == [12, 12]       # Eq. 4's draw as it is


def test_balanced_order_repeats_the_rarer_answer_and_keeps_the_rest_in_order():
    labels = ["Yes"] * 7 + ["No"] * 3
    order = scanner_module.balanced_order(labels, np.random.default_rng(0))
    assert [order.count(i) for i in range(7)] == [1] * 7
    assert sorted(order.count(i) for i in (7, 8, 9)) == [2, 2, 3]   # each 'No' again, one twice more
    assert [labels[i] for i in order].count("No") == 7
    assert [i for i in order if i < 7] == list(range(7))      # the curriculum's order, kept
    assert scanner_module.balanced_order(["Yes"] * 4, np.random.default_rng(0)) == [0, 1, 2, 3]
    assert scanner_module.balanced_order(["No", "Yes"] * 2, np.random.default_rng(0)) == [0, 1, 2, 3]


def test_no_cache_trains_again_and_keeps_nothing(tiny_llm, fresh_cache, monkeypatch):
    """`--no-cache` and `leaderboard verify` reach the defense as ctx.use_cache=False."""
    spy = Spy(monkeypatch)
    plan = plan_of(small(tiny_llm, rounds=1, n_items=4, n_heldout=2))
    scanner_module.prepare_scanner(plan, seed=3, log=lambda s: None)                  # cached
    _, _, notes = scanner_module.prepare_scanner(plan, seed=3, log=lambda s: None, use_cache=False)
    assert notes["cache"] == "off" and notes["trained_rounds"] == 1 and spy.fine_tune == 2
    assert [p.name for p in (fresh_cache / "pscanner").iterdir()] == [scanner_module.cache_key(plan, 3)]
    defense = PScannerDefense(small(tiny_llm, rounds=1, n_items=4, n_heldout=2, lr=0.01))
    ctx = DefenseContext(seed=0, protocol=APT, backbone=None, use_cache=False)
    defense.at_inference(Victim("choose", CATALOG), None, ctx)
    assert ctx.notes["p-scanner"]["training"]["cache"] == "off"
    assert len(list((fresh_cache / "pscanner").iterdir())) == 1


def test_without_ta_never_calls_the_agent(tiny_llm, fresh_cache, monkeypatch):
    spy = Spy(monkeypatch)
    _, _, notes = scanner_module.prepare_scanner(plan_of(small(tiny_llm, augment=False)), seed=0,
                                                 log=lambda s: None)
    assert spy.fine_tune == 2 and spy.agent == 0
    assert all("n_agent" not in r for r in notes["rounds"])


def test_without_ft_trains_nothing(tiny_llm, fresh_cache, monkeypatch):
    spy = Spy(monkeypatch)
    _, _, notes = scanner_module.prepare_scanner(plan_of(small(tiny_llm, finetune=False)), seed=0,
                                                 log=lambda s: None)
    assert spy.fine_tune == 0 and spy.agent == 0
    assert notes["rounds"] == [] and notes["trained_rounds"] == 0


class Victim(LLMModel):
    """Chooses the first candidate it is shown; answers P(Yes) = 0.8."""

    def __init__(self, task, catalog):
        self.task, self.catalog, self.n_items = task, catalog, len(catalog)
        self.seen = []

    def answer(self, requests, progress=lambda d, t: None):
        self.seen += requests
        return [Answer(choice=r.candidates[0]) if self.task == "choose" else Answer(p_yes=0.8)
                for r in requests]


CATALOG = ["Titanic", "Braveheart", "Waterloo Bridge", "Roman Holiday"]


def fake_scanner(monkeypatch, calls):
    def yes_probability(model, tokenizer, prompts, **kwargs):
        calls.append(len(prompts))
        return np.array([0.9 if "Ethereal" in p else 0.1 for p in prompts])

    monkeypatch.setattr(recguard.kit.lm.generation, "yes_probability", yes_probability)


def test_detection_removes_flagged_candidates(tiny_llm, monkeypatch):
    from recguard.kit.lm.models import load_causal_lm

    calls = []
    fake_scanner(monkeypatch, calls)
    _, tok = load_causal_lm(tiny_llm)
    victim, notes = Victim("choose", CATALOG), {}
    flt = ScanFilter(victim, None, tok, threshold=0.5, batch_size=8, notes=notes)
    poisoned = Request(user=0, history=(0,), candidates=(1, 2, 3), target=2,
                       titles={1: "Braveheart Ethereal"}, triggered=frozenset({1}))
    clean = Request(user=1, history=(0,), candidates=(1, 2, 3), target=3)
    answers = flt.answer([poisoned, clean, poisoned])
    assert answers[0].removed == frozenset({1}) and answers[0].choice == 2
    assert answers[1].removed == frozenset() and answers[1].choice == 1
    assert victim.seen[0].candidates == (2, 3)
    assert calls == [4]              # 4 unique titles, scanned once in one batch
    flt.answer([clean])
    assert calls == [4]              # cached by title text
    assert notes["titles_scanned"] == 4 and notes["titles_flagged"] == 1
    assert notes["items_removed"] == 2


def test_detection_yes_no_removes_the_target(tiny_llm, monkeypatch):
    from recguard.kit.lm.models import load_causal_lm

    fake_scanner(monkeypatch, [])
    _, tok = load_causal_lm(tiny_llm)
    flt = ScanFilter(Victim("yes_no", CATALOG), None, tok, threshold=0.5, batch_size=8, notes={})
    asked = Request(user=0, history=(0,), candidates=(2,), target=2, label=False,
                    titles={2: "Waterloo Bridge Ethereal"})
    fine = Request(user=0, history=(0,), candidates=(3,), target=3, label=True)
    a, b = flt.answer([asked, fine])
    assert a.removed == frozenset({2}) and a.p_yes == 0.0
    assert b.removed == frozenset() and b.p_yes == 0.8


def test_at_inference_wraps_and_notes(tiny_llm, fresh_cache):
    defense = PScannerDefense(small(tiny_llm, rounds=1, n_items=4, n_heldout=2))
    ctx = DefenseContext(seed=0, protocol=APT, backbone=None)
    model = defense.at_inference(Victim("choose", CATALOG), None, ctx)
    assert isinstance(model, ScanFilter)
    model.answer([Request(user=0, history=(0,), candidates=(1, 2), target=2)])
    notes = ctx.notes["p-scanner"]
    assert notes["training"]["cache"] == "miss" and len(notes["training"]["rounds"]) == 1
    assert notes["titles_scanned"] == 2


def test_a_false_alarm_share_sets_the_threshold_on_fresh_synthetic_benign_titles(tiny_llm, fresh_cache,
                                                                                monkeypatch):
    """false_alarm=0.25: the threshold is the 0.75 quantile of the scanner's P(Yes) on titles
    of the defender's pool that training did not use, so a quarter of them would be flagged."""
    scored = []

    def yes_probability(model, tokenizer, prompts, **kwargs):
        scored.append(list(prompts))
        return np.linspace(0.0, 1.0, len(prompts))

    config = small(tiny_llm, rounds=1, n_items=4, n_heldout=2, false_alarm=0.25, n_calibration=9)
    defense = PScannerDefense(config)
    ctx = DefenseContext(seed=0, protocol=APT, backbone=None)
    scanner_module.prepare_scanner(plan_of(config), 0, log=lambda line: None)   # trained, cached
    monkeypatch.setattr(recguard.kit.lm.generation, "yes_probability", yes_probability)
    model = defense.at_inference(Victim("choose", CATALOG), None, ctx)
    assert ctx.notes["p-scanner"]["calibration"] == {"n": 9, "false_alarm": 0.25, "threshold": 0.75}
    assert model.threshold == pytest.approx(0.75)
    titles = scanner_module.calibration_titles(plan_of(config), 0, 9)
    assert len(titles) == 9 and not set(titles) & set(scanner_module.benign_pool(0, 4 + 2))
    assert all(any(t in prompt for prompt in scored[-1]) for t in titles)
    plain = PScannerDefense(small(tiny_llm, rounds=1, n_items=4, n_heldout=2))
    assert plain.at_inference(Victim("choose", CATALOG), None, ctx).threshold == 0.5


def test_a_parked_agent_comes_back_the_same(tiny_llm):
    """The agent lets its model go while the scanner fine-tunes (the round's memory peak):
    after `unpark` it rewrites and updates exactly as an agent that was never parked."""
    import torch

    from recguard_pscanner.agent import TriggerAgent
    from recguard_pscanner.triggers import InitialTrigger

    settings = plan_of(small(tiny_llm, agent_steps=2)).agent
    triggers = [InitialTrigger(level=1, tokens=("zq",)), InitialTrigger(level=2, tokens=("a", "b", "c"))]
    u = np.array([1.0, -1.0])

    def run(parked: bool):
        agent = TriggerAgent(settings, seed=0)
        first = agent.update(triggers, ["night sky", "quiet river"], u, seed=1)   # optimiser state
        if parked:
            agent.park()
            assert agent.model is None and agent.optimizer is None
            agent.unpark()
        draw = torch.rand(1).item()        # the LoRA initialisation of the reload drew none
        return first, agent.rewrite(triggers, seed=2), agent.update(triggers, ["a", "b"], u, seed=3), draw

    assert run(parked=True) == run(parked=False)
