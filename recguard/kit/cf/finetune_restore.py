"""Fine-tune a trained CF model on a subset of its training rows, without changing it.

For inference-time defenses (RVD fine-tunes on each served user's neighbours
before scoring it). A *job* is one fine-tune: training rows, the users whose
scores are wanted afterwards and a seed. Each job starts from the trained
parameters, uses a fresh optimizer and the model's own training loss
(`recguard.kit.cf.embedding.per_row_loss`: squared error on explicit ratings, BPR with
uniformly drawn negatives on implicit data, plus ``weight_decay`` times the
batch's L2 regulariser), exactly as `recguard.kit.cf.embedding` trains, and never mutates the
model it is given. Two ways to run a job give the same numbers:

``generic``  any model trained by `recguard.kit.cf.embedding`: snapshot ``parameters()``,
             fine-tune the model in place, score, ``copy_`` the snapshot back.
             Every step costs what a training step on the whole model costs
             (LightGCN propagates the whole graph each step and to score).
``local``    models declaring ``local_parameters = True``: ``batch_embeddings``
             reads only the indexed rows of ``user_emb`` / ``item_emb``, and
             ``score(users)[j, i]`` only row ``users[j]`` of ``user_emb``, row
             i of ``item_emb`` and any other (small, shared) parameters, as in
             MF and NeuMF. Only the touched rows (the job's users, items and
             sampled negatives) are gathered into small tables and trained;
             jobs with the same number of steps train together under one
             optimizer, each on its own tables (elementwise optimizers keep
             them independent); scoring rescores only the touched item
             columns, never copying a table. Models with shared parameters
             besides the two tables (an MLP) run one job at a time, those
             parameters snapshotted and restored.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Literal, Sequence

import numpy as np

from recguard.data.interactions import Interactions

Path = Literal["auto", "local", "generic"]


@dataclass(frozen=True)
class FinetuneOptions:
    """How a job trains: as `recguard.kit.cf.embedding` does, on the job's rows only."""

    epochs: int
    optimizer: str
    lr: float
    batch_size: int
    weight_decay: float


@dataclass
class FinetuneJob:
    """Fine-tune on ``rows`` (indices into the training set), then score ``users``.

    ``seed`` (an int or a sequence of ints for `numpy.random.default_rng`) fixes
    the row order of every epoch and the sampled negatives."""

    rows: np.ndarray
    users: np.ndarray
    seed: int | Sequence[int]


def supports_local(model) -> bool:
    return bool(getattr(model, "local_parameters", False)) and hasattr(model, "user_emb") \
        and hasattr(model, "item_emb")


class Histories:
    """Every training row of some users: all a negative drawn for them must avoid.
    `sample_negatives` against these rows draws exactly what it draws against the whole
    training set (its rejection test reads only the drawing user's own pairs), faster."""

    def __init__(self, train: Interactions):
        self.train = train
        self.indptr, self.order = train.by_user()

    def of(self, rows: np.ndarray) -> Interactions:
        users = np.unique(self.train.user[rows])
        return self.train.take(np.concatenate([self.order[self.indptr[u]:self.indptr[u + 1]] for u in users]
                                              or [np.zeros(0, dtype=np.int64)]))


def schedule(train: Interactions, rows: np.ndarray, options: FinetuneOptions, seed,
             histories: Histories | None = None) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """The job's mini-batches: per epoch a seeded permutation of ``rows`` cut into
    ``batch_size`` slices, with one negative per row on implicit data. Both paths use it."""
    from recguard.kit.cf.loop import sample_negatives

    rng = np.random.default_rng(seed)
    rows = np.asarray(rows, dtype=np.int64)
    implicit = train.feedback == "implicit"
    seen = (histories or Histories(train)).of(rows) if implicit else None
    steps = []
    for _ in range(options.epochs):
        order = rows[rng.permutation(len(rows))]
        negatives = sample_negatives(seen, train.user[order], rng) if implicit else None
        for start in range(0, len(order), options.batch_size):
            stop = start + options.batch_size
            steps.append((order[start:stop], None if negatives is None else negatives[start:stop]))
    return steps


def n_steps(n_rows: int, options: FinetuneOptions) -> int:
    return options.epochs * -(-n_rows // options.batch_size) if n_rows else 0


def _batch_loss(model, users, items, negatives, ratings, implicit: bool, weight_decay: float):
    from recguard.kit.cf.embedding import per_row_loss

    per_row, reg = per_row_loss(model, users, items, negatives, ratings, implicit)
    return per_row.mean() + weight_decay * reg


@contextmanager
def finetuned(model, train: Interactions, rows: np.ndarray, options: FinetuneOptions, seed,
              histories: Histories | None = None) -> Iterator[object]:
    """The model itself, fine-tuned in place on ``rows``; every parameter (and its
    ``.grad``) is restored on exit, even on an error. Works for any `recguard.kit.cf.embedding` model."""
    import torch

    from recguard.kit.cf.embedding import make_optimizer

    params = list(model.parameters())
    saved = [p.detach().clone() for p in params]
    grads = [p.grad for p in params]
    try:
        optimizer = make_optimizer(options.optimizer, options.lr, params)
        implicit = train.feedback == "implicit"
        rating = torch.as_tensor(train.rating)
        for batch, negatives in schedule(train, rows, options, seed, histories):
            loss = _batch_loss(model, torch.as_tensor(train.user[batch]), torch.as_tensor(train.item[batch]),
                               None if negatives is None else torch.as_tensor(negatives),
                               rating[torch.as_tensor(batch)], implicit, options.weight_decay)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        yield model
    finally:
        with torch.no_grad():
            for p, s, g in zip(params, saved, grads):
                p.copy_(s)
                p.grad = g


def generic_scores(model, train: Interactions, job: FinetuneJob, options: FinetuneOptions,
                   histories: Histories | None = None) -> np.ndarray:
    with finetuned(model, train, job.rows, options, job.seed, histories) as tuned:
        return np.asarray(tuned.score(np.asarray(job.users, dtype=np.int64)), dtype=np.float32)


class _Block:
    """One job's own small tables (its touched rows) and the model's code running on them."""

    def __init__(self, model, train: Interactions, job: FinetuneJob, options: FinetuneOptions,
                 histories: Histories | None):
        import torch

        self.job = job
        self.steps = schedule(train, job.rows, options, job.seed, histories)
        self.users = np.unique(train.user[job.rows])
        touched_items = [train.item[job.rows]] + [neg for _, neg in self.steps if neg is not None]
        self.items = np.unique(np.concatenate(touched_items))
        with torch.no_grad():
            self.user_rows = torch.nn.Parameter(model.user_emb[torch.as_tensor(self.users)].clone())
            self.item_rows = torch.nn.Parameter(model.item_emb[torch.as_tensor(self.items)].clone())
        self.view = copy.copy(model)  # the model's own code on the small tables
        self.view.user_emb, self.view.item_emb = self.user_rows, self.item_rows
        rating = torch.as_tensor(train.rating)
        # index tensors of every step, in the small tables' coordinates
        self.batches = [(torch.as_tensor(np.searchsorted(self.users, train.user[rows])),
                         torch.as_tensor(np.searchsorted(self.items, train.item[rows])),
                         None if neg is None else torch.as_tensor(np.searchsorted(self.items, neg)),
                         rating[torch.as_tensor(rows)]) for rows, neg in self.steps]


def _score_blocks(model, blocks: list[_Block]) -> list[np.ndarray]:
    """The served users' scores after their jobs, without copying a table: every served user
    is scored against the original item table (its own row fine-tuned where its job trained
    it), then each job's touched item columns are rescored with that job's item rows."""
    import torch

    served = [np.asarray(b.job.users, dtype=np.int64) for b in blocks]
    bounds = np.cumsum([0] + [len(s) for s in served])
    with torch.no_grad():
        users = model.user_emb[torch.as_tensor(np.concatenate(served))].clone()
        for b, s, lo in zip(blocks, served, bounds):
            mine = np.flatnonzero(np.isin(s, b.users))
            if len(mine):
                trained = torch.as_tensor(np.searchsorted(b.users, s[mine]))
                users[torch.as_tensor(lo + mine)] = b.user_rows[trained]
        scorer = copy.copy(model)
        scorer.user_emb = users
        out = np.array(scorer.score(np.arange(len(users))), dtype=np.float32)
        for b, lo, hi in zip(blocks, bounds[:-1], bounds[1:]):
            if len(b.items):
                columns = copy.copy(model)
                columns.user_emb, columns.item_emb = users[lo:hi], b.item_rows.detach()
                columns.n_items = len(b.items)
                out[lo:hi, b.items] = np.asarray(columns.score(np.arange(hi - lo)))
    return [out[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])]


def local_scores(model, train: Interactions, jobs: list[FinetuneJob], options: FinetuneOptions,
                 histories: Histories | None = None) -> list[np.ndarray]:
    """Fine-tune ``jobs`` together on their gathered rows, one optimizer over every job's
    small tables (all jobs must have the same number of steps; with shared parameters
    besides the two tables, exactly one job)."""
    from recguard.kit.cf.embedding import make_optimizer

    if not jobs:
        return []
    shared = [p for p in model.parameters() if p is not model.user_emb and p is not model.item_emb]
    if shared and len(jobs) > 1:
        raise ValueError("jobs of a model with shared parameters besides its tables run one at a time")
    histories = histories or (Histories(train) if train.feedback == "implicit" else None)
    blocks = [_Block(model, train, job, options, histories) for job in jobs]
    if len({len(b.steps) for b in blocks}) > 1:
        raise ValueError("jobs trained together must have the same number of steps")
    implicit = train.feedback == "implicit"
    saved_shared = [p.detach().clone() for p in shared]
    shared_grads = [p.grad for p in shared]
    try:
        tables = [t for b in blocks for t in (b.user_rows, b.item_rows)]
        optimizer = make_optimizer(options.optimizer, options.lr, tables + shared)
        for t in range(len(blocks[0].steps)):
            loss = sum(_batch_loss(b.view, *b.batches[t], implicit, options.weight_decay) for b in blocks)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return _score_blocks(model, blocks)
    finally:
        import torch

        with torch.no_grad():
            for p, s, g in zip(shared, saved_shared, shared_grads):
                p.copy_(s)
                p.grad = g


def finetuned_scores(model, train: Interactions, jobs: list[FinetuneJob], options: FinetuneOptions,
                     path: Path = "auto", group: int = 32, histories: Histories | None = None
                     ) -> list[np.ndarray]:
    """Each job's (len(job.users), n_items) scores after fine-tuning a copy of ``model``.

    ``path``: "local" (needs ``model.local_parameters``), "generic", or "auto" (local
    where the model allows it). ``group``: on the local path, how many jobs with the
    same number of steps train together (1: one at a time). ``histories``: `Histories`
    of ``train`` to reuse across calls (implicit data)."""
    if path == "auto":
        path = "local" if supports_local(model) else "generic"
    if path == "local" and not supports_local(model):
        raise ValueError(f"{type(model).__name__} does not declare local_parameters; use path='generic'")
    if histories is None and train.feedback == "implicit":
        histories = Histories(train)
    if path == "generic":
        return [generic_scores(model, train, job, options, histories) for job in jobs]
    shared = [p for p in model.parameters() if p is not model.user_emb and p is not model.item_emb]
    group = 1 if shared else max(1, group)
    out: list[np.ndarray | None] = [None] * len(jobs)
    buckets: dict[int, list[int]] = {}
    for j, job in enumerate(jobs):
        buckets.setdefault(n_steps(len(job.rows), options), []).append(j)
    for members in buckets.values():
        for start in range(0, len(members), group):
            chunk = members[start:start + group]
            scores = local_scores(model, train, [jobs[j] for j in chunk], options, histories)
            for j, row in zip(chunk, scores):
                out[j] = row
    return out  # type: ignore[return-value]
