"""Bad input gets one line on stderr and a non-zero exit, never a traceback."""

import subprocess
import sys
from types import SimpleNamespace

import pytest

from recguard.cli import main
from recguard.contracts import Defense
from recguard.hookspecs import hookimpl
from recguard.plugins import get_host


def run_main(args, capsys):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    code = 0
    try:
        main(list(args))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line_error(code, err, fragment):
    assert code != 0
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("args, fragment", [
    (["--backbone", "mff"], "unknown backbone 'mff' (did you mean 'mf'"),
    (["--attack", "averge"], "unknown attack 'averge' (did you mean 'average'"),
    (["--defense", "nne"], "unknown defense 'nne' (did you mean 'none'"),
    (["--dataset", "ml-100"], "unknown dataset 'ml-100' (did you mean"),
    (["--dataset", "my/ratings.csv"], "a file or folder goes in --data-path (e.g. --dataset csv --data-path my/ratings.csv)"),
    (["--metrics", "HRR@10"], "unknown metric 'HRR' (did you mean 'HR'"),
    (["--metrics", "HR@0"], "k must be a positive integer"),
    (["--budget", "1.5"], "budget: 1.5 is outside (0, 1)"),
    (["--budget", "0"], "is outside (0, 1)"),
    (["--protocol", "ap"], "unknown protocol 'ap' (did you mean 'apt'?)"),
    (["--attack-opt", "fillr=3"], "unknown attack option 'fillr'"),
    (["--backbone-opt", "epochs=abc"], "backbone option epochs: expected int, got 'abc'"),
    (["--backbone-opt", "epochs"], "is not of the form key=value"),
    (["--seeds", "a,b"], "is not an integer"),
    (["--dataset", "csv", "--data-path", "/no/such/file.csv"], "dataset path '/no/such/file.csv' does not exist"),
    (["--dataset", "ml-1m"], "needs --data-path"),
    (["--defense", "apt", "--attack", "random", "--protocol", "pamacf"],
     "defense 'apt' needs explicit feedback but protocol 'pamacf' is implicit; defenses that work"),
])
def test_bad_input_is_one_line(args, fragment, capsys):
    code, _, err = run_main(["eval", "--quiet", *args], capsys)
    assert_one_line_error(code, err, fragment)


def test_malformed_data_file_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "ratings.csv"
    bad.write_text("user,item,rating\n1,10,5\n2,11,abc\n")
    code, _, err = run_main(["eval", "--quiet", "--dataset", "csv", "--data-path", str(bad)], capsys)
    assert_one_line_error(code, err, "ratings.csv:3")


class SequentialOnly(Defense):
    name = "seq-only"
    summary = "a defense for sequential backbones"
    stages = frozenset({"before_fit"})
    backbone_kinds = frozenset({"sequential"})


def test_impossible_combination_is_refused_before_any_work(register_plugin, capsys):
    register_plugin(SimpleNamespace(register_defenses=hookimpl(lambda register: register(SequentialOnly))),
                    "seq-plugin")
    code, _, err = run_main(["eval", "--quiet", "--defense", "seq-only"], capsys)
    assert_one_line_error(code, err, "defense 'seq-only' supports sequential backbones, not cf backbones")
    working = err.split("backbones that work with defense 'seq-only': ")[1].split(";")[0]
    sequential = sorted(b.name for b in get_host().backbones.iter_objects() if b.kind == "sequential")
    assert working == (", ".join(sequential) or "none installed")
    assert "defenses that work with backbone 'mf': " in err and "seq-only" not in err.split("mf': ")[-1]


def _imports_after(args):
    code = ("import sys\nfrom recguard.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')" % (args,))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout


@pytest.mark.parametrize("args", [["--help"], ["list"], ["plugins"], ["sweep", "--help"], ["table", "--help"]])
def test_help_and_list_do_not_import_torch(args):
    assert _imports_after(args).strip().endswith("NO-TORCH")


def test_list_shows_components_with_provenance(capsys):
    code, out, _ = run_main(["list"], capsys)
    assert code == 0
    for name in ("mf", "average", "bandwagon", "T-HR", "ml-100k", "apt", "recguard-mf"):
        assert name in out


def test_a_library_warning_is_one_line_and_others_keep_their_form(capsys):
    from recguard.errors import RecguardWarning, show_warning

    show_warning(RecguardWarning("half precision is emulated here"), RecguardWarning,
                 "models.py", 10)
    assert capsys.readouterr().err == "warning: half precision is emulated here\n"
    show_warning(DeprecationWarning("old"), DeprecationWarning, "x.py", 3)
    err = capsys.readouterr().err
    assert "x.py:3" in err and "DeprecationWarning: old" in err
