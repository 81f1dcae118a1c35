"""Terminal rendering of result records."""

from __future__ import annotations

from recguard.protocols import RANKING, task_kind_of
from recguard.records import UNDEFINED, fmt, is_undefined  # the benchmarks import fmt from here too

UNDEFINED_NOTE = (f"/: not measured for this row; {UNDEFINED}: measured, but undefined on every "
                  "seed (ASR of a yes/no row: no benign request was answered No, so no answer "
                  "could turn; Score: the undefended row's ASR is undefined)")


def render_record(record: dict, console) -> None:
    from rich.markup import escape
    from rich.table import Table

    from recguard.leaderboard.board import plain

    spec = record["spec"]
    protocol = spec["protocol"]
    # a record may come from anyone: its names are shown as text, never as markup or escapes
    title = escape(plain(f"{spec['backbone']['name']} on {spec['dataset']['name']} · attack "
                         f"{spec['attack']['name']} · defense {spec['defense']['name']} · protocol "
                         f"{protocol['name']}"))
    counts = record["counts"]
    caption = (f"{len(spec['seeds'])} seed(s) {spec['seeds']}; budget {protocol['budget']:g} "
               f"({counts['fake_users']} fake users, {counts['filler_size']} fillers); "
               f"{counts['targets']} {protocol['target_rule']} targets; "
               f"{record['timings']['total_seconds']:.1f} s")
    llm = task_kind_of(protocol) != RANKING
    if llm:
        caption = (f"{len(spec['seeds'])} seed(s) {spec['seeds']}; poisoning rate {protocol['budget']:g} "
                   f"({counts['fake_users']} poisoned among {counts['train_interactions']} training "
                   f"samples); {record['timings']['total_seconds']:.1f} s")
    console.print(f"[bold]{title}[/]")
    console.print(f"[dim]{caption}[/]")
    if llm:
        console.print(_llm_rows(record))
        if _has_undefined(record):
            console.print(f"[dim]{UNDEFINED_NOTE}[/]")
        return
    table = Table()
    table.add_column("metric")
    for condition in record["conditions"]:
        table.add_column(condition, justify="right")
    names: list[str] = []
    for condition in record["conditions"]:
        names += [n for n in record["metrics"][condition] if n not in names]
    for name in names:
        arrow = "↑" if record["higher_is_better"].get(name, True) else "↓"
        row = [f"{name} {arrow}"]
        for condition in record["conditions"]:
            stat = record["metrics"][condition].get(name)
            row.append(fmt(stat) if stat else "")
        table.add_row(*row)
    console.print(table)


def _llm_rows(record: dict):
    """LLM cells as the paper's Table 2: one row per condition (Benign, BadRec, the defense)."""
    from rich.table import Table

    from recguard.pipeline.conditions import ROW_NAMES

    defense = record["spec"]["defense"]["name"]
    names: list[str] = []
    for condition in record["conditions"]:
        names += [n for n in record["metrics"][condition] if n not in names]
    table = Table()
    table.add_column("row")
    for name in names:
        arrow = "↑" if record["higher_is_better"].get(name, True) else "↓"
        table.add_column(f"{name} {arrow}", justify="right")
    for condition in record["conditions"]:
        label = ROW_NAMES.get(condition, f"{defense} ({condition})" if condition == "clean+defense" else defense)
        table.add_row(label, *(fmt(record["metrics"][condition].get(n), missing="/") for n in names))
    return table


def _has_undefined(record: dict) -> bool:
    return any(is_undefined(stat)
               for condition in record["conditions"]
               for stat in record["metrics"][condition].values())
