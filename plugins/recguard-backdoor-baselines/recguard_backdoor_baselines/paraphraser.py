"""Paraphraser (Jain et al., 2023, as BadRec's baseline, appendix B.1.1): every pool
item's title is rewritten by an LLM paraphraser, which tends to drop a trigger (and
to blur benign titles too). The defense's own instruction-tuned LM paraphrases
greedily from ``prompts/paraphrase_title.txt``, inside its chat template when the
tokenizer has one; each distinct title is paraphrased once. An empty paraphrase
keeps the original title and is counted in the notes. (The paraphrasing itself,
`common.TitleParaphrasing`, is shared with RPD.)
"""

from __future__ import annotations

from dataclasses import dataclass

from recguard import AnswerFilter

from recguard_backdoor_baselines.common import (BADREC, BaselineDefense, LazyLM, ParaphraseConfig,
                                                TitleParaphrasing, clean, pool)

__all__ = ["ParaphraserConfig", "ParaphraserDefense", "ParaphraserFilter", "clean"]


@dataclass
class ParaphraserConfig(ParaphraseConfig):
    pass


class ParaphraserFilter(TitleParaphrasing, AnswerFilter):
    def __init__(self, inner, cfg: ParaphraserConfig, seed: int, notes: dict):
        AnswerFilter.__init__(self, inner)
        self.cfg, self.notes, self.seed = cfg, notes, seed
        self.lm = LazyLM(cfg)
        self.start_paraphrasing()

    def inspect(self, requests):
        self.fill({r.title(i, self.catalog) for r in requests for i in pool(r)})
        return [(r.with_titles({i: self.cache[r.title(i, self.catalog)] for i in pool(r)}),
                 frozenset()) for r in requests]


class ParaphraserDefense(BaselineDefense):
    name = "paraphraser"
    summary = "Paraphraser: an LLM rewrites every pool item's title before the recommender sees it"
    paper = (f"Jain et al., Baseline Defenses for Adversarial Attacks Against Aligned Language "
             f"Models, 2023; as {BADREC}")
    Config = ParaphraserConfig
    Filter = ParaphraserFilter
