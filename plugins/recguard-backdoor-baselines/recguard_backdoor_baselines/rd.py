"""RD: random deletion of characters from item titles (BadRec appendix B.1.1-B.1.2, after
Zhang et al. [42]): three random characters of every pool item's title are deleted,
corrupting a trigger with some chance and every benign title as well."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recguard import AnswerFilter, Config, param

from recguard_backdoor_baselines.common import BADREC, BaselineDefense, pool, request_rng


def delete_chars(title: str, k: int, rng: np.random.Generator) -> str:
    """``title`` without ``k`` characters at distinct random positions (all of them if shorter)."""
    k = min(k, len(title))
    gone = set(rng.choice(len(title), size=k, replace=False).tolist()) if k else set()
    return "".join(ch for i, ch in enumerate(title) if i not in gone)


@dataclass
class RDConfig(Config):
    chars: int = param(3, "characters deleted from each pool item's title (B.1.2: three)", low=1)


class RDFilter(AnswerFilter):
    def __init__(self, inner, cfg: RDConfig, seed: int, notes: dict):
        super().__init__(inner)
        self.cfg, self.seed = cfg, seed

    def inspect(self, requests):
        out = []
        for request in requests:
            rng = request_rng(self.seed, request)
            titles = {item: delete_chars(request.title(item, self.catalog), self.cfg.chars, rng)
                      for item in pool(request)}
            out.append((request.with_titles(titles), frozenset()))
        return out


class RDDefense(BaselineDefense):
    name = "rd"
    summary = "RD: deletes random characters from every pool item's title (seeded per request)"
    paper = f"{BADREC} (RD, after Zhang et al. [42])"
    Config = RDConfig
    Filter = RDFilter
