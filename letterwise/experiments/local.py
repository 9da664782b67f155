"""The local fan-out backend: each attempt of a cell runs the cell script as a subprocess in a
fresh clone of the git remote on this machine (`run ... --on local`)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from letterwise.experiments.backend import Launched, cell_script, git_output
from letterwise.experiments.plan import Cell


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
