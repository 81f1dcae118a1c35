"""Leaderboard entries: aggregation, validation messages, ranking, rendering, eval --leaderboard."""

import copy
import json

import pytest

from recguard.errors import RecguardError
from recguard.leaderboard.board import build_boards
from recguard.leaderboard.entry import Submitter, build_entry, validate_entry
from recguard.leaderboard.render import MARK_END, MARK_START, markdown, page, splice_markdown
from recguard.plugins import get_host
from recguard.records import aggregate, read_record
from tests.test_cli import run_main

pytestmark = pytest.mark.integration   # the records come from real (short) cells on ML-100K

WHO = ["--submitter", "Test Team", "--paper", "none", "--code", "https://example.org/code"]
SUBMITTER = Submitter("Test Team", "none", "https://example.org/code")
FAST = ["-q"]


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """Real records: seeds 0-1 and seed 2 of one undefended cell, seed 0 of a defended one."""
    from recguard.cli import main

    out = tmp_path_factory.mktemp("records")
    for name, args in (("a", ["--seeds", "0,1"]), ("b", ["--seeds", "2"]),
                       ("d", ["--seeds", "0", "--defense", "apt-rand"])):
        main(["eval", *FAST, *args, "--output", str(out / name)])
    return {name: read_record(next((out / name).glob("*.json"))) for name in "abd"}


def test_add_aggregates_seeds_of_one_cell(records):
    entry = build_entry([records["b"], records["a"]], SUBMITTER)
    record = entry["record"]
    assert record["spec"]["seeds"] == [0, 1, 2]
    assert sorted(record["spec"]["targets"]) == ["0", "1", "2"]
    stat = record["metrics"]["attacked"]["T-HR@50"]
    expected = (records["a"]["metrics"]["attacked"]["T-HR@50"]["per_seed"]
                + records["b"]["metrics"]["attacked"]["T-HR@50"]["per_seed"])
    assert stat == aggregate(expected)
    assert [s["seeds"] for s in entry["sources"]] == [[2], [0, 1]]
    assert validate_entry(entry, get_host()) == []


def test_add_refuses_a_seed_twice_and_different_cells(records):
    with pytest.raises(RecguardError, match="seed 0 is in more than one record"):
        build_entry([records["a"], records["a"]], SUBMITTER)
    with pytest.raises(RecguardError, match="different cells \\(their defense differs\\)"):
        build_entry([records["b"], records["d"]], SUBMITTER)


def _entry_file(tmp_path, records, edit=None, text=None):
    entry = build_entry([records["a"]], SUBMITTER)
    if edit:
        edit(entry)
    path = tmp_path / "entry.json"
    path.write_text(text if text is not None else json.dumps(entry))
    return path


def _drop(path):
    def edit(entry):
        *parents, last = path
        target = entry
        for key in parents:
            target = target[key]
        del target[last]
    return edit


def _set(path, value):
    def edit(entry):
        *parents, last = path
        target = entry
        for key in parents:
            target = target[key]
        target[last] = value
    return edit


def _both(first, second):
    return lambda entry: (first(entry), second(entry))


@pytest.mark.parametrize("edit, text, message", [
    (_set(["entry_schema_version"], 2), None, "entry_schema_version 2 is not supported"),
    (_set(["record", "schema_version"], 7), None, "record: schema_version 7 is not 1"),
    (_drop(["submitter", "code"]), None, "missing provenance: submitter.code"),
    (_drop(["record", "provenance", "attack"]), None, "record: provenance lacks 'attack'"),
    (_drop(["sources"]), None, "missing provenance: 'sources'"),
    (_set(["record", "metrics", "attacked", "T-HR@50", "per_seed", 0], 0.99), None,
     "metrics['attacked']['T-HR@50'].mean"),
    (_set(["record", "spec", "attack", "name"], "averag"), None,
     "unknown attack 'averag' (did you mean 'average'?); the entry says it came from recguard-heuristics"),
    (_both(_set(["record", "spec", "attack", "name"], "nonce"),
           _set(["record", "provenance", "attack"], {"plugin": "nonce", "distribution": "recguard-nonce",
                                                     "version": "0.2.0"})), None,
     "unknown attack 'nonce' (did you mean 'none'?); it came from recguard-nonce 0.2.0, which is not "
     "installed here"),
    (_drop(["record", "spec", "protocol", "target_rule"]), None, "'target_rule'"),
    (_drop(["record", "spec", "protocol", "n_candidates"]), None,
     "protocol field 'n_candidates' is missing"),
    (_set(["record", "conditions"], ["clean"]), None, "conditions ['attacked'] are missing"),
    (_set(["submitter", "code"], "javascript:alert(1)"), None, "is neither an http(s) link"),
    (_set(["record", "spec", "backbone", "config", "dim"], -4), None, "backbone 'mf'"),
    (None, "{not json", "not a JSON file (line 1"),
])
def test_invalid_submissions_are_refused_with_the_problem(tmp_path, capsys, records, edit, text, message):
    path = _entry_file(tmp_path, records, edit, text)
    code, out, err = run_main(["leaderboard", "validate", str(path)], capsys)
    assert code == 1
    assert "Traceback" not in err
    assert message in err, err
    assert "0 of 1 entries valid" in out


def test_a_record_is_not_an_entry(tmp_path, capsys, records):
    path = tmp_path / "record.json"
    path.write_text(json.dumps(records["a"]))
    code, _, err = run_main(["leaderboard", "validate", str(path)], capsys)
    assert code == 1 and "is this a result record?" in err


def test_eval_leaderboard_needs_a_submitter_before_any_work(tmp_path, capsys):
    code, _, err = run_main(["eval", "--leaderboard", str(tmp_path), "--seeds", "0"], capsys)
    assert code == 2
    assert err.strip() == ("error: a leaderboard entry needs --submitter, --paper, --code "
                           "(who submits it, the paper, a link to the code)")
    assert not list(tmp_path.iterdir())


def test_add_show_render_from_the_cli(tmp_path, capsys, monkeypatch, records):
    monkeypatch.setenv("COLUMNS", "160")
    folder = tmp_path / "board"
    for name in "ad":
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(records[name]))
        code, out, err = run_main(["leaderboard", "add", str(path), "--dir", str(folder), *WHO], capsys)
        assert code == 0, err
    code, _, err = run_main(["leaderboard", "add", str(tmp_path / "a.json"), "--dir", str(folder), *WHO],
                            capsys)
    assert code == 2 and "already exists" in err
    code, out, _ = run_main(["leaderboard", "show", "--dir", str(folder), "--attack", "average"], capsys)
    assert code == 0
    assert "apt-rand" in out and "none" in out and "T-HR@50" in out
    readme = tmp_path / "README.md"
    readme.write_text(f"# Results\n\n{MARK_START}\nold\n{MARK_END}\n\nafter\n")
    code, out, err = run_main(["leaderboard", "render", "--dir", str(folder), "--readme", str(readme)],
                              capsys)
    assert code == 0, err
    assert "1 board(s), 2 row(s)" in out
    text = readme.read_text()
    assert "old" not in text and "| 1 |" in text and text.endswith("after\n")
    assert "<svg" in (folder / "index.html").read_text()
    code, out, _ = run_main(["leaderboard", "validate", "--dir", str(folder)], capsys)
    assert code == 0 and "2 of 2 entries valid" in out


def test_boards_rank_defenses_and_take_deltas_on_the_fly(records):
    undefended = build_entry([records["a"]], SUBMITTER)
    defended = build_entry([records["d"]], SUBMITTER)
    better = copy.deepcopy(defended)
    better["record"]["spec"]["defense"]["name"] = "better"
    better["record"]["metrics"]["attacked+defense"]["T-HR@50"] = aggregate([0.0])
    [board] = build_boards([("u", undefended), ("d", defended), ("b", better)])
    assert board.success_metric == "T-HR@50" and board.quality_metric == "HR@50"
    assert [r.defense for r in board.rows][0] == "better"
    apt = next(r for r in board.rows if r.defense == "apt-rand")
    metrics = records["d"]["metrics"]
    assert apt.success_delta == pytest.approx(metrics["attacked+defense"]["T-HR@50"]["mean"]
                                              - metrics["attacked"]["T-HR@50"]["mean"])
    assert apt.clean_quality_delta == pytest.approx(metrics["clean+defense"]["HR@50"]["mean"]
                                                    - metrics["clean"]["HR@50"]["mean"])
    none = next(r for r in board.rows if r.defense == "none")
    assert none.source == "u" and none.success_delta is None


def test_without_a_none_entry_the_undefended_row_comes_from_the_attacked_condition(records):
    [board] = build_boards([("d", build_entry([records["d"]], SUBMITTER))])
    none = next(r for r in board.rows if r.defense == "none")
    assert none.success.mean == records["d"]["metrics"]["attacked"]["T-HR@50"]["mean"]


def test_rendering_escapes_what_submitters_wrote(records):
    entry = build_entry([records["d"]], Submitter("<script>alert(1)</script> | x", "p", "https://e.org"))
    boards = build_boards([("d", entry)])
    html = page(boards)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "\\| x" in markdown(boards)


def test_splice_appends_markers_when_absent():
    assert splice_markdown("# R\n", "T") == f"# R\n\n{MARK_START}\nT\n{MARK_END}\n"


def test_verify_reproduces_an_eval_entry_and_flags_edited_numbers(tmp_path, capsys, records):
    entry = build_entry([records["a"]], SUBMITTER)
    path = tmp_path / "entry.json"
    path.write_text(json.dumps(entry))
    code, out, err = run_main(["leaderboard", "verify", str(path), "--quick", "1", "-q"], capsys)
    assert code == 0, err
    assert "reproduced: 8 values on seeds [0] of [0, 1] within 0.001" in out

    stat = entry["record"]["metrics"]["attacked"]["T-HR@50"]
    stat.update(aggregate([stat["per_seed"][0] + 0.05, stat["per_seed"][1]]))  # consistent, but false
    path.write_text(json.dumps(entry))
    code, out, _ = run_main(["leaderboard", "validate", str(path)], capsys)
    assert code == 0   # the edit is internally consistent: only a re-run can catch it
    code, out, _ = run_main(["leaderboard", "verify", str(path), "--quick", "1", "-q"], capsys)
    assert code == 1
    assert "not reproduced: 1 of 8 values on seeds [0] of [0, 1] differ by more than 0.001" in out
    assert "T-HR@50" in out


def test_other_settings_make_another_board(records):
    base = build_entry([records["d"]], SUBMITTER)
    other_budget, other_epochs = copy.deepcopy(base), copy.deepcopy(base)
    other_budget["record"]["spec"]["protocol"]["budget"] = 0.01
    other_epochs["record"]["spec"]["backbone"]["config"]["epochs"] = 5
    boards = build_boards([("a", base), ("b", other_budget), ("c", other_epochs)])
    assert len(boards) == 3
    titles = [b.title for b in boards]
    assert sum("budget 0.01" in t and "variant" not in t for t in titles) == 1
    assert sum("variant" in t for t in titles) == 2   # same names and budget, another config


@pytest.mark.parametrize("task, quality", [("choose", "H@1"), ("yes_no", "AUC")])
def test_llm_boards_rank_by_asr(task, quality):
    from recguard.leaderboard.board import headline_metrics

    record = {"run_id": "r", "spec": {"protocol": {"llm_task": task, "metrics": []}},
              "metrics": {"attacked": {"ASR": {}, quality: {}}}}
    assert headline_metrics(record) == ("ASR", quality)
