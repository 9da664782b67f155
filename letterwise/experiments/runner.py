"""The fan-out coordinator: it runs every cell on a backend, at most N at once, retries a failed
cell, and gathers the finished experiments into this checkout with `dvc exp pull`; before any of
that, the base commit every cell checks out is checked to be on the git remote."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from letterwise.experiments.backend import Backend, Launched, git_output
from letterwise.experiments.plan import Cell, FanoutError


@dataclass
class Outcome:
    cell: str
    status: Literal["succeeded", "failed"]
    attempts: int
    where: str
    seconds: float


def finished(launched: Launched, code: int, seconds: float) -> Outcome:
    """The outcome of a cell whose last attempt ended with exit `code`."""
    status: Literal["succeeded", "failed"] = "succeeded" if code == 0 else "failed"
    return Outcome(launched.cell.name, status, launched.attempt, launched.where, seconds)


def coordinate(
    cells: list[Cell],
    backend: Backend,
    max_parallel: int,
    console: Console,
    retries: int = 1,
) -> dict[str, Outcome]:
    """Run every cell, at most `max_parallel` at once; a failed attempt is retried up to
    `retries` times. Ctrl-C stops every running attempt before it returns."""
    pending: list[tuple[Cell, int]] = [(cell, 1) for cell in cells]
    running: list[Launched] = []
    outcomes: dict[str, Outcome] = {}
    started = {cell.name: time.monotonic() for cell in cells}
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[state]}"),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("cells", total=len(cells), state="")
        say = progress.console.print
        try:
            while pending or running:
                while pending and len(running) < max_parallel:
                    cell, attempt = pending.pop(0)
                    try:
                        launched = backend.launch(cell, attempt)
                    except Exception as exc:  # a clone or a submission that failed: an attempt
                        say(f"[yellow]{cell.name}: could not start attempt {attempt}: {exc}")
                        launched = Launched(cell, attempt, None, "not started", str(exc))
                    else:
                        say(f"{cell.name}: started (attempt {attempt}) -> {launched.where}")
                    running.append(launched)
                for launched in list(running):
                    if launched.start_error is not None:
                        code: int | None = -1
                    else:
                        try:
                            code = backend.poll(launched)
                        except Exception as exc:  # e.g. the service did not answer: ask again
                            say(f"[yellow]{launched.cell.name}: status unknown ({exc})[/yellow]")
                            code = None
                    if code is None:
                        continue
                    running.remove(launched)
                    name = launched.cell.name
                    if code != 0 and launched.attempt <= retries:
                        say(
                            f"[yellow]{name}: attempt {launched.attempt} failed (exit {code}); "
                            f"retrying[/yellow] (log: {launched.where})"
                        )
                        pending.insert(0, (launched.cell, launched.attempt + 1))
                        continue
                    outcome = finished(launched, code, time.monotonic() - started[name])
                    outcomes[name] = outcome
                    if outcome.status == "succeeded":
                        say(f"[green]{name}: succeeded[/green] (attempt {launched.attempt})")
                    else:
                        say(f"[red]{name}: failed[/red] (exit {code}; log: {launched.where})")
                    progress.advance(task)
                progress.update(
                    task,
                    state=f"{len(running)} running, {len(pending)} waiting",
                )
                if running:
                    time.sleep(backend.poll_seconds)
        except KeyboardInterrupt:
            say(f"interrupted: stopping {len(running)} running cell(s)")
            for launched in running:
                backend.stop(launched)
            raise
    return outcomes


def gather(names: list[str], git_remote: str, repo: Path, console: Console) -> list[str]:
    """`dvc exp pull` each finished cell into this checkout; returns the ones that failed."""
    failed = []
    for name in names:
        done = subprocess.run(
            ["dvc", "exp", "pull", git_remote, name], cwd=repo, capture_output=True, text=True
        )
        if done.returncode == 0:
            console.print(f"pulled {name}")
        else:
            failed.append(name)
            console.print(f"[red]could not pull {name}[/red]:\n{done.stdout}{done.stderr}")
    return failed


def base_commit(repo: Path, git_remote: str, check_remote: bool = True) -> str:
    """HEAD, once it is clean and on the git remote: every cell checks it out elsewhere."""
    head = git_output(repo, "rev-parse", "HEAD").strip()
    if not check_remote:
        return head
    changed = git_output(repo, "status", "--porcelain", "--untracked-files=no").strip()
    if changed:
        raise FanoutError(
            "uncommitted changes would not reach the cells (they check out HEAD):\n"
            f"{changed}\ncommit them, `git push` and `dvc push`, then run again"
        )
    remotes = git_output(repo, "remote").split()
    if git_remote not in remotes:
        raise FanoutError(
            f"no git remote {git_remote!r} (this checkout has {remotes or 'none'}): "
            f"`git remote add {git_remote} <url>` or pass --git-remote"
        )
    git_output(repo, "fetch", "-q", git_remote)
    on_remote = git_output(repo, "branch", "-r", "--contains", head, "--list", f"{git_remote}/*")
    if not on_remote.strip():
        raise FanoutError(
            f"HEAD {head[:12]} is not on {git_remote!r}: the cells could not check it out; "
            f"`git push {git_remote}` (and `dvc push`) first"
        )
    return head
