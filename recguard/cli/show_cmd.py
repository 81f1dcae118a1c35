"""`recguard show RECORD`: a record as tables."""

from __future__ import annotations

import click


@click.command("show")
@click.argument("records", nargs=-1, required=True)
def show_command(records):
    """Render result records (JSON files written by `recguard eval`)."""
    from rich.console import Console

    from recguard.cli.render import render_record
    from recguard.records import read_record

    console = Console()
    for path in records:
        render_record(read_record(path), console)
