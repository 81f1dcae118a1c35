"""`recguard eval`: run one cell (every seed) and write its record."""

from __future__ import annotations

import sys

import click

from recguard.cli.leaderboard_cmd import (DEFAULT_FOLDER, add_entry, make_submitter,
                                          submitter_options)
from recguard.errors import RecguardError

OPT_HELP = "key=value, repeatable (see `recguard list`)"
MAX_SEED = 2 ** 32 - 1   # what every random generator recguard seeds (numpy, torch) accepts
MAX_SEEDS = 1000


def parse_seeds(text: str) -> tuple[int, ...]:
    """'0,1,2' or '0-4' (or a mix) -> a tuple of distinct non-negative ints, in order."""
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        lo, dash, hi = part.partition("-")
        try:
            first, last = (int(lo), int(hi)) if dash else (int(part), int(part))
        except ValueError:
            raise RecguardError(f"--seeds {text!r}: {part!r} is not an integer or a range a-b") from None
        if first < 0:
            raise RecguardError(f"--seeds {text!r}: seeds must be non-negative")
        if max(first, last) > MAX_SEED:
            raise RecguardError(f"--seeds {text!r}: a seed is at most {MAX_SEED}")
        if last - first + 1 + len(seeds) > MAX_SEEDS:
            raise RecguardError(f"--seeds {text!r}: more than {MAX_SEEDS} seeds")
        for seed in range(first, last + 1):
            if seed not in seeds:
                seeds.append(seed)
    if not seeds:
        raise RecguardError("--seeds is empty: give e.g. 0,1,2")
    return tuple(seeds)


REPLACE_HINT = ("remove it first, or add the new record with "
                "`recguard leaderboard add RECORD --replace`")


def _refuse_existing_entry(plan, who, folder) -> None:
    """`eval --leaderboard` would write over an entry: say so before the cell runs."""
    from recguard.pipeline import planned_spec
    from recguard.leaderboard.entry import find_planned_entry

    found = find_planned_entry(folder, plan.spec.dataset, planned_spec(plan), list(plan.spec.seeds),
                               who.name)
    if found:
        raise RecguardError(f"{found} already holds this cell's entry (the same seeds and "
                            f"submitter); {REPLACE_HINT}")


@click.command("eval")
@click.option("--dataset", default="ml-100k", show_default=True, help="dataset name (recguard list datasets)")
@click.option("--data-path", default=None, help="file or folder of the dataset")
@click.option("--dataset-opt", multiple=True, metavar="KEY=VALUE", help=OPT_HELP)
@click.option("--backbone", default=None,
              help="default: the attack's or defense's own (LLaRA for badrec / p-scanner), else mf")
@click.option("--backbone-opt", multiple=True, metavar="KEY=VALUE", help=OPT_HELP)
@click.option("--attack", default="average", show_default=True)
@click.option("--attack-opt", multiple=True, metavar="KEY=VALUE", help=OPT_HELP)
@click.option("--defense", default="none", show_default=True)
@click.option("--defense-opt", multiple=True, metavar="KEY=VALUE", help=OPT_HELP)
@click.option("--protocol", default=None, help="protocol preset; default: the defense's, else the backbone's")
@click.option("--protocol-opt", multiple=True, metavar="KEY=VALUE", help="override a protocol field")
@click.option("--budget", type=str, default=None, help="fake users / genuine users (protocol budget)")
@click.option("--metrics", default=None, help="comma-separated NAME@k list (protocol metrics)")
@click.option("--seeds", default=None, help="e.g. 0,1,2 or 0-4; default 0,1,2 (0 for LLM backbones)")
@click.option("--output", default="results", show_default=True, type=click.Path(file_okay=False),
              help="folder for the JSON record")
@click.option("--json", "as_json", is_flag=True, help="print the record as JSON on stdout (progress stays on stderr; -q for none)")
@click.option("--no-cache", is_flag=True, help="refit the undefended conditions")
@click.option("--quiet", "-q", is_flag=True, help="no progress on stderr")
@click.option("--leaderboard", "leaderboard_dir", is_flag=False, flag_value=DEFAULT_FOLDER, default=None,
              metavar="[DIR]", help=f"also add the result to the leaderboard (default folder: {DEFAULT_FOLDER})")
@submitter_options
def eval_command(dataset, data_path, dataset_opt, backbone, backbone_opt, attack, attack_opt,
                 defense, defense_opt, protocol, protocol_opt, budget, metrics, seeds, output,
                 as_json, no_cache, quiet, leaderboard_dir, submitter, paper, code, contact):
    """Evaluate one cell: clean, attacked and (with a defense) defended conditions, per seed."""
    from recguard.config import parse_options
    from recguard.launch import is_main_process
    from recguard.pipeline import run_cell
    from recguard.plan import CellSpec, make_plan
    from recguard.progress import progress_for
    from recguard.records import write_record

    from recguard.files import check_writable

    # a missing submitter or an unwritable folder is known before the run, not after it
    who = make_submitter(submitter, paper, code, contact) if leaderboard_dir else None
    check_writable(output, "--output")
    if leaderboard_dir:
        check_writable(leaderboard_dir, "--leaderboard")
    protocol_options = parse_options(protocol_opt, "protocol")
    if budget is not None:
        protocol_options["budget"] = budget
    if metrics is not None:
        protocol_options["metrics"] = metrics
    spec = CellSpec(
        dataset=dataset, data_path=data_path, dataset_options=parse_options(dataset_opt, "dataset"),
        backbone=backbone, backbone_options=parse_options(backbone_opt, "backbone"),
        attack=attack, attack_options=parse_options(attack_opt, "attack"),
        defense=defense, defense_options=parse_options(defense_opt, "defense"),
        protocol=protocol, protocol_options=protocol_options,
        seeds=parse_seeds(seeds) if seeds is not None else None,
    )
    plan = make_plan(spec)
    if who:
        _refuse_existing_entry(plan, who, leaderboard_dir)
    # under torchrun / accelerate launch every rank runs the cell; rank 0 alone reports it
    main = is_main_process()
    progress = progress_for(quiet or not main)   # --json: the record on stdout, progress on stderr
    record = run_cell(plan, progress, use_cache=not no_cache)
    if not main:
        return
    path = write_record(record, output)
    entry_path = add_entry([record], who, leaderboard_dir, how_to_replace=REPLACE_HINT) if who else None
    if as_json:
        sys.stdout.write(path.read_text())  # exactly what was written
        return
    from rich.console import Console

    from recguard.cli.render import render_record

    console = Console()
    render_record(record, console)
    # soft_wrap: a path is never broken across lines, whatever the width (piped output: 80)
    console.print(f"[dim]record: {path}[/]", soft_wrap=True)
    if entry_path:
        console.print(f"[dim]leaderboard entry: {entry_path}[/]", soft_wrap=True)
