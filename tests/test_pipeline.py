"""Real cells on real data (MovieLens-100K from the recbole wheel), small sizes."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from recguard.contracts import Defense, FitHooks
from recguard.data.poisoned import inject
from recguard.hookspecs import hookimpl
from recguard.metrics.detection import roc_auc
from recguard.pipeline import run_cell
from recguard.plan import CellSpec, make_plan
from recguard.records import read_record, validate_record, write_record
from recguard.testing import tiny_interactions

pytestmark = pytest.mark.integration

def test_inject_appends_marked_fake_users():
    from recguard.data.poisoned import Poisoned

    train = tiny_interactions()
    poisoned = Poisoned(2, np.array([0, 0, 1]), np.array([3, 4, 3]), np.array([5.0, 4.0, 5.0]),
                        item_text={3: "Item 3 cf"})
    out = inject(train, poisoned)
    assert out.n_users == train.n_users + 2 and out.is_fake[-2:].all() and not out.is_fake[:-2].any()
    assert out.user[-3:].tolist() == [train.n_users, train.n_users, train.n_users + 1]
    assert out.timestamp[-3:].min() > train.timestamp.max()
    assert out.item_text[3] == "Item 3 cf" and train.item_text[3] == "Item 3"


def test_detection_metrics_score_the_fraud_scores_and_average_the_final_weights():
    from recguard.contracts import DefenseContext
    from recguard.metrics.detection import detection_metrics

    is_fake = np.array([False, False, False, True])
    ctx = DefenseContext(seed=0, protocol=None, backbone=None,
                         user_scores=np.array([0.1, 0.2, 0.9, 0.8]),
                         user_weights=np.array([1.0, 0.5, 0.0, 0.25, 7.0]))  # longer: U_atk rows
    out = detection_metrics(ctx, is_fake)
    assert out == {"Detect-AUC": pytest.approx(2 / 3), "Weight-fake": 0.25, "Weight-genuine": 0.5}
    assert detection_metrics(DefenseContext(seed=0, protocol=None, backbone=None), is_fake) == {}


def test_roc_auc():
    assert roc_auc(np.array([0.9, 0.8, 0.1, 0.2]), np.array([True, True, False, False])) == 1.0
    assert roc_auc(np.array([0.5, 0.5]), np.array([True, False])) == 0.5


def test_default_cell_lifts_target_items(tmp_path):
    plan = make_plan(CellSpec(seeds=(0,)))  # the README's default cell, one seed
    record = run_cell(plan, use_cache=False)
    assert validate_record(record) == []
    assert record["conditions"] == ["clean", "attacked"]
    clean, attacked = record["metrics"]["clean"], record["metrics"]["attacked"]
    assert clean["T-HR@50"]["mean"] < 0.05
    assert attacked["T-HR@50"]["mean"] > 0.6  # APT Table 2, ML-100K, Average 3%: 0.93
    assert 0.05 < clean["HR@50"]["mean"] < 0.6
    assert record["counts"]["fake_users"] == round(0.03 * record["counts"]["users"])
    assert record["spec"]["protocol"]["name"] == "apt" and len(record["spec"]["targets"]["0"]) == 5
    path = write_record(record, tmp_path)
    assert read_record(path)["metrics"] == json.loads(path.read_text())["metrics"]


def test_same_seed_same_metrics():
    spec = CellSpec(seeds=(1,), attack="bandwagon", backbone_options={"epochs": "3"})
    first = run_cell(make_plan(spec), use_cache=False)["metrics"]
    second = run_cell(make_plan(spec), use_cache=False)["metrics"]
    assert first == second


class DropAndWatch(Defense):
    """A test defense touching every stage: drops the users it scores highest, counts epochs,
    and wraps the model at inference."""

    name = "drop-and-watch"
    summary = "test defense"
    stages = frozenset({"before_fit", "during_fit", "at_inference"})
    epochs_seen = []

    def before_fit(self, train, ctx):
        # profile length as a (weak) fraud score: heuristic profiles are long
        ctx.user_scores = train.user_counts().astype(float)
        dropped = np.argsort(-ctx.user_scores)[:5]
        ctx.user_weights = np.ones(train.n_users)
        ctx.user_weights[dropped] = 0.0
        return train.drop_users(dropped)

    def during_fit(self, train, ctx):
        seen = self.epochs_seen

        class Hooks(FitHooks):
            def on_epoch_end(self, epoch, model):
                seen.append(epoch)
        return Hooks()

    def at_inference(self, model, train, ctx):
        ctx.notes["wrapped"] = True
        return SimpleNamespace(score=model.score, n_items=model.n_items)


def test_defended_cell_runs_four_conditions_and_reuses_cache(register_plugin):
    register_plugin(SimpleNamespace(register_defenses=hookimpl(lambda register: register(DropAndWatch))),
                    "drop-plugin")
    spec = CellSpec(seeds=(0,), defense="drop-and-watch", backbone_options={"epochs": "2"})
    record = run_cell(make_plan(spec), use_cache=True)
    assert record["conditions"] == ["clean", "attacked", "clean+defense", "attacked+defense"]
    defended = record["metrics"]["attacked+defense"]
    assert {"Detect-AUC", "Weight-fake", "Weight-genuine"} <= set(defended)
    assert "Weight-fake" not in record["metrics"]["clean+defense"]      # no fake user there
    assert record["higher_is_better"]["Weight-fake"] is False
    assert DropAndWatch.epochs_seen == [0, 1, 0, 1]
    again = run_cell(make_plan(spec), use_cache=True)
    assert again["timings"]["cached"]["clean"] == [True] and again["timings"]["cached"]["attacked"] == [True]
    assert again["metrics"]["clean"] == record["metrics"]["clean"]
    assert validate_record(again) == []


def test_clean_defense_result_is_shared_by_attacks_and_defended_results_keep_notes(register_plugin):
    register_plugin(SimpleNamespace(register_defenses=hookimpl(lambda register: register(DropAndWatch))),
                    "drop-plugin")
    common = dict(seeds=(0,), defense="drop-and-watch", backbone_options={"epochs": "2"})
    first = run_cell(make_plan(CellSpec(attack="random", **common)), use_cache=True)
    other = run_cell(make_plan(CellSpec(attack="bandwagon", **common)), use_cache=True)
    assert other["timings"]["cached"]["clean+defense"] == [True]
    assert other["timings"]["cached"]["attacked+defense"] == [False]
    assert other["metrics"]["clean+defense"] == first["metrics"]["clean+defense"]
    again = run_cell(make_plan(CellSpec(attack="bandwagon", **common)), use_cache=True)
    assert again["timings"]["cached"]["attacked+defense"] == [True]
    assert again["notes"] == other["notes"] and again["notes"]["attacked+defense"][0]["wrapped"]
    assert again["metrics"]["attacked+defense"] == other["metrics"]["attacked+defense"]
