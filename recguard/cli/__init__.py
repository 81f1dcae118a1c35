"""The ``recguard`` command line: a click group, one module per command group.

Library errors (`RecguardError`) become ``error: <message>`` on stderr and exit
status 2, never a traceback; any other exception is one ``internal error`` line
(exit 1) that says how to see the traceback: ``recguard --debug ...``. Library
warnings (`RecguardWarning`) become ``warning: <message>`` lines. Ctrl-C exits
130. Plugins add commands through ``register_commands``.
"""

from __future__ import annotations

import sys
import warnings

import click

from recguard import __version__
from recguard.errors import RecguardError, show_warning


DEBUG_FLAG = "--debug"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="recguard")
@click.option(DEBUG_FLAG, is_flag=True, help="show the traceback of an unexpected error")
def cli(debug):
    """Evaluate recommender systems under poisoning and backdoor attacks, and defenses.

    \b
    recguard eval                       the default cell: MF on ML-100K, Average attack
    recguard eval --attack bandwagon    another attack (recguard list attacks)
    recguard eval --attack badrec --defense p-scanner
                                        BadRec's backdoor in LLaRA (an LLM recommender)
                                        and P-Scanner against it; about 18-21 minutes
                                        on 2 CPU cores (README, "The main cell")
    recguard list                       every registered component
    recguard show RECORD.json           a result record as tables
    recguard sweep SPEC.toml            a grid of cells (docs/sweeps.md); a re-run resumes
    recguard table DIR                  the summary table of the records in DIR
    recguard leaderboard show           the ranked leaderboard (docs/leaderboard.md)
    """


def _add_commands() -> None:
    from recguard.cli import eval_cmd, leaderboard_cmd, list_cmd, plugin_cmd, show_cmd, sweep_cmd

    cli.add_command(eval_cmd.eval_command)
    cli.add_command(list_cmd.list_command)
    cli.add_command(list_cmd.plugins_command)
    cli.add_command(show_cmd.show_command)
    cli.add_command(sweep_cmd.sweep_command)
    cli.add_command(sweep_cmd.table_command)
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


def fail(message: str, status: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(status)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    warnings.showwarning = show_warning
    try:
        _add_commands()
        # not cli.main(): it turns Ctrl-C into Abort (exit 1) after printing a blank line
        with cli.make_context("recguard", list(args)) as ctx:   # click consumes its list
            cli.invoke(ctx)
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
    except BrokenPipeError:
        sys.exit(1)   # the reader went away (`recguard ... | head`)
    except Exception as exc:
        if _wants_debug(args):
            raise
        what = str(exc).splitlines()[0] if str(exc) else ""
        fail(f"internal error: {type(exc).__name__}{': ' + what if what else ''} "
             f"(rerun as `recguard {DEBUG_FLAG} ...` for the traceback)", status=1)


def _wants_debug(args: list[str]) -> bool:
    """Whether --debug comes before the subcommand (read here: the failure may precede parsing)."""
    for arg in args:
        if arg == DEBUG_FLAG:
            return True
        if not arg.startswith("-"):
            return False
    return False
