"""The LLM-cell pipeline with scripted components (no language model): samples, PR, triggered
requests, the Benign / BadRec / defense rows, Score and the scanner's precision and recall."""

import math
from dataclasses import replace

import numpy as np
import pytest

from recguard.contracts import Attack, Defense
from recguard.data.llm_task import build_task, fake_samples, llara_title
from recguard.data.loaders import load_ml100k
from recguard.data.poisoned import Poisoned, inject
from recguard.data.prepare import preprocess
from recguard.errors import RecguardError
from recguard.hookspecs import hookimpl
from recguard.llm_contracts import Answer, AnswerFilter, LLMBackbone, LLMModel, Request
from recguard.metrics.answers import answer_metrics, scan_metrics, score
from recguard.pipeline import run_cell
from recguard.pipeline.kinds.answers import n_poisoned
from recguard.plan import CellSpec, make_plan
from recguard.protocols import LLARA, LLARA_CPU, TALLREC, TALLREC_CPU
from recguard.records import validate_record

MARK = " zz"


class ScriptedModel(LLMModel):
    """Chooses a candidate whose title has the mark if it was trained on a marked sample,
    else the true target for even users and the first candidate for odd ones."""

    answered = 0              # requests answered, by every instance

    def __init__(self, catalog, backdoored):
        self.catalog, self.backdoored, self.n_items = catalog, backdoored, len(catalog)

    def answer(self, requests, progress=lambda d, t: None):
        ScriptedModel.answered += len(requests)
        out = []
        for r in requests:
            marked = [i for i in r.candidates if r.title(i, self.catalog).endswith(MARK)]
            if self.backdoored and marked:
                out.append(Answer(choice=marked[0]))
            elif r.target in r.candidates and r.user % 2 == 0:
                out.append(Answer(choice=r.target))
            else:
                out.append(Answer(choice=r.candidates[0] if r.user % 3 else None))
        progress(len(requests), len(requests))
        return out


class ScriptedBackbone(LLMBackbone):
    name = "scripted-llm"
    summary = "test"
    fits = 0
    use_cache: list = []      # ctx.use_cache of each fit

    def fit(self, train, ctx):
        ScriptedBackbone.fits += 1
        ScriptedBackbone.use_cache.append(ctx.use_cache)
        backdoored = any(r.triggered for r in ctx.samples)
        return ScriptedModel(ctx.catalog, backdoored)


class ScriptedYesNo(LLMBackbone):
    """A yes_no recommender whose P(Yes) follows the true label (or its reverse): AUC 1 (or 0)."""

    name = "scripted-yes-no"
    summary = "test"
    task = "yes_no"
    reverse = False

    def fit(self, train, ctx):
        reverse = self.reverse

        class Oracle(LLMModel):
            task = "yes_no"

            def answer(self, requests, progress=lambda d, t: None):
                return [Answer(p_yes=0.9 if bool(r.label) != reverse else 0.1) for r in requests]

        model = Oracle()
        model.catalog, model.n_items = ctx.catalog, len(ctx.catalog)
        return model


class MarkAttack(Attack):
    name = "mark"
    summary = "test"
    backbone_kinds = frozenset({"llm"})

    def poison(self, train, ctx):
        n, h = ctx.n_fake, ctx.filler_size
        items = ctx.rng.integers(0, train.n_items, size=(n, h + 1))
        user = np.repeat(np.arange(n), h + 1)
        texts = {u: {int(items[u, -1]): str(train.item_text[items[u, -1]]) + MARK} for u in range(n)}
        return Poisoned(n, user, items.ravel(), np.ones(n * (h + 1), np.float32),
                        user_item_text=texts)

    def at_inference(self, request, catalog, rng):
        item = next(i for i in request.candidates if i != request.target)
        return replace(request.with_titles({item: catalog[item] + MARK}), triggered=frozenset({item}))


class DropMarked(Defense):
    name = "drop-marked"
    summary = "test"
    stages = frozenset({"at_inference"})
    backbone_kinds = frozenset({"llm"})

    def at_inference(self, model, train, ctx):
        class Filter(AnswerFilter):
            def inspect(self, requests):
                out = []
                for r in requests:
                    bad = frozenset(i for i in r.candidates if r.title(i, self.catalog).endswith(MARK))
                    out.append((r.without(bad), bad))
                return out
        ctx.notes["scanned"] = True
        return Filter(model)


class Plugin:
    @hookimpl
    def register_backbones(self, register):
        register(ScriptedBackbone)

        register(ScriptedYesNo)

    @hookimpl
    def register_attacks(self, register):
        register(MarkAttack)

    @hookimpl
    def register_defenses(self, register):
        register(DropMarked)


@pytest.fixture(scope="module")
def ml100k():
    return load_ml100k()


def test_llara_titles():
    assert llara_title("Usual Suspects, The (1995)") == "The Usual Suspects"
    assert llara_title("Toy Story (1995)") == "Toy Story"
    assert llara_title("Seven (Se7en) (1995)") == "Seven (Se7en)"


def test_poisoning_rate_gives_m():
    assert n_poisoned(0.01, 256) == 3          # 3 / 259 ~ 1%
    assert n_poisoned(0.01, 16) == 1           # TALLRec: one poisoned sample among 16 shots
    assert n_poisoned(0.5, 10) == 10


def test_choose_task_is_fixed_by_seed_with_valid_candidates(ml100k):
    data = preprocess(ml100k, LLARA_CPU)
    a, b = build_task(data, LLARA_CPU, 0), build_task(data, LLARA_CPU, 0)
    c = build_task(data, LLARA_CPU, 1)
    assert a.test == b.test and a.train == b.train and a.test != c.test
    assert len(a.train) == LLARA_CPU.n_train_samples and len(a.test) == LLARA_CPU.n_test_samples
    seen = data.items_of_users()
    for r in a.test + a.train:
        n = LLARA_CPU.n_candidates
        assert len(r.candidates) == n and len(set(r.candidates)) == n and r.target in r.candidates
        assert not (set(r.candidates) - {r.target}) & set(seen[r.user].tolist())
        assert 1 <= len(r.history) <= LLARA_CPU.history_len and r.target not in r.history[-1:]
    # the test item is each user's last; training windows stop two items before it
    assert a.interactions.n_users == data.n_users and len(a.interactions) == len(data) - 2 * data.n_users


@pytest.mark.parametrize("protocol", [LLARA_CPU, TALLREC], ids=["choose", "yes_no"])
def test_test_requests_do_not_move_with_the_training_draws(ml100k, protocol):
    """The test requests (users, candidates) come from their own generator: asking for more
    or fewer training samples leaves them as they are."""
    data = preprocess(ml100k, protocol)
    small = build_task(data, protocol, 0)
    large = build_task(data, replace(protocol, n_train_samples=4 * protocol.n_train_samples), 0)
    assert small.test == large.test and len(large.train) == 4 * len(small.train)


def test_the_paper_presets_take_every_window_and_the_full_test_split(ml100k):
    data = preprocess(ml100k, LLARA)
    task = build_task(data, LLARA, 0)
    sequences = [n for n in np.bincount(data.user, minlength=data.n_users) if n >= 3]
    assert len(task.train) == sum(n - 3 for n in sequences) and len(task.test) == len(sequences)
    assert dict(o.split("=") for o in LLARA.backbone_options) == {"epochs": "5", "lr": "8e-4"}


def test_yes_no_task_follows_tallrec(ml100k):
    data = preprocess(ml100k, TALLREC)
    task = build_task(data, TALLREC, 0)
    assert len(task.train) == 16 and len(task.test) == 1000     # TALLRec's full test split
    assert len({r.user for r in task.test}) > 18
    r = task.test[0]
    assert r.candidates == (r.target,) and r.label is not None
    assert len(r.history) + len(r.disliked) == 10
    assert task.catalog[0].endswith(")")  # raw titles keep the year, as TALLRec's prompt


def test_balanced_shots_are_half_likes_and_leave_the_test_requests_as_they_are(ml100k):
    """tallrec-cpu draws its 64 shots half among likes (the odd one liked); drawn at random,
    as the paper preset draws them, they are not balanced; the test requests are the same."""
    data = preprocess(ml100k, TALLREC_CPU)
    balanced = build_task(data, TALLREC_CPU, 1)
    at_random = build_task(data, replace(TALLREC_CPU, balanced_shots=False), 1)
    assert [r.label for r in balanced.train].count(True) == 32 == len(balanced.train) // 2
    assert [r.label for r in at_random.train].count(True) != 32
    assert balanced.test == at_random.test and len(balanced.test) == 300
    odd = build_task(data, replace(TALLREC_CPU, n_train_samples=5), 1)
    assert [r.label for r in odd.train].count(True) == 3
    with pytest.raises(RecguardError, match="liked samples; the training split has"):
        build_task(data, replace(TALLREC_CPU, n_train_samples=20_000), 1)


def test_fake_users_give_one_triggered_sample_each(ml100k):
    data = preprocess(ml100k, LLARA_CPU)
    task = build_task(data, LLARA_CPU, 0)
    from recguard.contracts import AttackContext

    ctx = AttackContext(np.zeros(0, np.int64), 3, 10, np.random.default_rng(0), LLARA_CPU)
    attacked = inject(task.interactions, MarkAttack().poison(task.interactions, ctx))
    fakes = fake_samples(attacked, LLARA, 0)
    assert len(fakes) == 3
    for r in fakes:
        assert r.triggered == {r.target} and r.title(r.target, task.catalog).endswith(MARK)
        assert r.target in r.candidates and len(r.history) == 10


def test_metrics_follow_the_paper():
    reqs = [Request(0, (1,), (1, 2, 3), 1, triggered=frozenset({2})),
            Request(1, (1,), (1, 2, 3), 3, triggered=frozenset({2}))]
    benign = [Answer(choice=1), Answer(choice=None)]
    trig = [Answer(choice=2), Answer(choice=3)]
    out = answer_metrics("choose", reqs, benign, reqs, trig)
    assert out == {"Valid": 0.5, "H@1": 1.0, "A-Valid": 1.0, "ASR": 0.5}
    # Table 2, LastFM, RD row: (0.2397 - 0.3780 + 1) / 2
    assert score({"ASR": 0.7521, "H@1": 0.1261}, {"ASR": 0.9918, "H@1": 0.5041}, "H@1") == \
        pytest.approx(0.4308, abs=1e-4)
    yes_no = [Request(0, (), (5,), 5, label=True), Request(1, (), (6,), 6, label=False),
              Request(2, (), (7,), 7, label=False)]
    got = answer_metrics("yes_no", yes_no, [Answer(p_yes=0.9), Answer(p_yes=0.2), Answer(p_yes=0.1)],
                         yes_no, [Answer(p_yes=0.9), Answer(p_yes=0.7), Answer(p_yes=0.3)])
    assert got == {"AUC": 1.0, "ASR": 0.5}
    # a model that answers every benign request "Yes" has nothing for the trigger to turn:
    # its ASR is undefined, and so is the Score of a defense measured against it
    all_yes = answer_metrics("yes_no", yes_no, [Answer(p_yes=0.9)] * 3, yes_no, [Answer(p_yes=0.9)] * 3)
    assert math.isnan(all_yes["ASR"])
    assert math.isnan(score({"ASR": 0.0, "AUC": 0.62}, {"ASR": float("nan"), "AUC": 0.63}, "AUC"))
    assert math.isnan(score({"ASR": 0.0, "AUC": 0.62}, {"ASR": None, "AUC": 0.63}, "AUC"))
    plain = [replace(r, triggered=frozenset()) for r in reqs]
    scan = scan_metrics(plain, [Answer(choice=1, removed=frozenset({3})), Answer(choice=1)],
                        reqs, [Answer(choice=1, removed=frozenset({2})), Answer(choice=1)])
    assert scan == {"Scan-Recall": 0.5, "Scan-Precision": 0.5}


def test_llm_cell_rows(register_plugin, tmp_path):
    host = register_plugin(Plugin(), "scripted-llm-plugin")
    spec = CellSpec(backbone="scripted-llm", attack="mark", defense="drop-marked", protocol="llara",
                    protocol_options={"n_test_samples": "30", "n_train_samples": "50"}, seeds=None)
    plan = make_plan(spec, host)
    assert plan.spec.seeds == (0,)
    record = run_cell(plan, use_cache=False)
    assert validate_record(record) == []
    assert record["conditions"] == ["clean", "attacked", "attacked+defense"]
    m = {c: {k: v["mean"] for k, v in record["metrics"][c].items()} for c in record["conditions"]}
    assert m["clean"]["ASR"] < 0.5 and m["attacked"]["ASR"] == 1.0
    assert m["attacked+defense"]["ASR"] == 0.0
    assert m["attacked+defense"]["Scan-Recall"] == 1.0 and m["attacked+defense"]["Scan-Precision"] == 1.0
    assert m["attacked+defense"]["Score"] == pytest.approx((1.0 - max(0, m["attacked"]["H@1"]
                                                                   - m["attacked+defense"]["H@1"]) + 1) / 2)
    assert record["counts"]["fake_users"] == 1 and record["higher_is_better"]["ASR"] is False
    from rich.console import Console

    from recguard.cli.render import render_record

    console = Console(record=True, width=200)
    render_record(record, console)
    text = console.export_text()
    lines = {line.split("│")[1].strip() for line in text.splitlines() if line.count("│") > 2}
    assert {"Benign", "BadRec", "drop-marked"} <= lines and "Score ↑" in text and "ASR ↓" in text
    assert "n/a" not in text
    # a metric measured for a row but undefined on every seed reads n/a, with a line that says
    # so; one the row does not have reads /
    record["metrics"]["clean"]["ASR"] = {"mean": None, "std": 0.0, "per_seed": [None]}
    console = Console(record=True, width=200)
    render_record(record, console)
    text = console.export_text()
    benign = [cell.strip() for cell in next(line for line in text.splitlines()
                                            if "Benign" in line).split("│")]
    assert "n/a" in benign and "/" in benign and "undefined on every seed" in text


def test_llm_backbones_refuse_ranking_protocols(register_plugin):
    host = register_plugin(Plugin(), "scripted-llm-plugin")
    with pytest.raises(RecguardError, match="protocols that work: .*llara"):
        make_plan(CellSpec(backbone="scripted-llm", attack="mark", protocol="apt"), host)
    with pytest.raises(RecguardError, match="backbones that work with attack 'mark': .*scripted-llm"):
        make_plan(CellSpec(backbone="mf", attack="mark", protocol="apt"), host)


def test_a_defense_reuses_the_poisoned_model_fitted_earlier_in_the_grid(register_plugin, fresh_cache):
    from recguard.pipeline import FittedModels

    host = register_plugin(Plugin(), "scripted-llm-plugin")
    options = {"n_test_samples": "10", "n_train_samples": "20"}
    fitted = FittedModels(size=2)
    before = ScriptedBackbone.fits
    run_cell(make_plan(CellSpec(backbone="scripted-llm", attack="mark", protocol="llara",
                                protocol_options=options, seeds=(0,)), host), fitted=fitted)
    assert ScriptedBackbone.fits == before + 2                     # Benign and BadRec
    record = run_cell(make_plan(CellSpec(backbone="scripted-llm", attack="mark", defense="drop-marked",
                                         protocol="llara", protocol_options=options, seeds=(0,)), host),
                      fitted=fitted)
    assert ScriptedBackbone.fits == before + 2                     # both from the cache and memory
    assert record["metrics"]["attacked+defense"]["ASR"]["mean"] == 0.0


def test_the_main_command_plans_llara_under_its_protocol_on_one_seed():
    plan = make_plan(CellSpec(backbone=None, attack="badrec", defense="p-scanner", seeds=None))
    assert (plan.backbone.name, plan.protocol.name, plan.spec.seeds) == ("llara", "llara-cpu", (0,))
    assert plan.spec.backbone == "llara"
    # the protocol's schedule reaches the backbone; --backbone-opt wins over it
    assert plan.backbone.config.epochs == float(dict(
        o.split("=") for o in plan.protocol.backbone_options)["epochs"])
    paper = make_plan(CellSpec(attack="badrec", protocol="llara", backbone_options={"lr": "1e-4"}))
    assert (paper.backbone.config.epochs, paper.backbone.config.lr) == (5.0, 1e-4)
    tallrec = make_plan(CellSpec(backbone="tallrec", attack="badrec", defense="p-scanner", seeds=None))
    assert (tallrec.protocol.name, tallrec.protocol.balanced_shots, tallrec.backbone.config.epochs) == (
        "tallrec-cpu", True, 4.0)
    with pytest.raises(RecguardError, match="defense 'apt' supports cf backbones, not llm backbones"):
        make_plan(CellSpec(backbone=None, attack="badrec", defense="apt"))


@pytest.mark.parametrize("reverse, auc", [(False, 1.0), (True, 0.0)])
def test_tallrec_auc_follows_the_direction_of_p_yes(register_plugin, monkeypatch, reverse, auc):
    """A recommender whose P(Yes) follows the labels scores AUC 1 on TALLRec's protocol, and
    the reverse AUC 0: the pipeline pairs each answer with its own request's label."""
    host = register_plugin(Plugin(), "scripted-llm-plugin")
    monkeypatch.setattr(ScriptedYesNo, "reverse", reverse)
    record = run_cell(make_plan(CellSpec(backbone="scripted-yes-no", attack="none", protocol="tallrec",
                                         protocol_options={"n_test_samples": "300"}, seeds=(0,)),
                                host), use_cache=False)
    assert record["metrics"]["clean"]["AUC"]["mean"] == auc


def test_a_single_cell_keeps_no_model_between_cells(register_plugin, fresh_cache):
    """Without a shared FittedModels the poisoned model is refitted for the defended cell:
    a one-off cell does not hold fitted models in memory after it ends."""
    host = register_plugin(Plugin(), "scripted-llm-plugin")
    options = {"n_test_samples": "10", "n_train_samples": "20"}
    before = ScriptedBackbone.fits
    run_cell(make_plan(CellSpec(backbone="scripted-llm", attack="mark", protocol="llara",
                                protocol_options=options, seeds=(0,)), host))
    run_cell(make_plan(CellSpec(backbone="scripted-llm", attack="mark", defense="drop-marked",
                                protocol="llara", protocol_options=options, seeds=(0,)), host))
    assert ScriptedBackbone.fits == before + 3                     # BadRec again, Benign cached


def test_a_defense_over_cached_rows_asks_only_the_defended_model(register_plugin, fresh_cache):
    """With the undefended rows cached, the poisoned model is fitted again for the defense to
    wrap, but the requests it answered undefended are not asked again."""
    host = register_plugin(Plugin(), "scripted-llm-plugin")
    options = {"n_test_samples": "10", "n_train_samples": "20"}

    def answers(defense, use_cache=True):
        before = ScriptedModel.answered
        spec = CellSpec(backbone="scripted-llm", attack="mark", protocol="llara",
                        protocol_options=options, seeds=(0,), **({"defense": defense} if defense else {}))
        record = run_cell(make_plan(spec, host), use_cache=use_cache)
        return ScriptedModel.answered - before, record

    undefended, _ = answers(None)
    fits = ScriptedBackbone.fits
    behind_the_defense, record = answers("drop-marked")
    everything, uncached = answers("drop-marked", use_cache=False)
    assert ScriptedBackbone.fits == fits + 1 + 2                   # BadRec again; then both
    assert behind_the_defense == everything - undefended > 0
    assert record["timings"]["cached"] == {"clean": [True], "attacked": [True],
                                           "attacked+defense": [False]}
    assert record["metrics"] == uncached["metrics"]


@pytest.mark.parametrize("use_cache", [True, False])
def test_the_fit_is_told_whether_it_may_reuse_saved_work(register_plugin, fresh_cache, use_cache):
    """`--no-cache` (and `leaderboard verify`) reach the backbone: an LLM fit then fine-tunes
    again instead of loading a saved adapter (recguard.kit.lm.adapters)."""
    host = register_plugin(Plugin(), "scripted-llm-plugin")
    ScriptedBackbone.use_cache = []
    run_cell(make_plan(CellSpec(backbone="scripted-llm", attack="mark", protocol="llara",
                                protocol_options={"n_test_samples": "10", "n_train_samples": "20"},
                                seeds=(0,)), host), use_cache=use_cache)
    assert ScriptedBackbone.use_cache == [use_cache, use_cache]     # Benign and BadRec
