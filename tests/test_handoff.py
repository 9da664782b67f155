"""The Mac -> Studio hand-off exactly as the docs write it: the Mac runs the data stages, pushes
the data to S3 and commits what the docs say to commit; the Studio clones, and its
`dvc exp run --pull --allow-missing` must not rerun the data stages (it would only train).

Two clones, a bare git origin and a local S3 server (moto). The Studio side stops at a dry run
of that command: which stages it skips is what this test is about, not the training.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, SMALL_DATA, write_params
from tests.s3_server import S3Server, start_s3_server
from tests.test_remote import (
    configure,
    copy_working_tree,
    dvc,
    git,
    make_home,
    run,
    s3_env,
)

DATA_STAGES = ("filter_tokens", "build_dataset")
DOCS = ("README.md", "docs/lightning_studios.md")


def documented_commit(doc: str) -> str:
    """The `git add ... && git commit ...` the doc tells the Mac to run after the data stages."""
    text = (REPO_ROOT / doc).read_text()
    (line,) = re.findall(r"^.*git add [^\n]*dvc\.lock[^\n]*$", text, re.M)
    return line[line.index("git add") :].split("#")[0].strip()


def test_both_docs_commit_the_same_files():
    readme, studios = (documented_commit(doc) for doc in DOCS)
    assert readme.split("&&")[0] == studios.split("&&")[0], (readme, studios)


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> S3Server:
    server = start_s3_server(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '(\w+)'", output))


@pytest.mark.slow
def test_the_studio_does_not_rerun_the_mac_s_data_stages(tmp_path: Path, s3: S3Server) -> None:
    home = make_home(tmp_path / "home")
    env = s3_env(home, s3, s3.create_bucket("letterwise-handoff"), "dvcstore")
    origin = tmp_path / "origin.git"
    git("init", "-q", "--bare", str(origin), cwd=tmp_path, env=env)

    # The team's repository: code and params (small data sizes), the S3 remote committed once.
    mac = tmp_path / "mac"
    mac.mkdir()
    copy_working_tree(mac)
    write_params(mac, SMALL_DATA)
    git("init", "-q", cwd=mac, env=env)
    configure(cwd=mac, env=env)
    git("add", "-A", cwd=mac, env=env)
    git("commit", "-q", "-m", "letterwise", cwd=mac, env=env)
    git("remote", "add", "origin", str(origin), cwd=mac, env=env)
    git("push", "-q", "-u", "origin", "main", cwd=mac, env=env)

    # Mac, as README.md says: the data stages for the GPU's model, push, commit, git push.
    dvc("exp", "run", "build_dataset", "-S", "model=qwen3-4b", cwd=mac, env=env)
    dvc("push", cwd=mac, env=env)
    run(["bash", "-euo", "pipefail", "-c", documented_commit("README.md")], mac, env)
    assert git("status", "--porcelain", cwd=mac, env=env).stdout == "", "left uncommitted"

    # Studio: a clone of origin, the remote's credentials, then the documented exp run.
    git("clone", "-q", str(origin), "studio", cwd=tmp_path, env=env)
    studio = tmp_path / "studio"
    configure(cwd=studio, env=env)
    output = studio_dry_run(studio, env)
    assert set(DATA_STAGES) <= skipped(output), output
    assert not stages_run(output) & set(DATA_STAGES), output

    # The check can fail. The old list (params.yaml dvc.lock) left a clone of the real repo with
    # the committed default run's metrics/details/filter_tokens.json, not the Mac's: then the
    # stage reruns. (The exp runs from the commit, so that file goes in a commit.)
    stale = (REPO_ROOT / "metrics/details/filter_tokens.json").read_text()
    (studio / "metrics/details/filter_tokens.json").write_text(stale)
    git("commit", "-q", "-am", "as the old commit list left it", cwd=studio, env=env)
    output = studio_dry_run(studio, env)
    assert "filter_tokens" in stages_run(output) and "filter_tokens" not in skipped(output)


def studio_dry_run(studio: Path, env: dict[str, str]) -> str:
    """`dvc exp run --pull --allow-missing` as a dry run: DVC decides stage by stage what to run,
    printing it, and stops at `train` (its dataset was never pulled: --dry pulls nothing)."""
    done = dvc("exp", "run", "--pull", "--allow-missing", "--dry", cwd=studio, env=env, check=False)
    return done.stdout + done.stderr


def skipped(output: str) -> set[str]:
    return set(re.findall(r"Stage '(\w+)' didn't change, skipping", output))
