"""The ``recguard`` command line: a click group, one module per command group.

Library errors (`RecguardError`) become ``error: <message>`` on stderr and exit
status 2, never a traceback. Plugins add commands through ``register_commands``.
"""

from __future__ import annotations

import sys

import click

from recguard import __version__
from recguard.errors import RecguardError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="recguard")
def cli():
    """Evaluate recommender systems under poisoning and backdoor attacks, and defenses.

    \b
    recguard eval                       the default cell: MF on ML-100K, Average attack
    recguard eval --attack bandwagon    another attack (recguard list attacks)
    recguard list                       every registered component
    recguard show RECORD.json           a result record as tables
    recguard leaderboard show           the ranked leaderboard (docs/leaderboard.md)
    """


def _add_commands() -> None:
    from recguard.cli import eval_cmd, leaderboard_cmd, list_cmd, plugin_cmd, show_cmd

    cli.add_command(eval_cmd.eval_command)
    cli.add_command(list_cmd.list_command)
    cli.add_command(list_cmd.plugins_command)
    cli.add_command(show_cmd.show_command)
    cli.add_command(plugin_cmd.plugin_group)
    cli.add_command(leaderboard_cmd.leaderboard_group)
    _add_plugin_commands()


def _add_plugin_commands() -> None:
    from recguard.plugins import PluginFailure, get_host

    host = get_host()
    for impl in host.pm.hook.register_commands.get_hookimpls():
        try:
            impl.function(cli=cli)
        except Exception as exc:  # a broken plugin must not take the CLI down
            name = host.pm.get_name(impl.plugin) or "?"
            host.failed.append(PluginFailure(name, "?", f"register_commands: {type(exc).__name__}: {exc}"))


def fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    try:
        _add_commands()
        cli.main(args=argv, prog_name="recguard", standalone_mode=False)
    except RecguardError as exc:
        fail(str(exc))
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
