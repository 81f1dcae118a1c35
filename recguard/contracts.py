"""The contracts every plugin component fulfils.

Four kinds of component: a `Backbone` fits a `Model` on training interactions;
an `Attack` builds fake users (and may poison item texts or insert triggers at
inference); a `Defense` acts at one or more stages (before the fit, during the
fit through `FitHooks`, at inference by wrapping the model); a `Metric` turns a
ranking into a number. Each has a `Config` dataclass whose defaults come from
its paper; `recguard.config.build_config` fills it from ``key=value`` options.

Compatibility is declared, not discovered by failing: backbones list what they
`offer` (see `CAPABILITIES`), defenses and attacks what they `need`, and
`recguard.compat.check_cell` refuses an impossible cell before any work.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from recguard.data.interactions import Interactions
    from recguard.data.poisoned import Poisoned
    from recguard.protocols import Protocol

BACKBONE_KINDS = ("cf", "sequential", "llm")
FEEDBACK_TYPES = ("explicit", "implicit")
DEFENSE_STAGES = ("before_fit", "during_fit", "at_inference")

# What a backbone can offer to a defense. A defense lists the ones it needs.
CAPABILITIES = {
    "embeddings": "model.user_embeddings() / model.item_embeddings() return arrays",
    "user_weights": "the training loss multiplies each user's terms by a per-user weight",
    "loss_terms": "FitHooks.extra_loss is added to the training loss every batch",
    "embedding_batch": "extra_loss's batch carries the batch's user / positive / negative "
                       "embeddings and loss_fn(user, pos, neg, ratings) of them (adversarial training)",
    "epoch_callbacks": "FitHooks.on_epoch_start / on_epoch_end are called every epoch",
    "finetune": "recguard.kit.cf.finetune_restore can fine-tune the model on a subset of its training rows "
                "and restore it (models trained by recguard.kit.cf.embedding)",
    "twice_differentiable": "the training loss is twice differentiable in the parameters",
    "item_text": "the model reads item texts, so poisoned titles reach it",
    "composite_embeddings": "model.windows(data) gives each user's input window and "
                            "model.composite_embeddings(windows) the [item embedding, sequence "
                            "output] of each position (LoRec Eq. 9), without gradient",
}


@dataclass
class Config:
    """Base class of every component's typed configuration (a dataclass)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Component:
    """What every component has: a registry name, a summary, a paper, a Config."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    Config: ClassVar[type[Config]] = Config
    # runs a large neural model (an LLM) that a GPU speeds up many times over: a sweep on a
    # cluster with GPUs gives the cells that hold such a component one (LLM backbones always)
    prefers_gpu: ClassVar[bool] = False

    def __init__(self, config: Config | None = None):
        self.config = config if config is not None else self.Config()

    def resolved_config(self, protocol: "Protocol") -> dict[str, Any]:
        """The configuration actually used under ``protocol`` (recorded in results).

        Override when a None option means "the paper's default for this protocol"."""
        return self.config.to_dict()

    @classmethod
    def describe(cls) -> str:
        """What it supports, in one line, for `recguard list`."""
        return cls.summary


# ---------------------------------------------------------------- backbones


class Model:
    """A fitted ranking model. `score` is all the pipeline needs."""

    n_items: int

    def score(self, users: np.ndarray) -> np.ndarray:
        """Scores of every item for each user: float array (len(users), n_items)."""
        raise NotImplementedError


class FitHooks:
    """Callbacks a defense attaches to a backbone's training loop.

    A backbone calls only the hooks whose capability it offers:
    ``epoch_callbacks`` -> `on_epoch_start` / `on_epoch_end`, ``user_weights``
    -> `user_weights` and `row_weights`, ``loss_terms`` -> `extra_loss`. Every hook has a no-op
    default, so a defense overrides just what it uses.
    """

    def on_epoch_start(self, epoch: int, model: Any, train: "Interactions") -> "Interactions | None":
        """Return a replacement training set for this epoch (e.g. with injected users), or None."""
        return None

    def user_weights(self, epoch: int, model: Any, train: "Interactions") -> np.ndarray | None:
        """Per-user loss weights (length train.n_users) for this epoch, or None for all ones."""
        return None

    def row_weights(self, epoch: int, model: Any, train: "Interactions") -> np.ndarray | None:
        """Per-row loss weights (length len(train), multiplying the user weights) for this
        epoch, or None for all ones; backbones training through `recguard.kit.cf.loop.run_epochs`
        apply them with the ``user_weights`` capability (e.g. LTSMF's trimmed pairs: weight 0)."""
        return None

    def extra_loss(self, epoch: int, model: Any, batch: dict[str, Any]) -> Any:
        """A term added to the batch loss (a torch scalar), or None.

        ``batch`` holds index tensors ``users``, ``items``, ``negatives`` (None on
        explicit data), ``ratings``, ``rows`` (into the epoch's training set) and
        ``row_weight`` (None for all ones). Backbones offering ``embedding_batch``
        add ``user_emb``, ``pos_emb``, ``neg_emb`` (in the autograd graph) and
        ``loss_fn(user, pos, neg, ratings)``, the unweighted per-row training loss.
        """
        return None

    def on_epoch_end(self, epoch: int, model: Any) -> None:
        """Called after every epoch."""


@dataclass
class FitContext:
    """What a backbone's `fit` receives beside the data."""

    seed: int
    hooks: FitHooks = field(default_factory=FitHooks)
    # progress(done_epochs, total_epochs, **info), info optional (loss=...): the pipeline shows it.
    progress: Callable[..., None] = lambda done, total, **info: None
    # LLM backbones: the training samples (`recguard.llm_contracts.Request` with their answers),
    # built by the pipeline from the protocol (`recguard.data.llm_task`); None for the others.
    samples: list[Any] | None = None
    catalog: Any = None   # LLM backbones: item titles by index, as the protocol renders them
    # seconds of a fit's phases (LLM backbones: load, sasrec, train), recorded with the cell
    timings: dict[str, float] = field(default_factory=dict)
    # whether the fit may reuse what an identical earlier fit saved (LLM backbones: the
    # fine-tuned adapter, `recguard.kit.lm.adapters`); False under `--no-cache` and `verify`
    use_cache: bool = True


class Backbone(Component):
    """A recommender. `fit(train, ctx)` returns a `Model`."""

    kind: ClassVar[str] = "cf"
    default_protocol: ClassVar[str] = "apt"
    feedback: ClassVar[frozenset[str]] = frozenset(FEEDBACK_TYPES)
    offers: ClassVar[frozenset[str]] = frozenset()

    def fit(self, train: "Interactions", ctx: FitContext) -> Model:
        raise NotImplementedError

    @classmethod
    def describe(cls) -> str:
        offers = ", ".join(sorted(cls.offers)) or "-"
        return f"{cls.summary} [kind {cls.kind}; {'/'.join(sorted(cls.feedback))}; offers {offers}]"


# ---------------------------------------------------------------- attacks


@dataclass
class AttackContext:
    """What an attack is told: the targets, the budget and the genuine data's shape."""

    targets: np.ndarray
    n_fake: int
    filler_size: int
    rng: np.random.Generator
    protocol: "Protocol"


class Attack(Component):
    """Poisoning (fake users, poisoned texts) and, optionally, inference-time triggers."""

    feedback: ClassVar[frozenset[str]] = frozenset(FEEDBACK_TYPES)
    backbone_kinds: ClassVar[frozenset[str]] = frozenset(BACKBONE_KINDS)
    needs: ClassVar[frozenset[str]] = frozenset()
    # "black-box": never reads the victim's parameters; "white-box": may, and says so.
    knowledge: ClassVar[str] = "black-box"
    default_protocol: ClassVar[str | None] = None
    default_backbone: ClassVar[str | None] = None   # used when a cell names no backbone

    def poison(self, train: "Interactions", ctx: AttackContext) -> "Poisoned":
        raise NotImplementedError

    def at_inference(self, request: Any, catalog: Any, rng: np.random.Generator) -> Any:
        """Backdoor attacks on LLM recommenders: the `recguard.llm_contracts.Request` with the
        trigger inserted (into one candidate's title, marked in ``triggered``), or None
        when this attack has no inference-time part (the default)."""
        return None

    @classmethod
    def describe(cls) -> str:
        return f"{cls.summary} [{'/'.join(sorted(cls.feedback))}; {cls.knowledge}]"


# ---------------------------------------------------------------- defenses


@dataclass
class DefenseContext:
    """What a defense receives; it may leave per-user fraud scores for detection metrics."""

    seed: int
    protocol: "Protocol"
    backbone: Backbone
    user_scores: np.ndarray | None = None  # higher = more likely fake, length train.n_users
    user_weights: np.ndarray | None = None  # final loss weight per user (0 = dropped), if any
    notes: dict[str, Any] = field(default_factory=dict)
    # progress(done, total, **info) of before_fit / during_fit's long work (an LLM encoding
    # every user): the pipeline shows it as "seed S · preparing DEFENSE"
    progress: Callable[..., None] = lambda done, total, **info: None
    # whether the defense may reuse what an identical earlier run saved (a trained scanner,
    # LLM user embeddings); False under `--no-cache` and `leaderboard verify`
    use_cache: bool = True


class Defense(Component):
    """A defense acting at one or more of `DEFENSE_STAGES`."""

    stages: ClassVar[frozenset[str]] = frozenset()
    feedback: ClassVar[frozenset[str]] = frozenset(FEEDBACK_TYPES)
    backbone_kinds: ClassVar[frozenset[str]] = frozenset(BACKBONE_KINDS)
    needs: ClassVar[frozenset[str]] = frozenset()
    default_protocol: ClassVar[str | None] = None
    default_backbone: ClassVar[str | None] = None   # used when a cell names no backbone

    def before_fit(self, train: "Interactions", ctx: DefenseContext) -> "Interactions":
        """Detect, drop or reweight users (set ``train.user_weight``) before training."""
        return train

    def during_fit(self, train: "Interactions", ctx: DefenseContext) -> FitHooks:
        """Hooks into the backbone's training loop."""
        return FitHooks()

    def at_inference(self, model: Model, train: "Interactions", ctx: DefenseContext) -> Model:
        """Wrap the fitted model (fine-tune per user, filter candidates)."""
        return model

    @classmethod
    def describe(cls) -> str:
        if not cls.stages:
            return cls.summary
        stages = ", ".join(s for s in DEFENSE_STAGES if s in cls.stages)
        return f"{cls.summary} [{stages}; backbones {'/'.join(sorted(cls.backbone_kinds))}]"


# ---------------------------------------------------------------- metrics


@dataclass
class RankingView:
    """What ranking metrics read: top-K lists of the evaluated (genuine) users.

    ``topk[j]`` is user ``users[j]``'s ranked list of item indices (its own
    training items masked). ``test_items[j]`` holds that user's held-out items.
    ``target_eligible[t]`` is a boolean mask over ``users``: genuine users who
    never interacted with target ``targets[t]`` (LoRec Eq. 22).
    """

    users: np.ndarray
    topk: np.ndarray
    test_items: list[np.ndarray]
    targets: np.ndarray
    target_eligible: np.ndarray
    reference: dict[str, float] = field(default_factory=dict)  # the clean condition's values


class Metric(Component):
    """A number computed from what a condition's model answered.

    A ranking metric (``task_kinds = {"ranking"}``) reads a `RankingView` at cut-off k. A
    metric of the LLM task kinds (choose, yes_no) reads a `recguard.metrics.answers.AnswersView`
    with k None, and returns None where it does not apply (no triggered requests); one that
    ``compares_rows`` reads a `recguard.metrics.answers.RowsView` (a defended row against the
    undefended one). A protocol of an LLM kind reports every metric registered for its kind.
    """

    higher_is_better: ClassVar[bool] = True
    task_kinds: ClassVar[frozenset[str]] = frozenset({"ranking"})
    # True for metrics relative to the clean condition (RC-HR@k, RC-NDCG@k).
    needs_reference: ClassVar[bool] = False
    compares_rows: ClassVar[bool] = False

    def compute(self, view: Any, k: int | None) -> float | None:
        raise NotImplementedError


COMPONENT_KINDS: dict[str, type[Component]] = {
    "backbone": Backbone,
    "attack": Attack,
    "defense": Defense,
    "metric": Metric,
}
