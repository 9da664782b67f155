"""The Lightning fan-out backend: each attempt of a cell is one Lightning AI Job, started from
the current Studio's environment on the chosen machine (`run ... --on lightning`)."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from letterwise.experiments.backend import GIT_TOKEN_ENV, Launched, cell_script, git_output
from letterwise.experiments.plan import Cell, FanoutError

# What a Lightning job needs from teamspace secrets: the S3 keys for the DVC remote, and a git
# token when the git remote is HTTPS. Names only; values never leave the secret store.
S3_SECRETS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
# Lightning's own authentication outside a Studio (inside one, the Studio provides it).
LIGHTNING_AUTH_ENV = ("LIGHTNING_USER_ID", "LIGHTNING_API_KEY")


def required_secrets(repo: Path, git_remote: str) -> tuple[str, ...]:
    """The secrets every job must find: the S3 keys, and the git token for an HTTPS remote."""
    remotes = git_output(repo, "remote").split()
    url = git_output(repo, "remote", "get-url", git_remote).strip() if git_remote in remotes else ""
    return S3_SECRETS + ((GIT_TOKEN_ENV,) if url.startswith("http") else ())


def lightning_env_problems(env: dict[str, str]) -> list[str]:
    """What keeps this process from submitting jobs (names only, never values)."""
    if env.get("LIGHTNING_CLOUD_SPACE_ID"):
        return []  # inside a Studio: the SDK authenticates by itself
    missing = [name for name in LIGHTNING_AUTH_ENV if not env.get(name)]
    if missing:
        return [
            f"not in a Lightning Studio and {', '.join(missing)} not set: run this in the Studio "
            "whose environment the jobs use, or export LIGHTNING_USER_ID and LIGHTNING_API_KEY "
            "(lightning.ai → Settings → Keys) and name the Studio with --studio"
        ]
    return []


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
