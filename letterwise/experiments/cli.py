"""A declared experiment grid, queued and run through DVC in one command.

    python -m letterwise.experiments --list                  # the groups in experiments/grid.yaml
    python -m letterwise.experiments decoding prompting      # queue, run, wait, compare
    python -m letterwise.experiments --dry-run lora_rank     # print the dvc commands only
    python -m letterwise.experiments run seeds --on lightning --machine L4   # many machines

`run GROUP ... --on local|lightning` fans the group out, one machine per run, instead of the
local queue (letterwise.experiments.fanout).

Each run of a group becomes `dvc exp run --queue -n <group>-<run> -S key=value ...`; then
`dvc queue start -j N` runs them, the command waits for the queue to drain and prints
`dvc exp show` for the experiments it queued. Every run is validated against the params schema
(letterwise.params) before anything is queued: an unknown key or a bad value stops the command
with the group, the run and the key named, and nothing reaches the queue. Groups that need a
thinking mode are skipped, with the reason, on presets that have none.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys

from rich.console import Console

from letterwise.experiments import fanout
from letterwise.experiments.grid import (
    GridError,
    add_source_arguments,
    load_grid,
    plan,
    read_params,
    set_arguments,
)
from letterwise.experiments.queue import dvc, queue_command, wait_for_queue


def build_parser() -> argparse.ArgumentParser:
    """`python -m letterwise.experiments`: the local queue (`run` goes to the fan-out's own)."""
    parser = argparse.ArgumentParser(
        prog="python -m letterwise.experiments", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("groups", nargs="*", help="groups of the grid to run (default: all)")
    add_source_arguments(parser)
    parser.add_argument("--list", action="store_true", help="list the groups and their runs")
    parser.add_argument(
        "--dry-run", action="store_true", help="validate and print the dvc commands; run nothing"
    )
    parser.add_argument(
        "-j", "--jobs", type=int, default=1, help="parallel queue workers (default: %(default)s)"
    )
    parser.add_argument(
        "--no-wait", action="store_true", help="queue and start, then return without waiting"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["run"]:  # the fan-out over many machines has its own flags
        return fanout.main(argv[1:])
    args = build_parser().parse_args(argv)
    console = Console()
    grid = load_grid(args.grid)
    if args.list:
        for name, group in grid.groups.items():
            needs = f" [dim](needs {group.requires})[/dim]" if group.requires else ""
            console.print(f"[bold]{name}[/bold]{needs}: {group.about}")
            for run_name, changes in group.runs.items():
                # no markup: values such as [direct] are text, not rich style tags
                console.print(
                    f"  {name}-{run_name}: {shlex.join(set_arguments(changes))}",
                    markup=False,
                    highlight=False,
                )
        return 0
    if args.jobs < 1:
        raise GridError(f"--jobs must be at least 1 (got {args.jobs})")
    runs = plan(grid, read_params(args.params), args.groups or list(grid.groups))
    for run in runs:
        if run.skipped:
            console.print(f"[yellow]skip[/yellow] {run.name}: {run.skipped}")
    to_queue = [run for run in runs if not run.skipped]
    if not to_queue:
        console.print("nothing to queue")
        return 0
    if args.dry_run:
        # plain print: shell commands to copy, never wrapped or styled
        for run in to_queue:
            print(shlex.join(queue_command(run)))
        print(f"dvc queue start -j {args.jobs}")
        return 0
    for run in to_queue:
        dvc(queue_command(run))
        console.print(f"queued {run.name}")
    dvc(["dvc", "queue", "start", "-j", str(args.jobs)])
    if args.no_wait:
        console.print("started; follow with `dvc queue status` and `dvc exp show`")
        return 0
    status = wait_for_queue(console)
    failed = [line for line in status.splitlines() if " Failed " in line]
    console.print(f"ran {', '.join(run.name for run in to_queue)}")
    # the one-screen comparison: changed params, tuned accuracy and delta [CI] per instrument
    shown = subprocess.run([sys.executable, "-m", "letterwise.report", "--compare"], text=True)
    if failed:
        console.print("[red]failed:[/red]\n" + "\n".join(failed))
        console.print("see `dvc queue logs <name>`")
        return 1
    return shown.returncode
