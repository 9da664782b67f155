"""What every fan-out backend shares: the one shell script each cell runs in a clone of the
repository, wherever it runs, the record of one launched attempt and the interface the
coordinator (letterwise.experiments.runner) drives. The backends themselves are
letterwise.experiments.local and letterwise.experiments.lightning."""

from __future__ import annotations

import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from letterwise.experiments.grid import PlannedRun, set_arguments
from letterwise.experiments.plan import Cell, FanoutError

# The git token a cell needs when the git remote is HTTPS (the script reads it from the
# environment; a name only, its value never leaves the secret store).
GIT_TOKEN_ENV = "LETTERWISE_GIT_TOKEN"


def git_output(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise FanoutError(f"`git {' '.join(args)}` failed in {cwd}:\n{done.stderr.strip()}")
    return done.stdout


def cell_script(run: PlannedRun, base: str, git_remote: str, required_env: tuple[str, ...]) -> str:
    """The shell script one cell runs in a clone of the repository, on any machine."""
    lines = ["set -euo pipefail"]
    # ${VAR:?} stops with the variable's name (never its value) when it is unset or empty.
    lines += [f': "${{{name}:?is not set (add it as a secret)}}"' for name in required_env]
    if GIT_TOKEN_ENV in required_env:
        # git (and DVC's git client) ask this helper; it reads the token from the environment
        # when git runs it, so the token is never written to a file, a URL or a log.
        helper = (
            f'!f() {{ test "$1" = get && echo username=x-access-token && '
            f'echo "password=${GIT_TOKEN_ENV}"; }}; f'
        )
        lines.append(f"git config credential.helper {shlex.quote(helper)}")
    exp_run = ["dvc", "exp", "run", "--pull", "--allow-missing", "-n", run.name]
    lines += [
        f"git fetch -q {shlex.quote(git_remote)}",
        f"git checkout -q --detach {shlex.quote(base)}",
        # The base commit's outputs first: `exp run --pull` alone fetches only the parts of a
        # directory an earlier stage asked for (the evals pull data/dataset/hf), and a later
        # stage that reads the whole directory (publish: data/dataset) then finds it partial.
        "dvc pull -q --allow-missing",
        shlex.join([*exp_run, *set_arguments(run.changes)]),
        shlex.join(["dvc", "exp", "push", git_remote, run.name]),
    ]
    return "\n".join(lines) + "\n"


@dataclass
class Launched:
    """One attempt of one cell, as a backend started it."""

    cell: Cell
    attempt: int
    handle: Any
    where: str  # a log path or a job name, for the user
    start_error: str | None = None  # why the backend could not start it (then handle is None)
    started: float = field(default_factory=time.monotonic)


class Backend(Protocol):
    poll_seconds: float

    def launch(self, cell: Cell, attempt: int) -> Launched: ...

    def poll(self, launched: Launched) -> int | None:
        """None while the attempt runs; then 0 for success, non-zero for failure."""
        ...

    def stop(self, launched: Launched) -> None: ...
