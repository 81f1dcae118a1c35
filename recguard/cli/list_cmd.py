"""`recguard list` and `recguard plugins`."""

from __future__ import annotations

import click

KINDS = ("backbones", "attacks", "defenses", "metrics", "datasets", "protocols")


@click.command("list")
@click.argument("kind", required=False, type=click.Choice(KINDS))
def list_command(kind: str | None):
    """List registered components: name, plugin, version, what it supports."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from recguard.plugins import get_host

    host = get_host()
    console = Console()
    for k in ([kind] if kind else KINDS):
        table = Table(title=k, title_justify="left", show_edge=False)
        for column in ("name", "plugin", "version", "supports"):
            table.add_column(column, overflow="fold")
        for entry in host.registry(k[:-1]).listed():   # from the plugin index: nothing imported
            table.add_row(entry.name, entry.provenance.distribution, entry.provenance.version,
                          escape(entry.description))
        console.print(table)
        console.print()
    if host.failed:
        console.print(f"[yellow]{len(host.failed)} plugin(s) failed to load: recguard plugins[/]")


@click.command("plugins")
def plugins_command():
    """Loaded and failed plugins."""
    from rich.console import Console
    from rich.table import Table

    from rich.markup import escape

    from recguard.plugins import PLUGINS_ENV, get_host

    host = get_host()
    console = Console()
    table = Table(title="loaded plugins", title_justify="left", show_edge=False)
    for column in ("plugin", "distribution", "version", "components"):
        table.add_column(column)
    for info in host.loaded:
        parts = [f"{kind}: {', '.join(names)}" for kind, names in sorted(info.components.items())]
        table.add_row(info.name, info.provenance.distribution, info.provenance.version,
                      "; ".join(parts) or "-")
    console.print(table)
    if host.failed:
        failed = Table(title="failed plugins", title_justify="left", show_edge=False)
        for column in ("plugin", "distribution", "error"):
            failed.add_column(column, overflow="fold")
        for failure in host.failed:
            failed.add_row(failure.name, failure.distribution, escape(failure.error))
        console.print()
        console.print(failed)
    console.print(f"\n[dim]{PLUGINS_ENV}=name,name limits which plugins load[/]")
