"""Adversarial trigger-augmented defense optimisation (Algorithm 2, part i) and the scanner cache.

Each round t of T: draw initial triggers (Eq. 4) for n fresh benign items, let the
agent rewrite those the curriculum picks (Eq. 5), label them (Eq. 6), fine-tune the
scanner D_Psi on them in that order (Eq. 7, LoRA through TRL), score the round's
samples with the updated scanner, and update the agent from its mistakes (Eq. 8).
The round's LoRA is then merged, so the next round's adapter trains on top of it.

Curriculum (sec. 4.2.2): the samples of a round are pre-ordered; sample i of n
carries the agent's rewrite with probability r_i = i / (n - 1), rising linearly
from 0 to 1 over the round, and ``TrainSettings(shuffle=False)`` keeps that order.

The trained scanner is cached: one adapter per round under
``cache_dir()/pscanner/<key>``, the key hashing everything that changes training
(options, seed, models, prompt texts); written to a temporary folder beside and
renamed into place, so an interrupted run leaves nothing half-written.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from recguard import atomic_folder, atomic_write_json, cache_dir, json_digest, release_memory
from recguard.kit.lm.prompts import load_prompt
from recguard.kit.lm.sft import LoraSettings, TrainSettings

from recguard_pscanner.agent import AGENT_PROMPT, AgentSettings, TriggerAgent, chat
from recguard_pscanner.triggers import (InitialTrigger, benign_pool, insert,
                                        sample_initial_triggers, trigger_vocabulary)

SCAN_PROMPT = "pscanner_scan.txt"
CACHE_VERSION = 5   # 2: chat prompts with an empty system turn; 3: shared-prefix scoring (bf16 sums
                    # differ); 4: padded shapes, completion-only loss, sliced agent steps;
                    # 5: the loss and P(Yes) from a float32 head
META = "meta.json"


@dataclass(frozen=True)
class ScannerPlan:
    """What training the scanner depends on (all of it goes into the cache key)."""

    scanner_model: str | None
    agent_model: str | None
    finetune: bool
    augment: bool
    rounds: int
    n_items: int
    n_heldout: int
    m1: int
    m2: int
    position: str
    scanner_lora: LoraSettings
    train: TrainSettings
    agent: AgentSettings | None
    script_letters: bool = True   # initial triggers also draw letters of other scripts
    title_case: float = 0.0       # share of initial triggers written in title case
    balance_labels: bool = True   # the minority answer's samples repeated up to the majority's
    device: str = "auto"          # where the scanner (and the agent) run
    dtype: str = "auto"           # recguard.kit.lm.models.resolve_precision


@dataclass
class Sample:
    """One synthetic item: X^d (``text``) and Y^d (``label``)."""

    title: str
    trigger: InitialTrigger
    rewrite: str | None          # t-hat when the agent's rewrite was inserted
    text: str

    @property
    def label(self) -> str:
        return self.trigger.label


def scan_prompts(tokenizer, template: str, texts: Sequence[str]) -> list[str]:
    """The paper's scanner prompt for each item text, in the chat format."""
    return [chat(tokenizer, template.strip().format(item=text)) for text in texts]


def curriculum_picks(n: int, rng: np.random.Generator) -> np.ndarray:
    """Whether sample i of n (in training order) gets the agent's trigger: r_i = i / (n - 1)."""
    share = np.arange(n) / max(1, n - 1)
    return rng.random(n) < share


def make_samples(titles: Sequence[str], triggers: Sequence[InitialTrigger], use_agent: np.ndarray,
                 agent: TriggerAgent | None, position: str, rng: np.random.Generator,
                 seed: int) -> list[Sample]:
    """Insert t-hat (where ``use_agent`` and l >= 1) or t-bar into each title."""
    chosen = [i for i, t in enumerate(triggers) if t.level > 0 and use_agent[i]]
    rewrites: dict[int, str] = {}
    if chosen:
        if agent is None:
            raise ValueError("samples ask for agent rewrites but there is no agent")
        rewrites = dict(zip(chosen, agent.rewrite([triggers[i] for i in chosen], seed)))
    out = []
    for i, (title, trigger) in enumerate(zip(titles, triggers)):
        trig = rewrites.get(i, trigger.text)
        out.append(Sample(title, trigger, rewrites.get(i), insert(title, trig, position, rng)))
    return out


def balanced_order(labels: Sequence[str], rng: np.random.Generator) -> list[int]:
    """The round's sample indices in training order, the samples of the rarer answer repeated
    (drawn without replacement while they last) until both answers have as many, each repeat
    put at a random place: the curriculum's order of the rest is kept.

    Eq. 4's l ~ U{0,1,2} makes two thirds of the samples 'Yes'. A scanner that answers 'Yes' to
    every title is then right two times in three, and on some seeds the fine-tune stops there
    (seed 2 of the main cell: accuracy 0.664 on its own samples, 94% of the held-out benign
    titles flagged)."""
    labels = np.asarray(labels)
    kinds, counts = np.unique(labels, return_counts=True)
    order = list(range(len(labels)))
    n_extra = int(counts.max() - counts.min()) if len(kinds) == 2 else 0
    if n_extra == 0:
        return order
    rarer = np.flatnonzero(labels == kinds[np.argmin(counts)])
    passes = -(-n_extra // len(rarer))          # each pass repeats every rarer sample once
    repeats = np.concatenate([rng.permutation(rarer) for _ in range(passes)])[:n_extra]
    for index in repeats:
        order.insert(int(rng.integers(len(order) + 1)), int(index))
    return order


def accuracy_report(samples: Sequence[Sample], p_yes: np.ndarray) -> dict:
    """Accuracy over all samples, and the share flagged per kind (benign / initial / agent)."""
    said_yes = p_yes > 0.5
    truth = np.array([s.label == "Yes" for s in samples])
    kinds = np.array(["benign" if s.trigger.level == 0 else
                      ("agent" if s.rewrite is not None else "initial") for s in samples])
    report = {"n": len(samples), "accuracy": round(float((said_yes == truth).mean()), 4)}
    for kind in ("benign", "initial", "agent"):
        rows = kinds == kind
        if rows.any():
            report[f"flagged_{kind}"] = round(float(said_yes[rows].mean()), 4)
            report[f"n_{kind}"] = int(rows.sum())
    return report


def indicator(p_yes: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """U of Eq. 8: +1 where the scanner's answer (P(Yes) > 0.5) differs from the label, else -1."""
    wrong = (np.asarray(p_yes) > 0.5) != (np.asarray(labels) == "Yes")
    return np.where(wrong, 1.0, -1.0)


# ---------------------------------------------------------------- training


def train_scanner(plan: ScannerPlan, seed: int, folder: Path, log=print) -> tuple[object, object, dict]:
    """Algorithm 2 part (i); writes one adapter per round into ``folder``.

    Returns (scanner, tokenizer, notes). With ``finetune=False`` nothing is
    trained: the base LM is the scanner (w/o FT); only the held-out check runs.
    """
    from recguard.kit.lm.models import load_causal_lm
    from recguard.kit.lm.sft import fine_tune, merged_lora
    from recguard.kit.lm.generation import yes_probability

    started = time.perf_counter()
    scanner, tokenizer = load_causal_lm(plan.scanner_model, dtype=plan.dtype, device=plan.device)
    template = load_prompt("recguard_pscanner", SCAN_PROMPT)
    vocabulary = trigger_vocabulary(tokenizer, letters=plan.script_letters)
    rounds = plan.rounds if plan.finetune else 0
    titles = benign_pool(seed, rounds * plan.n_items + plan.n_heldout)
    agent = TriggerAgent(plan.agent, seed) if plan.finetune and plan.augment else None
    rng = np.random.default_rng([seed, 7])
    notes: dict = {"vocabulary": len(vocabulary), "rounds": []}
    for t in range(rounds):
        t0 = time.perf_counter()
        items = titles[t * plan.n_items:(t + 1) * plan.n_items]
        triggers = sample_initial_triggers(len(items), vocabulary, plan.m1, plan.m2, rng,
                                           plan.title_case)
        picks = curriculum_picks(len(items), rng) if agent is not None else np.zeros(len(items), bool)
        samples = make_samples(items, triggers, picks, agent, plan.position, rng, seed * 1000 + t)
        prompts = scan_prompts(tokenizer, template, [s.text for s in samples])
        order = (balanced_order([s.label for s in samples], rng) if plan.balance_labels
                 else range(len(samples)))
        t1 = time.perf_counter()
        if agent is not None:
            agent.park()            # its weights go while the scanner fine-tunes
        scanner = fine_tune(scanner, tokenizer, [prompts[i] for i in order],
                            [samples[i].label for i in order],
                            lora=plan.scanner_lora, train=plan.train, seed=seed + t,
                            adapter_dir=folder / f"round{t}", label=f"p-scanner round {t + 1}")
        t2 = time.perf_counter()
        if agent is not None:
            agent.unpark()
        scanner = merged_lora(scanner)   # the next round's LoRA trains on top; faster queries
        p_yes = yes_probability(scanner, tokenizer, prompts)
        report = accuracy_report(samples, p_yes)
        rewritten = [i for i, s in enumerate(samples) if s.rewrite is not None]
        if agent is not None and rewritten:
            u = indicator(p_yes[rewritten], [samples[i].label for i in rewritten])
            losses = agent.update([samples[i].trigger for i in rewritten],
                                  [samples[i].rewrite for i in rewritten], u, seed * 1000 + t)
            report.update(agent_wrong=int((u > 0).sum()), agent_loss=[round(x, 4) for x in losses],
                          examples=[[samples[i].trigger.text, samples[i].rewrite]
                                    for i in rewritten[:3]])
        release_memory()                       # the round's batches and logits
        report.update(seconds_data=round(t1 - t0, 1), seconds_train=round(t2 - t1, 1),
                      seconds_round=round(time.perf_counter() - t0, 1))
        notes["rounds"].append(report)
        log(f"p-scanner round {t + 1}/{rounds}: accuracy {report['accuracy']:.3f} "
            f"({report['seconds_round']:.0f}s)")
    if plan.n_heldout:
        notes["heldout"] = heldout_check(scanner, tokenizer, template, titles[-plan.n_heldout:],
                                         vocabulary, plan, agent, seed)
    del agent           # not needed at inference: its model and optimiser go now
    release_memory()
    notes["seconds_train"] = round(time.perf_counter() - started, 1)
    return scanner, tokenizer, notes


def heldout_check(scanner, tokenizer, template, titles, vocabulary, plan: ScannerPlan,
                  agent: TriggerAgent | None, seed: int) -> dict:
    """Accuracy on fresh synthetic items (Eq. 4 triggers; half of the triggered ones
    rewritten by the final agent when there is one)."""
    from recguard.kit.lm.generation import yes_probability

    rng = np.random.default_rng([seed, 11])
    triggers = sample_initial_triggers(len(titles), vocabulary, plan.m1, plan.m2, rng,
                                       plan.title_case)
    picks = rng.random(len(titles)) < 0.5 if agent is not None else np.zeros(len(titles), bool)
    samples = make_samples(titles, triggers, picks, agent, plan.position, rng, seed * 1000 + 999)
    p_yes = yes_probability(scanner, tokenizer, scan_prompts(tokenizer, template,
                                                             [s.text for s in samples]))
    return accuracy_report(samples, p_yes)


def calibration_titles(plan: ScannerPlan, seed: int, n: int) -> list[str]:
    """``n`` synthetic benign titles of the seed's pool that training did not use (its
    rounds' and the held-out check's)."""
    used = plan.rounds * plan.n_items + plan.n_heldout
    trained_on = set(benign_pool(seed, used)) if used else set()
    return [t for t in benign_pool(seed, used + n + len(trained_on)) if t not in trained_on][:n]


def calibrated_threshold(scanner, tokenizer, plan: ScannerPlan, seed: int, n: int,
                         false_alarm: float) -> float:
    """The P(Yes) above which ``false_alarm`` of `calibration_titles` would be flagged: the
    (1 - false_alarm) quantile of the scanner's scores on them.

    Ours, not the paper's (Eq. 9 flags an answer 'Yes', P(Yes) > 0.5). A small scanner's
    scores move as a whole with its training size and with float rounding: the same scanner
    family flags 8-30% of synthetic benign titles at 0.5 (the README's measurements). A
    threshold at a fixed share of the defender's own benign titles needs no knowledge of the
    attack and keeps that share fixed."""
    return threshold_flagging(calibration_scores(scanner, tokenizer, plan, seed, n), false_alarm)


def calibration_scores(scanner, tokenizer, plan: ScannerPlan, seed: int, n: int) -> np.ndarray:
    """The scanner's P(Yes) on the ``n`` `calibration_titles`."""
    from recguard.kit.lm.generation import yes_probability

    template = load_prompt("recguard_pscanner", SCAN_PROMPT)
    titles = calibration_titles(plan, seed, n)
    return yes_probability(scanner, tokenizer, scan_prompts(tokenizer, template, titles))


def threshold_flagging(scores: np.ndarray, share: float) -> float:
    """The P(Yes) above which ``share`` of ``scores`` lie: their (1 - share) quantile."""
    return float(np.quantile(scores, 1.0 - share))


# ---------------------------------------------------------------- cache


def cache_key(plan: ScannerPlan, seed: int) -> str:
    from dataclasses import asdict

    from recguard.kit.lm.models import model_identity, precision_name, resolve_device

    # what training ran on, not the options' spelling: "auto" on a CPU and "cpu" agree, and
    # an "auto" that ran under bf16 autocast does not share a plain float32 scanner
    resolved = {"device": resolve_device(plan.device).split(":")[0],
                "dtype": precision_name(plan.dtype, plan.device)}
    record = {"version": CACHE_VERSION, "seed": seed,
              "plan": {**asdict(plan), **resolved,
                       "agent": asdict(plan.agent) | resolved if plan.agent else None},
              "scanner": model_identity(plan.scanner_model),
              "scan_prompt": load_prompt("recguard_pscanner", SCAN_PROMPT)}
    if plan.finetune and plan.augment:
        record.update(agent=model_identity(plan.agent_model),
                      agent_prompt=load_prompt("recguard_pscanner", AGENT_PROMPT))
    return json_digest(record, 20)


def scanner_dir(plan: ScannerPlan, seed: int) -> Path:
    return cache_dir() / "pscanner" / cache_key(plan, seed)


def load_cached(plan: ScannerPlan, folder: Path):
    """The scanner rebuilt from the cached round adapters (merged in order), its tokenizer, notes."""
    from recguard.kit.lm.models import load_causal_lm
    from recguard.kit.lm.sft import load_lora, merged_lora

    notes = json.loads((folder / META).read_text())
    scanner, tokenizer = load_causal_lm(plan.scanner_model, dtype=plan.dtype, device=plan.device)
    for t in range(notes["trained_rounds"]):
        scanner = merged_lora(load_lora(scanner, folder / f"round{t}"))
    return scanner, tokenizer, notes


def prepare_scanner(plan: ScannerPlan, seed: int, log=print, use_cache: bool = True):
    """(scanner, tokenizer, notes): from the cache when this plan and seed were trained
    before, else trained now and cached; ``use_cache=False`` (`--no-cache`) trains now and
    keeps nothing. ``notes["cache"]`` says which (hit, miss, off)."""
    if not use_cache:
        with tempfile.TemporaryDirectory(prefix="recguard-pscanner-") as work:
            scanner, tokenizer, notes = train_scanner(plan, seed, Path(work), log)
        return scanner, tokenizer, {**notes, "trained_rounds": plan.rounds if plan.finetune else 0,
                                    "cache": "off"}
    folder = scanner_dir(plan, seed)
    if (folder / META).is_file():
        scanner, tokenizer, notes = load_cached(plan, folder)
        return scanner, tokenizer, {**notes, "cache": "hit"}
    with atomic_folder(folder) as tmp:
        scanner, tokenizer, notes = train_scanner(plan, seed, tmp, log)
        notes["trained_rounds"] = plan.rounds if plan.finetune else 0
        atomic_write_json(tmp / META, notes)
    return scanner, tokenizer, {**notes, "cache": "miss"}
