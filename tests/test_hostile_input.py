"""Hostile and careless input (issue 18): one line and a non-zero exit, never a traceback,
never a non-finite number in a record, never submitter text rendered raw."""

import json
import os
from pathlib import Path

import pytest

from recguard.errors import RecguardError
from recguard.records import read_record, validate_record, write_record
from tests.test_cli import assert_one_line_error, run_main
from tests.test_records import minimal_record


@pytest.fixture
def no_run(monkeypatch):
    """Bad input is refused before any work: running the cell fails the test."""
    import recguard.pipeline

    def ran(*args, **kwargs):
        pytest.fail("the cell ran")

    monkeypatch.setattr(recguard.pipeline, "run_cell", ran)


# ---------------------------------------------------------------- 1. non-finite numbers

@pytest.mark.parametrize("args, fragment", [
    (["--budget", "nan"], "protocol option budget: nan is not a finite number"),
    (["--budget", "1e400"], "protocol option budget: inf is not a finite number"),
    (["--backbone-opt", "lr=nan"], "backbone option lr: nan is not a finite number"),
    (["--backbone-opt", "lr=inf"], "backbone option lr: inf is not a finite number"),
    (["--backbone-opt", "weight_decay=nan"], "backbone option weight_decay: nan is not a finite"),
    (["--protocol-opt", "valid_fraction=nan"], "protocol option valid_fraction: nan is not a finite"),
    (["--protocol-opt", "split_ratios=0.5,nan,0.5"], "protocol option split_ratios: nan is not"),
])
def test_non_finite_options_are_refused(args, fragment, capsys, tmp_path, no_run):
    code, _, err = run_main(["eval", "--quiet", "--seeds", "0", "--output", str(tmp_path), *args],
                            capsys)
    assert code == 2
    assert_one_line_error(code, err, fragment)
    assert not list(tmp_path.iterdir())   # nothing written


def test_a_record_with_nan_is_neither_written_nor_read(tmp_path):
    record = minimal_record()
    record["spec"]["backbone"]["config"]["lr"] = float("nan")
    assert validate_record(record) == [
        "spec.backbone.config.lr is not a finite number (JSON has no NaN or Infinity)"]
    with pytest.raises(RecguardError, match="spec.backbone.config.lr is not a finite number"):
        write_record(record, tmp_path)
    assert not list(tmp_path.iterdir())
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(minimal_record()).replace('"budget": 0.03', '"budget": NaN'))
    with pytest.raises(RecguardError, match="NaN is not a JSON number"):
        read_record(bad)


# ---------------------------------------------------------------- 7. no tracebacks

@pytest.mark.parametrize("args, fragment", [
    (["--seeds", "99999999999999999999"], "--seeds '99999999999999999999': a seed is at most 4294967295"),
    (["--seeds", "0-5000"], "--seeds '0-5000': more than 1000 seeds"),
    (["--metrics", ","], "metrics is empty: give at least one"),
    (["--metrics", ""], "metrics is empty: give at least one"),
])
def test_seeds_and_metrics_that_crashed(args, fragment, capsys, tmp_path, no_run):
    code, _, err = run_main(["eval", "--quiet", "--output", str(tmp_path), *args], capsys)
    assert code == 2
    assert_one_line_error(code, err, fragment)


def test_show_a_folder(tmp_path, capsys):
    code, _, err = run_main(["show", str(tmp_path)], capsys)
    assert code == 2
    assert_one_line_error(code, err, f"'{tmp_path}' is a folder; give the record files in it")


def test_unwritable_output_is_refused_before_the_run(tmp_path, capsys, no_run):
    (tmp_path / "file").write_text("")
    code, _, err = run_main(["eval", "-q", "--seeds", "0", "--output", str(tmp_path / "file" / "out")],
                            capsys)
    assert code == 2
    assert_one_line_error(code, err, f"--output '{tmp_path}/file/out': '{tmp_path}/file' is a file")


@pytest.mark.skipif(__import__("os").geteuid() == 0, reason="root may write anywhere")
def test_read_only_output_is_refused(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, _, err = run_main(["eval", "-q", "--seeds", "0", "--output", str(locked / "out")], capsys)
    assert_one_line_error(code, err, "no permission to write there")


def test_eval_leaderboard_refuses_an_existing_entry_before_the_run(tmp_path, capsys, no_run):
    import shutil
    from pathlib import Path

    committed = Path(__file__).parent.parent / "leaderboards" / "ml-100k_apt_mf_average_apt_1321ef10.json"
    shutil.copy(committed, tmp_path)
    code, _, err = run_main(["eval", "-q", "--defense", "apt", "--leaderboard", str(tmp_path),
                             "--submitter", "recguard maintainers", "--paper", "none",
                             "--code", "https://example.org/code", "--output", str(tmp_path / "out")],
                            capsys)
    assert code == 2
    assert_one_line_error(code, err, "ml-100k_apt_mf_average_apt_1321ef10.json already holds this "
                                     "cell's entry (the same seeds and submitter); remove it first")
    assert "pass --replace" not in err


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("recguard.plugins.get_host", broken)
    monkeypatch.setattr("recguard.cli._add_plugin_commands", lambda: None)
    code, _, err = run_main(["list"], capsys)
    assert code == 1
    assert_one_line_error(code, err, "error: internal error: ZeroDivisionError: division by zero "
                                     "(rerun as `recguard --debug ...` for the traceback)")
    with pytest.raises(ZeroDivisionError):
        run_main(["--debug", "list"], capsys)


def test_ctrl_c_exits_130_without_a_blank_line(capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("recguard.plugins.get_host", interrupted)
    monkeypatch.setattr("recguard.cli._add_plugin_commands", lambda: None)
    code, _, err = run_main(["list"], capsys)
    assert code == 130
    assert err == "interrupted\n"


# ---------------------------------------------------------------- 5. leaderboard entries

COMMITTED = __import__("pathlib").Path(__file__).parent.parent / "leaderboards"
APT_ENTRY = "ml-100k_apt_mf_average_apt_1321ef10.json"


def committed_entry(name=APT_ENTRY) -> dict:
    return json.loads((COMMITTED / name).read_text())


def set_metric(entry, condition, metric, value):
    seeds = entry["record"]["spec"]["seeds"]
    entry["record"]["metrics"][condition][metric] = {"mean": value, "std": 0.0,
                                                     "per_seed": [value] * len(seeds)}
    return entry


def validate_file(tmp_path, capsys, text, name="entry.json"):
    path = tmp_path / name
    path.write_text(text if isinstance(text, str) else json.dumps(text))
    return run_main(["leaderboard", "validate", str(path)], capsys)


@pytest.mark.parametrize("edit, fragment", [
    (lambda e: set_metric(e, "attacked+defense", "T-HR@50", -5.0),
     "attacked+defense T-HR@50 mean: -5 is outside [0, 1]"),
    (lambda e: set_metric(e, "clean", "HR@50", 1e308), "clean HR@50 mean: 1e+308 is outside [0, 1]"),
    (lambda e: set_metric(e, "clean", "HR@50", "0.3"), "mean, std and per_seed must be numbers"),
    (lambda e: e | {"padding": "x" * 100}, "unknown fields 'padding'; an entry holds"),
    (lambda e: e | {"submitter": e["submitter"] | {"name": "n" * 500}},
     "submitter.name is 500 characters long; at most 100"),
    (lambda e: e["record"]["spec"]["protocol"].update(budget="lots") or e,
     "spec.protocol option budget: expected float, got 'lots'"),
    (lambda e: e["record"]["spec"]["protocol"].update(budget=-1) or e,
     "spec.protocol option budget: -1 is outside (0, 1)"),
])
def test_out_of_range_and_malformed_entries_do_not_validate(edit, fragment, tmp_path, capsys):
    code, out, err = validate_file(tmp_path, capsys, edit(committed_entry()))
    assert code == 1 and "0 of 1 entries valid" in out
    assert "Traceback" not in err
    assert fragment in err, err


@pytest.mark.parametrize("text, fragment", [
    ("[" * 100_000 + "]" * 100_000, "not a JSON file (nested too deeply)"),
    ('{"entry_schema_version": NaN}', "not a JSON file (NaN is not a JSON number)"),
    (" " * 1_000_001, "an entry is at most 1000000"),
])
def test_hostile_json_files(text, fragment, tmp_path, capsys):
    code, _, err = validate_file(tmp_path, capsys, text)
    assert code == 1 and "Traceback" not in err
    assert fragment in err, err


def test_a_copy_under_another_name_is_refused(tmp_path, capsys):
    import shutil

    shutil.copy(COMMITTED / APT_ENTRY, tmp_path)
    copy = committed_entry()
    copy["submitter"]["name"] = "Someone Else"
    copy["submitted_at"] = "2030-01-01T00:00:00+00:00"
    (tmp_path / "copy.json").write_text(json.dumps(copy))
    code, out, err = run_main(["leaderboard", "validate", "--dir", str(tmp_path)], capsys)
    assert code == 1 and "1 of 2 entries valid" in out
    assert err.strip() == (f"{tmp_path}/copy.json: the same cell, seeds and numbers as {APT_ENTRY} "
                           f"(submitted by 'recguard maintainers'): a copy is not a new result")
    code, _, err = run_main(["leaderboard", "show", "--dir", str(tmp_path)], capsys)
    assert code == 2
    assert_one_line_error(code, err, "copy.json: the same cell, seeds and numbers as")


def test_leaderboard_add_refuses_a_copy_under_another_name(tmp_path):
    import shutil

    from recguard.cli.leaderboard_cmd import _refuse_a_copy

    shutil.copy(COMMITTED / APT_ENTRY, tmp_path)
    copy = committed_entry()
    copy["submitter"]["name"] = "Someone Else"
    with pytest.raises(RecguardError, match=f"not added: the same cell, seeds and numbers as {APT_ENTRY}"):
        _refuse_a_copy(copy, str(tmp_path))
    _refuse_a_copy(committed_entry(), str(tmp_path))   # the same file again: --replace decides


# ---------------------------------------------------------------- 6. submitter text

HOSTILE = "<img src=x onerror=alert(1)> [x](javascript:alert(1)) \x1b[31mred\x1b[0m | *"


def hostile_folder(tmp_path):
    entry = committed_entry()
    entry["submitter"]["name"] = HOSTILE
    entry["record"]["spec"]["dataset"]["name"] = "ml-100k<script>alert(1)</script>"
    folder = tmp_path / "boards"
    folder.mkdir()
    (folder / APT_ENTRY).write_text(json.dumps(entry))
    return folder


def test_rendered_markdown_holds_no_raw_html_from_an_entry(tmp_path, capsys):
    folder = hostile_folder(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("# project\n")
    code, _, err = run_main(["leaderboard", "render", "--dir", str(folder), "--readme", str(readme)],
                            capsys)
    assert code == 0, err
    for text in ((folder / "LEADERBOARD.md").read_text(), readme.read_text()):
        assert "<img" not in text and "<script" not in text and "\x1b" not in text
        assert "&lt;img src=x onerror=alert\\(1\\)&gt; \\[x\\]\\(javascript:alert\\(1\\)\\)" in text
        assert "### ml-100k&lt;script&gt;alert\\(1\\)&lt;/script&gt; · apt" in text
    assert "<img" not in (folder / "index.html").read_text()


def test_leaderboard_show_writes_no_escape_sequence(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")   # the submitter's column unwrapped
    code, out, err = run_main(["leaderboard", "show", "--dir", str(hostile_folder(tmp_path))], capsys)
    assert code == 0, err
    assert "\x1b" not in out and "[31mred" in out


# ---------------------------------------------------------------- 2-4. data files

def load_csv_text(tmp_path, text, name="ratings.csv", **kwargs):
    from recguard.data import loaders

    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return loaders.load_csv(path, **kwargs)


def test_csv_columns_are_read_by_header_name(tmp_path):
    data = load_csv_text(tmp_path, "user_id,item_id,timestamp,rating\n1,a,100,5\n1,b,200,4\n2,a,300,2\n")
    assert data.rating.tolist() == [5, 4, 2] and data.timestamp.tolist() == [100, 200, 300]
    swapped = load_csv_text(tmp_path, "item,user\na,1\nb,1\na,2\n")
    assert (swapped.n_users, swapped.n_items) == (2, 2)


def test_csv_quoting(tmp_path):
    data = load_csv_text(tmp_path, 'user,item,rating\n"Doe, J.","Item ""A""",5\n"Doe, J.",b,4\nx,b,"3"\n')
    assert data.n_users == 2 and data.rating.tolist() == [5, 4, 3]


@pytest.mark.parametrize("text, fragment", [
    ("user,item,when\n1,2,3\n", "ratings.csv:1: the header's column 'when' is none of user, item"),
    ("user,uid,rating\n1,2,3\n", "ratings.csv:1: the header names the user twice ('user' and 'uid')"),
    ("user,rating\n1,2\n", "ratings.csv:1: the header has no item column"),
    ('user,item\n1,"2\n3,4\n', "ratings.csv:2: unexpected end of data (a quote left open?)"),
    ("user,item,rating\n1,2,0\n1,3,4\n", "ratings.csv:2: rating '0' is not positive"),
    ("1,2,-1\n1,3,-4\n", "ratings.csv:1: rating '-1' is not positive"),
    (b"user,item\n1,2\n1,caf\xe9\n", "ratings.csv:3: byte 0xe9 (column 6) is not valid utf-8"),
])
def test_data_files_that_were_misread(text, fragment, tmp_path, capsys):
    path = tmp_path / "ratings.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    code, _, err = run_main(["eval", "-q", "--seeds", "0", "--dataset", "csv", "--data-path", str(path),
                             "--output", str(tmp_path / "out")], capsys)
    assert code == 2
    assert_one_line_error(code, err, fragment)


@pytest.mark.parametrize("text, fragment", [
    ('item,text\na,"Alpha\nb,Beta\nc,Gamma\n', "items.csv:2: unexpected end of data (a quote left open?)"),
    ('item,text\na,"Alpha\nb,Beta"\nc,Gamma\n', "items.csv:2: a quoted field runs over lines 2-3"),
    (b"item,text\na,Alpha\nb,Caf\xe9\n", "items.csv:3: byte 0xe9 (column 6) is not valid utf-8"),
])
def test_item_text_is_read_strictly(text, fragment, tmp_path):
    items = tmp_path / "items.csv"
    items.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(RecguardError, match=__import__("re").escape(fragment)):
        load_csv_text(tmp_path, "1,a\n1,b\n2,c\n", item_text=items)


def test_header_problems_name_the_header_line(tmp_path):
    with pytest.raises(RecguardError, match=r"ratings.csv:3: the header's column 'score2' is none of"):
        load_csv_text(tmp_path, "\n\nuser,item,score2\n1,2,3\n")


# ---------------------------------------------------------------- 8. smaller

def test_a_budget_of_no_fake_user_is_refused():
    from recguard.pipeline.kinds.ranking import fake_users

    assert fake_users(0.03, 943) == 28
    with pytest.raises(RecguardError, match="budget 1e-09 is 9.4e-07 fake users for 943 genuine users; "
                                            "one fake user needs a budget of at least 0.00053"):
        fake_users(1e-9, 943)


def test_split_ratios_are_checked_whatever_the_split(capsys, tmp_path, no_run):
    code, _, err = run_main(["eval", "-q", "--protocol", "apt", "--protocol-opt", "split_ratios=0.5,0.6",
                             "--output", str(tmp_path)], capsys)
    assert_one_line_error(code, err, "split_ratios must be three shares summing to 1, got (0.5, 0.6)")


@pytest.mark.parametrize("protocol, options, message", [
    ("llara-cpu", ["balanced_shots=true"], "balanced_shots applies to yes_no protocols (TALLRec's); "
                                           "this one's llm_task is 'choose'"),
    ("apt", ["balanced_shots=true"], "balanced_shots applies to yes_no protocols (TALLRec's); "
                                     "this one's llm_task is 'none'"),
    ("tallrec-cpu", ["n_train_samples=0"], "balanced_shots draws a number of shots: set n_train_samples > 0"),
])
def test_balanced_shots_are_refused_where_they_cannot_apply(protocol, options, message, capsys, tmp_path,
                                                           no_run):
    args = ["eval", "-q", "--protocol", protocol, "--output", str(tmp_path)]
    for option in options:
        args += ["--protocol-opt", option]
    code, _, err = run_main(args, capsys)
    assert_one_line_error(code, err, message)


def test_files_are_written_with_the_umask_and_keep_their_mode(tmp_path):
    import os
    import stat

    from recguard.files import atomic_write_text

    old = os.umask(0o022)
    try:
        new = atomic_write_text(tmp_path / "new.md", "x")
        assert stat.S_IMODE(new.stat().st_mode) == 0o644
        kept = tmp_path / "README.md"
        kept.write_text("old")
        kept.chmod(0o664)
        atomic_write_text(kept, "new")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o664 and kept.read_text() == "new"
    finally:
        os.umask(old)


@pytest.mark.skipif(os.name != "posix", reason="asks whether a pid runs with os.kill(pid, 0)")
def test_a_killed_writers_temporaries_are_removed_by_the_next_writer(tmp_path):
    import subprocess
    import sys

    from recguard.files import _HOST, atomic_folder, atomic_write_text

    # a writer killed half-way (SIGKILL runs no clean-up) leaves its temporaries behind
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = int(gone.stdout)
    left_file = tmp_path / f".rec.json.{_HOST}-{dead}.abc.tmp"
    left_file.write_text("half")
    left_folder = tmp_path / f".entry.{_HOST}-{dead}.xyz.tmp"
    (left_folder / "sub").mkdir(parents=True)
    alive = tmp_path / f".rec.json.{_HOST}-{os.getpid()}.def.tmp"    # a writer still at work
    alive.write_text("busy")
    other_host = tmp_path / f".rec.json.otherhost-{dead}.ghi.tmp"    # a writer elsewhere
    other_host.write_text("theirs")
    atomic_write_text(tmp_path / "rec.json", "{}")
    with atomic_folder(tmp_path / "entry") as tmp:
        (tmp / "a").write_text("x")
    assert not left_file.exists() and not left_folder.exists()
    assert alive.exists() and other_host.exists()
    assert (tmp_path / "rec.json").read_text() == "{}" and (tmp_path / "entry" / "a").exists()


@pytest.mark.skipif(os.name != "posix", reason="asks whether a pid runs with os.kill(pid, 0)")
def test_a_folder_is_listed_once_for_many_writes(tmp_path, monkeypatch):
    from recguard import files

    listed = []
    real = os.scandir

    def counting_scandir(folder):
        listed.append(Path(folder))
        return real(folder)

    monkeypatch.setattr(files.os, "scandir", counting_scandir)
    for i in range(50):
        files.atomic_write_text(tmp_path / f"rec{i}.json", "{}")
    assert listed.count(tmp_path) == 1 and len(list(tmp_path.glob("rec*.json"))) == 50


def test_render_readme_keeps_its_mode(tmp_path, capsys):
    import shutil
    import stat

    folder = tmp_path / "boards"
    folder.mkdir()
    shutil.copy(COMMITTED / APT_ENTRY, folder)
    readme = tmp_path / "README.md"
    readme.write_text("# x\n")
    readme.chmod(0o644)
    code, _, err = run_main(["leaderboard", "render", "--dir", str(folder), "--readme", str(readme)], capsys)
    assert code == 0, err
    assert stat.S_IMODE(readme.stat().st_mode) == 0o644
    assert stat.S_IMODE((folder / "LEADERBOARD.md").stat().st_mode) != 0o600


def test_plugin_new_refuses_a_doubled_prefix(tmp_path, capsys):
    code, _, err = run_main(["plugin", "new", "recguard-foo", "--kind", "attack", "--dir", str(tmp_path)],
                            capsys)
    assert code == 2
    assert_one_line_error(code, err, "`recguard plugin new foo` makes the package recguard-foo")
    assert not list(tmp_path.iterdir())


def test_leaderboard_show_outside_a_checkout(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(["leaderboard", "show"], capsys)
    assert code == 2
    assert_one_line_error(code, err, "no leaderboard folder 'leaderboards' here: the boards are the "
                                     "leaderboards/ folder of a recguard checkout")


def test_the_record_path_is_never_wrapped(tmp_path, capsys, monkeypatch):
    import recguard.pipeline

    record = minimal_record()
    record["counts"] = {"users": 1, "fake_users": 1, "filler_size": 1, "targets": 1}
    monkeypatch.setattr(recguard.pipeline, "run_cell", lambda *a, **k: record)
    monkeypatch.setenv("COLUMNS", "80")
    output = tmp_path / ("a-long-folder-name-" * 4) / "results"
    code, out, err = run_main(["eval", "-q", "--seeds", "0", "--output", str(output)], capsys)
    assert code == 0, err
    written = next(output.glob("*.json"))
    assert f"record: {written}" in out.splitlines()


def test_show_refuses_a_record_whose_protocol_breaks_the_rules(tmp_path, capsys):
    record = minimal_record()
    record["spec"]["protocol"]["budget"] = "x"
    path = tmp_path / "r.json"
    path.write_text(json.dumps(record))
    code, _, err = run_main(["show", str(path)], capsys)
    assert code == 2
    assert_one_line_error(code, err, "invalid record: spec.protocol option budget: expected float, got 'x'")


def test_caches_may_hold_nan_but_records_and_entries_may_not(tmp_path):
    from recguard.files import atomic_write_json

    # an undefined metric (RC-HR against a clean HR of 0) is NaN in a seed's cached result
    atomic_write_json(tmp_path / "cache.json", {"metrics": {"RC-HR@10": float("nan")}})
    with pytest.raises(RecguardError, match=r"refusing to write .*out.json: metrics.RC-HR@10 is not a "
                                            r"finite number"):
        atomic_write_json(tmp_path / "out.json", {"metrics": {"RC-HR@10": float("nan")}}, allow_nan=False)
