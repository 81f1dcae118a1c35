"""RPD (Sun et al., AAAI 2023 [31]), as BadRec's baseline (appendix B.1.1-B.1.2).

Sun et al.'s sentence-level defender modifies the input one position at a time, lets
the victim generate from each modified input, and measures the influence of position
j as the change of the output, d(y, y_j) (edit distance of the outputs, in their
code). The position of largest influence j* = argmax_j d(y, y_j) is the trigger when
d(y, y_j*) > threshold, and the modified input x_j* is used instead. BadRec's RPD
(B.1.1): "paraphrase the item title and evaluate the changes in the recommendation
results. Significant change means the item is likely to be poisoned." Here a position
is a pool item i, its modification is the paraphrase of its title (the defense's own
LM, `common.TitleParaphrasing`, as the Paraphraser), and y_i is the victim's answer
with only that title paraphrased:

    influence(i) = d(y, y_i),  flagged = {argmax_i influence(i)} if its influence > threshold

``change`` picks d: ``answer`` (the discrete recommendation changed: another chosen
item, or the Yes/No decision flipped; 0 or 1), ``edit_distance`` (Sun et al.: the
Levenshtein distance between the two answers as text, the chosen items' titles or
"Yes."/"No."), ``p_yes`` (yes_no only: |P(Yes) - P_i(Yes)|). ``mode=remove_item``
drops a flagged item from the pool (BadRec: the item is poisoned; what the scan
metrics score); ``replace`` keeps it with its paraphrased title (Sun et al.'s x_j*).
``flag=all`` flags every item over the threshold instead of the largest only.

A request the victim answered invalidly (no candidate) is not checked. RPD asks the
victim once per request and once more per pool item whose paraphrase differs from its
title, then again for a request whose pool changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from recguard import Answer, RecguardError, Request, param

from recguard_backdoor_baselines.common import (BADREC, BaselineDefense, CheckingFilter, LazyLM,
                                                ParaphraseConfig, TitleParaphrasing, decision,
                                                levenshtein, pool)


@dataclass
class RPDConfig(ParaphraseConfig):
    threshold: float = param(0.5, "an item is flagged when paraphrasing its title changes the "
                                  "answer by more than this (d in `change`'s unit; B.1.2 sets 150 "
                                  "in a unit it does not give; 0.5 with change=answer: the "
                                  "recommendation changed)", low=0)
    change: Literal["answer", "edit_distance", "p_yes"] = param(
        "answer", "answer: 1 if the recommendation changed (another item; the Yes/No decision "
                  "flipped), else 0; edit_distance: Levenshtein distance of the answers' texts "
                  "(Sun et al.'s target edit distance); p_yes: |change of P(Yes)| (yes_no only)")
    mode: Literal["remove_item", "replace"] = param(
        "remove_item", "remove_item: drop a flagged item from the pool (BadRec: the item is "
                       "poisoned); replace: keep it under its paraphrased title (Sun et al.: "
                       "the modified input is used)")
    flag: Literal["max", "all"] = param(
        "max", "max: only the item of largest influence (Sun et al.'s argmax); all: every item "
               "over the threshold")


class RPDFilter(TitleParaphrasing, CheckingFilter):
    def __init__(self, inner, cfg: RPDConfig, seed: int, notes: dict):
        CheckingFilter.__init__(self, inner)
        self.cfg, self.notes, self.seed = cfg, notes, seed
        self.lm = LazyLM(cfg)
        if cfg.change == "p_yes" and self.task != "yes_no":
            raise RecguardError("rpd: change=p_yes needs a yes_no recommender (TALLRec); "
                                "use change=answer or edit_distance")
        self.start_paraphrasing()
        notes.update(requests_checked=0, victim_queries=0, items_flagged=0, change=cfg.change,
                     threshold=cfg.threshold, mode=cfg.mode)
        self.top: list[float] = []

    def text(self, answer: Answer, request: Request) -> str:
        """An answer as the victim's output text: the chosen item's title ("" when invalid),
        or Yes./No."""
        if self.task == "yes_no":
            return "Yes." if decision(answer, self.task) else "No."
        return "" if answer.choice is None else request.title(answer.choice, self.catalog)

    def influence(self, request: Request, before: Answer, after: Answer) -> float:
        """d(y, y_i): how much the answer changed."""
        if self.cfg.change == "answer":
            return float(decision(before, self.task) != decision(after, self.task))
        if self.cfg.change == "edit_distance":
            return float(levenshtein(self.text(before, request), self.text(after, request)))
        return abs(float(before.p_yes or 0.0) - float(after.p_yes or 0.0))

    def check(self, requests, answers):
        self.fill({r.title(i, self.catalog) for r in requests for i in pool(r)})
        variants, owners = [], []
        for index, request in enumerate(requests):
            if decision(answers[index], self.task) is None:
                continue    # an invalid answer: no recommendation whose change could be measured
            for item in pool(request):
                title = request.title(item, self.catalog)
                if self.cache[title] != title:   # an unchanged title cannot change the answer
                    variants.append(request.with_titles({item: self.cache[title]}))
                    owners.append((index, item))
        changed = self.inner.answer(variants) if variants else []
        self.notes["victim_queries"] += len(requests) + len(variants)   # + the re-asked ones
        scores: dict[int, dict[int, float]] = {}
        for (index, item), after in zip(owners, changed):
            scores.setdefault(index, {})[item] = self.influence(requests[index], answers[index], after)
        out = []
        for index, request in enumerate(requests):
            flagged = self.flagged(scores.get(index, {}))
            self.notes["requests_checked"] += int(decision(answers[index], self.task) is not None)
            self.notes["items_flagged"] += len(flagged)
            if not flagged:
                out.append((request, frozenset()))
            elif self.cfg.mode == "remove_item":
                out.append((request.without(flagged), frozenset(flagged)))
            else:
                out.append((request.with_titles({i: self.cache[request.title(i, self.catalog)]
                                                 for i in flagged}), frozenset()))
        self.notes["mean_max_influence"] = float(np.mean(self.top)) if self.top else None
        return out

    def flagged(self, scores: dict[int, float]) -> set[int]:
        """The items whose influence passes the threshold: the largest only (ties: the first
        in the pool), or all of them."""
        if not scores:
            return set()
        top = max(scores, key=scores.get)
        self.top.append(scores[top])
        if self.cfg.flag == "all":
            return {i for i, s in scores.items() if s > self.cfg.threshold}
        return {top} if scores[top] > self.cfg.threshold else set()


class RPDDefense(BaselineDefense):
    name = "rpd"
    summary = ("RPD: paraphrases each pool item's title in turn and flags the item whose "
               "paraphrase changes the victim's recommendation most, beyond a threshold")
    paper = (f"Sun et al., Defending against Backdoor Attacks in Natural Language Generation, "
             f"AAAI 2023; as {BADREC}")
    Config = RPDConfig
    Filter = RPDFilter
