"""Leaderboard entries: a seed-aggregate of result records plus who submitted it.

An entry is data only (JSON; nothing in it is executed or unpickled)::

    entry_schema_version  1
    kind                  "recguard-leaderboard-entry"
    submitter             {name, paper, code[, contact][, notes]}  (code: an http(s) link, or
                          plugins/recguard-NAME for a plugin that ships in this repository)
    submitted_at          ISO 8601 UTC
    record                one result record (schema of recguard.records) whose seeds are the
                          union of the source records' seeds, per-seed values in that order
    sources               per source record: {run_id, created_at, seeds, environment}

Deltas against the undefended cell are computed when an entry is shown or
rendered, never stored. Entries are untrusted: an entry holds only these fields,
its text is bounded in size, every metric value is finite and in its range (rates
in [0, 1]), and a copy of another entry's numbers under another name is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from recguard.errors import RecguardError, did_you_mean
from recguard.files import atomic_write_json, json_digest, loads_json
from recguard.protocols import RANKING, task_kind_of
from recguard.records import aggregate, validate_record

ENTRY_SCHEMA_VERSION = 1
ENTRY_KIND = "recguard-leaderboard-entry"
REQUIRED_SUBMITTER = ("name", "paper", "code")
OPTIONAL_SUBMITTER = ("contact", "notes")
UNSAFE_IN_LINK = set(" \t\n\"'<>()[]`")   # the link lands in Markdown and HTML
IN_REPO_PLUGIN = re.compile(r"plugins/recguard-[a-z0-9][a-z0-9-]*")
# spec parts that must be equal for records to be aggregated into one entry
SAME_CELL = ("dataset", "backbone", "attack", "defense", "protocol")
ENTRY_FIELDS = ("entry_schema_version", "kind", "submitter", "submitted_at", "record", "sources")
MAX_ENTRY_BYTES = 1_000_000          # an entry of 1000 seeds is about 200 kB
MAX_SUBMITTER_CHARS = {"name": 100, "paper": 300, "code": 300, "contact": 200, "notes": 2000}
# metrics that are shares or probabilities (name before '@'); RC-* are at most 1
RATES = {"HR", "Recall", "NDCG", "Precision", "T-HR", "T-NDCG", "Detect-AUC", "Valid", "H", "A-Valid",
         "ASR", "AUC", "Score", "Scan-Precision", "Scan-Recall"}
MAX_ABS_VALUE = 1e6                  # any other metric: finite and not absurdly large


@dataclass(frozen=True)
class Submitter:
    """Who stands behind an entry: a name, the paper (or "none") and a link to the code."""

    name: str
    paper: str
    code: str
    contact: str = ""
    notes: str = ""

    def to_dict(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) or f.name in REQUIRED_SUBMITTER}

    def check(self) -> "Submitter":
        problems = submitter_problems(self.to_dict())
        if problems:
            raise RecguardError(problems[0])
        return self


def submitter_problems(submitter: Any) -> list[str]:
    if not isinstance(submitter, dict):
        return ["missing provenance: 'submitter' must be an object with name, paper and code"]
    problems = []
    for key in REQUIRED_SUBMITTER:
        value = submitter.get(key)
        if not isinstance(value, str) or not value.strip():
            problems.append(f"missing provenance: submitter.{key} is empty or absent "
                            f"(give --submitter, --paper and --code)")
    code = submitter.get("code")
    if isinstance(code, str) and code.strip() and not is_code_link(code):
        problems.append(f"submitter.code {code!r} is neither an http(s) link to the code (no spaces, "
                        f"quotes, brackets or parentheses) nor a plugin folder of the recguard "
                        f"repository (plugins/recguard-NAME)")
    for key, limit in MAX_SUBMITTER_CHARS.items():
        value = submitter.get(key)
        if key in OPTIONAL_SUBMITTER and value is not None and not isinstance(value, str):
            problems.append(f"submitter.{key} must be a string")
        elif isinstance(value, str) and len(value) > limit:
            problems.append(f"submitter.{key} is {len(value)} characters long; at most {limit}")
    unknown = set(submitter) - set(REQUIRED_SUBMITTER) - set(OPTIONAL_SUBMITTER)
    if unknown:
        problems.append(f"submitter has unknown fields {sorted(unknown)}; "
                        f"accepted: {', '.join(REQUIRED_SUBMITTER + OPTIONAL_SUBMITTER)}")
    return problems


def is_code_link(code: str) -> bool:
    """An http(s) URL safe to put in Markdown and HTML, or a plugin folder of this repository
    (for results of the plugins that ship with recguard)."""
    if IN_REPO_PLUGIN.fullmatch(code):
        return True
    return code.startswith(("https://", "http://")) and not any(c in code for c in UNSAFE_IN_LINK)


def build_entry(records: list[dict], submitter: Submitter) -> dict:
    """One entry from records of the same cell (any seeds, none twice)."""
    if not records:
        raise RecguardError("no records given")
    first = records[0]
    for record in records[1:]:
        for key in SAME_CELL:
            if _comparable(record["spec"][key]) != _comparable(first["spec"][key]):
                raise RecguardError(f"records {first['run_id']} and {record['run_id']} are different "
                                    f"cells (their {key} differs); an entry aggregates one cell")
    by_seed: dict[int, tuple[dict, int]] = {}
    for record in records:
        for position, seed in enumerate(record["spec"]["seeds"]):
            if seed in by_seed:
                raise RecguardError(f"seed {seed} is in more than one record "
                                    f"({by_seed[seed][0]['run_id']}, {record['run_id']})")
            by_seed[seed] = (record, position)
    seeds = sorted(by_seed)
    merged = json.loads(json.dumps(first))  # a deep copy of plain JSON
    merged["spec"]["seeds"] = seeds
    merged["spec"]["targets"] = {str(s): by_seed[s][0]["spec"]["targets"][str(s)] for s in seeds}
    merged["metrics"] = {
        condition: {name: aggregate([_per_seed(by_seed[s], condition, name) for s in seeds])
                    for name in metrics}
        for condition, metrics in first["metrics"].items()}
    merged["timings"] = {"total_seconds": round(sum(r["timings"]["total_seconds"] for r in records), 3)}
    merged.pop("notes", None)  # per-seed diagnostics stay in the source records
    entry = {
        "entry_schema_version": ENTRY_SCHEMA_VERSION, "kind": ENTRY_KIND,
        "submitter": submitter.check().to_dict(),
        "submitted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "record": merged,
        "sources": [{"run_id": r["run_id"], "created_at": r["created_at"], "seeds": r["spec"]["seeds"],
                     "environment": r["environment"]} for r in records],
    }
    problems = validate_entry(entry)
    if problems:
        raise RecguardError("the records do not make a valid entry: " + problems[0])
    return entry


def _per_seed(source: tuple[dict, int], condition: str, name: str) -> float:
    record, position = source
    try:
        value = record["metrics"][condition][name]["per_seed"][position]
    except KeyError:
        raise RecguardError(f"record {record['run_id']} lacks {condition} {name}") from None
    return float("nan") if value is None else value


def _comparable(part: Any) -> str:
    """A spec part without what may differ between runs of one cell (dataset stats)."""
    if isinstance(part, dict):
        part = {k: v for k, v in part.items() if k != "stats"}
    return json.dumps(part, sort_keys=True)


def entry_id(entry: dict) -> str:
    """Stable for one cell and submitter: re-adding the same runs lands on the same file."""
    spec = entry["record"]["spec"]
    key = json.dumps({k: _comparable(spec[k]) for k in SAME_CELL} | {
        "seeds": spec["seeds"], "submitter": entry["submitter"]["name"]}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    parts = [spec["dataset"]["name"], spec["protocol"]["name"], spec["backbone"]["name"],
             spec["attack"]["name"], spec["defense"]["name"], digest]
    return "_".join(p.replace("/", "-") for p in parts)


def write_entry(entry: dict, folder: str | os.PathLike, replace: bool = False,
                how_to_replace: str = "pass --replace to overwrite it") -> Path:
    path = Path(folder) / f"{entry_id(entry)}.json"
    if path.exists() and not replace:
        raise RecguardError(f"{path} already exists (the same cell, seeds and submitter); "
                            f"{how_to_replace}")
    return atomic_write_json(path, entry, allow_nan=False)


def find_planned_entry(folder: str | os.PathLike, dataset: str, planned: dict, seeds: list[int],
                       submitter: str) -> Path | None:
    """The entry in ``folder`` that a run of this cell would write over, found before the run:
    same dataset, components, protocol, seeds and submitter (the data's fingerprint, known only
    once it is loaded, is not compared)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    for path in sorted(folder.glob("*.json")):
        try:
            entry = loads_json(path.read_text(encoding="utf-8"))
            spec = entry["record"]["spec"]
            same = (entry["submitter"]["name"] == submitter and spec["seeds"] == list(seeds)
                    and spec["dataset"].get("registry_name", spec["dataset"]["name"]) == dataset
                    and all(_comparable(spec[k]) == _comparable(v) for k, v in planned.items()))
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
            continue   # not an entry: `leaderboard validate` reports it
        if same:
            return path
    return None


def read_entry(path: str | os.PathLike, host=None) -> dict:
    """A valid entry, or a RecguardError naming the file and its first problem."""
    entry, problems = load_and_check(path, host)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise RecguardError(f"{path}: {problems[0]}{more}")
    return entry


def load_and_check(path: str | os.PathLike, host=None) -> tuple[dict | None, list[str]]:
    path = Path(path)
    if not path.is_file():
        return None, ["no such file"]
    if path.stat().st_size > MAX_ENTRY_BYTES:
        return None, [f"the file is {path.stat().st_size} bytes; an entry is at most {MAX_ENTRY_BYTES}"]
    try:
        entry = loads_json(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        return None, ["not a JSON file (not UTF-8 text)"]
    except json.JSONDecodeError as exc:
        return None, [f"not a JSON file (line {exc.lineno}, column {exc.colno}: {exc.msg})"]
    except ValueError as exc:
        return None, [f"not a JSON file ({exc})"]
    return entry, validate_entry(entry, host)


def validate_entry(entry: Any, host=None) -> list[str]:
    """Every problem of an entry, as short sentences; [] means valid.

    With a plugin ``host``, the components it names must be registered there and
    their configs must build (an unknown component or option is a problem).
    """
    if not isinstance(entry, dict):
        return ["an entry is a JSON object"]
    version = entry.get("entry_schema_version")
    if version is None:
        return ["missing entry_schema_version (is this a result record? "
                "make an entry with `recguard leaderboard add RECORD`)"]
    if version != ENTRY_SCHEMA_VERSION:
        return [f"entry_schema_version {version!r} is not supported "
                f"(this recguard reads version {ENTRY_SCHEMA_VERSION})"]
    problems = []
    unknown = sorted(set(entry) - set(ENTRY_FIELDS))
    if unknown:
        problems.append(f"unknown fields {_names(unknown)}; an entry holds {', '.join(ENTRY_FIELDS)}")
    size = len(json.dumps(entry, default=str))
    if size > MAX_ENTRY_BYTES:
        problems.append(f"the entry is {size} bytes of JSON; at most {MAX_ENTRY_BYTES}")
    if entry.get("kind") != ENTRY_KIND:
        problems.append(f"kind must be {ENTRY_KIND!r}")
    problems += submitter_problems(entry.get("submitter"))
    if not isinstance(entry.get("submitted_at"), str):
        problems.append("missing submitted_at")
    record = entry.get("record")
    record_problems = validate_record(record)
    problems += [f"record: {p}" for p in record_problems]
    if record_problems:
        return problems
    problems += _cell_problems(record)
    problems += _value_problems(record)
    problems += _source_problems(entry.get("sources"), record)
    if host is not None:
        problems += _component_problems(record, host)
    return problems


def _cell_problems(record: dict) -> list[str]:
    from recguard.pipeline.conditions import ATTACKED, ATTACKED_DEF, CLEAN, CLEAN_DEF
    from recguard.protocols import OMITTED_WHEN_EMPTY, Protocol

    problems = []
    spec = record["spec"]
    problems += [f"missing provenance: the environment lacks {k!r}"
                 for k in ("recguard", "python") if not record["environment"].get(k)]
    missing = [f.name for f in fields(Protocol)
               if f.name not in spec["protocol"] and f.name not in OMITTED_WHEN_EMPTY]
    problems += [f"protocol field {name!r} is missing from spec.protocol" for name in missing]
    if spec["attack"]["name"] == "none":
        problems.append("an entry needs an attack: a cell without one has nothing to rank")
        return problems
    llm = task_kind_of(spec["protocol"]) != RANKING
    expected = [CLEAN, ATTACKED]
    if spec["defense"]["name"] != "none":
        expected += [ATTACKED_DEF] if llm else [CLEAN_DEF, ATTACKED_DEF]
    missing_conditions = [c for c in expected if c not in record["conditions"]]
    if missing_conditions:
        problems.append(f"conditions {missing_conditions} are missing (a "
                        f"{'defended' if len(expected) > 2 else 'undefended'} cell has {expected})")
    if sorted(map(str, spec["seeds"])) != sorted(spec["targets"]):
        problems.append("spec.targets must list the target items of every seed and no other")
    if not llm:
        for condition in record["conditions"]:
            absent = [m for m in spec["protocol"]["metrics"] if m not in record["metrics"].get(condition, {})]
            if absent:
                problems.append(f"condition {condition!r} lacks the protocol's metrics {absent}")
    return problems


def _names(names: list[str], shown: int = 5) -> str:
    """A few field names for a message (an entry may carry thousands), each shortened."""
    listed = ", ".join(repr(n if len(n) <= 30 else n[:27] + "...") for n in names[:shown])
    return listed + (f" and {len(names) - shown} more" if len(names) > shown else "")


def metric_range(name: str) -> tuple[float, float]:
    """The values a metric can take: [0, 1] for a rate, at most 1 for RC-*, else bounded."""
    base = name.split("@", 1)[0]
    if base in RATES:
        return 0.0, 1.0
    if base.startswith("RC-"):
        return -MAX_ABS_VALUE, 1.0
    return -MAX_ABS_VALUE, MAX_ABS_VALUE


def _value_problems(record: dict) -> list[str]:
    """Every metric value in its range; a standard deviation is never negative."""
    problems = []
    for condition, metrics in record["metrics"].items():
        for name, value in metrics.items():
            low, high = metric_range(name)
            numbers = [("mean", value["mean"])] + [(f"seed {seed}", v) for seed, v in
                                                   zip(record["spec"]["seeds"], value["per_seed"])]
            for what, number in numbers:
                if number is not None and not low <= number <= high:
                    problems.append(f"{condition} {name} {what}: {number:.6g} is outside "
                                    f"[{low:g}, {high:g}]")
                    break
            std = value["std"]
            if std is not None and not 0 <= std <= high - low:
                problems.append(f"{condition} {name} std: {std:.6g} is outside [0, {high - low:g}]")
    return problems


def content_key(entry: dict) -> str:
    """What makes two entries the same result whoever submitted them: the cell, the seeds, the
    targets and every number."""
    record = entry["record"]
    spec = record["spec"]
    same = {k: _comparable(spec[k]) for k in SAME_CELL}
    same |= {"seeds": spec["seeds"], "targets": spec["targets"], "metrics": record["metrics"]}
    return json_digest(same)


def duplicate_problems(entries: list[tuple[Path, dict]]) -> dict[Path, str]:
    """``{file: problem}`` for each entry whose content repeats an earlier one's (by submission
    time, then file name): the same numbers under another name are not a second result."""
    first: dict[str, tuple[Path, dict]] = {}
    problems = {}
    for path, entry in sorted(entries, key=lambda pe: (str(pe[1].get("submitted_at")), str(pe[0]))):
        key = content_key(entry)
        if key in first:
            original, by = first[key]
            problems[path] = (f"the same cell, seeds and numbers as {Path(original).name} "
                              f"(submitted by {by['submitter']['name']!r}): a copy is not a new result")
        else:
            first[key] = (path, entry)
    return problems


def _source_problems(sources: Any, record: dict) -> list[str]:
    if not isinstance(sources, list) or not sources:
        return ["missing provenance: 'sources' must list the records the entry aggregates"]
    problems, seen = [], []
    for i, source in enumerate(sources):
        if not isinstance(source, dict) or not {"run_id", "seeds", "environment"} <= set(source):
            problems.append(f"missing provenance: sources[{i}] needs run_id, seeds and environment")
            continue
        if not isinstance(source["seeds"], list) or not all(type(s) is int for s in source["seeds"]):
            problems.append(f"sources[{i}].seeds must be a list of integers")
            continue
        seen += source["seeds"]
    if not problems and sorted(seen) != sorted(record["spec"]["seeds"]):
        problems.append(f"the sources' seeds {sorted(seen)} are not the record's seeds "
                        f"{record['spec']['seeds']}")
    return problems


def _component_problems(record: dict, host) -> list[str]:
    from recguard.config import build_config

    spec, provenance = record["spec"], record["provenance"]
    problems = []
    registries = {"backbone": host.backbones, "attack": host.attacks, "defense": host.defenses}
    for role, registry in registries.items():
        name = spec[role]["name"]
        if name not in registry:
            problems.append(_unknown(role, name, registry, provenance.get(role)))
            continue
        try:
            build_config(registry.get(name).Config, spec[role].get("config", {}), role)
        except RecguardError as exc:
            problems.append(f"{role} {name!r}: {exc}")
    dataset = spec["dataset"].get("registry_name", spec["dataset"]["name"])
    if dataset not in host.datasets:
        problems.append(_unknown("dataset", dataset, host.datasets, provenance.get("dataset")))
    if spec["protocol"]["name"] not in host.protocols:
        problems.append(_unknown("protocol", spec["protocol"]["name"], host.protocols,
                                 provenance.get("protocol")))
    for name, source in provenance.get("metrics", {}).items():
        if name not in host.metrics:
            problems.append(_unknown("metric", name, host.metrics, source))
    return problems


def _unknown(role: str, name: str, registry, source: dict | None) -> str:
    from importlib import metadata

    message = f"unknown {role} {name!r}{did_you_mean(name, registry.names())}"
    if not isinstance(source, dict) or not source.get("distribution"):
        return message
    claimed = f"{source['distribution']} {source.get('version', '?')}"
    try:
        installed = metadata.version(source["distribution"])
    except metadata.PackageNotFoundError:
        return f"{message}; it came from {claimed}, which is not installed here"
    return f"{message}; the entry says it came from {claimed}, but {source['distribution']} " \
           f"{installed} here has no such {role}"
