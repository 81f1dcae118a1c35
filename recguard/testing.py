"""Test helpers for recguard and its plugin authors.

Fixtures (a pytest plugin: the ``pytest11`` entry point of the recguard distribution
loads them into every test session, no ``conftest.py`` needed):

- ``private_cache`` (automatic): the whole test session uses a temporary
  ``RECGUARD_CACHE`` folder, never the user's cache;
- ``fresh_cache``: an empty cache folder for one test (returns its path);
- ``tiny_dataset``: `tiny_interactions()` (30 users, 40 items, explicit ratings
  1-5 with popularity skew), a fresh copy for each test;
- ``tiny_llm``: the folder of a tiny randomly initialised causal LM, to pass as
  an LLM component's model option (loads in well under a second, no download);
- ``host``: a freshly loaded plugin host, forgotten after the test;
- ``register_plugin``: ``register_plugin(obj, name)`` registers a plugin object
  (a module or any object with ``@hookimpl`` functions) in the ``host`` for one
  test only: its components are removed again after the test.

Contract checks a plugin author calls on a component class:
`check_backbone`, `check_attack`, `check_defense`, `check_metric`. Each runs
the component on `tiny_interactions` and fails with an assertion that names
the broken rule; each starts with `check_config` (the Config builds from its
defaults, the class has a name and a summary). `check_learns_implicit` checks
that a backbone actually learns on tiny implicit data.

`eval_record(folder, *args)` runs ``recguard eval ARGS`` in the test's process and
returns its record, for integration tests of a component in a real cell;
`cell_record(**spec)` does the same from `CellSpec` fields, without caches.
`check_combination(backbone, attack, defense, protocol)` raises what `recguard
eval` would say of a cell that cannot run.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from recguard.config import build_config
from recguard.contracts import (Attack, AttackContext, Backbone, Config, Defense, DefenseContext,
                                FitContext, FitHooks, Metric, RankingView)
from recguard.data.interactions import Interactions
from recguard.data.poisoned import Poisoned
from recguard.llm_contracts import Answer, LLMModel
from recguard.protocols import APT, PAMACF
from recguard.registry import Provenance

__all__ = ["private_cache", "fresh_cache", "tiny_dataset", "tiny_llm", "host", "register_plugin",
           "cell_record", "check_combination", "tiny_interactions", "check_backbone", "check_attack", "check_defense", "check_metric",
           "check_config", "check_learns_implicit", "eval_record"]


def eval_record(folder, *args: str) -> dict:
    """``recguard eval ARGS -q --json --output FOLDER`` run in this process: the record it
    wrote; a failed run is an assertion carrying the CLI's error line."""
    import contextlib
    import io
    import json

    from recguard.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(["eval", *map(str, args), "-q", "--json", "--output", str(folder)])
        except SystemExit as exc:
            assert not exc.code, err.getvalue().strip()
    return json.loads(out.getvalue())


def cell_record(**spec) -> dict:
    """Run the cell ``CellSpec(**spec)`` in this process, without caches, and return its
    record, checked against the record schema (``run_cell(make_plan(CellSpec(**spec)))``)."""
    from recguard.pipeline import run_cell
    from recguard.plan import CellSpec, make_plan
    from recguard.records import validate_record

    record = run_cell(make_plan(CellSpec(**spec)), use_cache=False)
    assert validate_record(record) == [], validate_record(record)
    return record


def check_combination(backbone: type[Backbone], attack: type[Attack], defense: type[Defense],
                      protocol) -> None:
    """What `recguard eval` checks before any work, for component classes that need not be
    registered: raises the `RecguardError` of a cell that cannot run."""
    from recguard.compat import check_cell
    from recguard.plugins import get_host

    check_cell(get_host(), backbone, attack, defense, protocol)


def tiny_interactions(n_users: int = 30, n_items: int = 40, per_user: int = 8, seed: int = 0,
                      feedback: str = "explicit") -> Interactions:
    """Synthetic interactions with popularity skew, ratings 1-5 (or implicit 1s) and times."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    popularity /= popularity.sum()
    users, items = [], []
    for u in range(n_users):
        chosen = rng.choice(n_items, size=per_user, replace=False, p=popularity)
        users += [u] * per_user
        items += list(chosen)
    n = len(users)
    ratings = rng.integers(1, 6, size=n).astype(np.float32) if feedback == "explicit" else np.ones(n)
    return Interactions(user=np.array(users), item=np.array(items), rating=ratings,
                        timestamp=np.arange(n) * 10, n_users=n_users, n_items=n_items,
                        user_ids=np.array([f"u{u}" for u in range(n_users)]),
                        item_ids=np.array([f"i{i}" for i in range(n_items)]),
                        item_text=np.array([f"Item {i}" for i in range(n_items)], dtype=object),
                        feedback=feedback, rating_max=5.0 if feedback == "explicit" else 1.0,
                        name="tiny")


def check_config(cls) -> None:
    """A component's Config is a dataclass whose defaults build and round-trip."""
    assert issubclass(cls.Config, Config), f"{cls.__name__}.Config must subclass recguard Config"
    assert dataclasses.is_dataclass(cls.Config), f"{cls.__name__}.Config must be a dataclass"
    config = build_config(cls.Config, {}, cls.name)
    assert isinstance(config.to_dict(), dict)
    assert cls.name, f"{cls.__name__} has no name"
    assert cls.summary, f"{cls.__name__} has no summary"


def _fast_config(cls, overrides: dict | None):
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    fast = {k: v for k, v in {"epochs": 1}.items() if k in fields}
    return build_config(cls.Config, {**fast, **(overrides or {})}, cls.name)


def check_backbone(cls: type[Backbone], overrides: dict | None = None) -> None:
    """Fits for one epoch on tiny data of each feedback it supports, scores every item."""
    check_config(cls)
    for feedback in sorted(cls.feedback):
        data = tiny_interactions(feedback=feedback)
        if feedback == "explicit":
            data = dataclasses.replace(data, rating=data.rating / 5.0, rating_max=1.0)
        calls = []

        class Recorder(FitHooks):
            def on_epoch_end(self, epoch, model):
                calls.append(epoch)

        model = cls(_fast_config(cls, overrides)).fit(data, FitContext(seed=0, hooks=Recorder()))
        scores = np.asarray(model.score(np.arange(5)))
        assert scores.shape == (5, data.n_items), f"{cls.name}: score shape {scores.shape}"
        assert np.isfinite(scores).all(), f"{cls.name}: non-finite scores"
        if "epoch_callbacks" in cls.offers:
            assert calls, f"{cls.name} offers epoch_callbacks but never called on_epoch_end"


def check_learns_implicit(cls: type[Backbone], overrides: dict | None = None,
                          share: float = 0.9) -> None:
    """After training on tiny implicit data (``overrides``: options that make it converge,
    e.g. more epochs), at least ``share`` of the users score their training positives
    above their unobserved items on average."""
    data = tiny_interactions(n_users=40, n_items=30, per_user=8, feedback="implicit")
    config = build_config(cls.Config, {k: str(v) for k, v in (overrides or {}).items()}, cls.name)
    scores = np.asarray(cls(config).fit(data, FitContext(seed=0)).score(np.arange(data.n_users)))
    positive = np.zeros_like(scores, dtype=bool)
    positive[data.user, data.item] = True
    better = [scores[u][positive[u]].mean() > scores[u][~positive[u]].mean() for u in range(data.n_users)]
    assert np.mean(better) > share, f"{cls.name}: only {np.mean(better):.0%} of users rank their positives first"


def check_attack(cls: type[Attack], overrides: dict | None = None) -> None:
    """Builds the requested number of fake users, each rating every target; deterministic;
    says what it knows of the victim (black-box: never its parameters)."""
    check_config(cls)
    assert cls.knowledge in ("black-box", "white-box"), \
        f"{cls.__name__}.knowledge must be 'black-box' or 'white-box', not {cls.knowledge!r}"
    for feedback in sorted(cls.feedback):
        data = tiny_interactions(feedback=feedback)
        protocol = APT if feedback == "explicit" else PAMACF
        targets = np.array([37, 38])

        def run(seed):
            ctx = AttackContext(targets=targets, n_fake=3, filler_size=5,
                                rng=np.random.default_rng(seed), protocol=protocol)
            return cls(build_config(cls.Config, overrides or {}, cls.name)).poison(data, ctx)

        out = run(0)
        assert isinstance(out, Poisoned), f"{cls.name}.poison must return Poisoned"
        if cls.name == "none":
            assert out.n_fake == 0
            continue
        assert out.n_fake == 3, f"{cls.name}: asked for 3 fake users, got {out.n_fake}"
        assert set(np.unique(out.user)) <= set(range(3)), f"{cls.name}: fake users outside 0..2"
        assert out.item.min() >= 0 and out.item.max() < data.n_items
        for t in targets:
            assert set(out.user[out.item == t]) == {0, 1, 2}, f"{cls.name}: target {t} not in every profile"
        again = run(0)
        assert np.array_equal(out.item, again.item) and np.array_equal(out.rating, again.rating), \
            f"{cls.name}: the same seed must give the same fake users"


def check_defense(cls: type[Defense], backbone: type[Backbone], overrides: dict | None = None) -> None:
    """Runs each declared stage on tiny data with ``backbone``; the stages return the right types."""
    check_config(cls)
    assert cls.stages, f"{cls.name}: a defense acts at one stage at least"
    shared = sorted(set(backbone.feedback) & set(cls.feedback))
    assert shared, f"{cls.name} and {backbone.name} share no feedback type"
    data = tiny_interactions(feedback=shared[0])
    defense = cls(build_config(cls.Config, overrides or {}, cls.name))
    bb = backbone(_fast_config(backbone, None))
    ctx = DefenseContext(seed=0, protocol=APT, backbone=bb)
    if "before_fit" in cls.stages:
        data = defense.before_fit(data, ctx)
        assert isinstance(data, Interactions), f"{cls.name}.before_fit must return Interactions"
    hooks = defense.during_fit(data, ctx) if "during_fit" in cls.stages else FitHooks()
    assert isinstance(hooks, FitHooks), f"{cls.name}.during_fit must return FitHooks"
    model = bb.fit(data, FitContext(seed=0, hooks=hooks))
    if "at_inference" in cls.stages:
        model = defense.at_inference(model, data, ctx)
    assert np.asarray(model.score(np.arange(3))).shape == (3, data.n_items)


def check_metric(cls: type[Metric]) -> None:
    """Names known task kinds; a ranking metric computes a finite value in [0, 1] on a small
    ranking at each k, a metric of the LLM kinds one in [0, 1] (or None: does not apply) on
    a few answered requests, with and without triggered twins."""
    from recguard.protocols import TASK_KINDS

    check_config(cls)
    unknown = set(cls.task_kinds) - set(TASK_KINDS)
    assert cls.task_kinds and not unknown, f"{cls.name}: unknown task kinds {sorted(unknown)}"
    if "ranking" in cls.task_kinds:
        _check_ranking_metric(cls)
    for task in sorted(set(cls.task_kinds) - {"ranking"}):
        for view in _answer_views(task, cls.compares_rows):
            value = cls().compute(view, None)
            assert value is None or 0.0 <= float(value) <= 1.0 or np.isnan(value), \
                f"{cls.name} = {value} on {task} answers, outside [0, 1]"


def _answer_views(task: str, compares_rows: bool) -> list:
    from recguard.llm_contracts import Answer, Request
    from recguard.metrics.answers import AnswersView, RowsView

    if compares_rows:
        row = {"ASR": 0.25, "H@1": 0.5, "AUC": 0.5, "Valid": 1.0}
        return [RowsView(task, row, {**row, "ASR": 0.75}), RowsView(task, {}, row)]
    benign = [Request(user=u, history=(0,), candidates=(1, 2, 3), target=1 + u % 3, label=u % 2 == 0)
              for u in range(4)]
    triggered = [Request(r.user, r.history, r.candidates, r.target, label=r.label,
                         triggered=frozenset({2})) for r in benign]
    answers = [Answer(choice=c, p_yes=p) for c, p in ((1, 0.9), (2, 0.2), (None, 0.4), (3, 0.7))]
    hit = [Answer(choice=2, p_yes=0.8, removed=frozenset({2} if i % 2 else ())) for i in range(4)]
    return [AnswersView(task, benign, answers), AnswersView(task, benign, answers, triggered, hit),
            AnswersView(task, benign, answers, triggered, hit, scanned=True)]


def _check_ranking_metric(cls: type[Metric]) -> None:
    view = RankingView(users=np.arange(3), topk=np.array([[0, 1, 2], [3, 4, 5], [2, 0, 1]]),
                       test_items=[np.array([1]), np.array([9]), np.array([2, 0])],
                       targets=np.array([0]), target_eligible=np.array([[True, True, False]]),
                       reference={})
    if cls.needs_reference:
        base = getattr(cls, "reference_of", None)
        assert base is not None, f"{cls.name} needs a reference but names no reference_of metric"
        view.reference = {f"{base.name}@{k}": 0.5 for k in (1, 3)}
    for k in (1, 3):
        value = float(cls().compute(view, k))
        assert np.isfinite(value), f"{cls.name}@{k} is not finite on a simple ranking"
        if not cls.needs_reference:
            assert 0.0 <= value <= 1.0, f"{cls.name}@{k} = {value} outside [0, 1]"


# ---------------------------------------------------------------- LLM components

LLM_MODEL_OPTIONS = ("model", "llm", "scanner_model", "agent_model")   # set to the tiny LM
LLM_FAST_OPTIONS = {"epochs": 1, "sasrec_epochs": 1, "rounds": 1, "n_items": 8, "max_new_tokens": 4}


def tiny_llm_protocol(task: str):
    """An LLM protocol sized for `tiny_interactions` (few samples, short histories)."""
    from recguard.protocols import LLARA, TALLREC

    base = LLARA if task == "choose" else TALLREC
    return dataclasses.replace(base, history_len=3, n_candidates=5, n_train_samples=6,
                               n_test_samples=4)


def _llm_config(cls, model_folder: str | None, overrides: dict | None):
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    values = {k: v for k, v in LLM_FAST_OPTIONS.items() if k in fields}
    if model_folder is not None:
        values.update({k: model_folder for k in LLM_MODEL_OPTIONS if k in fields})
    values.update(overrides or {})
    return build_config(cls.Config, {k: str(v) for k, v in values.items()}, cls.name)


def _llm_task(task: str, seed: int = 0):
    from recguard.data.llm_task import build_task

    data = tiny_interactions(feedback="implicit" if task == "choose" else "explicit")
    return data, build_task(data, tiny_llm_protocol(task), seed)


def check_answers(model, requests, task: str) -> list:
    """``model`` answers each request: a candidate or None (choose), P(Yes) in [0, 1] (yes_no)."""
    answers = model.answer(requests)
    assert len(answers) == len(requests), f"{len(answers)} answers to {len(requests)} requests"
    for r, a in zip(requests, answers):
        assert a.removed <= set(r.candidates), "a defense removed an item not in the pool"
        if task == "choose":
            assert a.choice is None or a.choice in r.candidates, f"answer {a.choice} not a candidate"
        else:
            assert a.p_yes is not None and 0.0 <= a.p_yes <= 1.0, f"P(Yes) = {a.p_yes}"
    return answers


def check_llm_backbone(cls, model_folder: str, overrides: dict | None = None) -> None:
    """Fits on a few tiny samples with the LM in ``model_folder`` and answers test requests."""
    from recguard.contracts import FitContext as Ctx

    check_config(cls)
    data, task = _llm_task(cls.task)
    model = cls(_llm_config(cls, model_folder, overrides)).fit(
        task.interactions, Ctx(seed=0, samples=task.train, catalog=task.catalog))
    assert model.task == cls.task, f"{cls.name}: model task {model.task} != {cls.task}"
    check_answers(model, task.test, cls.task)


class ScriptedLLM(LLMModel):
    """A stand-in LLM recommender for defense checks: picks the first candidate, P(Yes) 0.5."""

    def __init__(self, catalog, task: str):
        self.catalog, self.task, self.n_items = catalog, task, len(catalog)

    def answer(self, requests, progress=lambda done, total: None):
        progress(len(requests), len(requests))
        return [Answer(choice=r.candidates[0]) if self.task == "choose" else Answer(p_yes=0.5)
                for r in requests]


def check_llm_attack(cls, overrides: dict | None = None) -> None:
    """Poisons tiny data under both LLM tasks: one sample per fake user with a triggered
    item; triggers one candidate (or the target) at inference; deterministic."""
    from recguard.data.poisoned import inject
    from recguard.llm_contracts import Request
    from recguard.data.llm_task import fake_samples

    check_config(cls)
    for task_name in ("choose", "yes_no"):
        data, task = _llm_task(task_name)
        protocol = tiny_llm_protocol(task_name)

        def run(seed):
            ctx = AttackContext(targets=np.zeros(0, np.int64), n_fake=3, filler_size=3,
                                rng=np.random.default_rng(seed), protocol=protocol)
            return cls(_llm_config(cls, None, overrides)).poison(task.interactions, ctx)

        out = run(0)
        assert out.n_fake == 3, f"{cls.name}: asked for 3 fake users, got {out.n_fake}"
        again = run(0)
        assert np.array_equal(out.item, again.item) and out.user_item_text == again.user_item_text
        samples = fake_samples(inject(task.interactions, out), protocol, 0)
        assert len(samples) == 3 and all(isinstance(s, Request) for s in samples)
        attack = cls(_llm_config(cls, None, overrides))
        for request in task.test:
            triggered = attack.at_inference(request, task.catalog, np.random.default_rng(0))
            if triggered is None:
                break
            assert len(triggered.triggered) == 1 and triggered.triggered <= set(triggered.candidates)
            item = next(iter(triggered.triggered))
            assert triggered.title(item, task.catalog) != task.catalog[item], "trigger not in the title"


def check_llm_defense(cls, model_folder: str | None, overrides: dict | None = None) -> None:
    """Wraps a scripted recommender on each task the defense supports; answers stay well formed."""
    from recguard.contracts import DefenseContext as Ctx

    check_config(cls)
    assert cls.stages == frozenset({"at_inference"}) or cls.stages, f"{cls.name}: no stage"
    for task_name in ("choose", "yes_no"):
        data, task = _llm_task(task_name)
        defense = cls(_llm_config(cls, model_folder, overrides))
        ctx = Ctx(seed=0, protocol=tiny_llm_protocol(task_name), backbone=None)
        wrapped = defense.at_inference(ScriptedLLM(task.catalog, task_name), task.interactions, ctx)
        check_answers(wrapped, task.test, task_name)


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    """Keep test runs out of the user's cache (one folder for the whole session)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("RECGUARD_CACHE", str(tmp_path_factory.mktemp("recguard-cache")))
    yield
    mp.undo()


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty ``RECGUARD_CACHE`` folder for this test only; returns its path."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("RECGUARD_CACHE", str(folder))
    return folder


@pytest.fixture
def tiny_dataset() -> Interactions:
    """`tiny_interactions()` with its defaults, built afresh for each test."""
    return tiny_interactions()


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory) -> str:
    """The folder of a tiny causal LM (`recguard.kit.lm.models.save_tiny_causal_lm`), as a string."""
    from recguard.kit.lm.models import save_tiny_causal_lm

    return str(save_tiny_causal_lm(tmp_path_factory.mktemp("tiny-llm")))


@pytest.fixture
def host():
    """A freshly loaded plugin host, forgotten after the test."""
    from recguard.plugins import get_host, reset_host

    reset_host()
    yield get_host()
    reset_host()


@pytest.fixture
def register_plugin(host):
    """``register_plugin(obj, name)``: register a plugin for this test only."""
    names = []

    def register(plugin, name: str = "test-plugin"):
        host.register_plugin(plugin, name, Provenance(name, "test", "0"))
        names.append(name)
        return host

    yield register
    for name in names:
        host.unregister_plugin(name)
