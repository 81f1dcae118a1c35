"""ONION (Qi et al., EMNLP 2021), as BadRec's baseline (appendix B.1.1-B.1.2).

For a title of words w_1..w_n, the suspicion of word i is f_i = p_0 - p_i, where
p_0 is the perplexity of the title and p_i that of the title without w_i, both
under the defense's own LM (never the victim). A trigger is an outlier word:
removing it makes the title much more fluent. Words with f_i > threshold (150 in
B.1.2) are suspicious. ``remove_words`` (ONION proper) deletes them from the
title; ``remove_item`` (BadRec's reading: "the item with a high suspicion score
will be removed") drops the item from the pool when any word is suspicious.
Scores are cached per distinct title: requests share most of their titles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from recguard import AnswerFilter, param

from recguard_backdoor_baselines.common import BADREC, BaselineDefense, LMConfig, LazyLM, pool


@dataclass
class ONIONConfig(LMConfig):
    threshold: float = param(150.0, "a word is suspicious when removing it lowers the title's "
                                    "perplexity by more than this (B.1.2: 150)")
    mode: Literal["remove_words", "remove_item"] = param(
        "remove_words", "remove_words: delete suspicious words from the title (ONION); "
                        "remove_item: drop an item with a suspicious word from the pool")
    bos_context: bool = param(
        False, "true: score every token after the tokenizer's BOS (else EOS) token; false: "
               "recguard.kit.lm.generation.perplexity, which skips each text's first token as ONION's GPT-2 "
               "code does (on 2-5 word titles that leaves little to score)")


def suspicion_texts(title: str) -> list[str]:
    """The title, then the title without each of its words in turn (empty for < 2 words:
    a one-word title has nothing left to compare with)."""
    words = title.split()
    if len(words) < 2:
        return []
    return [" ".join(words)] + [" ".join(words[:i] + words[i + 1:]) for i in range(len(words))]


class ONIONFilter(AnswerFilter):
    def __init__(self, inner, cfg: ONIONConfig, seed: int, notes: dict):
        super().__init__(inner)
        self.cfg, self.notes = cfg, notes
        self.lm = LazyLM(cfg)
        self.scores: dict[str, np.ndarray] = {}     # title -> suspicion of each word
        notes.update(titles_scored=0, words_removed=0, items_removed=0, mode=cfg.mode,
                     threshold=cfg.threshold)

    def perplexities(self, texts: list[str]) -> np.ndarray:
        from recguard.kit.lm import generation

        model, tokenizer = self.lm.get()
        start = tokenizer.bos_token or tokenizer.eos_token
        if not self.cfg.bos_context or not start:
            return generation.perplexity(model, tokenizer, texts, batch_size=self.cfg.batch_size)
        logp = generation.completion_logprob(model, tokenizer, [start] * len(texts), list(texts),
                                      batch_size=self.cfg.batch_size)
        return np.exp(-logp)

    def score(self, titles: set[str]) -> None:
        """Fill the cache for the titles not in it, in one batched pass."""
        new = sorted(t for t in titles if t not in self.scores)
        texts, spans = [], []
        for title in new:
            group = suspicion_texts(title)
            spans.append((title, len(texts), len(group)))
            texts += group
        ppl = self.perplexities(texts) if texts else np.zeros(0)
        for title, start, size in spans:
            self.scores[title] = (ppl[start] - ppl[start + 1:start + size]) if size else np.zeros(0)
        self.notes["titles_scored"] += len(new)

    def inspect(self, requests):
        titles = {r.title(i, self.catalog) for r in requests for i in pool(r)}
        self.score(titles)
        out = []
        for request in requests:
            rewritten, removed = {}, set()
            for item in pool(request):
                title = request.title(item, self.catalog)
                flagged = self.scores[title] > self.cfg.threshold
                if not flagged.any():
                    continue
                kept = [w for w, bad in zip(title.split(), flagged) if not bad]
                if self.cfg.mode == "remove_item" or not kept:
                    removed.add(item)                # nothing left of the title: drop the item
                else:
                    rewritten[item] = " ".join(kept)
                    self.notes["words_removed"] += int(flagged.sum())
            self.notes["items_removed"] += len(removed)
            shown = request.with_titles(rewritten).without(removed)
            out.append((shown, frozenset(removed)))
        return out


class ONIONDefense(BaselineDefense):
    name = "onion"
    summary = ("ONION: removes words (or items) whose deletion lowers the title's perplexity "
               "under the defense's own LM by more than a threshold")
    paper = (f"Qi et al., ONION: A Simple and Effective Defense Against Textual Backdoor Attacks, "
             f"EMNLP 2021; as {BADREC}")
    Config = ONIONConfig
    Filter = ONIONFilter
