"""A tiny letterwise project published the way the fan-out expects it: the qwen3-tiny pipeline
reproduced and committed, its outputs pushed to an S3 remote (moto), its commit pushed to a bare
git repository. Used by tests/test_fanout.py and scripts/bench_fanout.py."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.conftest import write_params
from tests.s3_server import S3Server
from tests.test_remote import CONFIGURE, copy_working_tree, isolated_env, make_home

# The smallest run that still trains and evaluates every task (seconds per stage).
TINY = {
    "model": "qwen3-tiny",
    "build_dataset": {"max_train_tokens": 60, "validation_words": 6, "test_words": 12},
    "train": {"max_steps": 2, "batch_size": 2, "save_steps": 2, "max_seq_length": 96},
    "eval": {"max_questions": 4, "batch_size": 8, "choice_scoring": False},
    "publish": {"load_back_questions": 1},
}


@dataclass
class TinyOrigin:
    project: Path  # the coordinator's checkout
    origin: Path  # the bare git remote
    env: dict[str, str]  # isolated HOME, the S3 key pair, the venv on PATH
    bucket: str


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        output = done.stdout + done.stderr
        raise AssertionError(f"{' '.join(args)} exited {done.returncode}\n{output}")
    return done


def tiny_origin(root: Path, s3: S3Server, bucket: str) -> TinyOrigin:
    """Build, reproduce, commit and publish the tiny project under `root`."""
    env = isolated_env(
        make_home(root / "home"), **s3.env(), LETTERWISE_S3_URL=f"s3://{bucket}/dvcstore"
    )
    s3.create_bucket(bucket)
    project = root / "letterwise"
    project.mkdir()
    copy_working_tree(project)
    write_params(project, TINY)
    origin = root / "origin.git"
    run(["git", "init", "-q", "--bare", str(origin)], root, env)
    run(["git", "init", "-q"], project, env)
    run([sys.executable, str(CONFIGURE)], project, env)  # .dvc/config + this clone's default
    run(["git", "add", "-A"], project, env)
    run(["git", "commit", "-qm", "tiny project"], project, env)
    run([sys.executable, "-m", "dvc", "repro"], project, env)
    run(["git", "add", "-A"], project, env)
    run(["git", "commit", "-qm", "tiny reference run"], project, env)
    run([sys.executable, "-m", "dvc", "push"], project, env)
    run(["git", "remote", "add", "origin", str(origin)], project, env)
    run(["git", "push", "-q", "origin", "main"], project, env)
    return TinyOrigin(project, origin, env, bucket)


def write_grid(path: Path, runs: dict[str, dict], group: str = "tiny") -> Path:
    path.write_text(yaml.safe_dump({"groups": {group: {"about": "tiny cells", "runs": runs}}}))
    return path
