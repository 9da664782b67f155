"""How a fan-out cell runs: the one shell script every cell runs in a clone of the repository,
and the two ways of launching it (a local subprocess in a fresh clone, a Lightning AI Job from
the current Studio's environment). Used by letterwise.fanout."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from letterwise.experiments import PlannedRun, set_arguments
from letterwise.fanout_plan import Cell, FanoutError

# What a Lightning job needs from teamspace secrets: the S3 keys for the DVC remote, and a git
# token when the git remote is HTTPS. Names only; values never leave the secret store.
S3_SECRETS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
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


# --------------------------------------------------------------------------- backends


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


@dataclass
class LocalBackend:
    """Each attempt: a fresh clone of the git remote under `workdir`, the cell script as a
    subprocess in its own process group, its output in `<workdir>/<cell>/attempt-<n>.log`."""

    repo: Path
    workdir: Path
    git_remote: str
    base: str
    poll_seconds: float = 1.0

    def launch(self, cell: Cell, attempt: int) -> Launched:
        cell_dir = self.workdir / cell.name
        clone = cell_dir / f"attempt-{attempt}"
        log_path = cell_dir / f"attempt-{attempt}.log"
        cell_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(clone, ignore_errors=True)
        url = git_output(self.repo, "remote", "get-url", self.git_remote).strip()
        if (self.repo / url).exists():  # a path relative to the coordinator's checkout
            url = str((self.repo / url).resolve())
        git_output(cell_dir, "clone", "-q", "--origin", self.git_remote, url, str(clone))
        # This machine's remote settings (default remote, endpoint; credentials only when the
        # user chose --credentials local) travel as the file, never on a command line.
        local_config = self.repo / ".dvc" / "config.local"
        if local_config.is_file():
            shutil.copy2(local_config, clone / ".dvc" / "config.local")
        script = cell_script(cell.run, self.base, self.git_remote, ())
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                ["bash", "-c", script],
                cwd=clone,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a stop ends DVC's children too
            )
        (cell_dir / f"attempt-{attempt}.pid").write_text(f"{process.pid}\n")
        return Launched(cell, attempt, process, str(log_path))

    def poll(self, launched: Launched) -> int | None:
        return launched.handle.poll()

    def stop(self, launched: Launched) -> None:
        process: subprocess.Popen[bytes] = launched.handle
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@dataclass(frozen=True)
class JobSpec:
    """What `lightning_sdk.Job.run` is called with for one attempt of one cell."""

    name: str
    machine: str  # a lightning_sdk.Machine attribute, e.g. L4
    command: str
    studio: str | None  # None: the Studio this coordinator runs in
    teamspace: str | None  # None: the SDK's default (LIGHTNING_TEAMSPACE or the Studio's)
    env: dict[str, str]  # identifiers only: never a credential
    required_env: tuple[str, ...]  # names the job must find in its environment (secrets)

    def run_kwargs(self) -> dict[str, Any]:
        Machine = _lightning().Machine
        return {
            "name": self.name,
            "machine": getattr(Machine, self.machine),
            "command": self.command,
            "studio": self.studio,
            "teamspace": self.teamspace,
            "env": dict(self.env),
            # one attempt per job: the coordinator retries, the same way on every backend
            "max_run_attempts": 1,
        }


def _lightning() -> Any:
    # lightning_sdk asks PyPI for a newer release at import unless told not to.
    os.environ.setdefault("LIGHTNING_DISABLE_VERSION_CHECK", "1")
    try:
        import lightning_sdk
    except ImportError:
        raise FanoutError(
            "--on lightning needs the lightning-sdk package: pip install -e '.[dev]'"
        ) from None
    return lightning_sdk


@dataclass
class LightningBackend:
    """One Lightning AI Job per attempt, from the current Studio's environment (its drive, its
    `.venv`), on `machine`; the job runs the cell script in the repository at `repo_dir`."""

    machine: str
    repo_dir: str  # the repository's path on the Studio drive (the job sees a snapshot of it)
    git_remote: str
    base: str
    run_id: str  # makes job names unique in the teamspace
    required_env: tuple[str, ...]
    studio: str | None = None
    teamspace: str | None = None
    poll_seconds: float = 15.0
    submit: Callable[..., Any] | None = None  # Job.run, looked up when first needed

    def spec(self, cell: Cell, attempt: int) -> JobSpec:
        script = cell_script(cell.run, self.base, self.git_remote, self.required_env)
        activate = "if [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi"
        command = f"cd {shlex.quote(self.repo_dir)}\n{activate}\nbash -c {shlex.quote(script)}"
        return JobSpec(
            name=f"lw-{self.run_id}-{cell.name}-a{attempt}",
            machine=self.machine,
            command=command,
            studio=self.studio,
            teamspace=self.teamspace,
            env={"LETTERWISE_FANOUT_CELL": cell.name, "LETTERWISE_FANOUT_BASE": self.base},
            required_env=self.required_env,
        )

    def launch(self, cell: Cell, attempt: int) -> Launched:
        spec = self.spec(cell, attempt)
        submit = self.submit or _lightning().Job.run
        job = submit(**spec.run_kwargs())
        return Launched(cell, attempt, job, spec.name)

    def poll(self, launched: Launched) -> int | None:
        status = str(launched.handle.status)
        if status == "Completed":
            return 0
        if status in ("Failed", "Stopped"):
            return 1
        return None

    def stop(self, launched: Launched) -> None:
        launched.handle.stop()
