"""Paraphraser (Jain et al., 2023, as BadRec's baseline, appendix B.1.1): every pool
item's title is rewritten by an LLM paraphraser, which tends to drop a trigger (and
to blur benign titles too). The defense's own instruction-tuned LM paraphrases
greedily from ``prompts/paraphrase_title.txt``, inside its chat template when the
tokenizer has one; each distinct title is paraphrased once. An empty paraphrase
keeps the original title and is counted in the notes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from recguard import AnswerFilter, RecguardError, param

from recguard_backdoor_baselines.common import BADREC, BaselineDefense, LMConfig, LazyLM, pool

LABEL = re.compile(r"^(paraphrased\s+title|paraphrase|title)\s*:\s*", re.IGNORECASE)
QUOTES = "\"'“”‘’`"


@dataclass
class ParaphraserConfig(LMConfig):
    prompt: str = param("paraphrase_title.txt", "the prompt template in this plugin's prompts/ folder, "
                                                "with {title}")
    max_new_tokens: int = param(32, "longest paraphrase, in tokens", low=1)
    batch_size: int = param(8, "titles per generation batch", low=1)


def clean(text: str) -> str:
    """The first non-empty line of a generation, without a 'Title:' label or quotes."""
    for line in text.splitlines():
        line = LABEL.sub("", line.strip().strip(QUOTES).strip()).strip().strip(QUOTES).strip()
        if line:
            return line
    return ""


class ParaphraserFilter(AnswerFilter):
    def __init__(self, inner, cfg: ParaphraserConfig, seed: int, notes: dict):
        super().__init__(inner)
        self.cfg, self.notes, self.seed = cfg, notes, seed
        self.lm = LazyLM(cfg)
        self.template: str | None = None
        self.cache: dict[str, str] = {}
        notes.update(titles_paraphrased=0, empty_outputs=0)

    def prompt(self, title: str, tokenizer) -> str:
        if self.template is None:
            from recguard.kit.lm.prompts import load_prompt

            self.template = load_prompt("recguard_backdoor_baselines", self.cfg.prompt)
            if "{title}" not in self.template:
                raise RecguardError(f"paraphraser prompt {self.cfg.prompt} has no {{title}} field")
        text = self.template.format(title=title).strip()
        if getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                                 tokenize=False, add_generation_prompt=True)
        return text + "\n"

    def paraphrase(self, titles: list[str]) -> list[str]:
        """Raw generations for ``titles`` (greedy)."""
        from recguard.kit.lm import generation

        model, tokenizer = self.lm.get()
        prompts = [self.prompt(t, tokenizer) for t in titles]
        return generation.generate(model, tokenizer, prompts, max_new_tokens=self.cfg.max_new_tokens,
                            batch_size=self.cfg.batch_size, seed=self.seed)

    def fill(self, titles: set[str]) -> None:
        new = sorted(t for t in titles if t not in self.cache)
        if not new:
            return
        for title, raw in zip(new, self.paraphrase(new)):
            text = clean(raw)
            if not text:
                self.notes["empty_outputs"] += 1
                text = title
            self.cache[title] = text
        self.notes["titles_paraphrased"] += len(new)

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
