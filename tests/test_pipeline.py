"""`dvc repro` in a fresh copy of the repository: outputs, no-op reruns, offline, per preset."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT, deep_update

VENV_BIN = str(Path(sys.executable).parent)


def fresh_clone(destination: Path) -> Path:
    """The repo's tracked and unignored files (what a fresh clone holds), as a new git repo."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        source = REPO_ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    git(destination, "init", "-q")
    git(destination, "add", "-A")
    git(destination, "commit", "-qm", "fresh clone")
    return destination


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    ).stdout


def dvc(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": VENV_BIN + os.pathsep + os.environ["PATH"],
           "HF_HUB_OFFLINE": "1", "DVC_NO_ANALYTICS": "1"}
    result = subprocess.run(
        [str(Path(VENV_BIN) / "dvc"), *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def set_params(clone: Path, overrides: dict) -> None:
    path = clone / "params.yaml"
    path.write_text(yaml.safe_dump(deep_update(yaml.safe_load(path.read_text()), overrides)))


@pytest.mark.parametrize("model", ["smollm2-135m", "qwen3-4b"])
def test_data_stages_repro_offline_then_noop(model, tmp_path):
    clone = fresh_clone(tmp_path)
    set_params(clone, {"model": model, "build_dataset": {"max_train_tokens": 300}})
    dvc(clone, "repro", "build_dataset")
    metrics = json.loads((clone / "metrics/build_dataset.json").read_text())
    assert metrics["model"] == model and metrics["leakage"]["leaked_words"] == 0
    assert (clone / "data/dataset/hf/dataset_dict.json").exists()
    start = time.perf_counter()
    again = dvc(clone, "repro", "build_dataset")
    print(f"no-op repro of build_dataset took {time.perf_counter() - start:.2f}s")
    assert "didn't change, skipping" in again.stdout and "Running stage" not in again.stdout
    # DVC keeps the outputs out of git.
    ignored = (clone / "data/.gitignore").read_text()
    assert "/tokens" in ignored and "/dataset" in ignored
