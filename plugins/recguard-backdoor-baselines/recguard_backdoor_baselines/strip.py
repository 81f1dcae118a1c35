"""STRIP (Gao et al., ACSAC 2019), as BadRec's baseline (appendix B.1.1-B.1.2).

A backdoored model answers a triggered input the same way however the rest of the
input is perturbed; a clean answer depends on the input. For each request the
user's history (TALLRec: liked and disliked lists) is perturbed N times by
replacing a share of its items with random items outside the pool, and the victim
answers every perturbed copy. The entropy (bits) of the answers is low when the
history does not matter:

- choose: entropy of the empirical distribution of the chosen items (invalid
  answers left out); below the threshold (0.4, B.1.2), the item chosen most often
  is taken for poisoned and removed from the pool;
- yes_no: STRIP's mean over the copies of the binary entropy of P(Yes); below
  the threshold with a mean P(Yes) >= 0.5 (the backdoor pushes Yes), the asked
  item is removed (the request answers P(Yes) = 0).

This queries the victim N extra times per request.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from recguard import AnswerFilter, Config, Request, param

from recguard_backdoor_baselines.common import BADREC, BaselineDefense, pool, request_rng


@dataclass
class STRIPConfig(Config):
    n_perturbations: int = param(10, "perturbed copies of each request's history (N; not given)",
                                 low=1)
    share: float = param(0.5, "share of the history replaced in each copy (not given)",
                         low=0, high=1, open_low=True)
    threshold: float = param(0.4, "entropy (bits) below which the answer is taken for "
                                  "backdoored (B.1.2: 0.4)", low=0)


def entropy_bits(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def perturbed(request: Request, n_items: int, cfg: STRIPConfig, rng) -> list[Request]:
    """``n_perturbations`` copies of ``request`` with a share of its history replaced."""
    keep_out = set(pool(request)) | set(request.history) | set(request.disliked)
    outside = np.setdiff1d(np.arange(n_items), np.fromiter(keep_out, dtype=np.int64))

    def swap(items: tuple[int, ...]) -> tuple[int, ...]:
        k = int(np.ceil(cfg.share * len(items)))
        if not k or not len(outside):
            return items
        out = list(items)
        where = rng.choice(len(items), size=k, replace=False)
        for pos, new in zip(where, rng.choice(outside, size=k, replace=len(outside) < k)):
            out[pos] = int(new)
        return tuple(out)

    return [replace(request, history=swap(request.history), disliked=swap(request.disliked))
            for _ in range(cfg.n_perturbations)]


class STRIPFilter(AnswerFilter):
    def __init__(self, inner, cfg: STRIPConfig, seed: int, notes: dict):
        super().__init__(inner)
        self.cfg, self.seed, self.notes = cfg, seed, notes
        notes.update(requests_checked=0, items_removed=0, victim_queries=0)
        self.entropies: list[float] = []

    def suspect(self, request: Request, answers) -> int | None:
        """The item STRIP takes for poisoned in ``request``, or None."""
        if self.task == "yes_no":
            p = np.clip(np.array([a.p_yes for a in answers], dtype=np.float64), 0.0, 1.0)
            h = float(np.mean([entropy_bits(np.array([q, 1 - q])) for q in p]))
            self.entropies.append(h)
            return request.target if h < self.cfg.threshold and p.mean() >= 0.5 else None
        chosen = [a.choice for a in answers if a.choice is not None]
        if not chosen:
            return None
        items, counts = np.unique(chosen, return_counts=True)
        h = entropy_bits(counts / counts.sum())
        self.entropies.append(h)
        return int(items[np.argmax(counts)]) if h < self.cfg.threshold else None

    def inspect(self, requests):
        copies, owners = [], []
        for index, request in enumerate(requests):
            if request.history or request.disliked:
                batch = perturbed(request, len(self.catalog), self.cfg,
                                  request_rng(self.seed, request))
                copies += batch
                owners += [index] * len(batch)
        answers = self.inner.answer(copies) if copies else []
        self.notes["victim_queries"] += len(copies)
        grouped: dict[int, list] = {}
        for owner, answer in zip(owners, answers):
            grouped.setdefault(owner, []).append(answer)
        out = []
        for index, request in enumerate(requests):
            item = self.suspect(request, grouped[index]) if index in grouped else None
            removed = frozenset() if item is None or item not in request.candidates else frozenset({item})
            self.notes["requests_checked"] += int(index in grouped)
            self.notes["items_removed"] += len(removed)
            out.append((request.without(removed), removed))
        self.notes["mean_entropy"] = float(np.mean(self.entropies)) if self.entropies else None
        return out


class STRIPDefense(BaselineDefense):
    name = "strip"
    summary = ("STRIP: perturbs each user's history, queries the victim, and removes the item "
               "it keeps answering when the answers' entropy is low")
    paper = (f"Gao et al., STRIP: A Defence Against Trojan Attacks on Deep Neural Networks, "
             f"ACSAC 2019; as {BADREC}")
    Config = STRIPConfig
    Filter = STRIPFilter
