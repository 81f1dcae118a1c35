"""CoS, Chain-of-Scrutiny (Li et al., 2024 [18]), as BadRec's baseline (appendix B.1.1).

A backdoor is a shortcut from the trigger to the attacker's output that no reasoning
supports. CoS (1) writes a few demonstrations of reasoning for the task, (2) asks an
LLM to reason step by step about the same input and give its own answer y_CoS, and
(3) scrutinises the original output y against it: y_CoS != y (an inconsistency)
flags the input as attacked. BadRec (B.1.1): CoS "guides LLMs to generate reasoning
steps based on the recommendation results and determine whether such reasoning is
reasonable"; here the victim first answers (y: the chosen candidate, or Yes/No),
then the reasoner reasons over the same history and pool (`prompts/cos_<task>.txt`
with the demonstrations of `prompts/cos_demos_<task>.txt`) and ends with
"Answer: ...", which is parsed into y_CoS (the one candidate whose title it names;
Yes or No). An inconsistent request has its answered item removed (the chosen
candidate; the asked item, P(Yes) = 0) and the victim answers the rest of the pool.

``scrutiny=judge`` (the other reading of step 3) asks the reasoner instead whether
its reasoning supports y (`prompts/cos_judge.txt`); P(Yes) < ``judge_threshold``
flags. ``reasoner=defense`` reasons with the defense's own general-purpose LM
(BadRec: "CoS introduces a large language model ... general-purpose LLMs" lack the
recommendation knowledge); ``reasoner=victim`` with the victim's own LM (CoS proper:
the same LLM answers and reasons), for recommenders that expose it (``.lm`` and
``.tokenizer``, as the llara and tallrec models do).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from recguard import RecguardError, Request, param

from recguard_backdoor_baselines.common import (BADREC, QUOTES, BaselineDefense, CheckingFilter,
                                                LMConfig, LazyLM, chat_prompt, decision)

ANSWER = re.compile(r"answer\s*:", re.IGNORECASE)
YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


@dataclass
class COSConfig(LMConfig):
    reasoner: Literal["defense", "victim"] = param(
        "defense", "who reasons: defense = the defense's own LM (`model`; BadRec: a general-purpose "
                   "LLM); victim = the recommender's own LM (CoS: the attacked LLM itself)")
    demonstrations: int = param(2, "reasoning demonstrations in the prompt, from "
                                   "prompts/cos_demos_<task>.txt (CoS: a few hand-written ones; "
                                   "0: zero-shot)", low=0)
    max_new_tokens: int = param(96, "longest reasoning, in tokens (reasoning steps and the answer)",
                                low=1)
    scrutiny: Literal["answer", "judge"] = param(
        "answer", "answer: inconsistent when the reasoning's answer differs from the victim's "
                  "(CoS's consistency check); judge: the reasoner is asked whether its reasoning "
                  "supports the victim's answer")
    judge_threshold: float = param(0.5, "scrutiny=judge: flagged when P(Yes) that the reasoning "
                                        "supports the answer is below this", low=0, high=1)
    unparsed: Literal["consistent", "inconsistent"] = param(
        "consistent", "scrutiny=answer, a reasoning that names no single candidate (no Yes/No): "
                      "consistent = no evidence, keep the answer; inconsistent = flag it")
    batch_size: int = param(8, "prompts per generation batch of the reasoner", low=1)


def final_part(text: str) -> str:
    """What follows the last "Answer:" of a generation (all of it when there is none)."""
    parts = ANSWER.split(text)
    return parts[-1] if len(parts) > 1 else text


def named_candidate(text: str, request: Request, catalog) -> int | None:
    """The one candidate the answer part of ``text`` names, else None: the one whose title
    (as shown) it contains, case-insensitive, a title inside a longer named title not
    counting; failing that, the one whose title contains the answer's first line (quotes
    and a final period stripped; at least 3 characters), e.g. a title named without the
    words a trigger added to it."""
    low = final_part(text).lower()
    titles = {c: request.title(c, catalog).strip().lower() for c in request.candidates}
    hits = {c for c, t in titles.items() if t and t in low}
    hits = {c for c in hits if not any(o != c and titles[c] in titles[o] for o in hits)}
    if not hits:
        line = next((ln for ln in low.splitlines() if ln.strip()), "")
        line = line.strip().strip(QUOTES).rstrip(".").strip().strip(QUOTES).strip()
        hits = {c for c, t in titles.items() if len(line) >= 3 and line in t}
    return next(iter(hits)) if len(hits) == 1 else None


def named_yes_no(text: str) -> bool | None:
    """True / False for the first Yes / No of the answer part of ``text``, else None."""
    match = YES_NO.search(final_part(text))
    return None if match is None else match.group(1).lower() == "yes"


def quoted(titles) -> str:
    return ", ".join(f'"{t}"' for t in titles)


def victim_lm(model):
    """(lm, tokenizer) of the recommender ``model`` wraps, looking through other filters."""
    seen = model
    while seen is not None:
        lm, tokenizer = getattr(seen, "lm", None), getattr(seen, "tokenizer", None)
        if lm is not None and tokenizer is not None:
            return lm, tokenizer
        seen = getattr(seen, "inner", None)
    raise RecguardError("cos: reasoner=victim needs a recommender that exposes its LM (.lm and "
                        ".tokenizer, as llara and tallrec do); use reasoner=defense")


class COSFilter(CheckingFilter):
    def __init__(self, inner, cfg: COSConfig, seed: int, notes: dict):
        super().__init__(inner)
        self.cfg, self.seed, self.notes = cfg, seed, notes
        self.lm = LazyLM(cfg)
        self.templates: dict[str, str] = {}
        notes.update(requests_checked=0, inconsistent=0, unparsed=0, reasoner=cfg.reasoner,
                     scrutiny=cfg.scrutiny)
        self.reasonings: list[str] = []    # the last batch's, for inspection

    # ------------------------------------------------------------ prompts

    def template(self, name: str) -> str:
        if name not in self.templates:
            from recguard.kit.lm.prompts import load_prompt

            self.templates[name] = load_prompt("recguard_backdoor_baselines", name)
        return self.templates[name]

    def demonstrations(self) -> str:
        demos = [d.strip() for d in self.template(f"cos_demos_{self.task}.txt").split("\n\n") if d.strip()]
        if self.cfg.demonstrations > len(demos):
            raise RecguardError(f"cos: demonstrations={self.cfg.demonstrations}, but "
                                f"prompts/cos_demos_{self.task}.txt has {len(demos)}")
        return "".join(d + "\n\n" for d in demos[:self.cfg.demonstrations])

    def question(self, request: Request, demonstrations: str) -> str:
        """The reasoning prompt of one request (before any chat template)."""
        names = lambda items: quoted(request.title(i, self.catalog) for i in items)
        fields = dict(demonstrations=demonstrations)
        if self.task == "yes_no":
            fields.update(liked=names(request.history), disliked=names(request.disliked),
                          target=f'"{request.title(request.target, self.catalog)}"')
        else:
            fields.update(history=names(request.history), candidates=names(request.candidates))
        return self.template(f"cos_{self.task}.txt").format(**fields).rstrip()

    def reasoner(self):
        return victim_lm(self.inner) if self.cfg.reasoner == "victim" else self.lm.get()

    def as_prompt(self, text: str, tokenizer) -> str:
        # the victim was tuned on raw prompts; the defense's instruction-tuned LM gets its chat turn
        return text if self.cfg.reasoner == "victim" else chat_prompt(tokenizer, text)

    # ------------------------------------------------------------ the three steps

    def reason(self, requests: list[Request]) -> list[str]:
        """Step 2: the reasoner's reasoning and answer for each request (greedy)."""
        from recguard.kit.lm import generation

        model, tokenizer = self.reasoner()
        demos = self.demonstrations()
        prompts = [self.as_prompt(self.question(r, demos), tokenizer) for r in requests]
        return generation.generate(model, tokenizer, prompts, max_new_tokens=self.cfg.max_new_tokens,
                                   batch_size=self.cfg.batch_size, seed=self.seed)

    def supported(self, requests: list[Request], reasonings: list[str], answers) -> list[float]:
        """scrutiny=judge: P(Yes) that each reasoning supports the victim's answer."""
        from recguard.kit.lm import generation

        model, tokenizer = self.reasoner()
        prompts = []
        for r, text, a in zip(requests, reasonings, answers):
            shown = ("Yes" if decision(a, self.task) else "No") if self.task == "yes_no" \
                else f'"{r.title(a.choice, self.catalog)}"'
            judge = self.template("cos_judge.txt").format(
                question=self.question(r, "").rstrip().removesuffix("Reasoning:").rstrip(),
                reasoning=text.strip(), answer=shown)
            prompts.append(self.as_prompt(judge, tokenizer))
        return [float(p) for p in generation.yes_probability(model, tokenizer, prompts,
                                                             batch_size=self.cfg.batch_size)]

    def inconsistent(self, request: Request, reasoning: str, answer) -> bool:
        """Step 3 (scrutiny=answer): the reasoning's answer differs from the victim's."""
        own = (named_yes_no(reasoning) if self.task == "yes_no"
               else named_candidate(reasoning, request, self.catalog))
        if own is None:
            self.notes["unparsed"] += 1
            return self.cfg.unparsed == "inconsistent"
        return own != decision(answer, self.task)

    def check(self, requests, answers):
        checked = [i for i, a in enumerate(answers) if self.task == "yes_no" or a.choice is not None]
        texts = self.reason([requests[i] for i in checked]) if checked else []
        self.reasonings = texts
        if self.cfg.scrutiny == "judge" and checked:
            p = self.supported([requests[i] for i in checked], texts, [answers[i] for i in checked])
            flags = [q < self.cfg.judge_threshold for q in p]
        else:
            flags = [self.inconsistent(requests[i], t, answers[i]) for i, t in zip(checked, texts)]
        flagged = {i for i, f in zip(checked, flags) if f}
        self.notes["requests_checked"] += len(checked)
        self.notes["inconsistent"] += len(flagged)
        out = []
        for i, request in enumerate(requests):
            if i not in flagged:
                out.append((request, frozenset()))
                continue
            item = request.target if self.task == "yes_no" else answers[i].choice
            out.append((request.without({item}), frozenset({item})))
        return out


class COSDefense(BaselineDefense):
    name = "cos"
    summary = ("CoS (Chain-of-Scrutiny): an LLM reasons step by step over each request; an "
               "answered item the reasoning does not reach is removed")
    paper = (f"Li et al., Chain-of-Scrutiny: Detecting Backdoor Attacks for Large Language "
             f"Models, arXiv:2406.05948, 2024; as {BADREC}")
    Config = COSConfig
    Filter = COSFilter
