"""Sweeps on real data (tiny MF cells on ML-100K): content addresses, the local executor,
resume after an interruption, failure isolation and the retry, `recguard sweep` and
`recguard table`."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from recguard.contracts import Defense
from recguard.hookspecs import hookimpl
from recguard.records import read_record
from recguard.sweep import load_sweep
from recguard.sweep.address import Addresser
from recguard.sweep.executors import LocalExecutor
from recguard.sweep.run import run_sweep
from recguard.sweep.table import summary_tables, to_csv, to_markdown, to_markdown_full, variant_labels
from recguard.sweep.worker import attempt

pytestmark = pytest.mark.integration

TINY = """
protocol = "apt"
attack = ["average", "bandwagon"]
defense = ["none", "apr"]
budget = 0.03
seeds = [0]
backbone_options = {epochs = 2}
[options.apr]
adv_start = 0
"""


def spec_file(tmp_path, text=TINY, name="tiny.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


class InProcess:
    """An executor that runs each cell here, now (so a plugin registered by the test is
    seen); ``stop_after``: raise KeyboardInterrupt once that many cells have finished."""

    slots = 1
    description = "this test's process"

    def __init__(self, stop_after=None):
        self.stop_after = stop_after
        self.queue, self.ran, self.closed = [], [], None

    def start(self):
        pass

    def submit(self, task, spec, gpu):
        self.queue.append((task, spec))

    def next_done(self):
        if self.stop_after is not None and len(self.ran) >= self.stop_after:
            raise KeyboardInterrupt
        task, spec = self.queue.pop(0)
        self.ran.append(task)
        return task, attempt(spec)

    def close(self, cancel=False):
        self.closed = "cancelled" if cancel else "done"


def test_same_spec_same_keys_and_an_option_change_touches_only_its_cells(tmp_path):
    _, cells, _ = load_sweep(spec_file(tmp_path))
    keys = [Addresser().key(c) for c in cells]
    assert keys == [Addresser().key(c) for c in load_sweep(spec_file(tmp_path))[1]]
    assert len(set(keys)) == len(cells) == 4
    changed = TINY.replace("adv_start = 0", "adv_start = 1")
    _, again, _ = load_sweep(spec_file(tmp_path, changed, "changed.toml"))
    new = [Addresser().key(c) for c in again]
    same = [c.plan.defense.name == "none" for c in cells]
    assert [k == n for k, n in zip(keys, new)] == same   # only the apr cells get new keys


def test_a_plugin_version_or_its_code_changes_the_key(tmp_path, monkeypatch):
    _, cells, _ = load_sweep(spec_file(tmp_path))
    cell = cells[1]   # average x apr
    addresser = Addresser()
    before = addresser.key(cell)
    cell.plan.provenance["defense"] = dict(cell.plan.provenance["defense"], version="9.9")
    assert addresser.key(cell) != before
    addresser._code["recguard_pamacf"] = "edited"
    assert Addresser().key(cell) != addresser.key(cell)


def test_a_sweep_writes_eval_records_at_their_addresses_and_a_rerun_does_nothing(tmp_path):
    _, cells, _ = load_sweep(spec_file(tmp_path))
    out = tmp_path / "out"
    result = run_sweep(cells, out, LocalExecutor(jobs=2))
    assert (result.ran, result.skipped, result.failures) == (4, 0, [])
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(Addresser().filename(c) for c in cells)
    for cell, path in zip(cells, result.paths):
        record = read_record(path)    # a valid record, as `recguard eval` writes
        assert record["spec"]["seeds"] == [0] and record["spec"]["defense"]["name"] == cell.plan.defense.name
        expected = ["clean", "attacked"] + (["clean+defense", "attacked+defense"]
                                           if cell.plan.defense.name == "apr" else [])
        assert record["conditions"] == expected
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    executor = InProcess()
    again = run_sweep(cells, out, executor)
    assert (again.ran, again.skipped, executor.ran) == (0, 4, [])
    assert stamps == {p.name: p.stat().st_mtime_ns for p in out.iterdir()}


def test_an_interrupted_sweep_resumes_without_losing_or_repeating_a_cell(tmp_path):
    _, cells, _ = load_sweep(spec_file(tmp_path))
    out = tmp_path / "out"
    first = InProcess(stop_after=2)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(cells, out, first)
    assert first.closed == "cancelled"
    written = sorted(out.iterdir())
    assert len(written) == 2 and all(p.suffix == ".json" for p in written)   # no temporary file left
    second = InProcess()
    result = run_sweep(cells, out, second)
    assert (result.skipped, result.ran) == (2, 2)
    assert sorted(second.ran) == sorted(set(range(4)) - set(first.ran))
    assert len(list(out.iterdir())) == 4


class Flaky(Defense):
    """Fails on its first use in the process; `Broken` always fails."""

    name = "flaky"
    summary = "test defense"
    stages = frozenset({"before_fit"})
    calls = []

    def before_fit(self, train, ctx):
        Flaky.calls.append(ctx.seed)
        if len(Flaky.calls) == 1:
            raise RuntimeError("transient trouble")
        return train


class Broken(Flaky):
    name = "broken"

    def before_fit(self, train, ctx):
        raise ValueError("this defense never works\nsecond line")


def test_a_failing_cell_is_retried_once_then_reported_and_the_sweep_goes_on(tmp_path, register_plugin):
    register_plugin(SimpleNamespace(register_defenses=hookimpl(
        lambda register: [register(Flaky), register(Broken)])), "flaky-plugin")
    Flaky.calls.clear()
    text = TINY.replace('defense = ["none", "apr"]', 'defense = ["flaky", "broken", "none"]')
    _, cells, _ = load_sweep(spec_file(tmp_path, text.replace('["average", "bandwagon"]', '"average"')))
    executor = InProcess()
    result = run_sweep(cells, tmp_path / "out", executor)
    assert [c.plan.defense.name for c in cells] == ["flaky", "broken", "none"]
    assert executor.ran == [0, 1, 2, 0, 1]          # each failure once more, at the back
    assert result.ran == 2 and len(Flaky.calls) == 1 + 2   # the failure, then both defended conditions
    assert result.paths[0].exists() and not result.paths[1].exists()
    assert [(c.plan.defense.name, e) for c, e in result.failures] == [
        ("broken", "ValueError: this defense never works")]


def test_the_local_executor_isolates_a_cell_that_fails_in_its_worker(tmp_path, capsys):
    from recguard.sweep.progress import LogSweepProgress

    data = tmp_path / "small.csv"
    rows = [f"{u},{i},{1 + (u * i) % 5}" for u in range(60) for i in range(u % 7, 40, 3)]
    data.write_text("user,item,rating\n" + "\n".join(rows) + "\n")
    text = f"""
[defaults]
protocol = "apt"
attack = "average"
seeds = 0
backbone_options = {{epochs = 1}}
protocol_options = {{metrics = "HR@10", unpopular_below = 50}}
[groups.movielens]
[groups.gone]
dataset = "csv"
data_path = "{data}"
"""
    _, cells, _ = load_sweep(spec_file(tmp_path, text))
    from recguard.sweep.run import cell_paths
    paths = cell_paths(cells, tmp_path / "out")
    data.unlink()    # planned and addressed, then gone before its worker starts
    log = LogSweepProgress()
    result = run_sweep(cells, tmp_path / "out", LocalExecutor(jobs=1), log, paths)
    assert result.ran == 1 and [c.group for c, _ in result.failures] == ["gone"]
    assert "does not exist" in result.failures[0][1]
    err = capsys.readouterr().err
    assert err.count("failed, retrying once") == 1 and err.count(": failed: ") == 1


def test_sweep_and_table_commands(tmp_path):
    from click.testing import CliRunner

    from recguard.cli import _add_commands, cli

    _add_commands()
    runner = CliRunner()
    spec = spec_file(tmp_path)
    out = tmp_path / "records"
    dry = runner.invoke(cli, ["sweep", str(spec), "--output", str(out), "--dry-run"])
    assert dry.exit_code == 0 and "4 cells: 0 done, 4 to run" in dry.output
    run = runner.invoke(cli, ["sweep", str(spec), "--output", str(out), "--jobs", "2", "-q"])
    assert run.exit_code == 0, run.output
    lines = run.output.splitlines()
    assert lines[0] == "#### mf, protocol `apt`, seeds 0: HR@50 without attack, T-HR@50 under attack"
    assert lines[2] == "| defense | HR@50 | average 0.03 | bandwagon 0.03 |"
    assert [line.split(" | ")[0] for line in lines[4:6]] == ["| none", "| apr"]
    dry = runner.invoke(cli, ["sweep", str(spec), "--output", str(out), "--dry-run"])
    assert "4 cells: 4 done, 0 to run" in dry.output and "about 0.0 min" in dry.output
    some = runner.invoke(cli, ["sweep", str(spec), "--output", str(out), "--dry-run",
                               "--where", "defense=apr", "--where", "attack=bandwagon"])
    assert some.exit_code == 0 and "1 cells: 1 done, 0 to run" in some.output
    malformed = runner.invoke(cli, ["sweep", str(spec), "--output", str(out), "--where", "defense"])
    assert malformed.exit_code != 0 and "KEY=VALUE" in str(malformed.exception or malformed.output)
    table = runner.invoke(cli, ["table", str(out)])
    assert table.exit_code == 0 and table.output == "\n".join(lines[:6]) + "\n"
    csv_out = runner.invoke(cli, ["table", str(out), "--format", "csv", "--metric", "T-NDCG@50"])
    assert csv_out.output.splitlines()[0].startswith("dataset,protocol,backbone,defense,attack,budget")
    assert csv_out.output.count("T-NDCG@50") == 4
    bad = runner.invoke(cli, ["table", str(spec)])
    assert bad.exit_code != 0
    board = runner.invoke(cli, ["sweep", str(spec), "--output", str(out), "-q", "--leaderboard",
                                str(tmp_path / "board"), "--submitter", "t", "--paper", "none",
                                "--code", "https://example.com/code"])
    assert board.exit_code == 0, board.output
    entries = sorted((tmp_path / "board").glob("*.json"))
    assert len(entries) == 4    # one entry per grid point
    written = {p: p.read_bytes() for p in entries}
    again = runner.invoke(cli, ["sweep", str(spec), "--output", str(out), "-q", "--leaderboard",
                                str(tmp_path / "board"), "--submitter", "t", "--paper", "none",
                                "--code", "https://example.com/code"])
    assert again.exit_code == 0, again.output                     # a re-run adds nothing
    assert {p: p.read_bytes() for p in sorted((tmp_path / "board").glob("*.json"))} == written
    changed = json.loads(entries[0].read_text())
    changed["record"]["timings"]["total_seconds"] += 1.0           # the records no longer match
    entries[0].write_text(json.dumps(changed))
    refused = runner.invoke(cli, ["sweep", str(spec), "--output", str(out), "-q", "--leaderboard",
                                  str(tmp_path / "board"), "--submitter", "t", "--paper", "none",
                                  "--code", "https://example.com/code"])
    assert refused.exit_code != 0 and "already exists" in str(refused.exception)


def test_the_table_merges_seeds_across_records():
    def record(seed, defense, values, created):
        metrics = {c: {m: {"mean": v, "std": 0.0, "per_seed": [v]} for m, v in vals.items()}
                   for c, vals in values.items()}
        return {"created_at": created, "conditions": list(values), "metrics": metrics,
                "spec": {"dataset": {"name": "d"}, "protocol": {"name": "p", "budget": 0.01},
                         "backbone": {"name": "mf"}, "attack": {"name": "a"}, "defense": {"name": defense},
                         "seeds": [seed]}}

    plain = {"clean": {"HR": 0.5, "T-HR": 0.0}, "attacked": {"HR": 0.4, "T-HR": 0.2}}
    defended = dict(plain, **{"clean+defense": {"HR": 0.45, "T-HR": 0.0},
                              "attacked+defense": {"HR": 0.4, "T-HR": 0.1}})
    records = [record(0, "none", plain, "1"), record(1, "x", defended, "2"),
               record(0, "x", {**defended, "attacked+defense": {"HR": 0.4, "T-HR": 0.3}}, "3")]
    [table] = summary_tables(records)
    assert (table.accuracy, table.headline) == ("HR", "T-HR")
    assert table.stat("x", "a", 0.01, True, "T-HR")["per_seed"] == [0.3, 0.1]
    text = to_markdown([table])
    assert "| none | 0.5000 ± 0.0000 | 0.2000 ± 0.0000 |" in text
    assert "| x | 0.4500 ± 0.0000 | 0.2000 ± 0.1414 |" in text
    assert "x,a,0.01,under attack,T-HR,0.2" in to_csv([table])


def test_the_full_table_adds_what_only_a_defense_reports():
    """Detect-AUC and the weights exist only for the defended condition under attack: the
    full table has their columns, empty on the undefended row."""
    def stat(v):
        return {"mean": v, "std": 0.0, "per_seed": [v]}

    metrics = {"clean": {"HR": stat(0.5), "T-HR": stat(0.0)},
               "attacked": {"HR": stat(0.4), "T-HR": stat(0.2)},
               "clean+defense": {"HR": stat(0.45), "T-HR": stat(0.0)},
               "attacked+defense": {"HR": stat(0.4), "T-HR": stat(0.1), "Detect-AUC": stat(0.9),
                                    "Weight-fake": stat(0.05)}}
    record = {"created_at": "1", "conditions": list(metrics), "metrics": metrics,
              "spec": {"dataset": {"name": "d"}, "protocol": {"name": "p", "budget": 0.01},
                       "backbone": {"name": "mf"}, "attack": {"name": "a"}, "defense": {"name": "x"},
                       "seeds": [0]}}
    [table] = summary_tables([record])
    assert table.defense_metrics == ["Detect-AUC", "Weight-fake"]
    lines = to_markdown_full([table]).splitlines()
    assert lines[2] == "| attack | budget | defense | HR | T-HR | Detect-AUC | Weight-fake |"
    assert lines[4] == "| a | 0.01 | none | 0.5000 | 0.2000 |  |  |"
    assert lines[5] == "| a | 0.01 | x | 0.4500 | 0.1000 | 0.9000 | 0.0500 |"


def test_an_llm_cells_triggered_metrics_are_read_under_attack():
    """ASR and A-Valid measure the triggered requests: the full table gives the attacked
    model's (BadRec's 0.92, not the benign model's 0.07) and the defended one's, beside the
    defense's own Score; Valid and H@1 stay the accuracy without attack."""
    def stat(v):
        return {"mean": v, "std": 0.0, "per_seed": [v]}

    metrics = {"clean": {"Valid": stat(0.86), "H@1": stat(0.12), "A-Valid": stat(0.82), "ASR": stat(0.07)},
               "attacked": {"Valid": stat(0.92), "H@1": stat(0.08), "A-Valid": stat(0.96), "ASR": stat(0.92)},
               "attacked+defense": {"Valid": stat(0.95), "H@1": stat(0.07), "A-Valid": stat(0.95),
                                    "ASR": stat(0.01), "Score": stat(0.95)}}
    record = {"created_at": "1", "conditions": list(metrics), "metrics": metrics,
              "spec": {"dataset": {"name": "d"}, "protocol": {"name": "llara-cpu", "budget": 0.8},
                       "backbone": {"name": "llara"}, "attack": {"name": "badrec"},
                       "defense": {"name": "p-scanner"}, "seeds": [0]}}
    [table] = summary_tables([record])
    assert (table.accuracy, table.headline) == ("Valid", "ASR")
    lines = to_markdown_full([table]).splitlines()
    assert lines[2] == "| attack | budget | defense | Valid | H@1 | A-Valid | ASR | Score |"
    assert lines[4] == "| badrec | 0.8 | none | 0.8600 | 0.1200 | 0.9600 | 0.9200 |  |"
    assert lines[5] == "| badrec | 0.8 | p-scanner | n/a | n/a | 0.9500 | 0.0100 | 0.9500 |"


def _backdoor_record(position, defense, asr_defended, created, level="sentence", seed=0):
    def stat(v):
        return {"mean": v, "std": 0.0, "per_seed": [v]}

    metrics = {"clean": {"Valid": stat(0.86), "ASR": stat(0.07)},
               "attacked": {"Valid": stat(0.92), "ASR": stat(0.92 if position == "end" else 0.86)},
               "attacked+defense": {"Valid": stat(0.95), "ASR": stat(asr_defended), "Score": stat(0.9)}}
    attack = {"position": position, "trigger_level": level, "lr": 0.0008, "merge": True}
    return {"created_at": created, "conditions": list(metrics), "metrics": metrics,
            "spec": {"dataset": {"name": "ml-100k"}, "protocol": {"name": "llara-cpu", "budget": 0.8},
                     "backbone": {"name": "llara", "config": {"epochs": 1.0}},
                     "attack": {"name": "badrec", "config": attack},
                     "defense": {"name": defense, "config": {}}, "seeds": [seed]}}


def test_records_are_selected_by_axis_and_option_as_cells_are():
    from recguard.errors import RecguardError
    from recguard.sweep.table import select_records

    records = [_backdoor_record("end", "p-scanner", 0.01, "1"),
               _backdoor_record("random", "p-scanner", 0.02, "2", level="word"),
               _backdoor_record("end", "strip", 0.05, "3")]
    assert select_records(records, {"trigger_level": ["word"]}) == [records[1]]
    assert select_records(records, {"defense": ["strip", "rd"], "position": ["end"]}) == [records[2]]
    # numbers as numbers, booleans in TOML's spelling or Python's
    assert len(select_records(records, {"lr": ["8e-4"], "merge": ["true"], "budget": ["0.80"]})) == 3
    assert len(select_records(records, {"merge": ["True"], "seed": ["0"], "epochs": ["1"]})) == 3
    with pytest.raises(RecguardError, match="--where positon: no record has it .*'position'"):
        select_records(records, {"positon": ["end"]})


def test_the_by_layout_puts_each_value_of_an_option_in_columns_of_its_own():
    """BadRec's Table 2: Benign, the attack and each defense as rows, every metric once per
    position; a cell no record measured reads '/', a trigger level is a table of its own."""
    from recguard.sweep.table import to_markdown_by

    records = [_backdoor_record("end", "p-scanner", 0.01, "1"),
               _backdoor_record("random", "p-scanner", 0.02, "2"),
               _backdoor_record("end", "strip", 0.05, "3"),
               _backdoor_record("end", "strip", 0.07, "4", seed=1),
               _backdoor_record("end", "p-scanner", 0.4, "5", level="char")]
    text = to_markdown_by(records, "position")
    tables = text.strip().split("\n\n#### ")
    assert len(tables) == 2
    lines = tables[0].splitlines()
    assert lines[0] == ("#### llara · badrec trigger_level=sentence on ml-100k, protocol `llara-cpu`: "
                        "every metric by position, seeds 0,1")
    assert lines[2] == ("| row | Valid (end) | ASR (end) | Score (end) | "
                        "Valid (random) | ASR (random) | Score (random) |")
    assert lines[4] == "| Benign | 0.8600 ± 0.0000 | 0.0700 ± 0.0000 | / | 0.8600 | 0.0700 | / |"
    assert lines[5] == "| badrec | 0.9200 ± 0.0000 | 0.9200 ± 0.0000 | / | 0.9200 | 0.8600 | / |"
    assert lines[6] == "| p-scanner | 0.9500 | 0.0100 | 0.9000 | 0.9500 | 0.0200 | 0.9000 |"
    assert lines[7] == "| strip | 0.9500 ± 0.0000 | 0.0600 ± 0.0141 | 0.9000 ± 0.0000 | / | / | / |"
    assert tables[1].startswith("llara · badrec trigger_level=char on ml-100k")


def test_a_defense_option_as_the_by_key_makes_columns_not_rows():
    from recguard.sweep.table import to_markdown_by

    records = [_backdoor_record("end", "p-scanner", asr, str(i)) for i, asr in enumerate((0.3, 0.05))]
    for record, false_alarm in zip(records, (0.0, 0.2)):
        record["spec"]["defense"]["config"] = {"false_alarm": false_alarm, "n_items": 768}
    lines = to_markdown_by(records, "false_alarm").splitlines()
    assert lines[2] == ("| row | Valid (0) | ASR (0) | Score (0) | Valid (0.2) | ASR (0.2) | Score (0.2) |")
    assert [line.split(" | ")[0] for line in lines[4:]] == ["| Benign", "| badrec", "| p-scanner"]
    assert lines[6] == "| p-scanner | 0.9500 | 0.3000 | 0.9000 | 0.9500 | 0.0500 | 0.9000 |"


def test_the_by_layout_keeps_the_metrics_asked_for_in_their_order():
    from recguard.errors import RecguardError
    from recguard.sweep.table import to_markdown_by

    records = [_backdoor_record(position, "p-scanner", asr, str(i))
               for i, (position, asr) in enumerate([("end", 0.01), ("random", 0.02)])]
    lines = to_markdown_by(records, "position", ["Score", "ASR"]).splitlines()
    assert lines[2] == "| row | Score (end) | ASR (end) | Score (random) | ASR (random) |"
    assert lines[6] == "| p-scanner | 0.9000 | 0.0100 | 0.9000 | 0.0200 |"
    with pytest.raises(RecguardError, match="no record has the metric 'HR@10'; they have Valid, ASR, Score"):
        to_markdown_by(records, "position", ["ASR", "HR@10"])
    # a metric of some records only: '/' in the table whose records lack it
    other = _backdoor_record("end", "p-scanner", 0.3, "3", level="char")
    del other["metrics"]["attacked+defense"]["Score"]
    text = to_markdown_by(records + [other], "position", ["Score", "ASR"])
    assert text.strip().splitlines()[-1] == "| p-scanner | / | 0.3000 |"


def test_the_table_command_selects_and_lays_out_by_an_option(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from recguard.cli import _add_commands, cli, sweep_cmd

    _add_commands()
    # the records are abridged (no provenance, timings, ...): read them without validation
    monkeypatch.setattr(sweep_cmd, "_read", lambda path: json.loads(path.read_text()))
    for i, (position, defense) in enumerate([("end", "p-scanner"), ("random", "p-scanner"),
                                             ("end", "strip")]):
        record = _backdoor_record(position, defense, 0.01, str(i))
        (tmp_path / f"r{i}.json").write_text(json.dumps(record))
    runner = CliRunner()
    result = runner.invoke(cli, ["table", str(tmp_path), "--by", "position", "--where", "defense=p-scanner"])
    assert result.exit_code == 0, result.output
    assert [line.split(" | ")[0] for line in result.output.splitlines()[4:]] == ["| Benign", "| badrec",
                                                                                 "| p-scanner"]
    result = runner.invoke(cli, ["table", str(tmp_path), "--by", "position", "--metrics", "ASR, Score"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[2] == "| row | ASR (end) | Score (end) | ASR (random) | Score (random) |"
    for bad in (["--by", "position", "--format", "csv"], ["--where", "defense=rd"], ["--by", "positon"],
                ["--metrics", "ASR"], ["--by", "position", "--metrics", "ASR,T-HR@50"]):
        refused = runner.invoke(cli, ["table", str(tmp_path), *bad])
        assert refused.exit_code != 0 and "Traceback" not in refused.output


def test_settings_of_one_component_are_rows_and_columns_of_their_own():
    """A defense (or attack) run with two option values in one set of records is two rows
    (columns), labelled by the option that differs, not one row where the later record wins."""
    def record(defense_config, attack_config, value, created):
        metrics = {"clean": {"HR": {"mean": 0.5, "std": 0.0, "per_seed": [0.5]}},
                   "attacked": {"T-HR": {"mean": 0.9, "std": 0.0, "per_seed": [0.9]}},
                   "clean+defense": {"HR": {"mean": 0.5, "std": 0.0, "per_seed": [0.5]}},
                   "attacked+defense": {"T-HR": {"mean": value, "std": 0.0, "per_seed": [value]}}}
        return {"created_at": created, "conditions": list(metrics), "metrics": metrics,
                "spec": {"dataset": {"name": "d"}, "protocol": {"name": "p", "budget": 0.03},
                         "backbone": {"name": "mf", "config": {"epochs": 5}},
                         "attack": {"name": "pga", "config": attack_config},
                         "defense": {"name": "rvd", "config": defense_config}, "seeds": [10]}}

    records = [record({"epochs": 1, "zero_ratio": 0.0, "n": 12}, {"steps": 0}, 0.98, "1"),
               record({"epochs": 5, "zero_ratio": 1.0, "n": 12}, {"steps": 0}, 0.29, "2"),
               record({"epochs": 1, "zero_ratio": 0.0, "n": 12}, {"steps": 20}, 0.97, "3")]
    assert variant_labels(records, "defense") == ["rvd epochs=1 zero_ratio=0.0",
                                                  "rvd epochs=5 zero_ratio=1.0",
                                                  "rvd epochs=1 zero_ratio=0.0"]
    assert variant_labels(records, "backbone") == ["mf"] * 3
    [table] = summary_tables(records)
    assert table.rows(["none", "rvd"]) == ["none", "rvd epochs=1 zero_ratio=0.0",
                                          "rvd epochs=5 zero_ratio=1.0"]
    assert table.columns([("pga", 0.03)]) == [("pga steps=0", 0.03), ("pga steps=20", 0.03)]
    assert table.stat("rvd epochs=5 zero_ratio=1.0", "pga steps=0", 0.03, True, "T-HR")["mean"] == 0.29
    assert table.stat("rvd epochs=1 zero_ratio=0.0", "pga steps=0", 0.03, True, "T-HR")["mean"] == 0.98
    assert "| rvd epochs=5 zero_ratio=1.0 | 0.5000 | 0.2900 | – |" in to_markdown([table])


def test_sigint_stops_a_local_sweep_and_a_rerun_finishes_it(tmp_path):
    # cells that take a while, and a cache of their own: conditions cached by earlier tests
    # finish the whole sweep before the interrupt arrives (seen in CI)
    spec = spec_file(tmp_path, TINY.replace("seeds = [0]", "seeds = [0, 1, 2]")
                     .replace("epochs = 2", "epochs = 20"))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "recguard", "sweep", str(spec), "--output", str(out), "--jobs", "1"]
    env = dict(os.environ, RECGUARD_CACHE=str(tmp_path / "cache"))
    # a background job (nohup, `cmd &`) starts with SIGINT ignored, and Python then never
    # raises KeyboardInterrupt: the sweep must get the default disposition a terminal gives
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(list(out.glob("*.json"))) < 2:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted:" in err and "run the same command again" in err
    done = sorted(out.glob("*.json"))
    assert 2 <= len(done) < 12 and not list(out.glob(".*.tmp"))
    for path in done:
        read_record(path)
    stamps = {p.name: p.stat().st_mtime_ns for p in done}
    again = subprocess.run(command + ["-q"], capture_output=True, text=True, timeout=600, env=env)
    assert again.returncode == 0, again.stderr
    assert f"12 cells: {len(done)} already done, {12 - len(done)} run, 0 failed" in again.stderr
    assert all(out.joinpath(n).stat().st_mtime_ns == s for n, s in stamps.items())
    assert len(json.loads(done[0].read_text())["spec"]["seeds"]) == 1


def _children(pid: int) -> set[int]:
    """The child processes of ``pid`` (Linux's /proc)."""
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(c) for c in (task / "children").read_text().split()}
        except FileNotFoundError:     # a kernel without CONFIG_PROC_CHILDREN
            pytest.skip("this kernel's /proc does not list children")
        except OSError:               # the task ended meanwhile
            continue
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status   # a zombie has ended


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads Linux's /proc")
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_sweep_leaves_no_worker_running(tmp_path, how):
    """`kill PID` stops a sweep as Ctrl-C does (its workers stopped, exit 130); a sweep killed
    outright (SIGKILL: nothing runs in it) has its workers end themselves within seconds
    instead of finishing cells nobody will record."""
    slow = TINY.replace("backbone_options = {epochs = 2}", "backbone_options = {epochs = 4000}")
    spec = spec_file(tmp_path, slow)
    command = [sys.executable, "-m", "recguard", "sweep", str(spec), "--output", str(tmp_path / "out"),
               "--jobs", "1", "-q"]
    env = dict(os.environ, RECGUARD_CACHE=str(tmp_path / "cache"))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    workers: set[int] = set()
    while time.monotonic() < deadline and not workers:
        # the pool's worker runs `spawn_main`; the resource tracker is another child
        workers = {c for c in _children(process.pid) if "spawn_main" in _cmdline(c)}
        time.sleep(0.2)
    assert workers, "no worker started"
    time.sleep(2)
    process.send_signal(how)
    process.communicate(timeout=60)
    assert process.returncode == (130 if how == signal.SIGTERM else -signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers)


def test_a_killed_local_worker_fails_its_cell_and_a_fresh_pool_runs_the_next(tmp_path):
    """A worker process that dies (SIGKILL, as the out-of-memory killer sends) takes its cell
    with it: that cell's outcome says so, and the next cell runs in a fresh pool."""
    slow = TINY.replace("backbone_options = {epochs = 2}", "backbone_options = {epochs = 400}")
    _, cells, _ = load_sweep(spec_file(tmp_path, slow.replace('["average", "bandwagon"]', '"average"')
                                       .replace('["none", "apr"]', '"none"')))
    _, quick, _ = load_sweep(spec_file(tmp_path, TINY.replace('["average", "bandwagon"]', '"average"')
                                       .replace('["none", "apr"]', '"none"'), "quick.toml"))
    executor = LocalExecutor(jobs=1)
    try:
        executor.submit("slow", cells[0].to_spec(), False)
        deadline = time.monotonic() + 60
        while not getattr(executor._pool, "_processes", None) and time.monotonic() < deadline:
            time.sleep(0.1)
        (worker,) = executor._pool._processes.values()
        time.sleep(3)                                   # inside the cell by now
        os.kill(worker.pid, signal.SIGKILL)
        task, outcome = executor.next_done()
        assert task == "slow" and outcome.record is None and "worker process died" in outcome.error
        executor.submit("quick", quick[0].to_spec(), False)
        task, outcome = executor.next_done()
        assert task == "quick" and outcome.error is None and outcome.record is not None
    finally:
        executor.close(cancel=True)


@pytest.mark.parametrize("backbone, defense, gpu", [
    ("mf", "none", False), ("sasrec", "advtrain", False),
    ("tallrec", "none", True),                       # an LLM backbone
    ("sasrec", "lorec", True), ("mf", "llm4dec", True),   # a defense that runs an LLM
])
def test_cells_that_run_an_llm_prefer_a_gpu(backbone, defense, gpu):
    from recguard.plan import CellSpec, make_plan

    attack = "badrec" if backbone == "tallrec" else "random"
    plan = make_plan(CellSpec(backbone=backbone, attack=attack, defense=defense, seeds=(0,)))
    assert plan.prefers_gpu is gpu


def test_local_workers_take_the_machines_gpus_in_turn(tmp_path, monkeypatch):
    """Without a GPU here, a CUDA_VISIBLE_DEVICES list stands for the machine's GPUs: each
    worker sees one of them (its cuda:0), in turn, and each record says which."""
    from recguard.sweep.executors import LocalExecutor, next_gpu, visible_gpus

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3, 5")
    assert visible_gpus() == ["3", "5"]
    executor = LocalExecutor(jobs=2)
    assert executor.description.endswith("GPU 3, 5 in turn")
    assert [next_gpu(executor.gpus, executor._workers_started) for _ in range(3)] == ["3", "5", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    _, cells, _ = load_sweep(spec_file(tmp_path))
    result = run_sweep(cells, tmp_path / "out", LocalExecutor(jobs=2))
    assert result.failures == []
    assert {read_record(p)["environment"]["cuda_visible_devices"] for p in result.paths} <= {"3", "5"}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == [] and not LocalExecutor(jobs=2).description.endswith("in turn")
