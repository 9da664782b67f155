"""The DVC remote against a real S3 server (moto on 127.0.0.1, IAM-enforced): configuration by
scripts/configure_remote.py, push/pull round trips of the data stages' outputs, an experiment
round trip between two clones, and the faults (wrong credentials, unreachable endpoint, missing
bucket, interrupted push) failing clearly with nothing lost locally.

Every DVC and git command runs as a subprocess with its own HOME, so nothing here reads or
writes the developer's ~/.aws, ~/.gitconfig or ~/.letterwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT, SMALL_DATA, write_params
from tests.s3_server import S3Server, free_port, start_s3_server

CONFIGURE = REPO_ROOT / "scripts" / "configure_remote.py"
SETUP_STUDIO = REPO_ROOT / "scripts" / "setup_studio.sh"
DATA_OUTS = ("data/tokens", "data/dataset")
TOY_OUT = "data/out"

# A stage whose output is a directory of N distinct files: cheap, and enough objects to stop a
# push half-way through.
TOY_STAGE = """\
import random, sys
from pathlib import Path
count = int(sys.argv[1])
out = Path("data/out")
out.mkdir(parents=True, exist_ok=True)
rng = random.Random(count)
for i in range(count):
    (out / f"part-{i:04d}.bin").write_bytes(rng.randbytes(1024 + i))
"""


# --------------------------------------------------------------------------- helpers


def run(
    args: list[str], cwd: Path, env: dict[str, str], check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {proc.returncode}\n--- stdout\n{proc.stdout}\n"
            f"--- stderr\n{proc.stderr}"
        )
    return proc


def dvc(*args: str, cwd: Path, env: dict[str, str], check: bool = True):
    return run([sys.executable, "-m", "dvc", *args], cwd, env, check=check)


def git(*args: str, cwd: Path, env: dict[str, str]):
    return run(["git", *args], cwd, env)


def configure(
    *args: str, cwd: Path, env: dict[str, str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, str(CONFIGURE), *args], cwd, env, check=check)


def digest_tree(root: Path, rels: tuple[str, ...] | list[str]) -> dict[str, str]:
    """sha256 of every file under each of `rels` (relative to `root`)."""
    digests: dict[str, str] = {}
    for rel in rels:
        base = root / rel
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for path in files:
            digests[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def cache_digest(project: Path) -> dict[str, str]:
    return digest_tree(project, [".dvc/cache"]) if (project / ".dvc/cache").exists() else {}


def cache_objects(project: Path) -> int:
    """Content-addressed objects in the local cache: what a push sends (the run cache is not)."""
    return sum(1 for path in (project / ".dvc/cache/files").rglob("*") if path.is_file())


def wipe_local_data(project: Path, outs: tuple[str, ...]) -> None:
    shutil.rmtree(project / ".dvc" / "cache", ignore_errors=True)
    for rel in outs:
        shutil.rmtree(project / rel, ignore_errors=True)


def pushed_count(output: str) -> int:
    match = re.search(r"(\d+) files? pushed", output)
    return int(match.group(1)) if match else 0


def make_home(directory: Path) -> Path:
    """A throwaway HOME: git identity for the test repos, no AWS files, an empty ~/.letterwise."""
    directory.mkdir(parents=True)
    (directory / ".gitconfig").write_text(
        "[user]\n\tname = letterwise test\n\temail = test@letterwise.invalid\n"
        "[init]\n\tdefaultBranch = main\n"
    )
    return directory


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return make_home(tmp_path / "home")


def isolated_env(home: Path, **extra: str) -> dict[str, str]:
    keep = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "LETTERWISE_S3", "LETTERWISE_REMOTE", "GIT_"))
    }
    venv_bin = str(Path(sys.executable).parent)
    keep.update(
        PATH=f"{venv_bin}{os.pathsep}{keep.get('PATH', '')}",  # stage commands call `python`
        HOME=str(home),
        AWS_CONFIG_FILE=str(home / ".aws" / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / ".aws" / "credentials"),
        AWS_EC2_METADATA_DISABLED="true",  # no instance-role probe on a laptop or CI box
        DVC_NO_ANALYTICS="1",
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    keep.update(extra)
    return keep


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> S3Server:
    server = start_s3_server(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


def s3_env(home: Path, server: S3Server, bucket: str, prefix: str, **extra: str) -> dict[str, str]:
    return isolated_env(home, **server.env(), LETTERWISE_S3_URL=f"s3://{bucket}/{prefix}", **extra)


def make_toy_project(directory: Path, env: dict[str, str], files: int) -> Path:
    """git + dvc project with one stage writing `files` files into data/out, reproduced."""
    directory.mkdir(parents=True)
    git("init", "-q", cwd=directory, env=env)
    dvc("init", "-q", cwd=directory, env=env)
    (directory / "make_files.py").write_text(TOY_STAGE)
    dvc(
        "stage",
        "add",
        "-q",
        "-n",
        "make",
        "-d",
        "make_files.py",
        "-o",
        TOY_OUT,
        f"python make_files.py {files}",
        cwd=directory,
        env=env,
    )
    dvc("repro", "-q", cwd=directory, env=env)
    git("add", "-A", cwd=directory, env=env)
    git("commit", "-q", "-m", "toy project", cwd=directory, env=env)
    return directory


@pytest.fixture(scope="module")
def toy_templates(tmp_path_factory) -> dict[int, Path]:
    """Toy projects built once per module (40 and 150 files); tests work on copies."""
    root = tmp_path_factory.mktemp("toy")
    env = isolated_env(make_home(root / "home"))
    return {files: make_toy_project(root / f"toy{files}", env, files) for files in (40, 150)}


def toy_project(templates: dict[int, Path], destination: Path, files: int = 40) -> Path:
    return Path(shutil.copytree(templates[files], destination, symlinks=True))


# --------------------------------------------------------------------------- configure_remote.py


def test_every_flag_has_help():
    sys.path.insert(0, str(CONFIGURE.parent))
    try:
        import configure_remote
    finally:
        sys.path.remove(str(CONFIGURE.parent))
    parser = configure_remote.build_parser()
    for action in parser._actions:
        assert action.help, f"{action.option_strings} has no help"


@pytest.mark.slow
def test_configure_writes_location_to_config_and_secrets_only_to_config_local(
    tmp_path, home, s3, toy_templates
):
    bucket = s3.create_bucket("configure-test")
    env = s3_env(home, s3, bucket, "store")
    project = toy_project(toy_templates, tmp_path / "project")

    done = configure("--credentials", "local", "--check", cwd=project, env=env)
    assert "ok: bucket 'configure-test' is reachable" in done.stdout
    assert s3.secret_access_key not in done.stdout + done.stderr, "secret printed"

    committed = (project / ".dvc/config").read_text()
    local = (project / ".dvc/config.local").read_text()
    assert "url = s3://configure-test/store" in committed
    assert f"endpointurl = {s3.endpoint}" in committed
    assert "region = us-east-1" in committed
    assert s3.access_key_id not in committed and s3.secret_access_key not in committed
    assert f"secret_access_key = {s3.secret_access_key}" in local
    assert f"access_key_id = {s3.access_key_id}" in local
    assert "remote = s3" in local, "the S3 remote is this machine's default"
    assert "remote = s3" not in committed, "the committed default stays the local remote"
    # DVC's own .dvc/.gitignore keeps config.local out of git.
    status = git("status", "--porcelain", "--ignored", cwd=project, env=env).stdout
    assert "!! .dvc/config.local" in status

    # Back to environment credentials: the stored secrets are removed, not left to shadow them.
    configure("--credentials", "env", cwd=project, env=env)
    local = (project / ".dvc/config.local").read_text()
    assert s3.secret_access_key not in local and s3.access_key_id not in local
    assert "remote = s3" in local
    dvc("push", cwd=project, env=env)  # the environment alone authenticates
    assert s3.object_keys(bucket, "store/")


def test_configure_scopes_and_defaults(tmp_path, home, toy_templates):
    """--scope local keeps the bucket out of git; --make-default project commits the default."""
    env = isolated_env(home, LETTERWISE_S3_URL="s3://private-bucket/me", AWS_PROFILE="research")
    project = toy_project(toy_templates, tmp_path / "project")
    committed = (project / ".dvc/config").read_text()
    configure("--scope", "local", "--name", "mine", cwd=project, env=env)
    assert (project / ".dvc/config").read_text() == committed
    local = (project / ".dvc/config.local").read_text()
    assert "url = s3://private-bucket/me" in local and "profile = research" in local
    assert "remote = mine" in local

    configure("--make-default", "project", cwd=project, env=env)
    config = (project / ".dvc/config").read_text()
    assert "remote = s3" in config and "url = s3://private-bucket/me" in config
    listed = dvc("remote", "list", cwd=project, env=env).stdout
    assert "mine" in listed and "s3" in listed


@pytest.mark.parametrize(
    ("args", "env_extra", "message"),
    [
        ([], {}, "LETTERWISE_S3_URL"),
        (["--url", "https://example.com/bucket"], {}, "must start with s3://"),
        (["--url", "s3://Bad_Bucket/x"], {}, "not a valid bucket name"),
        (["--url", "s3://good-bucket", "--endpoint-url", "127.0.0.1:9000"], {}, "https://host"),
        (["--url", "s3://good-bucket", "--region", "EU WEST"], {}, "not a region name"),
        (
            ["--url", "s3://good-bucket"],
            {"AWS_ACCESS_KEY_ID": "AKIAONLYHALF"},
            "AWS_SECRET_ACCESS_KEY is not set",
        ),
        (["--url", "s3://good-bucket", "--credentials", "local"], {}, "AWS_ACCESS_KEY_ID"),
        (["--url", "s3://good-bucket", "--name", "local"], {}, "committed directory remote"),
        (
            ["--url", "s3://good-bucket", "--scope", "local", "--make-default", "project"],
            {},
            "only this machine defines",
        ),
    ],
)
def test_configure_rejects_bad_input_naming_the_problem(
    tmp_path, home, toy_templates, args, env_extra, message
):
    env = isolated_env(home, **env_extra)
    project = toy_project(toy_templates, tmp_path / "project")
    before = (project / ".dvc/config").read_text()
    done = configure(*args, cwd=project, env=env, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert (project / ".dvc/config").read_text() == before, "config touched on bad input"
    assert not (project / ".dvc/config.local").exists()


# --------------------------------------------------------------------------- faults


@pytest.mark.slow
def test_wrong_credentials_fail_clearly_and_lose_nothing(tmp_path, home, s3, toy_templates):
    bucket = s3.create_bucket("wrong-credentials")
    env = s3_env(home, s3, bucket, "store")
    project = toy_project(toy_templates, tmp_path / "project")
    configure(cwd=project, env=env)
    workspace, cache = digest_tree(project, [TOY_OUT]), cache_digest(project)

    wrong_secret = {**env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    unknown_key = {**env, "AWS_ACCESS_KEY_ID": "AKIAUNKNOWNKEY000000"}
    for bad_env, reason in ((wrong_secret, "signature"), (unknown_key, "does not exist")):
        checked = configure("--check", cwd=project, env=bad_env, check=False)
        assert checked.returncode == 2
        assert "refused the credentials" in checked.stderr and reason in checked.stderr
    # DVC itself gets a bare 403 either way (HEAD responses carry no reason).
    pushed = dvc("push", cwd=project, env=unknown_key, check=False)
    assert pushed.returncode != 0
    assert "403" in pushed.stderr and "Forbidden" in pushed.stderr, pushed.stderr
    pulled = dvc("pull", cwd=project, env=wrong_secret, check=False)
    assert pulled.returncode != 0 and "Forbidden" in pulled.stderr, pulled.stderr
    assert s3.object_keys(bucket) == [], "a refused push wrote something"
    assert digest_tree(project, [TOY_OUT]) == workspace
    assert cache_digest(project) == cache

    dvc("push", cwd=project, env=env)  # the right key still works afterwards
    assert len(s3.object_keys(bucket)) == cache_objects(project)


def test_unreachable_endpoint_fails_fast_and_loses_nothing(tmp_path, home, s3, toy_templates):
    closed = f"http://127.0.0.1:{free_port()}"
    # One botocore attempt: the default retries with backoff take ~10 s to say the same thing.
    env = {
        **s3_env(home, s3, "any-bucket", "store"),
        "LETTERWISE_S3_ENDPOINT_URL": closed,
        "AWS_MAX_ATTEMPTS": "1",
    }
    project = toy_project(toy_templates, tmp_path / "project")
    configure("--connect-timeout", "2", cwd=project, env=env)
    assert "connect_timeout = 2" in (project / ".dvc/config").read_text()
    workspace, cache = digest_tree(project, [TOY_OUT]), cache_digest(project)

    checked = configure("--connect-timeout", "2", "--check", cwd=project, env=env, check=False)
    assert checked.returncode == 2
    assert f"cannot reach {closed}" in checked.stderr

    pushed = dvc("push", cwd=project, env=env, check=False)
    assert pushed.returncode != 0
    assert "Could not connect to the endpoint URL" in pushed.stderr, pushed.stderr
    assert digest_tree(project, [TOY_OUT]) == workspace
    assert cache_digest(project) == cache


def test_missing_bucket_fails_clearly_and_is_not_created(tmp_path, home, s3, toy_templates):
    env = s3_env(home, s3, "no-such-letterwise-bucket", "store")
    project = toy_project(toy_templates, tmp_path / "project")
    configure(cwd=project, env=env)
    workspace, cache = digest_tree(project, [TOY_OUT]), cache_digest(project)

    checked = configure("--check", cwd=project, env=env, check=False)
    assert checked.returncode == 2
    assert "bucket 'no-such-letterwise-bucket' does not exist" in checked.stderr

    pushed = dvc("push", cwd=project, env=env, check=False)
    assert pushed.returncode != 0
    assert "NoSuchBucket" in pushed.stderr or "does not exist" in pushed.stderr, pushed.stderr
    assert "no-such-letterwise-bucket" not in s3.bucket_names()
    assert digest_tree(project, [TOY_OUT]) == workspace
    assert cache_digest(project) == cache


@pytest.mark.parametrize(
    "sig",
    # SIGINT races DVC's own transfer loop: on a loaded machine the push can finish first.
    [signal.SIGKILL, pytest.param(signal.SIGINT, marks=[pytest.mark.slow, pytest.mark.racy])],
    ids=["killed", "ctrl-c"],
)
@pytest.mark.slow
def test_interrupted_push_then_repeated_completes(tmp_path, home, s3, toy_templates, sig):
    bucket = s3.create_bucket(f"interrupted-{sig.name.lower()}")
    env = s3_env(home, s3, bucket, "store")
    project = toy_project(toy_templates, tmp_path / "project", files=150)
    configure(cwd=project, env=env)
    workspace, cache = digest_tree(project, [TOY_OUT]), cache_digest(project)
    total = cache_objects(project)  # 150 files + the directory's .dir manifest
    assert total == 151

    # One transfer at a time, stopped once some (not all) objects have landed.
    push = subprocess.Popen(
        [sys.executable, "-m", "dvc", "push", "-j", "1"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while len(s3.object_keys(bucket)) < 10 and push.poll() is None:
        assert time.monotonic() < deadline, "push made no progress"
        time.sleep(0.05)
    push.send_signal(sig)
    output, _ = push.communicate(timeout=60)
    assert push.returncode != 0, f"push was not interrupted:\n{output}"
    landed = len(s3.object_keys(bucket))
    assert 0 < landed < total, f"{landed} of {total} objects: not a partial push"
    # The directory's manifest goes last, so a partial push never looks like a complete one.
    manifest = yaml.safe_load((project / "dvc.lock").read_text())["stages"]["make"]["outs"][0]
    manifest_key = f"store/files/md5/{manifest['md5'][:2]}/{manifest['md5'][2:]}"
    assert manifest_key not in s3.object_keys(bucket)

    assert digest_tree(project, [TOY_OUT]) == workspace
    assert cache_digest(project) == cache
    status = dvc("status", "--cloud", "--json", cwd=project, env=env).stdout
    assert json.loads(status), "the remote is reported complete after a partial push"

    # Repeating the push sends only what is missing, then a wiped clone pulls identical bytes.
    again = dvc("push", cwd=project, env=env)
    assert pushed_count(again.stdout) == total - landed
    assert len(s3.object_keys(bucket)) == total and manifest_key in s3.object_keys(bucket)
    wipe_local_data(project, (TOY_OUT,))
    dvc("pull", cwd=project, env=env)
    assert digest_tree(project, [TOY_OUT]) == workspace


# --------------------------------------------------------------------------- the data stages


def pipeline_outputs(dvc_yaml: Path) -> set[str]:
    """Every out/metric/plot path in dvc.yaml: what a copy of the working tree must leave out."""
    spec = yaml.safe_load(dvc_yaml.read_text())
    paths: set[str] = set()
    for stage in spec.get("stages", {}).values():
        for key in ("outs", "metrics", "plots"):
            for entry in stage.get(key, []) or []:
                paths.update(entry if isinstance(entry, dict) else [entry])
    return paths


def copy_working_tree(destination: Path) -> None:
    """The repo's tracked and untracked-not-ignored files, minus pipeline outputs, dvclive/ and
    dvc.lock (the copy reproduces its own: a lock naming outputs it lacks would fail its push)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    outputs = pipeline_outputs(REPO_ROOT / "dvc.yaml") | {
        "dvclive",
        "dvc.lock",
        ".dvc/config.local",
    }
    for rel in filter(None, listed):
        if any(rel == out or rel.startswith(out.rstrip("/") + "/") for out in outputs):
            continue
        source = REPO_ROOT / rel
        if source.is_file():
            target = destination / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


@pytest.fixture(scope="module")
def data_project(tmp_path_factory) -> Path:
    """A git clone-alike of this repo with the data stages reproduced by `dvc repro` (qwen3-tiny
    tokenizer, small sizes) and dvc.lock committed: the Mac side of the workflow."""
    if not (REPO_ROOT / "stages" / "build_dataset.py").exists():
        pytest.skip("the build_dataset stage is not written yet")
    root = tmp_path_factory.mktemp("data-project")
    home = make_home(root / "home")
    project = root / "letterwise"
    project.mkdir()
    copy_working_tree(project)
    write_params(project, {"model": "qwen3-tiny", **SMALL_DATA})
    env = isolated_env(home)
    git("init", "-q", cwd=project, env=env)
    git("add", "-A", cwd=project, env=env)
    git("commit", "-q", "-m", "letterwise working tree", cwd=project, env=env)
    dvc("repro", "build_dataset", cwd=project, env=env)
    git("add", "-A", cwd=project, env=env)
    git("commit", "-q", "-m", "data stages reproduced", cwd=project, env=env)
    return project


def clone_of(project: Path, destination: Path) -> Path:
    """A copy with its own DVC cache (as on another machine); the HOME fixture differs too."""
    shutil.copytree(project, destination, symlinks=True)
    return destination


@pytest.mark.slow
def test_data_stages_push_wipe_pull_round_trip(tmp_path, home, s3, data_project):
    bucket = s3.create_bucket("letterwise-data")
    env = s3_env(home, s3, bucket, "dvcstore")
    project = clone_of(data_project, tmp_path / "mac")
    configure("--check", cwd=project, env=env)
    workspace = digest_tree(project, DATA_OUTS)
    assert workspace

    started = time.perf_counter()
    pushed = dvc("push", cwd=project, env=env)
    push_s = time.perf_counter() - started
    remote = s3.object_keys(bucket, "dvcstore/")
    assert pushed_count(pushed.stdout) == len(remote)
    cache = project / ".dvc" / "cache"
    assert all((cache / key.removeprefix("dvcstore/")).is_file() for key in remote)
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    for stage, out in (("filter_tokens", "data/tokens"), ("build_dataset", "data/dataset")):
        md5 = next(o["md5"] for o in lock["stages"][stage]["outs"] if o["path"] == out)
        assert f"dvcstore/files/md5/{md5[:2]}/{md5[2:]}" in remote, f"{out} manifest not pushed"

    wipe_local_data(project, DATA_OUTS)
    started = time.perf_counter()
    # --allow-missing: train/eval outputs are not in dvc.lock yet (they run on the Studio).
    dvc("pull", "--allow-missing", cwd=project, env=env)
    pull_s = time.perf_counter() - started
    assert digest_tree(project, DATA_OUTS) == workspace, "pulled bytes differ"
    status = dvc("status", "--with-deps", "build_dataset", cwd=project, env=env).stdout
    assert "up to date" in status, status
    size = sum((project / rel).stat().st_size for rel in workspace)
    print(f"\n{len(remote)} objects, {size / 1e6:.1f} MB: push {push_s:.1f}s, pull {pull_s:.1f}s")


@pytest.mark.slow
def test_experiment_round_trip_between_two_clones(tmp_path, home, s3, data_project):
    """Mac: repro, commit the remote, push. Studio: fresh clone, `exp run --pull --allow-missing`,
    `exp push`. Mac: `exp pull`; `exp show` lists it; its outputs are the Studio's bytes."""
    bucket = s3.create_bucket("letterwise-exp")
    env = s3_env(home, s3, bucket, "dvcstore")
    origin = tmp_path / "origin.git"
    git("init", "-q", "--bare", str(origin), cwd=tmp_path, env=env)

    mac = clone_of(data_project, tmp_path / "mac")
    configure(cwd=mac, env=env)
    git("commit", "-q", "-m", "S3 remote", ".dvc/config", cwd=mac, env=env)  # once, for the team
    dvc("push", cwd=mac, env=env)
    git("remote", "add", "origin", str(origin), cwd=mac, env=env)
    git("push", "-q", "origin", "main", cwd=mac, env=env)

    git("clone", "-q", str(origin), "studio", cwd=tmp_path, env=env)
    studio = tmp_path / "studio"
    configure(cwd=studio, env=env)  # credentials + this machine's default; .dvc/config unchanged
    assert git("status", "--porcelain", cwd=studio, env=env).stdout == ""
    dvc(
        "exp", "run", "--pull", "--allow-missing", "-n", "min3", "filter_tokens",
        "-S", "filter_tokens.min_length=3", cwd=studio, env=env,
    )  # fmt: skip
    tokens = [json.loads(line) for line in (studio / "data/tokens/tokens.jsonl").open()]
    assert tokens and min(len(row["string"]) for row in tokens) == 3
    exp_files = ["data/tokens", "metrics/filter_tokens.json"]
    studio_outputs = digest_tree(studio, exp_files)
    dvc("exp", "push", "origin", "min3", cwd=studio, env=env)

    cache_before_pull = cache_digest(mac)
    dvc("exp", "pull", "origin", "min3", cwd=mac, env=env)
    assert set(cache_before_pull) < set(cache_digest(mac)), "the exp's outputs came via S3"
    shown = json.loads(dvc("exp", "show", "--json", cwd=mac, env=env).stdout)
    experiments = [exp for base in shown for exp in base.get("experiments") or []]
    assert "min3" in {exp.get("name") for exp in experiments}
    rev = next(exp for exp in experiments if exp.get("name") == "min3")["revs"][0]
    assert rev["data"]["params"]["params.yaml"]["data"]["filter_tokens"]["min_length"] == 3
    # `dvc exp apply` would also report the train/eval outputs this data-only experiment never
    # made; a branch plus `checkout --allow-missing` restores exactly what it has.
    dvc("exp", "branch", "min3", "exp-min3", cwd=mac, env=env)
    git("checkout", "-q", "exp-min3", cwd=mac, env=env)
    dvc("checkout", "--allow-missing", cwd=mac, env=env)
    assert digest_tree(mac, exp_files) == studio_outputs


# --------------------------------------------------------------------------- setup_studio.sh


def test_setup_studio_refuses_a_machine_without_gpu(tmp_path):
    """No nvidia-smi on PATH: a clear message, a non-zero exit, and nothing installed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    # the interpreter binary itself: a `python3` found on PATH may be a shim (pyenv) that does
    # not run under this bare PATH
    (bin_dir / "python3").symlink_to(os.path.realpath(sys.executable))
    venv = tmp_path / "venv"
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "VENV": str(venv)}
    done = run(["bash", str(SETUP_STUDIO)], REPO_ROOT, env, check=False)
    assert done.returncode == 3
    assert "no NVIDIA GPU: nvidia-smi is not on PATH" in done.stderr
    assert "switch the Studio to a GPU machine" in done.stderr
    assert not venv.exists(), "installed something on a machine without a GPU"


def test_setup_studio_refuses_a_broken_driver(tmp_path):
    """nvidia-smi present but failing (driver not loaded): stopped before any install."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nvidia-smi"
    fake.write_text(
        "#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the "
        "NVIDIA driver.' >&2\nexit 9\n"
    )
    fake.chmod(0o755)
    venv = tmp_path / "venv"
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "VENV": str(venv),
    }
    done = run(["bash", str(SETUP_STUDIO)], REPO_ROOT, env, check=False)
    assert done.returncode == 3
    assert "the NVIDIA driver is not usable" in done.stderr
    assert "could not communicate with the NVIDIA driver" in done.stderr
    assert not venv.exists()


def test_setup_studio_rejects_unknown_arguments(tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    done = run(["bash", str(SETUP_STUDIO), "--gpu=a100"], REPO_ROOT, env, check=False)
    assert done.returncode == 2 and "unknown argument: --gpu=a100" in done.stderr
    usage = run(["bash", str(SETUP_STUDIO), "--help"], REPO_ROOT, env)
    assert "--skip-install" in usage.stdout and "TORCH_INDEX_URL" in usage.stdout


def test_gpu_smoke_says_it_needs_cuda():
    """On this CPU-only machine the smoke check stops at once, with exit code 3."""
    done = run(
        [sys.executable, str(REPO_ROOT / "scripts" / "gpu_smoke.py")],
        REPO_ROOT,
        {**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        check=False,
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert "no CUDA GPU visible" in done.stderr


def test_setup_studio_checks_cuda_after_install(tmp_path):
    """A GPU that the installed torch cannot use (here: the CPU build) stops with exit code 4."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nvidia-smi"
    fake.write_text(
        '#!/bin/sh\ncase "$1" in\n  --query-gpu*) echo "NVIDIA L4, 23034 MiB, 550.54.15" ;;\n'
        '  *) echo "| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4 |" ;;\n'
        "esac\n"
    )
    fake.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "VENV": str(Path(sys.executable).parent.parent),  # this CPU-only venv, not reinstalled
        "CUDA_VISIBLE_DEVICES": "",
    }
    done = run(["bash", str(SETUP_STUDIO), "--skip-install"], REPO_ROOT, env, check=False)
    assert "GPU: NVIDIA L4, 23034 MiB" in done.stdout
    assert "CUDA Version: 12.4" in done.stdout
    assert done.returncode == 4, done.stdout + done.stderr
    assert "sees no GPU" in done.stderr and "TORCH_INDEX_URL" in done.stderr
