"""The local DVC queue for a grid: each run becomes `dvc exp run --queue -n <group>-<run>
-S ...`, `dvc queue start -j N` runs them on this machine, and the command waits for the queue
to drain (the fan-out over many machines is letterwise.experiments.fanout)."""

from __future__ import annotations

import subprocess
import time

from rich.console import Console

from letterwise.experiments.grid import GridError, PlannedRun, set_arguments


def queue_command(run: PlannedRun) -> list[str]:
    """The `dvc exp run --queue` command that queues one run."""
    return ["dvc", "exp", "run", "--queue", "-n", run.name, *set_arguments(run.changes)]


def dvc(args: list[str]) -> str:
    """Run a dvc command; its stdout, or GridError with its output when it fails."""
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise GridError(f"`{' '.join(args)}` failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def wait_for_queue(console: Console, poll_seconds: float = 10.0) -> str:
    """Poll `dvc queue status` until nothing is queued or running; returns the last status."""
    started = time.monotonic()
    while True:
        status = dvc(["dvc", "queue", "status"])
        active = [line for line in status.splitlines() if " Queued " in line or " Running " in line]
        if not active:
            return status
        console.print(
            f"[dim]{len(active)} experiment(s) queued or running, "
            f"{time.monotonic() - started:.0f} s[/dim]"
        )
        time.sleep(poll_seconds)
