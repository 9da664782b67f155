"""scripts/save_run.sh picks the experiment run on the checked-out commit when one name was run
on several commits (the study's confirm run at 320 and then 500 steps once saved the old one)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "save_run.sh"
NAME = "study-val-m-positive_control-s1"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=repo, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


def experiment(repo: Path, baseline: str, steps: int) -> str:
    """An experiment commit on top of `baseline` holding its params, as DVC makes one, and its
    ref refs/exps/<baseline[:2]>/<baseline[2:]>/NAME."""
    git(repo, "checkout", "-q", baseline)
    (repo / "params.yaml").write_text(f"train:\n  max_steps: {steps}\n")
    git(repo, "commit", "-qam", f"exp {steps}")
    rev = git(repo, "rev-parse", "HEAD")
    git(repo, "update-ref", f"refs/exps/{baseline[:2]}/{baseline[2:]}/{NAME}", rev)
    git(repo, "checkout", "-q", baseline)
    return rev


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "params.yaml").write_text("train:\n  max_steps: 80\n")
    git(repo, "add", "params.yaml")
    git(repo, "commit", "-qm", "first")
    return repo


def save(repo: Path, dest: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), NAME, dest, "the command"], cwd=repo, capture_output=True, text=True
    )


def test_the_experiment_of_the_checked_out_commit_is_saved(repo):
    first = git(repo, "rev-parse", "HEAD")
    old = experiment(repo, first, 320)
    (repo / "notes.txt").write_text("the plan changed\n")
    git(repo, "add", "notes.txt")
    git(repo, "commit", "-qm", "second")
    second = git(repo, "rev-parse", "HEAD")
    new = experiment(repo, second, 500)
    assert old != new
    (repo / "out").mkdir()
    done = save(repo, "out/run")
    assert done.returncode == 0, done.stderr
    assert (repo / "out/run/EXPERIMENT").read_text().strip() == new
    assert "max_steps: 500" in (repo / "out/run/params.yaml").read_text()
    assert (repo / "out/run/COMMIT").read_text().strip() == second


def test_several_experiments_of_one_name_elsewhere_are_refused_not_guessed(repo):
    first = git(repo, "rev-parse", "HEAD")
    experiment(repo, first, 320)
    (repo / "notes.txt").write_text("x\n")
    git(repo, "add", "notes.txt")
    git(repo, "commit", "-qm", "second")
    second = git(repo, "rev-parse", "HEAD")
    experiment(repo, second, 500)
    (repo / "notes.txt").write_text("y\n")
    git(repo, "commit", "-qam", "third")  # HEAD has no experiment of that name
    (repo / "out").mkdir()
    done = save(repo, "out/run")
    assert done.returncode != 0
    assert f"several experiments named {NAME}" in done.stderr
    assert not (repo / "out/run").exists()


def test_a_single_experiment_from_another_commit_is_still_found(repo):
    first = git(repo, "rev-parse", "HEAD")
    rev = experiment(repo, first, 320)
    (repo / "notes.txt").write_text("x\n")
    git(repo, "add", "notes.txt")
    git(repo, "commit", "-qm", "later")
    (repo / "out").mkdir()
    done = save(repo, "out/run")
    assert done.returncode == 0, done.stderr
    assert (repo / "out/run/EXPERIMENT").read_text().strip() == rev
