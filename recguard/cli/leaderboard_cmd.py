"""`recguard leaderboard add | show | render | validate | verify`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from recguard.errors import RecguardError

DEFAULT_FOLDER = "leaderboards"


def submitter_options(command):
    """--submitter / --paper / --code / --contact, shared by `leaderboard add` and `eval`."""
    for option in reversed([
        click.option("--submitter", default=None, help="your name or team (shown on the board)"),
        click.option("--paper", default=None, help="the paper the method is from, or 'none'"),
        click.option("--code", default=None, help="an http(s) link to the code that produced it"),
        click.option("--contact", default="", help="optional: an e-mail or handle"),
    ]):
        command = option(command)
    return command


def make_submitter(submitter, paper, code, contact):
    from recguard.leaderboard.entry import Submitter

    missing = [flag for flag, value in (("--submitter", submitter), ("--paper", paper),
                                        ("--code", code)) if not value]
    if missing:
        raise RecguardError(f"a leaderboard entry needs {', '.join(missing)} "
                            f"(who submits it, the paper, a link to the code)")
    return Submitter(submitter, paper, code, contact).check()


def add_entry(records: list[dict], submitter, folder: str, replace: bool = False,
              keep_unchanged: bool = False, **how):
    """Build, validate against the installed plugins and write one entry; returns its path.

    ``keep_unchanged``: where the folder already holds this entry with the same record
    (a re-run of a finished sweep), leave it as it is instead of refusing."""
    from recguard.leaderboard.entry import build_entry, entry_id, validate_entry, write_entry
    from recguard.plugins import get_host

    entry = build_entry(records, submitter)
    problems = validate_entry(entry, get_host())
    if problems:
        raise RecguardError(f"not added: {problems[0]}")
    existing = Path(folder) / f"{entry_id(entry)}.json"
    if keep_unchanged and not replace and _holds(existing, entry):
        return existing
    _refuse_a_copy(entry, folder)
    return write_entry(entry, folder, replace, **how)


def _holds(path: Path, entry: dict) -> bool:
    """Whether the entry file at ``path`` has ``entry``'s submitter and record."""
    from recguard.leaderboard.entry import load_and_check

    if not path.is_file():
        return False
    old, problems = load_and_check(path)
    same_json = json.loads(json.dumps(entry))      # tuples as lists, as the file has them
    return not problems and all(old.get(k) == same_json[k] for k in ("submitter", "record"))


def _refuse_a_copy(entry: dict, folder: str) -> None:
    """An entry whose numbers another file of ``folder`` already holds (under another name)."""
    from pathlib import Path

    from recguard.leaderboard.board import entry_files
    from recguard.leaderboard.entry import duplicate_problems, entry_id, load_and_check

    if not Path(folder).is_dir():
        return
    mine = Path(folder) / f"{entry_id(entry)}.json"
    others = [(p, e) for p in entry_files([folder]) if p != mine
              for e, problems in [load_and_check(p)] if not problems]
    # "~" sorts after every ISO time: the new entry is the later one, the copy
    problem = duplicate_problems(others + [(mine, dict(entry, submitted_at="~"))]).get(mine)
    if problem:
        raise RecguardError(f"not added: {problem}")


@click.group("leaderboard")
def leaderboard_group():
    """Leaderboard entries: add, show, render, validate and verify (docs/leaderboard.md)."""


@leaderboard_group.command("add")
@click.argument("records", nargs=-1, required=True)
@submitter_options
@click.option("--dir", "folder", default=DEFAULT_FOLDER, show_default=True, help="the leaderboard folder")
@click.option("--replace", is_flag=True, help="overwrite an entry of the same cell, seeds and submitter")
def add_command(records, submitter, paper, code, contact, folder, replace):
    """Aggregate result records of one cell (any seeds) into an entry and write it."""
    from recguard.files import check_writable
    from recguard.records import read_record

    who = make_submitter(submitter, paper, code, contact)
    check_writable(folder, "--dir")
    path = add_entry([read_record(p) for p in records], who, folder, replace)
    click.echo(f"added {path}")


@leaderboard_group.command("show")
@click.option("--dir", "folder", default=DEFAULT_FOLDER, show_default=True)
@click.option("--dataset", default=None)
@click.option("--backbone", default=None)
@click.option("--attack", default=None)
@click.option("--protocol", default=None)
def show_command(folder, dataset, backbone, attack, protocol):
    """Ranked tables, one per dataset, protocol, backbone and attack."""
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from recguard.leaderboard.board import NO_DEFENSE, load_boards
    from recguard.leaderboard.render import LEGEND, cells, columns
    from recguard.plugins import get_host

    boards = load_boards(folder, get_host(), dataset=dataset, backbone=backbone, attack=attack,
                         protocol=protocol)
    console = Console()
    if not boards:
        console.print(f"no entries in {folder} match")
        return
    compact = console.width < 120   # means only, so the table fits an 80-column terminal
    for board in boards:
        table = Table(title=escape(board.title), title_justify="left", title_style="bold",
                      box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
        for i, column in enumerate(columns(board)):
            table.add_column(escape(column), justify="left" if i in (1, 9) else "right", no_wrap=i != 9)
        for rank, row in enumerate(board.rows, 1):
            text = [escape(t) for t in cells(rank, row, with_std=not compact)]
            table.add_row(*text, style="red" if row.defense == NO_DEFENSE else None)
        console.print(table)
    console.print(f"[dim]{LEGEND}" + (" (a wider terminal shows the std)" if compact else "") + "[/]")


@leaderboard_group.command("render")
@click.option("--dir", "folder", default=DEFAULT_FOLDER, show_default=True)
@click.option("--readme", default=None, type=click.Path(dir_okay=False),
              help="also replace the tables between the leaderboard markers of this Markdown file")
def render_command(folder, readme):
    """Write FOLDER/LEADERBOARD.md and FOLDER/index.html (a plot per board)."""
    import os
    from pathlib import Path

    from recguard.files import atomic_write_text, check_writable
    from recguard.leaderboard.board import load_boards
    from recguard.leaderboard.render import markdown, rendered_files, splice_markdown
    from recguard.plugins import get_host

    check_writable(folder, "--dir")
    if readme:
        check_writable(readme, "--readme", folder=False)
    boards = load_boards(folder, get_host())
    # in-repository code links are relative to the repository root: the folder's parent
    root = os.path.relpath(Path(folder).resolve().parent, Path(folder).resolve()) + "/"
    written = [atomic_write_text(Path(folder) / name, text)
               for name, text in rendered_files(boards, root).items()]
    if readme:
        path = Path(readme)
        if not path.exists():
            raise RecguardError(f"--readme {readme}: no such file")
        readme_root = os.path.relpath(Path(folder).resolve().parent, path.resolve().parent) + "/"
        tables = markdown(boards, "" if readme_root == "./" else readme_root)
        written.append(atomic_write_text(path, splice_markdown(path.read_text(), tables)))
    rows = sum(len(b.rows) for b in boards)
    click.echo(f"{len(boards)} board(s), {rows} row(s): " + ", ".join(map(str, written)))


@leaderboard_group.command("validate")
@click.argument("files", nargs=-1)
@click.option("--dir", "folder", default=DEFAULT_FOLDER, show_default=True,
              help="validate every entry here when no FILES are given")
def validate_command(files, folder):
    """Check entries: schema, internal consistency, provenance, known components."""
    from recguard.leaderboard.board import entry_files
    from recguard.leaderboard.entry import duplicate_problems, load_and_check
    from recguard.plugins import get_host

    paths = entry_files(files or [folder])
    host = get_host()
    checked = {path: load_and_check(path, host) for path in paths}
    copies = duplicate_problems([(path, entry) for path, (entry, problems) in checked.items()
                                 if not problems])
    failed = 0
    for path in paths:
        problems = checked[path][1] + ([copies[path]] if path in copies else [])
        if problems:
            failed += 1
            for problem in problems:
                click.echo(f"{path}: {problem}", err=True)
    click.echo(f"{len(paths) - failed} of {len(paths)} entries valid")
    if failed:
        sys.exit(1)


@leaderboard_group.command("verify")
@click.argument("entry")
@click.option("--quick", "quick_seeds", type=int, default=None, metavar="N",
              help="re-run only the first N seeds (default: every seed)")
@click.option("--tolerance", type=float, default=None,
              help="largest accepted absolute difference per value (default 0.001)")
@click.option("--quiet", "-q", is_flag=True, help="no progress on stderr")
def verify_command(entry, quick_seeds, tolerance, quiet):
    """Re-run an entry's cell (no caches) and say whether it reproduces."""
    from rich.console import Console
    from rich.table import Table

    from recguard.leaderboard.entry import read_entry
    from recguard.leaderboard.verify import DEFAULT_TOLERANCE, verify
    from recguard.plugins import get_host
    from recguard.progress import progress_for

    tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
    claimed = read_entry(entry, get_host())
    verdict, _ = verify(claimed, quick_seeds, tolerance, progress_for(quiet))
    console = Console()
    shown = verdict.mismatches or verdict.compared
    table = Table(title="mismatches" if verdict.mismatches else "re-run", title_justify="left")
    for column in ("condition", "metric", "seed", "claimed", "re-run", "|diff|"):
        table.add_column(column, justify="left" if column in ("condition", "metric") else "right")
    for d in shown:
        table.add_row(d.condition, d.metric, str(d.seed), _num(d.claimed), _num(d.rerun), f"{d.gap:.2g}")
    console.print(table)
    for problem in verdict.problems:
        console.print(f"[red]{problem}[/]")
    what = f"seeds {verdict.seeds} of {claimed['record']['spec']['seeds']}"
    if verdict.reproduced:
        console.print(f"[green]reproduced[/]: {len(verdict.compared)} values on {what} within "
                      f"{tolerance:g} (largest difference {verdict.max_gap:.2g})")
        return
    console.print(f"[red]not reproduced[/]: {len(verdict.mismatches)} of {len(verdict.compared)} "
                  f"values on {what} differ by more than {tolerance:g}"
                  + (f"; {len(verdict.problems)} problem(s) above" if verdict.problems else ""))
    sys.exit(1)


def _num(value: float | None) -> str:
    return "null" if value is None else f"{value:.6f}"
