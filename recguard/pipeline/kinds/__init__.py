"""Task kinds: what a fitted model is asked and how its answers are scored, chosen from the
protocol's task kind (as lm-evaluation-harness picks a task's scoring from its output type).

    ranking   a score for every item; ranking metrics on top-k lists   `RankingKind`
    choose    one candidate among several (LLaRA)                      `AnswersKind`
    yes_no    P(Yes) for one item (TALLRec)                            `AnswersKind`

A new kind subclasses `TaskKind`, is listed here and in `recguard.protocols.TASK_KINDS`,
and brings its metrics through the metric registry (``task_kinds`` on the metric).
"""

from __future__ import annotations

from recguard.pipeline.kinds.answers import AnswersKind
from recguard.pipeline.kinds.base import SeedData, TaskKind
from recguard.pipeline.kinds.ranking import RankingKind
from recguard.plan import Plan
from recguard.progress import Progress

KINDS: dict[str, type[TaskKind]] = {"ranking": RankingKind, "choose": AnswersKind, "yes_no": AnswersKind}

__all__ = ["KINDS", "SeedData", "TaskKind", "kind_for"]


def kind_for(plan: Plan, progress: Progress) -> TaskKind:
    return KINDS[plan.protocol.task_kind](plan, progress)
