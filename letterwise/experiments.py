"""A declared experiment grid, queued and run through DVC in one command.

    python -m letterwise.experiments --list                  # the groups in experiments/grid.yaml
    python -m letterwise.experiments decoding prompting      # queue, run, wait, compare
    python -m letterwise.experiments --dry-run lora_rank     # print the dvc commands only
    python -m letterwise.experiments run seeds --on lightning --machine L4   # many machines

`run GROUP ... --on local|lightning` fans the group out, one machine per run, instead of the
local queue (letterwise.fanout).

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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from rich.console import Console

from letterwise.params import Params, ParamsError, parse_params
from letterwise.presets import resolve_preset

GRID_FILE = Path("experiments/grid.yaml")
PARAMS_FILE = Path("params.yaml")


class GridError(SystemExit):
    """The grid file is malformed or one of its runs is not a valid params change."""


class Group(BaseModel):
    model_config = ConfigDict(extra="forbid")
    about: str
    requires: Literal["thinking_mode"] | None = None
    runs: dict[str, dict[str, Any]] = Field(min_length=1)


class Grid(BaseModel):
    model_config = ConfigDict(extra="forbid")
    groups: dict[str, Group] = Field(min_length=1)


@dataclass(frozen=True)
class PlannedRun:
    name: str  # the DVC experiment name: <group>-<run>
    group: str
    changes: dict[str, Any]  # dotted params key -> value
    skipped: str | None = None  # why this run is not queued on this preset


def load_grid(path: Path = GRID_FILE) -> Grid:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise GridError(f"{path} not found (run from the repository root)") from None
    except yaml.YAMLError as exc:
        raise GridError(f"{path} is not valid YAML: {exc}") from None
    try:
        return Grid.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise GridError(f"{path} is invalid: {problems}") from None


def known_key(key: str) -> str | None:
    """None when `key` is a params path; else what is wrong with it, naming the allowed keys."""
    model: type[BaseModel] = Params
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if part not in model.model_fields:
            where = ".".join(parts[:depth]) or "the top level"
            return f"unknown param {key!r}: {where} has {', '.join(model.model_fields)}"
        annotation = model.model_fields[part].annotation
        last = depth == len(parts) - 1
        is_section = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        if is_section and last:
            return f"{key!r} is a section; set one of its keys ({key}.<name>)"
        if not is_section and not last:
            return f"unknown param {key!r}: {'.'.join(parts[: depth + 1])} has no sub-keys"
        if is_section:
            model = annotation
    return None


def with_changes(params: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """params.yaml content with dotted-key changes applied (a new dict)."""
    result = yaml.safe_load(yaml.safe_dump(params))
    for key, value in changes.items():
        node = result
        *sections, leaf = key.split(".")
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = value
    return result


def plan(grid: Grid, params: dict[str, Any], groups: list[str]) -> list[PlannedRun]:
    """The runs of the chosen groups, each validated; raises GridError before anything runs."""
    unknown = [g for g in groups if g not in grid.groups]
    if unknown:
        raise GridError(f"unknown group(s) {unknown}; the grid has {', '.join(grid.groups)}")
    problems, planned = [], []
    for group_name in groups:
        group = grid.groups[group_name]
        for run_name, changes in group.runs.items():
            where = f"group {group_name!r}, run {run_name!r}"
            bad_keys = [msg for key in changes if (msg := known_key(key))]
            if bad_keys:
                problems += [f"{where}: {msg}" for msg in bad_keys]
                continue
            try:
                parsed = parse_params(with_changes(params, changes), source=where)
            except ParamsError as exc:
                problems.append(str(exc))
                continue
            skipped = None
            preset = resolve_preset(parsed.model)
            if group.requires == "thinking_mode" and not preset.has_thinking_mode:
                skipped = f"{preset.name} has no thinking mode (this group needs a Qwen3 preset)"
            planned.append(PlannedRun(f"{group_name}-{run_name}", group_name, changes, skipped))
    if problems:
        raise GridError("the grid cannot be queued; nothing was:\n  " + "\n  ".join(problems))
    return planned


def set_arguments(changes: dict[str, Any]) -> list[str]:
    """`-S key=value` pairs in the YAML form `dvc exp run` parses (lists as [a, b])."""
    args = []
    for key, value in changes.items():
        text = yaml.safe_dump(value, default_flow_style=True).strip()
        text = text.removesuffix("\n...").removesuffix("...").strip()
        args += ["-S", f"{key}={text}"]
    return args


def queue_command(run: PlannedRun) -> list[str]:
    return ["dvc", "exp", "run", "--queue", "-n", run.name, *set_arguments(run.changes)]


def _dvc(args: list[str]) -> str:
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise GridError(f"`{' '.join(args)}` failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def wait_for_queue(console: Console, poll_seconds: float = 10.0) -> str:
    """Poll `dvc queue status` until nothing is queued or running; returns the last status."""
    started = time.monotonic()
    while True:
        status = _dvc(["dvc", "queue", "status"])
        active = [line for line in status.splitlines() if " Queued " in line or " Running " in line]
        if not active:
            return status
        console.print(
            f"[dim]{len(active)} experiment(s) queued or running, "
            f"{time.monotonic() - started:.0f} s[/dim]"
        )
        time.sleep(poll_seconds)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m letterwise.experiments", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("groups", nargs="*", help="groups of the grid to run (default: all)")
    parser.add_argument(
        "--grid", type=Path, default=GRID_FILE, help="grid file (default: %(default)s)"
    )
    parser.add_argument(
        "--params", type=Path, default=PARAMS_FILE, help="base params (default: %(default)s)"
    )
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
        from letterwise.fanout import main as fanout_main

        return fanout_main(argv[1:])
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
    try:
        params = yaml.safe_load(args.params.read_text()) or {}
    except FileNotFoundError:
        raise GridError(f"{args.params} not found (run from the repository root)") from None
    runs = plan(grid, params, args.groups or list(grid.groups))
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
        _dvc(queue_command(run))
        console.print(f"queued {run.name}")
    _dvc(["dvc", "queue", "start", "-j", str(args.jobs)])
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


if __name__ == "__main__":
    sys.exit(main())
