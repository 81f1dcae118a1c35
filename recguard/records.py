"""Result records: one JSON file per `recguard eval` run, written atomically.

Schema (version 1; numbers stay numbers)::

    schema_version   1
    run_id           "<UTC time>-<8 hex>"
    created_at       ISO 8601 UTC
    spec             dataset {name, path, options, fingerprint, stats}, backbone / attack /
                     defense {name, config}, protocol (resolved, every field), seeds,
                     targets {seed: [raw item ids]}
    provenance       component -> {plugin, distribution, version} (metrics: name -> ...)
    conditions       the conditions run, in order
    metrics          condition -> metric -> {mean, std, per_seed}
    higher_is_better metric -> bool
    counts           users, items, train_interactions, fake_users, filler_size, targets
    timings          total_seconds, fit_seconds {condition -> per-seed list}, cached {condition -> bool list},
                     attack_seconds (ranking cells: per-seed seconds of the attack's poison)
    environment      recguard, python, platform, cpu, torch, transformers, peft, trl, device, git_commit
                     (cuda_visible_devices where set; ray_node_id in a Ray task)
    notes            (optional) condition -> per-seed dicts a defense left (e.g. seconds per user)

``std`` is the sample standard deviation over seeds (0 for one seed).
"""

from __future__ import annotations

import math
import os
import platform
import secrets
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from recguard import __version__
from recguard.errors import RecguardError
from recguard.files import atomic_write_json, loads_json, nonfinite_at

SCHEMA_VERSION = 1
TOP_LEVEL = {
    "schema_version": int, "run_id": str, "created_at": str, "spec": dict, "provenance": dict,
    "conditions": list, "metrics": dict, "higher_is_better": dict, "counts": dict,
    "timings": dict, "environment": dict,
}
SPEC_KEYS = ("dataset", "backbone", "attack", "defense", "protocol", "seeds", "targets")
PROVENANCE_KEYS = ("dataset", "backbone", "attack", "defense", "protocol", "metrics")
PROTOCOL_FIELDS = ("name", "feedback", "split", "budget", "filler_size", "n_targets", "target_rule",
                   "metrics")


def aggregate(values: list[float]) -> dict[str, Any]:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    mean = sum(finite) / len(finite) if finite else float("nan")
    if len(finite) > 1:
        std = math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))
    else:
        std = 0.0
    return {"mean": _num(mean), "std": _num(std), "per_seed": [_num(v) for v in values]}


UNDEFINED = "n/a"   # a metric measured for a row that came out undefined on every seed


def is_undefined(stat: dict | None) -> bool:
    """A metric the row has but no seed could give a value (its mean is stored as null)."""
    return bool(stat) and stat["mean"] is None


def fmt(stat: dict | None, missing: str = UNDEFINED) -> str:
    """A record's ``{mean, std, per_seed}`` as text: mean ± sample std over several seeds,
    the mean alone for one; ``missing`` where the row has no such metric, `UNDEFINED` where
    it has one that no seed could give a value (records, benchmark and sweep tables): e.g.
    the ASR of a yes/no model that answered no benign request "No"."""
    if not stat:
        return missing
    if is_undefined(stat):
        return UNDEFINED
    if len(stat["per_seed"]) > 1:
        return f"{stat['mean']:.4f} ± {stat['std']:.4f}"
    return f"{stat['mean']:.4f}"


def _num(value: float | None) -> float | None:
    """JSON has no NaN: an undefined value is stored as null."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def environment() -> dict[str, Any]:
    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    device = "cpu"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
    found = {"recguard": __version__, "python": platform.python_version(),
             "platform": platform.platform(), "cpu": cpu_description(), "torch": version("torch"),
             "transformers": version("transformers"), "peft": version("peft"), "trl": version("trl"),
             "numpy": version("numpy"), "device": device, "git_commit": _git_commit()}
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:   # which of the machine's GPUs it saw
        found["cuda_visible_devices"] = os.environ["CUDA_VISIBLE_DEVICES"]
    return found


# the vector extensions that decide which float kernels torch runs on a CPU
SIMD_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_description(cpuinfo: str | None = None) -> str:
    """The CPU's model and its SIMD extensions, e.g. "AMD EPYC (avx2, avx512f)". A fine-tune
    on CPUs that differ in them sums in another order, so its numbers can differ after the
    first digits: the same cell on two machines is told apart here."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    model, flags = "", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not model:
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    model = model or platform.processor() or platform.machine()
    simd = [flag for flag in SIMD_FLAGS if flag in flags]
    return f"{model} ({', '.join(simd)})" if simd else model


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def new_run_id(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(4)


def record_filename(record: dict) -> str:
    spec = record["spec"]
    parts = [spec["dataset"]["name"], spec["backbone"]["name"], spec["attack"]["name"],
             spec["defense"]["name"], spec["protocol"]["name"], record["run_id"]]
    return "_".join(p.replace("/", "-") for p in parts) + ".json"


def write_record(record: dict, output_dir: str | os.PathLike, filename: str | None = None) -> Path:
    """Validate and write ``record`` atomically into ``output_dir``, as ``filename`` (a sweep's
    content address) or by default under its names and run id."""
    problems = validate_record(record)
    if problems:  # refuse to write a record that would not validate (e.g. a NaN in a config)
        raise RecguardError("refusing to write an invalid record: " + "; ".join(problems[:3]))
    return atomic_write_json(Path(output_dir) / (filename or record_filename(record)), record,
                             allow_nan=False)


def read_record(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.exists():
        raise RecguardError(f"record '{path}' does not exist")
    if path.is_dir():
        raise RecguardError(f"'{path}' is a folder; give the record files in it ({path}/*.json)")
    try:
        record = loads_json(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise RecguardError(f"{path}: not a JSON file ({exc})") from None
    except OSError as exc:
        raise RecguardError(f"cannot read {path}: {exc.strerror or exc}") from None
    problems = validate_record(record)
    if problems:
        raise RecguardError(f"{path}: invalid record: {problems[0]}"
                            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    return record


def validate_record(record: Any) -> list[str]:
    """Every problem found, as short sentences; an empty list means valid."""
    if not isinstance(record, dict):
        return ["a record is a JSON object"]
    problems = []
    for key, kind in TOP_LEVEL.items():
        if key not in record:
            problems.append(f"missing field {key!r}")
        elif not isinstance(record[key], kind):
            problems.append(f"field {key!r} must be a {kind.__name__}")
    if problems:
        return problems
    bad = nonfinite_at(record)
    if bad:
        return [f"{bad} is not a finite number (JSON has no NaN or Infinity)"]
    if record["schema_version"] != SCHEMA_VERSION:
        problems.append(f"schema_version {record['schema_version']} is not {SCHEMA_VERSION}")
    spec = record["spec"]
    problems += [f"spec lacks {k!r}" for k in SPEC_KEYS if k not in spec]
    problems += [f"spec.{k} must be an object" for k in SPEC_KEYS
                 if k not in ("seeds", "targets") and k in spec and not isinstance(spec[k], dict)]
    if not isinstance(spec.get("seeds", []), list) or not all(
            isinstance(s, int) and not isinstance(s, bool) for s in spec.get("seeds", [])):
        problems.append("spec.seeds must be a list of integers")
    problems += [f"spec.{k}.name must be a string" for k in SPEC_KEYS[:5]
                 if isinstance(spec.get(k), dict) and not isinstance(spec[k].get("name"), str)]
    if not isinstance(spec.get("targets", {}), dict):
        problems.append("spec.targets must be an object")
    if problems:
        return problems
    protocol = spec.get("protocol", {})
    problems += [f"spec.protocol lacks {f!r}" for f in PROTOCOL_FIELDS if f not in protocol]
    problems += _protocol_problems(protocol)
    for key in PROVENANCE_KEYS:
        entry = record["provenance"].get(key)
        if entry is None:
            problems.append(f"provenance lacks {key!r}")
        elif not isinstance(entry, dict):
            problems.append(f"provenance of {key!r} must be an object")
        elif key != "metrics" and not {"plugin", "version"} <= set(entry):
            problems.append(f"provenance of {key!r} lacks plugin or version")
    seeds = spec.get("seeds", [])
    for condition in record["conditions"]:
        if not isinstance(condition, str) or condition not in record["metrics"]:
            problems.append(f"metrics lack condition {condition!r}")
    for condition, metrics in record["metrics"].items():
        if not isinstance(metrics, dict):
            problems.append(f"metrics[{condition!r}] must be an object")
            continue
        for name, value in metrics.items():
            where = f"metrics[{condition!r}][{name!r}]"
            if not isinstance(value, dict) or not {"mean", "std", "per_seed"} <= set(value):
                problems.append(f"{where} needs mean, std and per_seed")
                continue
            numbers = [value["mean"], value["std"]] + (
                value["per_seed"] if isinstance(value["per_seed"], list) else [""])
            if not all(_is_number(v) or v is None for v in numbers):
                problems.append(f"{where}: mean, std and per_seed must be numbers (or null)")
                continue
            if len(value["per_seed"]) != len(seeds):
                problems.append(f"{where} has {len(value['per_seed'])} per-seed values for "
                                f"{len(seeds)} seeds")
                continue
            again = aggregate([math.nan if v is None else v for v in value["per_seed"]])
            for stat in ("mean", "std"):
                if not _close(value[stat], again[stat]):
                    problems.append(f"{where}.{stat} {_short(value[stat])} does not match its "
                                    f"per-seed values ({_short(again[stat])})")
            if name not in record["higher_is_better"]:
                problems.append(f"higher_is_better lacks {name!r}")
    return problems


def _protocol_problems(protocol: dict) -> list[str]:
    """The stored protocol under the rules of ``--protocol-opt``: types, ranges, finite numbers."""
    from recguard.config import build_config
    from recguard.protocols import Protocol

    try:
        build_config(Protocol, protocol, "spec.protocol")
    except RecguardError as exc:
        return [str(exc)]
    return []


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _short(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, (int, float)) else repr(value)


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= 1e-9 + 1e-6 * abs(b)


def new_record(**fields: Any) -> dict:
    now = datetime.now(timezone.utc)
    record = {"schema_version": SCHEMA_VERSION, "run_id": new_run_id(now),
              "created_at": now.isoformat(timespec="seconds")}
    record.update(fields)
    record["environment"] = environment()
    return record
