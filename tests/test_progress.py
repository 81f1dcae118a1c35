"""Progress: plain log lines when stderr is not a terminal, bars when it is, loss passed along."""

import io
import json
import re
import sys
from types import SimpleNamespace

import pytest

from recguard.progress import LogProgress, Progress, RichProgress, progress_for, taking_info
from recguard.testing import tiny_interactions
from tests.test_cli import run_main

STAMP = re.compile(r"^\d\d:\d\d:\d\d ")


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def logged(stream):
    """The lines written, each checked for its HH:MM:SS stamp and returned without it."""
    lines = stream.getvalue().splitlines()
    assert all(STAMP.match(line) for line in lines), lines
    return [STAMP.sub("", line) for line in lines]


def test_log_lines_per_phase_throttled_with_loss_and_final():
    stream, clock = io.StringIO(), FakeClock()
    progress = LogProgress(stream, interval=30, clock=clock)
    progress.start_cell(2, "mf · random · none on tiny (apt)")
    progress.skip("seed 0 · clean (cached)")
    update = progress.start_fit("seed 0 · attacked · mf")
    for step in range(1, 41):
        clock.now += 2                      # 2 s a step: a line every 15 steps
        update(step, 40, loss=1.0 / step)
    clock.now += 3.2
    progress.end_fit()
    progress.close()
    assert logged(stream) == [
        "mf · random · none on tiny (apt): 2 fits",
        "seed 0 · clean (cached): skipped",
        "seed 0 · attacked · mf: started",
        "seed 0 · attacked · mf: 1/40 steps, loss 1.000, 2 s elapsed",
        "seed 0 · attacked · mf: 16/40 steps, loss 0.062, 32 s elapsed",
        "seed 0 · attacked · mf: 31/40 steps, loss 0.032, 62 s elapsed",
        "seed 0 · attacked · mf: 40/40 steps, loss 0.025, 80 s elapsed",
        "seed 0 · attacked · mf: done in 83.2 s",
    ]


def test_log_update_without_loss_and_a_fresh_throttle_per_fit():
    stream, clock = io.StringIO(), FakeClock()
    progress = LogProgress(stream, interval=10, clock=clock)
    for label in ("first", "second"):
        update = progress.start_fit(label)
        update(1, 3)
        update(2, 3)                        # within the interval: not shown
        progress.end_fit()
    assert logged(stream) == ["first: started", "first: 1/3 steps, 0 s elapsed", "first: done in 0.0 s",
                              "second: started", "second: 1/3 steps, 0 s elapsed", "second: done in 0.0 s"]


def test_every_progress_update_takes_optional_info():
    progress = RichProgress()
    progress.start_cell(1, "cell")
    try:
        update = progress.start_fit("fit")
        update(1, 4)
        update(2, 4, loss=0.5)
        assert progress.bars.tasks[-1].description == "fit · loss 0.500"
        progress.end_fit()
    finally:
        progress.close()
    Progress().start_fit("fit")(1, 4, loss=0.5)


def test_progress_for_picks_by_quiet_and_terminal(monkeypatch):
    assert type(progress_for(quiet=True)) is Progress
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert isinstance(progress_for(quiet=False), LogProgress)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert isinstance(progress_for(quiet=False), RichProgress)


def test_taking_info_keeps_two_argument_callbacks_working():
    seen = []
    taking_info(lambda done, total: seen.append((done, total)))(1, 2, loss=0.3)
    taking_info(lambda done, total, **info: seen.append((done, total, info)))(2, 2, loss=0.1)
    assert seen == [(1, 2), (2, 2, {"loss": 0.1})]


@pytest.mark.parametrize("callback", ["old", "new"])
def test_fine_tuning_callback_reports_steps_and_the_logged_loss(callback):
    pytest.importorskip("transformers")
    from recguard.kit.lm.sft import _progress_callback

    seen = []
    progress = {"old": lambda done, total: seen.append((done, total, None)),
                "new": lambda done, total, loss=None: seen.append((done, total, loss))}[callback]
    report = _progress_callback(progress)
    state = SimpleNamespace(global_step=1, max_steps=2)
    report.on_step_end(None, state, SimpleNamespace(should_log=True))   # on_log reports this step
    report.on_log(None, state, None, logs={"loss": 0.75, "learning_rate": 1e-4})
    state.global_step = 2
    report.on_step_end(None, state, SimpleNamespace(should_log=False))
    report.on_log(None, state, None, logs={"train_loss": 0.6})          # the end-of-training summary
    # a callback without **info gets (done, total) only
    assert seen == [(1, 2, 0.75 if callback == "new" else None), (2, 2, None)]


@pytest.mark.parametrize("json_out", [False, True], ids=["table", "json"])
def test_eval_writes_progress_lines_when_stderr_is_not_a_terminal(json_out, tmp_path, capsys):
    data = tiny_interactions(n_users=60, n_items=50, per_user=10)
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("user,item,rating,timestamp\n" + "".join(
        f"{u},{i},{int(r)},{t}\n" for u, i, r, t in zip(data.user, data.item, data.rating, data.timestamp)))
    code, out, err = run_main(["eval", "--dataset", "csv", "--data-path", str(ratings), "--backbone", "mf",
                             "--attack", "random", "--seeds", "0", "--backbone-opt", "epochs=2", "--no-cache",
                             "--output", str(tmp_path / "out"), *(["--json"] if json_out else [])],
                            capsys)
    assert code == 0, err
    if json_out:   # the record alone on stdout, the progress still on stderr
        assert json.loads(out)["spec"]["attack"]["name"] == "random"
    lines = [STAMP.sub("", line) for line in err.splitlines() if STAMP.match(line)]
    assert lines[0] == "mf · random · none on ratings (apt): 2 fits"
    for condition in ("clean", "attacked"):
        label = f"seed 0 · {condition} · mf"
        mine = [line.split(", ")[0] for line in lines if line.startswith(f"{label}:")]
        assert mine[:3] == [f"{label}: started", f"{label}: 1/2 steps", f"{label}: 2/2 steps"], lines
        assert mine[3].startswith(f"{label}: done in "), lines


def test_a_defense_preparation_is_a_phase_of_its_own_in_the_log(register_plugin):
    """before_fit / during_fit's long work (LoRec and LLM4Dec encode every user with an LLM)
    reports through ``ctx.progress`` as "seed S · preparing NAME", and the cell's fit count
    stays the number of fits."""
    from recguard import Defense, hookimpl
    from recguard.pipeline import run_cell
    from recguard.plan import CellSpec, make_plan

    class Encoding(Defense):
        name = "slow-encoder"
        summary = "test defense reporting its preparation"
        stages = frozenset({"before_fit"})

        def before_fit(self, train, ctx):
            for done in range(3):
                ctx.progress(done + 1, 3)
            return train

    register_plugin(SimpleNamespace(register_defenses=hookimpl(lambda register: register(Encoding))),
                    "slow-encoder")
    stream, clock = io.StringIO(), FakeClock()
    spec = CellSpec(seeds=(0,), attack="random", defense="slow-encoder", backbone_options={"epochs": "1"})
    run_cell(make_plan(spec), progress=LogProgress(stream, interval=0, clock=clock), use_cache=False)
    lines = logged(stream)
    assert lines[0].endswith(": 4 fits"), lines
    label = "seed 0 · preparing slow-encoder"
    mine = [line.split(", ")[0] for line in lines if line.startswith(label)]
    assert mine[:4] == [f"{label}: started", f"{label}: 1/3 steps", f"{label}: 2/3 steps",
                        f"{label}: 3/3 steps"], lines
    assert len(mine) == 2 * 5 and mine[4].startswith(f"{label}: done in ")   # clean+defense, attacked+defense
    # each preparation ends before the defended fit starts
    first_done = next(i for i, line in enumerate(lines) if line.startswith(f"{label}: done in "))
    assert lines[first_done + 1] == "seed 0 · clean+defense · mf: started", lines


def test_rich_phase_does_not_advance_the_cell_bar():
    progress = RichProgress()
    progress.start_cell(2, "cell")
    progress.start_phase("preparing")
    progress.end_phase()
    assert progress.bars.tasks[0].completed == 0
    progress.start_fit("fit")
    progress.end_fit()
    assert progress.bars.tasks[0].completed == 1
    progress.close()


def test_ranking_behind_an_inference_defense_is_a_phase_in_the_log(register_plugin):
    """An at_inference defense does its work while the users are ranked (RVD fine-tunes for
    each served user), so the ranking reports as "seed S · CONDITION · ranking N users
    behind NAME", from its start to its end, with the users ranked so far."""
    from recguard import Defense, hookimpl
    from recguard.pipeline import run_cell
    from recguard.plan import CellSpec, make_plan

    class Serving(Defense):
        name = "slow-server"
        summary = "test defense wrapping the fitted model"
        stages = frozenset({"at_inference"})

        def at_inference(self, model, train, ctx):
            return model

    register_plugin(SimpleNamespace(register_defenses=hookimpl(lambda register: register(Serving))),
                    "slow-server")
    stream = io.StringIO()
    spec = CellSpec(seeds=(0,), attack="random", defense="slow-server", backbone_options={"epochs": "1"})
    run_cell(make_plan(spec), progress=LogProgress(stream, interval=0, clock=FakeClock()), use_cache=False)
    lines = logged(stream)
    for condition in ("clean+defense", "attacked+defense"):
        label = f"seed 0 · {condition} · ranking 943 users behind slow-server"
        mine = [line.split(", ")[0] for line in lines if line.startswith(label)]
        assert mine[:2] == [f"{label}: started", f"{label}: 943/943 steps"], lines
        assert len(mine) == 3 and mine[2].startswith(f"{label}: done in "), lines
    # undefended conditions rank without a phase line
    assert not any("· clean · ranking" in line or "· attacked · ranking" in line for line in lines)
