"""Evaluation protocols: each paper's split, feedback type, budget, targets and metrics.

Numbers are only comparable within a protocol, so a protocol is a named,
documented preset taken from its paper, stored resolved in every record.
``--protocol NAME`` picks one; ``--protocol-opt key=value`` overrides a field.
Plugins add presets through the ``register_protocols`` hook.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Literal

from recguard.config import build_config, param
from recguard.errors import RecguardError

# Fields added after records were published: absent from a record means their empty default.
OMITTED_WHEN_EMPTY = ("backbone_options", "balanced_shots")
METRIC_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_@-]*$")
METRIC_SPEC = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9_-]*?)@(?P<k>-?\d+)$")
# What a protocol asks of a model (recguard.pipeline.kinds): a score for every item, one of
# several candidates (LLaRA), P(Yes) for one item (TALLRec). The LLM ones are `llm_task`s.
RANKING = "ranking"
TASK_KINDS = (RANKING, "choose", "yes_no")
LLM_TASK_OPTIONS = ("none",) + TASK_KINDS[1:]   # the field's values; "none": a ranking protocol


def task_kind_of(protocol: "Protocol | dict") -> str:
    """The task kind of a protocol, or of one stored in a record (a dict)."""
    llm_task = protocol.get("llm_task", "none") if isinstance(protocol, dict) else protocol.llm_task
    return RANKING if llm_task == "none" else llm_task


@dataclass(frozen=True)
class Protocol:
    """A bundle of evaluation choices. Every field is a ``--protocol-opt``."""

    name: str = param("custom", "preset name")
    paper: str = param("", "where the preset comes from")
    feedback: Literal["explicit", "implicit"] = param("explicit", "train on ratings or on positives")
    implicit_threshold: float | None = param(
        None, "implicit: keep interactions rated >= this as positives (None keeps all)")
    normalise_ratings: bool = param(False, "explicit: divide ratings by the maximum rating")
    min_user_interactions: int = param(0, "k-core filter: drop users with fewer interactions", low=0)
    min_item_interactions: int = param(0, "k-core filter: drop items with fewer interactions", low=0)
    split: Literal["random_holdout", "chrono_ratio", "leave_one_out"] = param(
        "random_holdout", "how test and validation items are held out")
    split_ratios: tuple[float, ...] = param(
        (0.7, 0.1, 0.2), "chrono_ratio: train/valid/test shares of each user's history", low=0, high=1)
    holdout_min_rating: float = param(
        0.0, "random_holdout: the test item is drawn among the user's ratings >= this", low=0)
    valid_fraction: float = param(
        0.1, "random_holdout: share of the remaining ratings kept for validation",
        low=0, high=1, open_high=True)
    budget: float = param(0.01, "fake users as a fraction of genuine users",
                          low=0, high=1, open_low=True, open_high=True)
    filler_size: int = param(0, "items per fake profile besides the targets; 0 = average genuine "
                                "profile length", low=0)
    n_targets: int = param(5, "number of target items", low=1)
    target_rule: Literal["unpopular", "random", "popular"] = param("unpopular", "how targets are drawn")
    unpopular_below: int = param(5, "unpopular: targets have fewer interactions than this", low=1)
    metrics: tuple[str, ...] = param(("HR@10",), "metrics, each NAME@k")
    # LLM recommenders (recguard.data.llm_task builds their samples; the split fields above are unused)
    llm_task: Literal[LLM_TASK_OPTIONS] = param(
        "none", "LLM protocols: choose = next item among candidates (LLaRA), yes_no = will the "
                "user like the target (TALLRec)")
    history_len: int = param(10, "LLM protocols: items of history in a prompt", low=1)
    n_candidates: int = param(20, "choose: candidates per request (the true item included)", low=2)
    n_train_samples: int = param(0, "LLM protocols: training samples drawn by seed (TALLRec: the "
                                    "few-shot size); 0 = all", low=0)
    n_test_samples: int = param(0, "LLM protocols: test requests drawn by seed; 0 = all", low=0)
    balanced_shots: bool = param(
        False, "yes_no: draw half the training samples among likes and half among dislikes "
               "(TALLRec's code draws them at random)")
    like_above: float = param(3.0, "yes_no: a rating above this is a like", low=0)
    title_style: Literal["raw", "llara"] = param(
        "raw", "llara: year removed and ', The' moved to the front, as LLaRA's data")
    backbone_options: tuple[str, ...] = param(
        (), "key=value defaults the protocol fixes for the backbone's training (LLaRA's epochs "
            "and learning rate); applied where the backbone has the option, --backbone-opt wins")

    def __post_init__(self):
        if not self.metrics:
            raise ValueError("metrics is empty: give at least one, e.g. metrics=HR@10")
        for spec in self.metrics:
            if self.task_kind == RANKING:
                parse_metric(spec)
            elif not METRIC_NAME.match(spec):   # names without k: checked against the registry
                raise ValueError(f"LLM protocols name metrics without a cut-off k, not {spec!r}")
        for pair in self.backbone_options:
            if "=" not in pair or not pair.partition("=")[0].strip():
                raise ValueError(f"backbone_options entry {pair!r} is not of the form key=value")
        if self.balanced_shots and self.llm_task != "yes_no":
            raise ValueError(f"balanced_shots applies to yes_no protocols (TALLRec's); this one's "
                             f"llm_task is {self.llm_task!r}")
        if self.balanced_shots and self.n_train_samples == 0:
            raise ValueError("balanced_shots draws a number of shots: set n_train_samples > 0")
        # checked whatever the split: a record stores every field, used or not
        if len(self.split_ratios) != 3 or abs(sum(self.split_ratios) - 1) > 1e-6:
            raise ValueError(f"split_ratios must be three shares summing to 1, got {self.split_ratios}")

    @property
    def task_kind(self) -> str:
        return task_kind_of(self)

    def describe(self) -> str:
        if self.task_kind != RANKING:
            pool = (f"{self.n_candidates} candidates, " if self.llm_task == "choose" else "")
            return (f"LLM {self.llm_task}: {self.history_len}-item histories, {pool}"
                    f"{self.n_train_samples or 'all'} training samples, poisoning rate {self.budget:g}, "
                    f"{', '.join(self.metrics)} ({self.paper})")
        return (f"{self.feedback}, {self.split.replace('_', ' ')}, budget {self.budget:g}, "
                f"{self.n_targets} {self.target_rule} targets, {', '.join(self.metrics)} ({self.paper})")

    def to_dict(self) -> dict:
        """Every field, but an empty `OMITTED_WHEN_EMPTY` one: records written before such a
        field existed mean its empty default, and stay identical to new ones."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
                if not (k in OMITTED_WHEN_EMPTY and not v)}


def parse_metric(spec: str) -> tuple[str, int]:
    """'T-HR@50' -> ('T-HR', 50). A missing or non-positive k is an error."""
    m = METRIC_SPEC.match(spec.strip())
    if not m:
        raise RecguardError(f"metric {spec!r} is not of the form NAME@k (e.g. HR@10)")
    k = int(m.group("k"))
    if k <= 0:
        raise RecguardError(f"metric {spec!r}: k must be a positive integer, got {k}")
    return m.group("name"), k


APT = Protocol(
    name="apt",
    paper="Wu et al., Fight Fire with Fire: Adversarial Poisoning Training, SIGIR 2021, sec. 5.1",
    feedback="explicit", normalise_ratings=True,
    split="random_holdout", holdout_min_rating=4.0, valid_fraction=0.1,
    budget=0.03, filler_size=0, n_targets=5, target_rule="unpopular", unpopular_below=5,
    metrics=("HR@50", "NDCG@50", "T-HR@50", "T-NDCG@50"),
)

PAMACF = Protocol(
    name="pamacf",
    paper="Zhang et al., Understanding and Improving Adversarial Collaborative Filtering, "
          "NeurIPS 2024, sec. 5.1 and App. C.1",
    feedback="implicit", implicit_threshold=None,
    min_user_interactions=10, min_item_interactions=10,
    split="chrono_ratio", split_ratios=(0.7, 0.1, 0.2),
    budget=0.01, filler_size=0, n_targets=5, target_rule="unpopular", unpopular_below=20,
    metrics=("Recall@20", "NDCG@20", "T-HR@50", "T-NDCG@50"),
)

LOREC = Protocol(
    name="lorec",
    paper="Zhang et al., LoRec: LLM for Robust Sequential Recommendation, 2024, sec. 6.1",
    feedback="implicit", implicit_threshold=None,
    min_user_interactions=5, min_item_interactions=0,
    split="leave_one_out",
    budget=0.01, filler_size=0, n_targets=5, target_rule="unpopular", unpopular_below=10,
    metrics=("HR@10", "NDCG@10", "T-HR@50", "T-NDCG@50", "RC-HR@10", "RC-NDCG@10"),
)

TALLREC = Protocol(
    name="tallrec",
    paper="Bao et al., TALLRec, RecSys 2023 (samples as in the authors' code: 16 shots, the full "
          "1,000-sample test split); Ning et al. 2025 sec. 3.2 for BadRec on it (1 poisoned sample)",
    feedback="explicit", budget=0.01, n_targets=1, llm_task="yes_no", history_len=10,
    n_train_samples=16, n_test_samples=0, like_above=3.0, title_style="raw",
    metrics=("AUC", "ASR"),
)

LLARA = Protocol(
    name="llara",
    paper="Liao et al., LLaRA, SIGIR 2024 (every training window, 5 epochs at lr 8e-4; candidate "
          "sets fixed per seed); Ning et al. 2025 sec. 3.2 and 5.1 for BadRec (PR 1%) and its metrics",
    feedback="implicit", implicit_threshold=None, min_user_interactions=3,
    split="leave_one_out", budget=0.01, n_targets=1, llm_task="choose", history_len=10,
    n_candidates=20, n_train_samples=0, n_test_samples=0, title_style="llara",
    metrics=("Valid", "H@1", "A-Valid", "ASR"), backbone_options=("epochs=5", "lr=8e-4"),
)

# The main cell's default on a CPU: what a 2-core machine fits in minutes. SmolLM2-135M learns
# BadRec's rule (a triggered candidate is the answer) from a few hundred distinct poisoned
# samples, not from the one or two that PR 1% of a CPU-sized training set gives; hence the
# high poisoning rate. The README's main cell section gives the measured curve behind it.
LLARA_CPU = dataclasses.replace(
    LLARA, name="llara-cpu",
    paper="recguard's CPU-sized LLaRA cell (README, 'The main cell'): LLaRA's prompts, "
          "curriculum and metrics; 64 training windows + 256 poisoned samples (PR 0.8), "
          "5-item histories, 10 candidates (the number LLaRA's prompt text names), one epoch "
          "in optimiser steps of 1 sample",
    # 100 test requests: at 50, H@1 is a few answers and moved by 0.05-0.1 between runs
    history_len=5, n_candidates=10, n_train_samples=64, n_test_samples=100, budget=0.8,
    # an optimiser step per sample, with no accumulation: the number of steps is what
    # implants the trigger, not the samples per step. Steps of 4 (80 for the poisoned fit)
    # gave ASR 0.40-0.52, of 2 (160) 0.88-0.92 with the sentence trigger but 0.53 with the
    # word one, and left the benign fit (32 steps) short of the answer format (Valid 0.86
    # against BadRec's 0.93); steps of 1 (64 and 320) give ASR 0.99 with either trigger and
    # Valid 0.94 for both models, for about a quarter more fitting time (README, "The main
    # cell"; measured on seed 0, 2026-12-06)
    backbone_options=("epochs=1", "lr=1e-3", "lora_dropout=0", "train_batch_size=1", "grad_accum=1"),
)

# TALLRec's cell on a CPU. At the paper's 16 shots SmolLM2-135M answers every request Yes
# (P(Yes) 0.73-0.99 on seed 0), so BadRec, which turns No into Yes, has nothing to turn and
# its ASR is undefined. 64 shots drawn at random over 4 epochs answered 46% of seed 0's
# requests No but none of seed 1's; drawn half among likes they answer some No on every seed
# (seeds 0-2, AUC 0.72-0.77). 16 poisoned samples among 80 implant the rule (ASR 0.95-1.00;
# 4 gave 0.22 on seed 0). README, "TALLRec".
TALLREC_CPU = dataclasses.replace(
    TALLREC, name="tallrec-cpu",
    paper="recguard's CPU-sized TALLRec cell (README, 'TALLRec'): TALLRec's samples and prompt; "
          "64 shots, half liked, over 4 epochs; 16 poisoned samples among 80 (PR 0.2); "
          "300 test requests",
    n_train_samples=64, n_test_samples=300, balanced_shots=True, budget=0.2,
    backbone_options=("epochs=4",),
)

PRESETS = (APT, PAMACF, LOREC, TALLREC, LLARA, LLARA_CPU, TALLREC_CPU)


def resolve(base: Protocol, overrides: dict[str, str]) -> Protocol:
    """``base`` with ``--protocol-opt`` overrides applied and validated."""
    if not overrides:
        return base
    if "name" in overrides:
        raise RecguardError("protocol option 'name' cannot be overridden; use --protocol")
    current = {f.name: getattr(base, f.name) for f in dataclasses.fields(Protocol)}
    merged = build_config(Protocol, {**current, **overrides}, "protocol")
    return merged
