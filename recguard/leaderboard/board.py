"""The leaderboard as data: entries grouped by cell, ranked, with deltas computed on the fly.

A *board* is one (dataset, protocol, backbone, attack) with one resolved
protocol (budget included) and one backbone config: numbers are only comparable
within a protocol, and a defense is only ranked against the same attack on the
same recommender. Each board has two headline metrics taken from
its protocol: the attack's success (T-HR@k for ranking protocols, ASR for LLM
ones; lower is better) and the recommendation quality (the protocol's first
metric; H@1 or AUC for LLM ones). Every row is a defense under the attack;
the undefended row comes from the entries' own ``attacked`` condition, so each
delta is taken against the same seeds and targets.
"""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from recguard.errors import RecguardError
from recguard.metrics.answers import QUALITY
from recguard.protocols import RANKING, task_kind_of

NO_DEFENSE = "none"


def plain(text: str) -> str:
    """``text`` without control or format characters (ANSI escapes, bidi overrides, zero-width
    characters): what an entry says is shown, never acted on by a terminal."""
    text = str(text)
    if text.isprintable():
        return text
    kept = (" " if c in "\t\n\r" else c for c in text)
    return "".join(c for c in kept if unicodedata.category(c) not in ("Cc", "Cf"))


@dataclass
class Score:
    mean: float | None
    std: float | None
    seeds: int

    @classmethod
    def of(cls, metric: dict | None) -> "Score":
        if metric is None:
            return cls(None, None, 0)
        return cls(metric["mean"], metric["std"], len(metric["per_seed"]))


@dataclass
class Row:
    """One defense on one board, from one entry."""

    defense: str
    submitter: str
    paper: str
    code: str
    seeds: list[int]
    success: Score              # attack success under the defense (attacked+defense)
    quality: Score              # quality under attack with the defense
    clean_quality: Score        # quality without attack, with the defense
    success_delta: float | None = None   # against the undefended attacked condition
    quality_delta: float | None = None
    clean_quality_delta: float | None = None   # the defense's cost on clean data
    source: str = ""            # the entry file


@dataclass
class Board:
    dataset: str
    protocol: str
    backbone: str
    attack: str
    success_metric: str
    quality_metric: str
    success_higher_is_better: bool
    quality_higher_is_better: bool
    budget: float = 0.0
    variant: str = ""     # set when boards differ only in other protocol fields or backbone config
    rows: list[Row] = field(default_factory=list)

    @property
    def title(self) -> str:
        variant = f" · variant {self.variant}" if self.variant else ""
        return plain(f"{self.dataset} · {self.protocol} · {self.backbone} · attack {self.attack} "
                     f"· budget {self.budget:g}{variant}")


def headline_metrics(record: dict) -> tuple[str, str]:
    """(success, quality) metric names of a record's protocol."""
    protocol = record["spec"]["protocol"]
    attacked = record["metrics"].get("attacked", {})
    kind = task_kind_of(protocol)
    if kind != RANKING:
        return "ASR", QUALITY[kind]
    success = next((m for m in protocol["metrics"] if m.startswith("T-HR@") and m in attacked),
                   next((m for m in attacked if m.startswith("T-")), None))
    if success is None:
        raise RecguardError(f"record {record['run_id']} has no attack-success metric (T-HR@k)")
    quality = next(m for m in protocol["metrics"] if not m.startswith(("T-", "RC-")))
    return success, quality


def build_boards(entries: Iterable[tuple[str, dict]]) -> list[Board]:
    """Boards from (file, entry) pairs, each ranked best defense first."""
    boards: dict[tuple, Board] = {}
    submitted_none: dict[tuple, list[Row]] = {}
    implied_none: dict[tuple, Row] = {}   # from a defended entry's own attacked condition
    for source, entry in entries:
        record = entry["record"]
        spec = record["spec"]
        names = tuple(spec[part]["name"] for part in ("dataset", "protocol", "backbone", "attack"))
        key = names + (setting_hash(spec),)
        if key not in boards:
            success, quality = headline_metrics(record)
            hib = record["higher_is_better"]
            boards[key] = Board(*names, success, quality, hib[success], hib[quality],
                                budget=spec["protocol"]["budget"])
        board = boards[key]
        if spec["defense"]["name"] == NO_DEFENSE:
            submitted_none.setdefault(key, []).append(_row(board, entry, source, "attacked", "clean"))
            continue
        clean_defended = "clean+defense" if "clean+defense" in record["metrics"] else "clean"
        board.rows.append(_row(board, entry, source, "attacked+defense", clean_defended))
        implied = _row(board, entry, source, "attacked", "clean", defense=NO_DEFENSE)
        if key not in implied_none or len(implied.seeds) > len(implied_none[key].seeds):
            implied_none[key] = implied
    for key, board in boards.items():
        board.rows += submitted_none.get(key) or [implied_none[key]]
        board.rows.sort(key=lambda r: _rank_key(board, r))
        if sum(other[:-1] == key[:-1] and b.budget == board.budget for other, b in boards.items()) > 1:
            board.variant = key[-1]   # same names and budget, other settings: tell them apart
    return sorted(boards.values(), key=lambda b: (b.dataset, b.protocol, b.backbone, b.attack,
                                                  b.budget, b.variant))


def setting_hash(spec: dict) -> str:
    """Rows are comparable when the whole resolved protocol and the backbone's config match."""
    protocol = {k: v for k, v in spec["protocol"].items() if k != "paper"}
    text = json.dumps([protocol, spec["backbone"]["config"]], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:6]


def _row(board: Board, entry: dict, source: str, condition: str, clean_condition: str,
         defense: str | None = None) -> Row:
    record, submitter = entry["record"], entry["submitter"]
    metrics = record["metrics"]
    under, clean = metrics[condition], metrics[clean_condition]
    row = Row(defense or record["spec"]["defense"]["name"], submitter["name"], submitter["paper"],
              submitter["code"], record["spec"]["seeds"], Score.of(under.get(board.success_metric)),
              Score.of(under.get(board.quality_metric)), Score.of(clean.get(board.quality_metric)),
              source=source)
    if condition != "attacked":   # deltas against the same entry's undefended conditions
        row.success_delta = _delta(row.success, metrics["attacked"].get(board.success_metric))
        row.quality_delta = _delta(row.quality, metrics["attacked"].get(board.quality_metric))
        if clean_condition != "clean":
            row.clean_quality_delta = _delta(row.clean_quality, metrics["clean"].get(board.quality_metric))
    return row


def _delta(score: Score, reference: dict | None) -> float | None:
    if score.mean is None or reference is None or reference["mean"] is None:
        return None
    return score.mean - reference["mean"]


def _rank_key(board: Board, row: Row) -> tuple:
    """Lowest attack success first (for a lower-is-better metric), ties by higher quality."""
    def signed(value, higher_is_better):
        if value is None:
            return float("inf")
        return -value if higher_is_better else value

    return (signed(row.success.mean, board.success_higher_is_better),
            signed(row.quality.mean, board.quality_higher_is_better))


def entry_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The entry files among ``paths`` (folders: every ``*.json`` directly in them), sorted."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += sorted(p for p in path.glob("*.json") if p.is_file())
        elif path.exists():
            found.append(path)
        else:
            raise RecguardError(f"'{path}' does not exist")
    return found


def load_boards(folder: str | os.PathLike, host=None, dataset: str | None = None,
                backbone: str | None = None, attack: str | None = None,
                protocol: str | None = None) -> list[Board]:
    """Every valid entry of ``folder`` (an invalid one is an error naming it), filtered."""
    from recguard.leaderboard.entry import duplicate_problems, read_entry

    if not Path(folder).is_dir():
        raise RecguardError(f"no leaderboard folder '{folder}' here: the boards are the leaderboards/ "
                            f"folder of a recguard checkout; run there or pass --dir FOLDER")
    every = [(path, read_entry(path, host)) for path in entry_files([folder])]
    for path, problem in sorted(duplicate_problems(every).items()):
        raise RecguardError(f"{path}: {problem}")
    entries = []
    wanted = {"dataset": dataset, "backbone": backbone, "attack": attack, "protocol": protocol}
    for path, entry in every:
        spec = entry["record"]["spec"]
        if all(value is None or spec[part]["name"] == value for part, value in wanted.items()):
            entries.append((path.name, entry))
    return build_boards(entries)
