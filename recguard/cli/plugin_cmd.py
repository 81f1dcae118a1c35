"""`recguard plugin new`: scaffold a plugin package (recguard.scaffold)."""

from __future__ import annotations

import click

from recguard.scaffold import KINDS, PluginNames, new_plugin  # light: the host loads on use


@click.group("plugin")
def plugin_group():
    """Write your own plugin: `recguard plugin new NAME --kind KIND`."""


@plugin_group.command("new")
@click.argument("name")
@click.option("--kind", required=True, type=click.Choice(list(KINDS)), help="the component the plugin adds")
@click.option("--dir", "parent", default=".", show_default=True, type=click.Path(file_okay=False),
              help="the folder in which recguard-NAME/ is created")
def new_command(name: str, kind: str, parent: str):
    """Scaffold the plugin package recguard-NAME/ with one working example.

    \b
    recguard plugin new pop-filler --kind attack
    pip install -e recguard-pop-filler
    recguard eval --attack pop-filler --seeds 0
    """
    folder = new_plugin(name, kind, parent)
    names = PluginNames.of(name, kind)
    click.echo(f"created {folder}: the {kind} {name!r} ({names.module}.{names.cls})")
    for path in sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file()):
        click.echo(f"  {path}")
    click.echo("next:")
    click.echo(f"  pip install -e {folder}")
    click.echo(f"  recguard list {kind}s")
    click.echo(f"  {KINDS[kind].run.format(name=name)}")
    click.echo(f"  cd {folder} && python -m pytest")
