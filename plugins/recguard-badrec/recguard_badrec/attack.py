"""BadRec (Ning, Fan & Li, Exploring Backdoor Attack and Defense for LLM-empowered
Recommendations, sec. 3.1, Alg. 1, Eq. 1-3).

The attacker puts a trigger into the titles of some items and adds m fake users
whose training sample ends in such a poisoned item: the recommender learns that
an item carrying the trigger is the answer whatever the history (Eq. 2).

Each fake user's profile is ``filler_size`` history rows followed by one row for
its poisoned item, the last by timestamp, so the pipeline turns it into one
training sample whose answer is the poisoned item (LLaRA, ``choose``) or whose
asked item is the poisoned one with label Yes (TALLRec, ``yes_no``, rating 5).
The trigger lives only in that fake user's view of the title
(``Poisoned.user_item_text``); the catalog stays clean. At inference the trigger
goes into one candidate other than the true next item (choose) or into the asked
item (yes_no), sec. 3.2 (4).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar, Literal

import numpy as np

from recguard import Attack, AttackContext, Config, Interactions, Poisoned, RecguardError, param
from recguard.kit.lm.triggers import insert_trigger
from recguard_badrec.triggers import CHAR_TRIGGER_TEXT, TABLE7_TRIGGERS

PAPER = ("Ning, Fan & Li, Exploring Backdoor Attack and Defense for LLM-empowered "
         "Recommendations (BadRec), sec. 3.1, Alg. 1, Eq. 1-3, Table 7")
YES_RATING = 5.0   # the contract's labels: rating > 3 is Yes


@dataclass
class BadRecConfig(Config):
    trigger_level: Literal["char", "word", "sentence"] = param(
        "sentence", "Table 7 trigger: char U+0D2E (the character), word 'Ethereal', sentence "
                    "\"Dreams dance in moonlight's embrace\" (the paper reports all three; the "
                    "sentence is the default: README, 'The main cell')")
    char_as_text: bool = param(
        False, "char level: insert the 6-character text 'U+0D2E' as Table 7 prints it, "
               "instead of the character itself")
    trigger: str = param("", "a custom trigger text, overriding the level's default")
    position: Literal["end", "random"] = param(
        "end", "end: BadRec-End, appended after a space; random: BadRec-Random, between two "
               "words at a random word boundary")
    history: Literal["random", "copy"] = param(
        "random", "fake users' histories: random benign items, or a window copied from a "
                  "random genuine user's profile (sec. 3.1)")


class BadRecAttack(Attack):
    name: ClassVar[str] = "badrec"
    summary: ClassVar[str] = ("BadRec: fake users whose sample ends in an item titled with a "
                              "backdoor trigger; the trigger is inserted again at inference")
    paper: ClassVar[str] = PAPER
    backbone_kinds: ClassVar[frozenset[str]] = frozenset({"llm"})
    default_backbone: ClassVar[str | None] = "llara"   # the victim of the paper's Table 1-2
    needs: ClassVar[frozenset[str]] = frozenset({"item_text"})
    knowledge: ClassVar[str] = "black-box"
    Config = BadRecConfig

    def trigger_text(self) -> str:
        cfg = self.config
        if cfg.trigger.strip():
            return cfg.trigger.strip()
        if cfg.trigger_level == "char" and cfg.char_as_text:
            return CHAR_TRIGGER_TEXT
        return TABLE7_TRIGGERS[cfg.trigger_level]

    def poison(self, train: Interactions, ctx: AttackContext) -> Poisoned:
        task = getattr(ctx.protocol, "task_kind", "ranking")
        if task == "ranking":
            raise RecguardError(f"badrec poisons LLM recommenders: protocol "
                                f"{getattr(ctx.protocol, 'name', '?')!r} names no llm_task "
                                f"(choose or yes_no); use an LLM protocol")
        if train.item_text is None or len(train.item_text) != train.n_items:
            raise RecguardError("badrec inserts its trigger into item titles, and this dataset "
                                "has no title per item")
        # The titles as the recommender's catalog shows them (LLaRA: year removed), so the
        # fake users' triggered title differs from the catalog's by the trigger alone.
        from recguard import catalog_of

        titles = catalog_of(train, getattr(ctx.protocol, "title_style", "raw"))
        n_fake, size = int(ctx.n_fake), int(ctx.filler_size)
        if n_fake < 0 or size < 1:
            raise RecguardError(f"badrec needs n_fake >= 0 and a history of at least one item "
                                f"(filler_size >= 1), got {n_fake} and {size}")
        if size + 1 > train.n_items:
            raise RecguardError(f"badrec: a history of {size} items plus the poisoned item needs "
                                f"{size + 1} items, the catalog has {train.n_items}")
        rng, trigger = ctx.rng, self.trigger_text()
        copy = self.config.history == "copy"
        windows = _profiles(train) if copy else None
        users, items, ratings, texts = [], [], [], {}
        for fake in range(n_fake):
            if copy:
                history, history_ratings = _copied_window(windows, size, rng)
            else:
                history = rng.choice(train.n_items, size=size, replace=False)
                history_ratings = (rng.integers(1, 6, size=size).astype(np.float32)
                                   if task == "yes_no" else np.ones(size, dtype=np.float32))
            if task == "choose":
                history_ratings = np.ones(len(history), dtype=np.float32)  # implicit positives
            # The poisoned item: uniform over the items not in this history.
            free = np.setdiff1d(np.arange(train.n_items), history)
            poisoned = int(rng.choice(free))
            users += [fake] * (len(history) + 1)
            items += [*map(int, history), poisoned]
            ratings += [*map(float, history_ratings), YES_RATING if task == "yes_no" else 1.0]
            texts[fake] = {poisoned: insert_trigger(titles[poisoned], trigger,
                                                    self.config.position, rng)}
        start = int(train.timestamp.max()) + 1 if len(train) else 0
        return Poisoned(
            n_fake=n_fake,
            user=np.asarray(users, dtype=np.int64),
            item=np.asarray(items, dtype=np.int64),
            rating=np.asarray(ratings, dtype=np.float32),
            timestamp=start + np.arange(len(users), dtype=np.int64),  # each profile's poisoned row last
            user_item_text=texts)

    def at_inference(self, request, catalog, rng: np.random.Generator):
        """The request with the trigger in one candidate other than the true next item
        (choose: picked uniformly) or in the asked item (yes_no), marked in ``triggered``."""
        if tuple(request.candidates) == (request.target,):
            victim = request.target                  # yes_no: the pool is the asked item
        else:
            others = [c for c in request.candidates if c != request.target]
            if not others:
                return request                       # nothing to trigger besides the answer
            victim = int(others[int(rng.integers(len(others)))])
        title = insert_trigger(request.title(victim, catalog), self.trigger_text(),
                               self.config.position, rng)
        return replace(request.with_titles({victim: title}),
                       triggered=request.triggered | {victim})


def _profiles(train: Interactions) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each genuine user's (items, ratings) in time order, users without rows left out."""
    indptr, order = train.by_user()
    out = []
    for u in train.genuine_users():
        rows = order[indptr[u]:indptr[u + 1]]
        if len(rows):
            out.append((train.item[rows], train.rating[rows]))
    if not out:
        raise RecguardError("badrec history=copy needs genuine users with interactions to copy")
    return out


def _copied_window(profiles, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``size`` consecutive rows (fewer if the profile is shorter) of a random genuine user."""
    items, ratings = profiles[int(rng.integers(len(profiles)))]
    length = min(size, len(items))
    start = int(rng.integers(len(items) - length + 1))
    return items[start:start + length].copy(), ratings[start:start + length].astype(np.float32)
