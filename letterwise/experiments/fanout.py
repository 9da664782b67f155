"""Fan a group of the experiment grid out over many machines, one job per cell, and gather the
results through the git remote and the DVC remote.

    python -m letterwise.experiments run seeds --on lightning --machine L4 --dry-run
    python -m letterwise.experiments run seeds --on lightning --machine L4 --max-parallel 3
    python -m letterwise.experiments run seeds --on local --max-parallel 2

Every cell (one run of a group) runs the same shell script wherever it runs: check out the base
commit (this checkout's HEAD, which must already be on the git remote, its data on the DVC
remote), `dvc exp run --pull --allow-missing -n <cell> -S ...`, `dvc exp push <remote> <cell>`.
The backends differ only in how that script is launched: `local` runs it as a subprocess in a
fresh clone per attempt (N at a time), `lightning` submits it as a Lightning AI Job on the chosen
machine from the current Studio's environment. The coordinator shows per-cell status, retries a
failed cell once, then `dvc exp pull`s every finished cell and prints
`python -m letterwise.report --compare`.

Credentials are never passed, printed or written: local cells inherit this process's
environment; Lightning jobs get theirs from teamspace secrets, and their script stops at once,
naming the variable, when one is missing. Every cell is validated against the params schema
before anything starts.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from letterwise.experiments.backend import cell_script
from letterwise.experiments.grid import add_source_arguments, set_arguments
from letterwise.experiments.lightning import (
    LightningBackend,
    lightning_env_problems,
    required_secrets,
)
from letterwise.experiments.local import LocalBackend
from letterwise.experiments.plan import (
    ESTIMATES_FILE,
    Cell,
    Estimates,
    FanoutError,
    estimate,
    load_estimates,
    parse_sets,
    plan_cells,
)
from letterwise.experiments.runner import base_commit, coordinate, gather


def build_parser() -> argparse.ArgumentParser:
    """`python -m letterwise.experiments run`: the fan-out's own flags."""
    parser = argparse.ArgumentParser(
        prog="python -m letterwise.experiments run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("groups", nargs="+", help="groups of the grid to fan out")
    parser.add_argument(
        "--on", choices=("local", "lightning"), required=True,
        help="local: subprocesses in fresh clones on this machine; lightning: one Lightning Job "
        "per cell",
    )  # fmt: skip
    parser.add_argument(
        "--machine", default=None,
        help="Lightning machine type for every job (a name from experiments/machines.yaml, "
        "e.g. L4); required with --on lightning",
    )  # fmt: skip
    parser.add_argument(
        "--max-parallel", type=int, default=None,
        help="cells running at once (default: all of them on lightning, 1 locally)",
    )  # fmt: skip
    parser.add_argument(
        "--retries", type=int, default=1, help="retries of a failed cell (default: %(default)s)"
    )
    parser.add_argument(
        "--dry-run", action="store_true",
        help="print the plan, the command each cell runs and the cost estimate; start nothing",
    )  # fmt: skip
    parser.add_argument(
        "--git-remote", default="origin",
        help="git remote the cells fetch the base commit from and push their experiments to "
        "(default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--workdir", type=Path, default=None,
        help="--on local: where the per-cell clones and logs go (default: a new temp folder)",
    )  # fmt: skip
    parser.add_argument(
        "--studio", default=os.environ.get("LETTERWISE_STUDIO"),
        help="--on lightning: the Studio whose environment the jobs use (default: "
        "$LETTERWISE_STUDIO, else the Studio this runs in)",
    )  # fmt: skip
    parser.add_argument(
        "--repo-dir", default=None,
        help="--on lightning: the repository's path on the Studio drive (default: this "
        "checkout's path, right when this runs in that Studio)",
    )  # fmt: skip
    add_source_arguments(parser)
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="a params change for every cell, e.g. --set model=qwen3-4b (repeatable; a run's "
        "own changes win)",
    )  # fmt: skip
    parser.add_argument(
        "--estimates", type=Path, default=ESTIMATES_FILE,
        help="estimated prices and hours for the dry-run (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--no-compare", action="store_true",
        help="after pulling, skip `python -m letterwise.report --compare`",
    )  # fmt: skip
    return parser


def _check_flags(args: argparse.Namespace, estimates: Estimates) -> None:
    if args.on == "lightning":
        if not args.machine:
            raise FanoutError(
                f"--on lightning needs --machine (one of {', '.join(estimates.machines)})"
            )
        if args.machine not in estimates.machines:
            raise FanoutError(
                f"--machine {args.machine!r} is not in {args.estimates}: use one of "
                f"{', '.join(estimates.machines)} (or declare it there)"
            )
    elif args.machine:
        raise FanoutError("--machine applies to --on lightning only")
    if args.max_parallel is not None and args.max_parallel < 1:
        raise FanoutError(f"--max-parallel must be at least 1 (got {args.max_parallel})")
    if args.retries < 0:
        raise FanoutError(f"--retries must be 0 or more (got {args.retries})")


def print_plan(
    cells: list[Cell],
    args: argparse.Namespace,
    base: str,
    max_parallel: int,
    estimates: Estimates,
    example_command: str,
) -> None:
    """The dry-run: plain text, for a terminal or a note."""
    where = f"Lightning jobs on {args.machine}" if args.on == "lightning" else "local clones"
    print(f"fan-out: {len(cells)} cell(s) as {where}, {max_parallel} at a time")
    print(f"base commit: {base} (cells fetch it from git remote {args.git_remote!r})")
    cost = estimate(cells, args.machine, max_parallel, estimates) if args.machine else None
    for cell in cells:
        hours = cost.hours_per_cell[cell.name] if cost else None
        size = f"~{hours:.2f} h" if hours is not None else "no estimate"
        line = shlex.join(set_arguments(cell.run.changes))
        print(f"  {cell.name:<24} {cell.preset or 'custom model':<14} {cell.kind:<9} {size:<12} "
              f"{line}")  # fmt: skip
    print("each cell runs (here for the first):")
    print("  " + example_command.strip().replace("\n", "\n  "))
    if cost is None:
        print("cost: none beyond this machine's time (--on local)")
        return
    machine = estimates.machines[args.machine]
    if cost.machine_hours is None:
        print(f"ESTIMATE: not available (a cell's model has no hours in {args.estimates})")
        return
    print(
        f"ESTIMATE ({args.estimates}; not a quote): {len(cells)} machine(s) x "
        f"{cost.machine_hours / len(cells):.2f} h average = {cost.machine_hours:.2f} "
        f"machine-hours x ${machine.usd_per_hour:.2f}/h = ${cost.usd:.2f}; "
        f"about {cost.wall_hours:.2f} h wall time at {max_parallel} at a time"
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    estimates = load_estimates(args.estimates)
    _check_flags(args, estimates)
    repo = Path.cwd()
    console = Console()
    # Every cell is validated here: a bad one stops everything before a clone or a job exists.
    common = parse_sets(args.set)
    cells = plan_cells(args.grid, args.params, args.groups, common=common)
    if not cells:
        console.print("nothing to run (every run of these groups is skipped on this preset)")
        return 0
    default_parallel = len(cells) if args.on == "lightning" else 1
    max_parallel = min(args.max_parallel or default_parallel, len(cells))
    base = base_commit(repo, args.git_remote, check_remote=not args.dry_run)
    backend: LocalBackend | LightningBackend
    if args.on == "lightning":
        backend = LightningBackend(
            machine=args.machine,
            repo_dir=args.repo_dir or str(repo),
            git_remote=args.git_remote,
            base=base,
            run_id=time.strftime("%m%d-%H%M%S"),
            required_env=required_secrets(repo, args.git_remote),
            studio=args.studio,
            teamspace=os.environ.get("LIGHTNING_TEAMSPACE") or None,
        )
        example = backend.spec(cells[0], 1).command
    else:
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="letterwise-fanout-"))
        backend = LocalBackend(repo, workdir.resolve(), args.git_remote, base)
        example = cell_script(cells[0].run, base, args.git_remote, ())
    if args.dry_run:
        print_plan(cells, args, base, max_parallel, estimates, example)
        return 0
    if args.on == "lightning":
        problems = lightning_env_problems(dict(os.environ))
        if problems:
            raise FanoutError("cannot submit Lightning jobs:\n  " + "\n  ".join(problems))
    else:
        console.print(f"clones and logs: {backend.workdir}")
    # A SIGTERM (a closed session, `kill`) stops the cells the way Ctrl-C does, not orphaned.
    signal.signal(signal.SIGTERM, _interrupt)
    began = time.monotonic()
    outcomes = coordinate(cells, backend, max_parallel, console, retries=args.retries)
    console.print(f"all cells ended after {time.monotonic() - began:.0f} s")
    succeeded = [name for name, o in outcomes.items() if o.status == "succeeded"]
    failed = [name for name, o in outcomes.items() if o.status == "failed"]
    not_pulled = gather(succeeded, args.git_remote, repo, console)
    if succeeded and not args.no_compare:
        subprocess.run([sys.executable, "-m", "letterwise.report", "--compare"], cwd=repo)
    if failed or not_pulled:
        for name in failed:
            console.print(f"[red]failed:[/red] {name} (log: {outcomes[name].where})")
        return 1
    return 0
