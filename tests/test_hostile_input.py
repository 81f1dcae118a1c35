"""Hostile and careless input (issue 18): one line and a non-zero exit, never a traceback,
never a non-finite number in a record, never submitter text rendered raw."""

import json

import pytest

from recguard.errors import RecguardError
from recguard.records import read_record, validate_record, write_record
from tests.test_cli import assert_one_line_error, run_main
from tests.test_records import minimal_record


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
def test_non_finite_options_are_refused(args, fragment, capsys, tmp_path):
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
