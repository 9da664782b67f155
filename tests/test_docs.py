"""The docs run: every bash block in README.md and docs/ is marked runnable or says why not,
and the runnable ones are executed, verbatim and in order, in a fresh copy of the repository.

The copy runs on the `qwen3-tiny` preset with small sizes (the commands are the same; only
params.yaml differs), after one `dvc repro` standing in for `make repro`.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.conftest import REPO_ROOT
from tests.test_pipeline import VENV_BIN, fresh_clone, git, set_params

DOCS = ["README.md"] + sorted(f"docs/{p.name}" for p in (REPO_ROOT / "docs").glob("*.md"))
BLOCK = re.compile(r"(?:<!-- (runnable|not-runnable: [^>]+) -->\n[ \t]*)?```bash\n(.*?)```", re.S)

TINY = {
    "model": "qwen3-tiny",
    "build_dataset": {"max_train_tokens": 60, "validation_words": 6, "test_words": 12},
    "train": {"max_steps": 4, "batch_size": 4, "save_steps": 2, "max_seq_length": 96},
    "eval": {"max_questions": 6, "batch_size": 8, "thinking_budget": 24},
    "publish": {"load_back_questions": 2},
}


def bash_blocks(doc: str) -> list[tuple[str | None, str]]:
    text = (REPO_ROOT / doc).read_text()
    return [(marker, body) for marker, body in BLOCK.findall(text)]


@pytest.mark.parametrize("doc", DOCS)
def test_every_bash_block_is_marked(doc):
    unmarked = [body.splitlines()[0] for marker, body in bash_blocks(doc) if not marker]
    assert not unmarked, (
        f"{doc}: bash blocks without <!-- runnable --> or <!-- not-runnable: why -->: {unmarked}"
    )


def runnable_blocks() -> list[tuple[str, str]]:
    return [
        (doc, body) for doc in DOCS for marker, body in bash_blocks(doc) if marker == "runnable"
    ]


def test_some_blocks_are_runnable():
    docs_with_runs = {doc for doc, _ in runnable_blocks()}
    assert {"README.md", "docs/experiment_reproduction.md"} <= docs_with_runs


def test_runnable_blocks_run_in_a_fresh_clone(tmp_path):
    clone = fresh_clone(tmp_path / "clone")
    set_params(clone, TINY)
    git(clone, "commit", "-qam", "tiny params for the docs run")
    env = {
        **os.environ,
        "PATH": VENV_BIN + os.pathsep + os.environ["PATH"],
        "HF_HUB_OFFLINE": "1",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "docs",
        "GIT_AUTHOR_EMAIL": "docs@test",
        "GIT_COMMITTER_NAME": "docs",
        "GIT_COMMITTER_EMAIL": "docs@test",
    }
    steps = [("setup", "dvc repro\n"), *runnable_blocks()]
    for doc, body in steps:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", body],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert result.returncode == 0, (
            f"{doc} block failed:\n{body}\n--- stdout\n{result.stdout[-3000:]}"
            f"\n--- stderr\n{result.stderr[-3000:]}"
        )
