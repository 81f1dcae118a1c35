"""Summary tables from records alone: per dataset, protocol and backbone, rows are defenses
and columns attack x budget, each the headline metric under attack (mean ± std over
seeds), after a first column of the accuracy without attack.

Records of one seed each (a sweep's) and of several (`recguard eval --seeds 0,1,2`) mix:
values are gathered per seed, a later record's seed replacing an earlier one's. The
undefended conditions every record carries give the ``none`` row.

A backbone, attack or defense run with several settings in one set of records (a spec's
option axis) is one table, column or row per setting, labelled by the options that
differ (`variant_labels`): ``rvd epochs=5 zero_ratio=1.0``.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field

from recguard.errors import RecguardError
from recguard.records import aggregate, fmt
from recguard.sweep.grid import COMPONENTS, check_keys, coord_text, matching

# condition -> (row: the defense or "none", whether the attack is in it)
ROWS = {"clean": ("none", False), "attacked": ("none", True),
        "clean+defense": (None, False), "attacked+defense": (None, True)}
NO_DEFENSE = "none"


@dataclass
class Table:
    dataset: str
    protocol: str
    backbone: str
    accuracy: str | None = None
    headline: str | None = None
    metrics: list = field(default_factory=list)   # the clean condition's, in record order
    # what only a defense under attack reports (Detect-AUC, Weight-fake, Score, Scan-Recall, ...)
    defense_metrics: list = field(default_factory=list)
    # (row, attack, budget, attacked) -> metric -> seed -> value
    values: dict = field(default_factory=dict)
    seeds: set = field(default_factory=set)

    def stat(self, row: str, attack: str, budget: float, attacked: bool, metric: str) -> dict | None:
        per_seed = self.values.get((row, attack, budget, attacked), {}).get(metric)
        if not per_seed:
            return None
        return aggregate([per_seed[s] for s in sorted(per_seed)])

    def accuracy_stat(self, row: str) -> dict | None:
        """The row's accuracy without attack: the same in every column (the clean fits do not
        see the attack), so the first column that has it."""
        for attack, budget in self.columns():
            stat = self.stat(row, attack, budget, False, self.accuracy)
            if stat:
                return stat
        return None

    def columns(self, order: list[tuple[str, float]] | None = None) -> list[tuple[str, float]]:
        found = sorted({(a, b) for (_, a, b, _) in self.values})
        return _ordered(found, order)

    def rows(self, order: list[str] | None = None) -> list[str]:
        found = sorted({r for (r, _, _, _) in self.values}, key=lambda r: (r != NO_DEFENSE, r))
        return _ordered(found, order)


def _ordered(found: list, order: list | None) -> list:
    """``found`` in ``order``'s order, what ``order`` lacks after it; a variant label (a name
    and its options) ranks with its name."""
    if not order:
        return found
    rank = {item: i for i, item in enumerate(order)}

    def place(item):
        base = (item[0].split(" ")[0], *item[1:]) if isinstance(item, tuple) else item.split(" ")[0]
        return rank.get(item, rank.get(base, len(rank))), found.index(item)

    return sorted(found, key=place)


def varying_options(configs: list[dict]) -> list[str]:
    """The keys, sorted, whose values are not the same in all of ``configs`` (a key one config
    lacks counts as None there)."""
    keys = sorted({k for c in configs for k in c})
    return [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1]


def variant_labels(records: list[dict], part: str, ignore: tuple[str, ...] = ()) -> list[str]:
    """Each record's ``part`` ("backbone", "attack", "defense") as its name, followed by the
    options in which it differs from other records of the same name (``key=value``, sorted
    by key, the ``ignore``d keys left out), so that settings of one component are not merged."""
    configs: dict[str, list[dict]] = {}
    for record in records:
        component = record["spec"][part]
        configs.setdefault(component["name"], []).append(component.get("config") or {})
    varying = {name: [k for k in varying_options(seen) if k not in ignore]
               for name, seen in configs.items()}
    labels = []
    for record in records:
        component = record["spec"][part]
        config = component.get("config") or {}
        options = " ".join(f"{k}={config.get(k)}" for k in varying[component["name"]])
        labels.append(f"{component['name']} {options}" if options else component["name"])
    return labels


# what the triggered requests of an LLM cell measure: read under attack, like the T-* metrics
TRIGGERED = ("A-Valid", "ASR")


def measures_the_attack(metric: str) -> bool:
    """A metric of the attack's effect (T-HR@50, ASR, A-Valid), not of the model's accuracy."""
    return metric.startswith("T-") or metric in TRIGGERED


def _default_metrics(record: dict, headline: str | None) -> tuple[str | None, str | None]:
    """(accuracy, headline): the first clean metric that does not measure the targets or
    the backdoor, and ``headline`` or the first target metric (T-*) or ASR under attack."""
    clean = list(record["metrics"].get("clean", {}))
    accuracy = next((m for m in clean if not measures_the_attack(m)), None)
    if headline is None:
        attacked = list(record["metrics"].get("attacked", {}))
        headline = next((m for m in attacked if m.startswith("T-") or m == "ASR"),
                        attacked[0] if attacked else None)
    return accuracy, headline


def summary_tables(records: list[dict], headline: str | None = None) -> list[Table]:
    """One `Table` per (dataset, protocol, backbone), in the order first met."""
    tables: dict[tuple[str, str, str], Table] = {}
    for key, group in _by_table(sorted(records, key=lambda r: r["created_at"])).items():
        table = tables[key] = Table(*key)
        labels = zip(variant_labels(group, "attack"), variant_labels(group, "defense"))
        for record, (attack, defense) in zip(group, labels):
            _add_record(table, record, attack, defense, headline)
    return list(tables.values())


def _by_table(records: list[dict], ignore: tuple[str, ...] = ()) -> dict[tuple[str, str, str], list[dict]]:
    """Records by (dataset, protocol, backbone label), in the order first met; a backbone's
    settings are told apart among the records of one dataset and protocol (but for the
    ``ignore``d options)."""
    def setting(record):
        return record["spec"]["dataset"]["name"], record["spec"]["protocol"]["name"]

    by_setting: dict[tuple[str, str], list[dict]] = {}
    for record in records:
        by_setting.setdefault(setting(record), []).append(record)
    backbone = {id(r): label for group in by_setting.values()
                for r, label in zip(group, variant_labels(group, "backbone", ignore))}
    out: dict[tuple[str, str, str], list[dict]] = {}
    for record in records:
        out.setdefault((*setting(record), backbone[id(record)]), []).append(record)
    return out


def _add_record(table: Table, record: dict, attack: str, defense: str, headline: str | None) -> None:
    """The record's conditions into ``table``: the undefended ones as the ``none`` row, the
    defended ones as ``defense``'s, in column ``attack`` at the record's budget."""
    spec = record["spec"]
    if table.headline is None:
        table.accuracy, table.headline = _default_metrics(record, headline)
        table.metrics = list(record["metrics"].get("clean", {}))
    table.defense_metrics += [m for m in record["metrics"].get("attacked+defense", {})
                              if m not in table.metrics and m not in table.defense_metrics]
    budget = float(spec["protocol"]["budget"])
    for condition in record["conditions"]:
        if condition not in ROWS:
            continue
        row, attacked = ROWS[condition]
        cell = table.values.setdefault((row or defense, attack, budget, attacked), {})
        for metric, values in per_seed(record, condition):
            cell.setdefault(metric, {}).update(values)
            table.seeds.update(values)


def per_seed(record: dict, condition: str):
    """(metric, {seed: value}) for each metric of one of ``record``'s conditions."""
    seeds = record["spec"]["seeds"]
    for metric, stat in record["metrics"].get(condition, {}).items():
        yield metric, dict(zip(seeds, stat["per_seed"]))


def _title(table: Table, several_datasets: bool) -> str:
    where = f" on {table.dataset}" if several_datasets else ""
    seeds = ",".join(map(str, sorted(table.seeds)))
    return (f"#### {table.backbone}{where}, protocol `{table.protocol}`, seeds {seeds}: "
            f"{table.accuracy} without attack, {table.headline} under attack")


def _column_name(attack: str, budget: float) -> str:
    return f"{attack} {budget:g}"


def to_markdown(tables: list[Table], rows: list[str] | None = None,
                columns: list[tuple[str, float]] | None = None) -> str:
    several = len({t.dataset for t in tables}) > 1
    out = []
    for table in tables:
        cols = table.columns(columns)
        lines = [_title(table, several), "",
                 "| defense | " + " | ".join([str(table.accuracy)] + [_column_name(*c) for c in cols]) + " |",
                 "|---" * (2 + len(cols)) + "|"]
        for row in table.rows(rows):
            cells = [fmt(table.accuracy_stat(row))]
            cells += [fmt(table.stat(row, a, b, True, table.headline), missing="–") for a, b in cols]
            lines.append("| " + " | ".join([row] + cells) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def to_markdown_full(tables: list[Table], rows: list[str] | None = None,
                     columns: list[tuple[str, float]] | None = None) -> str:
    """Every metric, a line per attack, budget and defense: the accuracy metrics without the
    attack, the attack's (T-*, and an LLM cell's A-Valid and ASR) under it, then what only a defense reports under attack
    (detection: Detect-AUC, Weight-fake / -genuine; LLM filters: Score, Scan-*)."""
    out = []
    for table in tables:
        accuracy = [m for m in table.metrics if not measures_the_attack(m)]
        targets = [m for m in table.metrics if measures_the_attack(m)] + table.defense_metrics
        lines = [f"#### {table.backbone}, protocol `{table.protocol}`: every metric (accuracy without "
                 f"attack, target and defense metrics under attack)", "",
                 "| attack | budget | defense | " + " | ".join(accuracy + targets) + " |",
                 "|---" * (3 + len(accuracy) + len(targets)) + "|"]
        for attack, budget in table.columns(columns):
            for row in table.rows(rows):
                if (row, attack, budget, True) not in table.values:
                    continue
                cells = [fmt(table.stat(row, attack, budget, False, m)) for m in accuracy]
                cells += [fmt(table.stat(row, attack, budget, True, m), missing="")
                          for m in targets]
                lines.append("| " + " | ".join([attack, f"{budget:g}", row] + cells) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


CSV_FIELDS = ("dataset", "protocol", "backbone", "defense", "attack", "budget", "condition", "metric",
              "mean", "std", "seeds")


def to_csv(tables: list[Table], rows: list[str] | None = None,
           columns: list[tuple[str, float]] | None = None) -> str:
    """One line per table cell: the accuracy without attack (attack and budget empty), then
    the headline metric under each attack and budget."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for table in tables:
        for row in table.rows(rows):
            accuracy = table.accuracy_stat(row)
            if accuracy:
                writer.writerow([table.dataset, table.protocol, table.backbone, row, "", "", "without attack",
                                 table.accuracy, accuracy["mean"], accuracy["std"], len(accuracy["per_seed"])])
            for attack, budget in table.columns(columns):
                stat = table.stat(row, attack, budget, True, table.headline)
                if stat:
                    writer.writerow([table.dataset, table.protocol, table.backbone, row, attack,
                                     f"{budget:g}", "under attack", table.headline, stat["mean"],
                                     stat["std"], len(stat["per_seed"])])
    return buffer.getvalue()


# ------------------------------------------------------------- selection and the by-option layout

def record_coords(record: dict) -> dict[str, str]:
    """What `--where` and `--by` can name in a record, as text (as a sweep's cells): dataset,
    backbone, protocol, attack, defense, budget, seed (a record of one seed) and every option
    of the components' configurations, by key (the first role's where two share a key)."""
    spec = record["spec"]
    coords = {"dataset": spec["dataset"]["name"], "protocol": spec["protocol"]["name"],
              "budget": coord_text(float(spec["protocol"]["budget"]))}
    coords.update({role: spec[role]["name"] for role in COMPONENTS})
    if len(spec["seeds"]) == 1:
        coords["seed"] = str(spec["seeds"][0])
    for role in COMPONENTS:
        for key, value in (spec[role].get("config") or {}).items():
            coords.setdefault(key, coord_text(value))
    return coords


def select_records(records: list[dict], where: dict[str, list[str]]) -> list[dict]:
    """The records that match ``where`` (`recguard.sweep.grid.matching`)."""
    keep = matching([record_coords(r) for r in records], where, "record")
    return [record for record, kept in zip(records, keep) if kept]


def to_markdown_by(records: list[dict], key: str, metrics: list[str] | None = None) -> str:
    """Every metric of every row, a group of columns per value of ``key`` (an option such as
    BadRec's ``position``, a defense's ``false_alarm``, or ``budget``): the layout of BadRec's
    Table 2. A table per dataset, protocol, backbone and attack setting other than ``key``;
    its rows are the model without the attack ("Benign"), under it (the attack's name) and
    behind each defense (its label, `variant_labels`, without ``key``), in the order first
    met; values are the mean ± std over seeds. ``metrics`` keeps only those columns, in
    that order; one that some records have and a table's do not reads '/' there."""
    coords = {id(r): record_coords(r) for r in records}
    check_keys(list(coords.values()), [key], "--by", "record")
    records = sorted((r for r in records if key in coords[id(r)]), key=lambda r: r["created_at"])
    attack = dict(zip(map(id, records), variant_labels(records, "attack", ignore=(key,))))
    defense = dict(zip(map(id, records), variant_labels(records, "defense", ignore=(key,))))
    tables: list[_ByTable] = []
    for (dataset, protocol, backbone), group in _by_table(records, ignore=(key,)).items():
        by_attack: dict[str, list[dict]] = {}
        for record in group:
            by_attack.setdefault(attack[id(record)], []).append(record)
        for label, members in by_attack.items():
            by = _ByTable(f"#### {backbone} · {label} on {dataset}, protocol `{protocol}`: every "
                          f"metric by {key}")
            for record in members:
                by.add(record, coords[id(record)][key], record["spec"]["attack"]["name"],
                       defense[id(record)])
            tables.append(by)
    found = list(dict.fromkeys(m for by in tables for m in by.metrics))
    if metrics and (unknown := [m for m in metrics if m not in found]):
        raise RecguardError(f"no record has the metric {', '.join(map(repr, unknown))}; "
                            f"they have {', '.join(found)}")
    return "\n\n".join(by.markdown(metrics) for by in tables) + "\n"


@dataclass
class _ByTable:
    title: str
    metrics: list = field(default_factory=list)   # in the order first met
    by_values: list = field(default_factory=list)
    # (row, value of the key) -> metric -> seed -> value
    values: dict = field(default_factory=dict)
    seeds: set = field(default_factory=set)

    def add(self, record: dict, by_value: str, attack: str, defense: str) -> None:
        if by_value not in self.by_values:
            self.by_values.append(by_value)
        for condition, row in (("clean", "Benign"), ("attacked", attack), ("attacked+defense", defense)):
            for metric, values in per_seed(record, condition):
                if metric not in self.metrics:
                    self.metrics.append(metric)
                self.values.setdefault((row, by_value), {}).setdefault(metric, {}).update(values)
                self.seeds.update(values)

    def markdown(self, metrics: list[str] | None = None) -> str:
        """The table, with ``metrics`` (default: all it has) as each value's columns; a metric
        no record of this table measured reads '/'."""
        metrics = metrics or self.metrics
        rows = list(dict.fromkeys(row for row, _ in self.values))
        header = [f"{metric} ({value})" for value in self.by_values for metric in metrics]
        lines = [f"{self.title}, seeds {','.join(map(str, sorted(self.seeds)))}", "",
                 "| row | " + " | ".join(header) + " |", "|---" * (1 + len(header)) + "|"]
        for row in rows:
            cells = []
            for value in self.by_values:
                measured = self.values.get((row, value), {})
                cells += [fmt(aggregate([m[s] for s in sorted(m)]) if (m := measured.get(metric)) else None,
                              missing="/") for metric in metrics]
            lines.append("| " + " | ".join([row] + cells) + " |")
        return "\n".join(lines)
