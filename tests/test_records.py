import copy
import json

import pytest

from recguard.errors import RecguardError
from recguard.records import aggregate, new_record, read_record, validate_record, write_record


def minimal_record():
    return new_record(
        spec={"dataset": {"name": "ml-100k", "fingerprint": "sha256:0"},
              "backbone": {"name": "mf", "config": {}}, "attack": {"name": "average", "config": {}},
              "defense": {"name": "none", "config": {}},
              "protocol": {"name": "apt", "feedback": "explicit", "split": "random_holdout",
                           "budget": 0.03, "filler_size": 0, "n_targets": 5,
                           "target_rule": "unpopular", "metrics": ["HR@50"]},
              "seeds": [0, 1], "targets": {"0": ["1"], "1": ["2"]}},
        provenance={k: {"plugin": "p", "distribution": "d", "version": "1"}
                    for k in ("dataset", "backbone", "attack", "defense", "protocol")} | {"metrics": {}},
        conditions=["clean"],
        metrics={"clean": {"HR@50": aggregate([0.2, 0.4])}},
        higher_is_better={"HR@50": True},
        counts={"users": 1}, timings={"total_seconds": 1.0},
    )


def test_aggregate_mean_and_sample_std():
    stat = aggregate([0.2, 0.4])
    assert stat["mean"] == pytest.approx(0.3) and stat["std"] == pytest.approx(0.1414213, rel=1e-5)
    assert aggregate([0.5])["std"] == 0.0
    assert aggregate([float("nan")])["mean"] is None


def test_valid_record_round_trips(tmp_path):
    record = minimal_record()
    assert validate_record(record) == []
    path = write_record(record, tmp_path)
    assert read_record(path) == json.loads(path.read_text())
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


@pytest.mark.parametrize("mutate, fragment", [
    (lambda r: r.update(schema_version=99), "schema_version 99"),
    (lambda r: r.pop("provenance"), "missing field 'provenance'"),
    (lambda r: r["provenance"].pop("attack"), "provenance lacks 'attack'"),
    (lambda r: r["metrics"]["clean"]["HR@50"].update(mean=0.9), "does not match its per-seed values"),
    (lambda r: r["spec"]["protocol"].pop("budget"), "spec.protocol lacks 'budget'"),
    (lambda r: r["metrics"]["clean"]["HR@50"]["per_seed"].pop(), "1 per-seed values for 2 seeds"),
])
def test_invalid_records_name_the_problem(mutate, fragment):
    record = copy.deepcopy(minimal_record())
    mutate(record)
    assert any(fragment in p for p in validate_record(record)), validate_record(record)


def test_read_record_refuses_non_json(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("{not json")
    with pytest.raises(RecguardError, match="not a JSON file"):
        read_record(path)


def test_the_environment_names_the_cpu_and_its_simd_extensions():
    from recguard.records import cpu_description

    info = ("processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu sse2 avx2 avx512f "
            "avx512_bf16\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu\n")
    assert cpu_description(info) == "AMD EPYC 9R14 (avx2, avx512f, avx512_bf16)"
    assert cpu_description("model name : Old\nflags : fpu sse2\n") == "Old"
    assert isinstance(cpu_description(), str) and cpu_description()
