"""The `p-scanner` defense: options, and the detection phase (Eq. 9) as an `AnswerFilter`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal, Sequence

from recguard import AnswerFilter, Config, Defense, DefenseContext, LLMModel, Request, param
from recguard.kit.lm.prompts import load_prompt
from recguard.kit.lm.sft import LoraSettings, TrainSettings

from recguard_pscanner.agent import AgentSettings
from recguard_pscanner.scanner import (SCAN_PROMPT, ScannerPlan, calibrated_threshold,
                                       prepare_scanner, scan_prompts)

PAPER = ("Wang et al., Poison Scanner (P-Scanner) in 'Backdoor Injection Poisoning for "
         "LLM-empowered Recommender Systems' (BadRec), sec. 4, Eq. 4-9, Algorithm 2")


@dataclass
class PScannerConfig(Config):
    scanner_model: str | None = param(None, "scanner LM D_Psi: None for the packaged SmolLM2-135M-"
                                            "Instruct (paper: LLaMA), or a local folder")
    agent_model: str | None = param(None, "trigger augmentation agent P_Phi: None for the packaged "
                                          "SmolLM2-135M-Instruct (paper: a paraphraser LLM [35])")
    finetune: bool = param(True, "false: w/o FT (sec. 5.3.2), the general-purpose LM prompted "
                                 "zero-shot as the scanner; nothing is trained")
    augment: bool = param(True, "false: w/o TA (sec. 5.3.2), only initial triggers, no agent")
    rounds: int = param(2, "T, adversarial rounds of Algorithm 2 (not given; ours, CPU-sized)", low=1)
    n_items: int = param(256, "synthetic items per round (not given; ours, CPU-sized: 48 left the "
                              "scanner flagging every title)", low=2)
    n_heldout: int = param(32, "fresh synthetic items to check the trained scanner on (notes only)",
                           low=0)
    epochs: float = param(1.0, "scanner epochs per round (ours, CPU-sized)", low=0, open_low=True)
    lr: float = param(1e-3, "scanner LoRA learning rate (ours: high, few steps on CPU)", low=0,
                      open_low=True)
    batch_size: int = param(4, "scanner fine-tuning batch size (ours; 8 gave half the steps, and "
                               "the balanced scanner caught 80-86% of the sentence-triggered "
                               "titles at Eq. 9's 0.5 on two seeds of three)", low=1)
    lora_r: int = param(8, "LoRA rank of the scanner and the agent", low=1)
    lora_alpha: int = param(16, "LoRA alpha of the scanner and the agent", low=1)
    target_modules: tuple[str, ...] = param(
        ("q_proj", "v_proj"), "modules the scanner's and the agent's LoRA adapt (not given; "
        "ours, as TALLRec's; every projection at lr 2e-3 collapsed to 'Yes' for every title)")
    lora_dropout: float = param(0.0, "LoRA dropout of the scanner and the agent (peft's "
                                     "default 0.05 costs a quarter of each step on a CPU and "
                                     "buys nothing in one epoch)", low=0, high=1, open_high=True)
    threshold: float = param(0.5, "flag an item when the scanner's P(Yes) exceeds this (Eq. 9: "
                                  "answer 'Yes'); see false_alarm", low=0, high=1)
    false_alarm: float = param(
        0.0, "0: the threshold above (the paper's). Above 0 (ours): the threshold is set after "
             "training so that this share of fresh synthetic benign titles (the defender's own, "
             "never trained on) is flagged", low=0, high=1, open_high=True)
    n_calibration: int = param(300, "false_alarm > 0: fresh synthetic benign titles that set "
                                    "the threshold", low=1)
    m1: int = param(3, "shortest sentence-level initial trigger in tokens (B.1.2: 3)", low=1)
    m2: int = param(6, "longest sentence-level initial trigger in tokens (B.1.2: 6)", low=1)
    script_letters: bool = param(
        True, "initial triggers (Eq. 4) also draw single letters of other scripts, which "
              "LLaMA's vocabulary (the paper's) holds as tokens and SmolLM2's byte-level one "
              "spells in byte pieces; false: the tokenizer's own tokens only")
    title_case: float = param(
        0.0, "share of initial triggers whose tokens are capitalised as a title's words "
             "(ours; 0: as the vocabulary spells them, the paper)", low=0, high=1)
    balance_labels: bool = param(
        True, "the scanner trains on as many 'No' as 'Yes' samples, the rarer repeated (ours: "
              "Eq. 4 makes two thirds 'Yes', and a scanner trained on that share answered 'Yes' "
              "to nearly every title on one seed of three); false: Eq. 4's share as drawn")
    position: Literal["end", "random", "both"] = param(
        "both", "where synthetic triggers go: title end, a random word boundary, or either "
                "(each item draws one; the paper evaluates End and Random attacks)")
    agent_temperature: float = param(0.8, "agent sampling temperature", low=0, open_low=True)
    agent_max_new_tokens: int = param(16, "agent rewrite length cap in tokens", low=1)
    agent_steps: int = param(2, "agent gradient steps per round on Eq. 8", low=0)
    agent_lr: float = param(1e-4, "agent LoRA learning rate (AdamW)", low=0, open_low=True)
    agent_max_nll: float = param(6.0, "clamp of the per-token NLL of a U = -1 rewrite in Eq. 8 "
                                      "(keeps the unlikelihood part bounded)", low=0, open_low=True)
    agent_batch_size: int = param(8, "rewrites per agent generation pass and per Eq. 8 step "
                                     "(not given; ours)", low=1)
    scan_batch: int = param(16, "titles per scanner forward pass at inference", low=1)
    device: str = param("auto", "where the scanner and the agent run: auto (this process's GPU, "
                                "else the CPU), cpu, cuda, cuda:1 ...")
    dtype: Literal["auto", "float32", "bfloat16", "float16", "mixed"] = param(
        "auto", "scanner and agent weights (recguard.kit.lm.models.resolve_precision: auto is bfloat16 "
                "on a GPU or an AMX CPU; mixed: float32 under bf16 autocast)")


def plan_of(cfg: PScannerConfig) -> ScannerPlan:
    from recguard import RecguardError

    if cfg.m1 > cfg.m2:
        raise RecguardError(f"p-scanner needs m1 <= m2 (got m1={cfg.m1}, m2={cfg.m2})")
    lora = LoraSettings(r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout,
                        target_modules=tuple(cfg.target_modules))
    agent = AgentSettings(model=cfg.agent_model, lora=lora, temperature=cfg.agent_temperature,
                          max_new_tokens=cfg.agent_max_new_tokens, steps=cfg.agent_steps,
                          lr=cfg.agent_lr, max_nll=cfg.agent_max_nll, batch_size=cfg.agent_batch_size,
                          device=cfg.device, dtype=cfg.dtype)
    use_agent = cfg.finetune and cfg.augment
    return ScannerPlan(
        scanner_model=cfg.scanner_model, agent_model=cfg.agent_model if use_agent else None,
        finetune=cfg.finetune, augment=cfg.augment, rounds=cfg.rounds if cfg.finetune else 0,
        n_items=cfg.n_items if cfg.finetune else 0, n_heldout=cfg.n_heldout, m1=cfg.m1, m2=cfg.m2,
        position=cfg.position, scanner_lora=lora,
        train=TrainSettings(epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, shuffle=False),
        agent=agent if use_agent else None, script_letters=cfg.script_letters,
        title_case=cfg.title_case, balance_labels=cfg.balance_labels,
        device=cfg.device, dtype=cfg.dtype)


def scan_threshold(cfg: PScannerConfig, scanner, tokenizer, seed: int) -> float:
    """The P(Yes) above which a title is flagged: ``threshold``, or with ``false_alarm`` > 0
    the trained scanner's calibrated one (`calibrated_threshold`)."""
    if cfg.false_alarm <= 0:
        return cfg.threshold
    return calibrated_threshold(scanner, tokenizer, plan_of(cfg), seed, cfg.n_calibration,
                                cfg.false_alarm)


class ScanFilter(AnswerFilter):
    """Eq. 9: candidates (choose) or the asked item (yes_no) whose title the scanner
    answers 'Yes' to (P(Yes) > threshold) leave the pool before the victim answers."""

    def __init__(self, inner: LLMModel, scanner, tokenizer, threshold: float, batch_size: int,
                 notes: dict):
        super().__init__(inner)
        self.scanner, self.tokenizer = scanner, tokenizer
        self.template = load_prompt("recguard_pscanner", SCAN_PROMPT)
        self.threshold, self.batch_size = threshold, batch_size
        self.p_yes: dict[str, float] = {}          # by title text: requests share titles
        self.notes = notes
        notes.update(titles_scanned=0, titles_flagged=0, seconds_scan=0.0, items_removed=0)

    def scan(self, titles: Sequence[str]) -> None:
        """Score the titles not seen before, in one batched pass."""
        from recguard.kit.lm.generation import yes_probability

        new = [t for t in dict.fromkeys(titles) if t not in self.p_yes]
        if not new:
            return
        started = time.perf_counter()
        p = yes_probability(self.scanner, self.tokenizer,
                            scan_prompts(self.tokenizer, self.template, new),
                            batch_size=self.batch_size)
        self.p_yes.update(zip(new, (float(x) for x in p)))
        self.notes["titles_scanned"] = len(self.p_yes)
        self.notes["titles_flagged"] = sum(v > self.threshold for v in self.p_yes.values())
        self.notes["seconds_scan"] = round(self.notes["seconds_scan"] + time.perf_counter() - started, 2)

    def pool(self, request: Request) -> tuple[int, ...]:
        return request.candidates if self.task == "choose" else (request.target,)

    def inspect(self, requests: Sequence[Request]):
        self.scan([r.title(i, self.catalog) for r in requests for i in self.pool(r)])
        out = []
        for r in requests:
            flagged = frozenset(i for i in self.pool(r)
                                if self.p_yes[r.title(i, self.catalog)] > self.threshold)
            self.notes["items_removed"] += len(flagged)
            out.append((r.without(flagged) if flagged else r, flagged))
        return out


class PScannerDefense(Defense):
    name = "p-scanner"
    summary = ("P-Scanner: an LLM scanner, fine-tuned on synthetic triggers from an adversarially "
               "trained rewrite agent, removes items whose title it finds noisy")
    paper = PAPER
    stages = frozenset({"at_inference"})
    backbone_kinds = frozenset({"llm"})
    default_backbone = "llara"   # the victim of the paper's Table 2
    Config = PScannerConfig

    def at_inference(self, model: LLMModel, train, ctx: DefenseContext) -> LLMModel:
        import sys

        scanner, tokenizer, trained = prepare_scanner(
            plan_of(self.config), ctx.seed, log=lambda line: print(line, file=sys.stderr),
            use_cache=ctx.use_cache)
        notes = ctx.notes.setdefault("p-scanner", {})
        notes["training"] = trained
        threshold = scan_threshold(self.config, scanner, tokenizer, ctx.seed)
        if self.config.false_alarm > 0:
            notes["calibration"] = {"n": self.config.n_calibration,
                                    "false_alarm": self.config.false_alarm,
                                    "threshold": round(threshold, 4)}
        return ScanFilter(model, scanner, tokenizer, threshold, self.config.scan_batch, notes)
