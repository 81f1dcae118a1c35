"""Real-time Vicinal Defense (RVD).

Before serving user u, RVD ranks every training user by the distance between
its embedding and u's (Alg. 1, lines 7-10), keeps the n nearest, N(u) (line
11), fine-tunes the trained model on their training interactions D_N(u)
(line 12), scores u's items with the fine-tuned model (line 13) and restores
the trained parameters for the next user (lines 5 and 14). Training is "as the
original model" (sec. Parameter Settings): same loss, optimizer and batch size
as the backbone's own training; the only new hyperparameter is n (Table 2).

The fine-tuning itself is `recguard.kit.cf.finetune_restore`: on models whose scores depend
only on the user's row and the item table (``local_parameters``: MF) only the
touched rows are trained, many served users at once; elsewhere (LightGCN) the
whole model is fine-tuned in place and restored.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from recguard import Config, Defense, DefenseContext, Interactions, Model, param

PAPER = "Toward Robust Recommendation via Real-time Vicinal Defense (RVD), 2023: Alg. 1, Table 2"


@dataclass
class RVDConfig(Config):
    n_neighbors: int = param(12, "neighbours n per served user (Table 2: 12 for MF on ML-100K "
                                 "and ML-1M; sensitivity in App. E)", low=1)
    include_self: bool = param(True, "the served user is among its n neighbours (its own distance "
                                     "is 0 and Alg. 1 lines 7-11 rank every user); false: n others")
    distance: Literal["euclidean", "cosine"] = param(
        "euclidean", "distance between user embeddings (sec. Real-time Vicinal Defense: embedding "
                     "distance; Euclidean)")
    epochs: int | None = param(
        1, "fine-tuning passes over the neighbours' interactions; the paper gives none, 1 keeps "
           "clean accuracy (its goal 2, Problem Definition; README); None: the backbone's", low=1)
    optimizer: Literal["adagrad", "adam", "sgd"] | None = param(
        None, "fine-tuning optimizer, fresh per served user; None: the backbone's (Parameter "
              "Settings: RVD trains as the original model); sgd: Theorems 1-2's gradient descent")
    lr: float | None = param(None, "fine-tuning learning rate; None: the backbone's (Parameter "
                                   "Settings; Theorems 1-2 use the training lr)", low=0, open_low=True)
    batch_size: int | None = param(None, "fine-tuning mini-batch; None: the backbone's "
                                         "(Parameter Settings: training as the original)", low=1)
    weight_decay: float | None = param(None, "L2 on the batch's embeddings; None: the backbone's",
                                       low=0)
    zero_ratio: float = param(
        0.0, "explicit data: add, per neighbour, this many times its rating count of its unrated "
             "items as rating-0 rows (drawn once per fine-tune, as APT's code samples zeros); "
             "0: observed ratings only, as the backbone trains (README)", low=0)
    path: Literal["auto", "local", "generic"] = param(
        "auto", "local: fine-tune only the touched rows (models with local_parameters, e.g. MF); "
                "generic: snapshot, fine-tune all, restore; auto: local where possible")
    serve_batch: int = param(16, "local path: served users (neighbour sets) fine-tuned together, "
                                 "each on its own copy of its rows; 1: one at a time", low=1)
    threads: int = param(1, "torch threads while fine-tuning; 0 keeps torch's setting", low=0)


def nearest_users(embeddings: np.ndarray, users: np.ndarray, n: int, distance: str = "euclidean",
                  include_self: bool = True, chunk: int = 512) -> np.ndarray:
    """(len(users), n) indices of each user's n nearest rows of ``embeddings``, nearest first,
    ties to the lower index; with ``include_self`` the user itself comes first."""
    emb = np.asarray(embeddings, dtype=np.float64)
    users = np.asarray(users, dtype=np.int64)
    n = min(n, len(emb) - (0 if include_self else 1))
    if distance == "cosine":
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    sq = (emb ** 2).sum(1)
    out = np.empty((len(users), max(n, 0)), dtype=np.int64)
    for start in range(0, len(users), chunk):
        batch = users[start:start + chunk]
        if distance == "cosine":
            dist = 1.0 - emb[batch] @ emb.T
        else:
            dist = np.maximum(sq[batch, None] + sq[None, :] - 2.0 * emb[batch] @ emb.T, 0.0)
        dist[np.arange(len(batch)), batch] = -np.inf if include_self else np.inf
        out[start:start + len(batch)] = np.argsort(dist, axis=1, kind="stable")[:, :n]
    return out


class RVDModel(Model):
    """Scores each served user with the model fine-tuned on its neighbours' interactions."""

    def __init__(self, base, train: Interactions, cfg: RVDConfig, options, seed: int,
                 notes: dict[str, Any]):
        from recguard.kit.cf.finetune_restore import supports_local

        self.base, self.train, self.cfg, self.options, self.seed = base, train, cfg, options, seed
        self.n_items = base.n_items
        self.path = cfg.path if cfg.path != "auto" else ("local" if supports_local(base) else "generic")
        if self.path == "local" and not supports_local(base):
            raise ValueError(f"rvd path=local needs a model with local_parameters; "
                             f"{type(base).__name__} has none (use path=generic)")
        self.embeddings = np.asarray(base.user_embeddings())[:train.n_users]
        self.indptr, self.order = train.by_user()
        self.histories = None  # built on first use (implicit data: negatives avoid these rows)
        self.notes = notes
        notes.update({"path": self.path, "finetune": dict(vars(options)), "users_served": 0,
                      "finetune_jobs": 0, "finetune_steps": 0, "neighbour_rows": 0, "seconds": 0.0,
                      "base_seconds": 0.0})

    def neighbours(self, users: np.ndarray) -> np.ndarray:
        return nearest_users(self.embeddings, users, self.cfg.n_neighbors, self.cfg.distance,
                             self.cfg.include_self)

    def rows_of(self, neighbours: np.ndarray) -> np.ndarray:
        """D_N: every training row of the given users (in the order given)."""
        return np.concatenate([self.order[self.indptr[v]:self.indptr[v + 1]] for v in neighbours]
                              or [np.zeros(0, dtype=np.int64)])

    def with_zeros(self, jobs: list) -> Interactions:
        """The training set plus, for each job, ``zero_ratio`` x each neighbour's rating count of
        that neighbour's unrated items at rating 0 (seeded by the job); the jobs' rows grow to
        include theirs. Unobserved pairs then pull the neighbours' scores toward 0."""
        train, ratio = self.train, self.cfg.zero_ratio
        users, items, start = [], [], len(train)
        for job in jobs:
            rng = np.random.default_rng([*job.seed, 0x2E50])
            job_users, job_items = [], []
            for v in np.unique(train.user[job.rows]):
                rated = train.item[self.order[self.indptr[v]:self.indptr[v + 1]]]
                unrated = np.setdiff1d(np.arange(train.n_items), rated)
                k = min(len(unrated), int(round(ratio * len(rated))))
                job_items.append(rng.choice(unrated, k, replace=False))
                job_users.append(np.full(k, v))
            added = sum(map(len, job_items))
            job.rows = np.concatenate([job.rows, np.arange(start, start + added)])
            users += job_users
            items += job_items
            start += added
        user, item = np.concatenate(users), np.concatenate(items)
        return dataclasses.replace(train, user=np.concatenate([train.user, user]),
                                   item=np.concatenate([train.item, item]),
                                   rating=np.concatenate([train.rating,
                                                          np.zeros(len(user), train.rating.dtype)]),
                                   timestamp=np.concatenate([train.timestamp,
                                                             np.zeros(len(user), train.timestamp.dtype)]))

    def score(self, users: np.ndarray) -> np.ndarray:
        from recguard.kit.cf.finetune_restore import (FinetuneJob, Histories, finetuned_scores, n_steps)
        from recguard.kit.cf.loop import torch_threads

        users = np.asarray(users, dtype=np.int64)
        start = time.perf_counter()
        # a fine-tune depends only on the neighbour set: served users sharing one share it
        sets, which = np.unique(np.sort(self.neighbours(users), axis=1), axis=0, return_inverse=True)
        which = np.asarray(which).reshape(-1)
        jobs = [FinetuneJob(self.rows_of(s), users[which == k], [self.seed, 0x52FD, *map(int, s)])
                for k, s in enumerate(sets)]
        train = self.train
        if self.cfg.zero_ratio > 0 and train.feedback == "explicit":
            train = self.with_zeros(jobs)
        if self.histories is None and train.feedback == "implicit":
            self.histories = Histories(train)
        with torch_threads(self.cfg.threads):
            results = finetuned_scores(self.base, train, jobs, self.options, self.path,
                                       self.cfg.serve_batch, self.histories)
        out = np.empty((len(users), self.n_items), dtype=np.float32)
        for k, scores in enumerate(results):
            out[which == k] = scores
        seconds = time.perf_counter() - start
        base_start = time.perf_counter()
        self.base.score(users)  # the undefended serving time, for comparison (Table 6's Origin)
        base_seconds = time.perf_counter() - base_start
        notes = self.notes
        notes["users_served"] += len(users)
        notes["finetune_jobs"] += len(jobs)
        notes["finetune_steps"] += sum(n_steps(len(j.rows), self.options) for j in jobs)
        notes["neighbour_rows"] += sum(len(j.rows) * len(j.users) for j in jobs)
        notes["seconds"] += seconds
        notes["base_seconds"] += base_seconds
        served = max(notes["users_served"], 1)
        notes["seconds_per_user"] = notes["seconds"] / served
        notes["base_seconds_per_user"] = notes["base_seconds"] / served
        notes["mean_neighbour_rows"] = notes["neighbour_rows"] / served
        return out


class RVDDefense(Defense):
    name = "rvd"
    summary = "Real-time Vicinal Defense: fine-tune on the served user's nearest users, then score"
    paper = PAPER
    stages = frozenset({"at_inference"})
    backbone_kinds = frozenset({"cf"})
    needs = frozenset({"finetune", "embeddings"})
    default_protocol = "apt"
    Config = RVDConfig

    def finetune_options(self, train: Interactions, ctx: DefenseContext):
        """The fine-tuning options: this config's, None taken from the backbone's training."""
        from recguard.kit.cf.embedding import DEFAULTS
        from recguard.kit.cf.finetune_restore import FinetuneOptions

        trained = dict(DEFAULTS[train.feedback])
        backbone = ctx.backbone
        if backbone is not None:
            resolved = backbone.resolved_config(ctx.protocol)
            trained.update({k: v for k, v in resolved.items() if k in trained and v is not None})
        cfg = self.config
        pick = lambda key: getattr(cfg, key) if getattr(cfg, key) is not None else trained[key]  # noqa: E731
        return FinetuneOptions(epochs=int(pick("epochs")), optimizer=str(pick("optimizer")),
                               lr=float(pick("lr")), batch_size=int(pick("batch_size")),
                               weight_decay=float(pick("weight_decay")))

    def at_inference(self, model: Model, train: Interactions, ctx: DefenseContext) -> Model:
        return RVDModel(model, train, self.config, self.finetune_options(train, ctx), ctx.seed,
                        ctx.notes)
