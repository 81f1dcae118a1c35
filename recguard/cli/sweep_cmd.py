"""`recguard sweep SPEC`: a grid of cells from a spec file, on local processes or Ray;
`recguard table RECORDS...`: the summary table from records alone (docs/sweeps.md)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from recguard.cli.leaderboard_cmd import add_entry, make_submitter, submitter_options
from recguard.errors import RecguardError

FORMATS = click.Choice(["md", "csv"])


def _render(records: list[dict], fmt: str, headline: str | None, rows=None, columns=None,
            full: bool = False) -> str:
    from recguard.sweep.table import summary_tables, to_csv, to_markdown, to_markdown_full

    if not records:
        raise RecguardError("no records to tabulate")
    tables = summary_tables(records, headline)
    text = (to_csv if fmt == "csv" else to_markdown)(tables, rows, columns)
    if full and fmt == "md":
        text += "\n" + to_markdown_full(tables, rows, columns)
    return text


def _spec_order(cells) -> tuple[list[str], list[tuple[str, float]]]:
    """The rows (defenses) and columns (attack, budget) in the order the spec names them."""
    rows = list(dict.fromkeys(["none"] + [c.plan.defense.name for c in cells]))
    columns = list(dict.fromkeys((c.plan.attack.name, float(c.plan.protocol.budget)) for c in cells))
    return rows, columns


def _dry_run(cells, paths, slots: int) -> None:
    from recguard.sweep.run import estimate_seconds

    done = sum(p.exists() for p in paths)
    for cell, path in zip(cells, paths):
        click.echo(f"{'done  ' if path.exists() else 'to run'}  [{cell.group}] {cell.label}  {path.name}")
    seconds = estimate_seconds(cells, paths, slots)
    estimate = (f"about {seconds / 60:.1f} min with {slots} at once (from the finished cells' times)"
                if seconds is not None else "no estimate yet (no cell has finished)")
    click.echo(f"{len(cells)} cells: {done} done, {len(cells) - done} to run; {estimate}")


def _leaderboard(records: list[dict], who, folders: tuple[str, ...]) -> list[Path]:
    """One entry per cell of the grid: its seeds' records aggregated. An entry already in a
    folder with the same records stays (a re-run of a finished sweep adds nothing); one
    whose records changed is refused, as `leaderboard add` refuses it."""
    by_cell: dict[str, list[dict]] = {}
    for record in records:
        spec = dict(record["spec"], seeds=None, targets=None)
        by_cell.setdefault(repr(sorted((k, repr(v)) for k, v in spec.items())), []).append(record)
    return [add_entry(group, who, folder, keep_unchanged=True,
                      how_to_replace="`recguard leaderboard add RECORDS --replace` overwrites it")
            for folder in folders for group in by_cell.values()]


@click.command("sweep")
@click.argument("spec", type=click.Path(dir_okay=True))
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="cells at once (local: processes, default 1; ray: CPUs of a new local cluster)")
@click.option("--address", default=None, help="ray: the cluster (auto = the one this node is in); "
                                               "none: start a local one")
@click.option("--output", default=None, type=click.Path(file_okay=False),
              help="folder of the records [default: results/sweeps/<spec name>]")
@click.option("--dry-run", is_flag=True, help="list the cells, how many are done, and an estimate")
@click.option("--group", "groups", multiple=True, metavar="NAME",
              help="run only this group of the spec (repeatable)")
@click.option("--where", "where", multiple=True, metavar="KEY=V[,V...]",
              help="run only the cells with one of these values: an axis (backbone, attack, "
                   "defense, budget, seed, ...) or a component option (trigger_level=char); "
                   "repeatable, all must hold")
@click.option("--skip-incompatible", is_flag=True, help="skip impossible cells (else refuse the spec)")
@click.option("--table", "table_only", is_flag=True, help="only print the summary table of the records")
@click.option("--full", is_flag=True, help="with the summary table, every metric per attack, budget "
                                           "and defense (Markdown)")
@click.option("--format", "fmt", type=FORMATS, default="md", show_default=True, help="summary table format")
@click.option("--quiet", "-q", is_flag=True, help="no progress on stderr")
@click.option("--leaderboard", "leaderboard_dirs", multiple=True, metavar="DIR",
              help="also add each cell's seeds as an entry in DIR (repeatable)")
@submitter_options
def sweep_command(spec, executor, jobs, address, output, dry_run, groups, where, skip_incompatible,
                  table_only, full, fmt, quiet, leaderboard_dirs, submitter, paper, code, contact):
    """Run a grid of cells from a TOML spec; finished cells are skipped, so a re-run resumes."""
    from recguard.files import check_writable
    from recguard.sweep import load_sweep
    from recguard.sweep.run import cell_paths

    who = make_submitter(submitter, paper, code, contact) if leaderboard_dirs else None
    sweep, cells, refused = load_sweep(spec, skip_incompatible, groups, _where(where))
    for cell in refused:
        click.echo(f"skipped (impossible): {sweep.path}:{cell}", err=True)
    output = Path(output or Path("results") / "sweeps" / Path(spec).stem)
    paths = cell_paths(cells, output)
    rows, columns = _spec_order(cells)
    headline = next((g.headline for g in sweep.groups if g.headline), sweep.headline)
    if dry_run:
        slots = jobs or 1
        _dry_run(cells, paths, slots)
        return
    if table_only:
        records = [_read(p) for p in paths if p.exists()]
        click.echo(_render(records, fmt, headline, rows, columns, full), nl=False)
        return
    check_writable(output, "--output")
    for folder in leaderboard_dirs:
        check_writable(folder, "--leaderboard")
    result = _run(cells, paths, output, executor, jobs, address, quiet)
    records = result.records()
    if records:
        click.echo(_render(records, fmt, headline, rows, columns), nl=False)
    if who and records:
        for path in _leaderboard(records, who, leaderboard_dirs):
            click.echo(f"leaderboard entry: {path}", err=True)
    click.echo(f"{len(cells)} cells: {result.skipped} already done, {result.ran} run, "
               f"{len(result.failures)} failed; records in {output}", err=True)
    if result.failures:
        for cell, error in result.failures:
            click.echo(f"failed: [{cell.group}] {cell.label}: {error}", err=True)
        sys.exit(1)


def _where(pairs: tuple[str, ...]) -> dict[str, list[str]]:
    """``("defense=strip,rd", "seed=0")`` -> ``{"defense": ["strip", "rd"], "seed": ["0"]}``."""
    out: dict[str, list[str]] = {}
    for pair in pairs:
        key, sep, values = pair.partition("=")
        listed = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key.strip() or not listed:
            raise RecguardError(f"--where {pair!r} is not of the form KEY=VALUE[,VALUE...]")
        out.setdefault(key.strip(), []).extend(listed)
    return out


def _read(path: Path) -> dict:
    from recguard.records import read_record

    return read_record(path)


def _run(cells, paths, output, executor_name, jobs, address, quiet):
    from recguard.sweep.executors import make_executor
    from recguard.sweep.progress import sweep_progress_for
    from recguard.sweep.run import run_sweep

    executor = make_executor(executor_name, jobs, address)
    progress = sweep_progress_for(quiet)
    previous = signal.signal(signal.SIGTERM, _interrupt)   # `kill PID` stops it as Ctrl-C does
    try:
        return run_sweep(cells, output, executor, progress, paths)
    except KeyboardInterrupt:
        done = sum(p.exists() for p in paths)
        click.echo(f"interrupted: {done} of {len(cells)} cells have their record in {output}; "
                   f"run the same command again to resume", err=True)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


@click.command("table")
@click.argument("records", nargs=-1, required=True, type=click.Path())
@click.option("--metric", default=None, help="the headline metric under attack [default: the first "
                                             "target metric (T-*), or ASR]")
@click.option("--format", "fmt", type=FORMATS, default="md", show_default=True)
@click.option("--full", is_flag=True, help="also every metric per attack, budget and defense (Markdown)")
@click.option("--where", "where", multiple=True, metavar="KEY=V[,V...]",
              help="only the records with one of these values: dataset, backbone, protocol, "
                   "attack, defense, budget, seed or a component option (trigger_level=word); "
                   "repeatable, all must hold")
@click.option("--by", "by", default=None, metavar="KEY",
              help="instead, every metric of every row, a group of columns per value of KEY, "
                   "e.g. position (BadRec's Table 2 layout; Markdown)")
@click.option("--metrics", "metrics", default=None, metavar="M1,M2,...",
              help="with --by, only these metrics, in this order (e.g. ASR,H@1,Scan-Recall)")
@click.option("--output", "out", default=None, type=click.Path(dir_okay=False),
              help="write the table to this file (default: stdout)")
def table_command(records, metric, fmt, full, where, by, metrics, out):
    """The summary table of result records (files, or folders of them): rows are defenses,
    columns attack x budget, mean ± std over seeds."""
    from recguard.files import atomic_write_text
    from recguard.sweep.table import select_records, to_markdown_by

    if by and (fmt == "csv" or full):
        raise RecguardError("--by draws its own Markdown table: leave out --format csv and --full")
    if metrics and not by:
        raise RecguardError("--metrics picks the columns of --by: give --by KEY too")
    paths: list[Path] = []
    for given in map(Path, records):
        if given.is_dir():
            found = sorted(given.rglob("*.json"))
            if not found:
                raise RecguardError(f"'{given}' holds no record (*.json)")
            paths += found
        else:
            paths.append(given)
    chosen = select_records([_read(p) for p in paths], _where(where))
    if not chosen:
        raise RecguardError("no record matches the --where conditions")
    chosen_metrics = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    text = to_markdown_by(chosen, by, chosen_metrics) if by else _render(chosen, fmt, metric, full=full)
    if out:
        atomic_write_text(out, text)
    else:
        click.echo(text, nl=False)
