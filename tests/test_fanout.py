"""The fan-out (letterwise.experiments.fanout): validation before anything starts, the dry-run
plan and its cost estimate, the Lightning job specs against lightning-sdk's real signatures, and
the local backend for real: three tiny cells in parallel against an S3 server and a bare git
remote, one of them killed and retried, every experiment gathered into the coordinator's
`dvc exp show`."""

from __future__ import annotations

import inspect
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from letterwise.experiments import cli, fanout, lightning, plan, runner
from letterwise.experiments.backend import GIT_TOKEN_ENV
from letterwise.experiments.grid import GridError
from tests.conftest import REPO_ROOT

# lightning_sdk asks PyPI for a newer release at import unless told not to (tests are offline);
# imported here, not inside a test, because its import needs a real stderr (capsys has none).
os.environ.setdefault("LIGHTNING_DISABLE_VERSION_CHECK", "1")
try:
    import lightning_sdk
except ImportError:  # the dev extra installs it
    lightning_sdk = None
needs_sdk = pytest.mark.skipif(lightning_sdk is None, reason="lightning-sdk is not installed")

PARAMS = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
SECRET = "sentinel-secret-3f9c"  # a value that must never appear in a spec, a plan or a log


@pytest.fixture
def nothing_runs(monkeypatch):
    """Fail the test if anything starts a process (no clone, no job, no dvc)."""
    calls = []

    def refuse(args, *a, **k):
        calls.append(args)
        raise AssertionError(f"ran {args}")

    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    return calls


def grid_file(tmp_path: Path, groups: dict) -> str:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    return str(path)


def estimates_file(tmp_path: Path) -> str:
    """Round numbers, so the expected totals can be worked out by hand."""
    path = tmp_path / "machines.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "machines": {"L4": {"usd_per_hour": 2.0, "speed": 2.0}},
                "hours_per_run": {"smollm2-135m": {"retrains": 1.0, "eval_only": 0.4}},
                "startup_minutes": 6,
            }
        )
    )
    return str(path)


def test_a_bad_cell_stops_everything_before_a_clone_or_job(tmp_path, monkeypatch, nothing_runs):
    monkeypatch.chdir(REPO_ROOT)
    grid = grid_file(
        tmp_path,
        {
            "ok": {"about": "fine", "runs": {"a": {"eval.max_questions": 3}}},
            "bad": {"about": "x", "runs": {"zero": {"eval.n_samples": 0}}},
        },
    )
    workdir = tmp_path / "cells"
    for backend in (["--on", "local", "--workdir", str(workdir)], ["--on", "lightning"]):
        extra = ["--machine", "L4"] if "lightning" in backend else []
        with pytest.raises(GridError) as error:
            cli.main(["run", "ok", "bad", "--grid", grid, *backend, *extra])
        message = str(error.value)
        assert "group 'bad', run 'zero'" in message and "eval.n_samples" in message
        assert "nothing was" in message
    assert nothing_runs == [] and not workdir.exists()


def test_flags_are_checked_before_anything_runs(monkeypatch, nothing_runs):
    monkeypatch.chdir(REPO_ROOT)
    with pytest.raises(plan.FanoutError, match="needs --machine"):
        fanout.main(["seeds", "--on", "lightning"])
    with pytest.raises(plan.FanoutError, match=r"'K80' is not in .*L4"):
        fanout.main(["seeds", "--on", "lightning", "--machine", "K80"])
    with pytest.raises(plan.FanoutError, match="at least 1"):
        fanout.main(["seeds", "--on", "local", "--max-parallel", "0"])
    assert nothing_runs == []


@pytest.mark.parametrize(
    ("changes", "kind"),
    [
        ({"eval.temperature": 0.3, "eval.decoding": "sampled"}, "eval_only"),
        ({"eval.prompting": ["direct", "spell_first"]}, "eval_only"),
        ({"train.seed": 1}, "retrains"),
        ({"train.lora.r": 8}, "retrains"),
        ({"build_dataset.replay_share": 0.25}, "retrains"),
        ({"model": "qwen3-4b"}, "retrains"),
        ({"seed": 7}, "retrains"),
    ],
)
def test_what_a_cell_reruns_follows_dvc_yaml(changes, kind):
    # by hand from dvc.yaml: train reads model, seed, train; the evals read model,
    # train.backend and eval
    assert plan.run_kind(changes, plan.stage_params(REPO_ROOT / "dvc.yaml")) == kind


def test_dry_run_prints_the_plan_and_the_estimate(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    grid = grid_file(
        tmp_path,
        {
            "seeds": {
                "about": "three training seeds",
                "runs": {f"s{i}": {"train.seed": i} for i in (1, 2, 3)},
            },
            "greedy": {"about": "eval only", "runs": {"g": {"eval.decoding": "greedy"}}},
        },
    )
    args = ["run", "seeds", "greedy", "--grid", grid, "--estimates", estimates_file(tmp_path)]
    code = cli.main([*args, "--on", "lightning", "--machine", "L4", "--max-parallel", "2",
                             "--dry-run"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    # by hand: a seed cell retrains: 1.0 h / speed 2 + 6 min start = 0.6 h; the greedy cell is
    # eval only: 0.4 / 2 + 0.1 = 0.3 h. 3 x 0.6 + 0.3 = 2.1 machine-hours x $2 = $4.20.
    # Two at a time in grid order: s1, s2 end at 0.6; s3 and g start then; s3 ends at 1.2 h.
    assert "fan-out: 4 cell(s) as Lightning jobs on L4, 2 at a time" in out
    assert "seeds-s1" in out and "retrains" in out and "~0.60 h" in out
    assert "greedy-g" in out and "eval_only" in out and "~0.30 h" in out
    assert "= 2.10 machine-hours x $2.00/h = $4.20" in out
    assert "about 1.20 h wall time at 2 at a time" in out
    assert "ESTIMATE" in out
    assert "dvc exp run --pull --allow-missing -n seeds-s1 -S train.seed=1" in out
    assert SECRET not in out


def seeds_cells() -> list[plan.Cell]:
    return plan.plan_cells(
        REPO_ROOT / "experiments/grid.yaml", REPO_ROOT / "params.yaml", ["seeds"],
        REPO_ROOT / "dvc.yaml",
    )  # fmt: skip


def lightning_backend(**overrides) -> lightning.LightningBackend:
    settings = {
        "machine": "L4",
        "repo_dir": "/teamspace/studios/this_studio/letterwise",
        "git_remote": "origin",
        "base": "0123456789abcdef0123456789abcdef01234567",
        "run_id": "1203-120000",
        "required_env": (*lightning.S3_SECRETS, GIT_TOKEN_ENV),
        "studio": "letterwise-train",
        "teamspace": None,
        "poll_seconds": 0.0,
    }
    return lightning.LightningBackend(**{**settings, **overrides})


@needs_sdk
def test_lightning_job_specs_bind_to_the_real_sdk(monkeypatch):
    from lightning_sdk import Job, Machine

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv(GIT_TOKEN_ENV, SECRET)
    backend = lightning_backend()
    names = set()
    for cell in seeds_cells():
        spec = backend.spec(cell, 1)
        kwargs = spec.run_kwargs()
        inspect.signature(Job.run).bind(**kwargs)  # TypeError on any name the SDK lacks
        assert kwargs["machine"] == Machine.from_str("L4")
        assert isinstance(kwargs["machine"], Machine)
        assert kwargs["max_run_attempts"] == 1 and kwargs["studio"] == "letterwise-train"
        command = kwargs["command"]
        assert command.startswith("cd /teamspace/studios/this_studio/letterwise\n")
        assert f"git checkout -q --detach {backend.base}" in command
        assert f"dvc exp run --pull --allow-missing -n {cell.name} -S train.seed=" in command
        assert f"dvc exp push origin {cell.name}" in command
        # the secrets by name only: checked in the job, never sent
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "LETTERWISE_GIT_TOKEN"):
            assert f"${{{name}:?" in command
        assert SECRET not in repr(kwargs)
        assert all(isinstance(v, str) for v in kwargs["env"].values())
        names.add(kwargs["name"])
    assert names == {f"lw-1203-120000-seeds-s{i}-a1" for i in (1, 2, 3)}
    # every machine the estimates declare is one the SDK knows (not an ad-hoc name)
    declared = plan.load_estimates(REPO_ROOT / "experiments/machines.yaml").machines
    predefined = [m for m in vars(Machine).values() if isinstance(m, Machine)]
    for name in declared:
        assert any(Machine.from_str(name) is m for m in predefined), name
    assert lightning_sdk.Status.Completed.value == "Completed"


def test_a_job_command_stops_on_a_missing_secret_naming_it(tmp_path):
    """The job's script, run for real under bash: one secret missing, the other set."""
    command = lightning_backend(repo_dir=str(tmp_path)).spec(seeds_cells()[0], 1).command
    env = {"PATH": os.environ["PATH"], "AWS_ACCESS_KEY_ID": SECRET}
    done = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True)
    assert done.returncode != 0
    assert "AWS_SECRET_ACCESS_KEY: is not set" in done.stderr
    assert SECRET not in done.stdout + done.stderr


class RecordedJob:
    """What Job.run returns, for a service this test cannot reach: a real lightning_sdk.Status
    sequence per job name (Failed for the first attempt of one cell)."""

    def __init__(self, statuses):
        self._statuses = list(statuses)
        self.stopped = False

    @property
    def status(self):
        return self._statuses.pop(0) if len(self._statuses) > 1 else self._statuses[0]

    def stop(self):
        self.stopped = True


@needs_sdk
def test_the_coordinator_retries_a_failed_job_once(capsys):
    """A job that fails, and a submission the service refuses, are each retried once."""
    from lightning_sdk import Job, Status

    submitted = []

    def submit(**kwargs):
        inspect.signature(Job.run).bind(**kwargs)
        submitted.append(kwargs["name"])
        if kwargs["name"].endswith("seeds-s1-a1"):
            raise RuntimeError("the service did not accept the job")
        failing = kwargs["name"].endswith("seeds-s2-a1") or "seeds-s3" in kwargs["name"]
        end = Status.Failed if failing else Status.Completed
        return RecordedJob([Status.Pending, Status.Running, end])

    console = Console(width=200)
    outcomes = runner.coordinate(seeds_cells(), lightning_backend(submit=submit), 2, console)
    assert {n: o.status for n, o in outcomes.items()} == {
        "seeds-s1": "succeeded",
        "seeds-s2": "succeeded",
        "seeds-s3": "failed",
    }
    assert all(outcome.attempts == 2 for outcome in outcomes.values())
    assert sorted(submitted) == sorted(
        f"lw-1203-120000-seeds-s{i}-a{attempt}" for i in (1, 2, 3) for attempt in (1, 2)
    )
    out = capsys.readouterr().out
    assert "seeds-s1: could not start attempt 1: the service did not accept the job" in out


# --------------------------------------------------------------------------- the local backend


@pytest.mark.slow
@pytest.mark.heavy
def test_local_fanout_three_tiny_cells_one_killed(tmp_path):
    """Three eval-only cells at once against moto S3 and a bare git repo; the middle cell's
    first attempt is SIGKILLed mid-stage and retried; all three land in `dvc exp show`.
    Measured on the shared 2-core machine: 450 s at a load average of ~9 (setup, i.e. the tiny
    reference run and the pushes, 213 s; the fan-out 237 s) and 868 s at ~13 (518 s + 342 s)."""
    from tests.fanout_project import run, tiny_origin, write_grid
    from tests.s3_server import start_s3_server

    started = time.perf_counter()
    s3 = start_s3_server(tmp_path)
    try:
        tiny = tiny_origin(tmp_path / "setup", s3, "letterwise-fanout")
        setup_s = time.perf_counter() - started
        questions = {"a": 1, "b": 2, "c": 3}
        grid = write_grid(
            tmp_path / "grid.yaml", {k: {"eval.max_questions": v} for k, v in questions.items()}
        )
        workdir = tmp_path / "cells"
        objects_before = set(s3.object_keys(tiny.bucket))
        fanned = time.perf_counter()
        coordinator = subprocess.Popen(
            [sys.executable, "-m", "letterwise.experiments", "run", "tiny", "--on", "local",
             "--max-parallel", "3", "--workdir", str(workdir), "--grid", str(grid)],
            cwd=tiny.project, env=tiny.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        # Kill tiny-b's first attempt once its evaluation has started: a machine lost mid-run.
        pid_file = workdir / "tiny-b" / "attempt-1.pid"
        log_file = workdir / "tiny-b" / "attempt-1.log"
        deadline = time.monotonic() + 600
        while "Running stage 'eval_spelling'" not in (
            log_file.read_text() if log_file.exists() else ""
        ):
            assert coordinator.poll() is None, coordinator.stdout.read()
            assert time.monotonic() < deadline, "tiny-b never reached eval_spelling"
            time.sleep(0.2)
        os.killpg(int(pid_file.read_text()), signal.SIGKILL)
        output, _ = coordinator.communicate(timeout=1200)
        fan_s = time.perf_counter() - fanned
        assert coordinator.returncode == 0, output[-4000:]
        flat = " ".join(output.split())
        assert "tiny-b: attempt 1 failed" in flat and "retrying" in flat
        assert "tiny-b: succeeded (attempt 2)" in flat
        assert (workdir / "tiny-b" / "attempt-2.log").exists()

        shown = json.loads(
            run([sys.executable, "-m", "dvc", "exp", "show", "--json"], tiny.project, tiny.env)
            .stdout
        )  # fmt: skip
        exps = {e["name"]: e["revs"][0] for b in shown for e in b.get("experiments") or []}
        assert set(exps) == {"tiny-a", "tiny-b", "tiny-c"}
        for cell, expected in questions.items():
            data = exps[f"tiny-{cell}"]["data"]
            assert data["params"]["params.yaml"]["data"]["eval"]["max_questions"] == expected
            metrics = data["metrics"]
            assert "spelling" in metrics["metrics/eval_spelling.json"]["data"]
            assert {"position", "count"} <= set(metrics["metrics/eval_position.json"]["data"])
        # the cells' outputs came through S3: new objects there, and in the coordinator's cache
        new_objects = set(s3.object_keys(tiny.bucket)) - objects_before
        assert new_objects
        cache = tiny.project / ".dvc" / "cache"
        assert all((cache / key.removeprefix("dvcstore/")).is_file() for key in new_objects)
        # the comparison the coordinator printed lists every cell
        assert all(f"tiny-{cell}" in output for cell in questions)
        print(f"\nsetup {setup_s:.0f} s; fan-out of 3 cells (one retried) {fan_s:.0f} s")
    finally:
        s3.stop()


def test_set_applies_to_every_cell_and_a_run_s_own_change_wins():
    common = plan.parse_sets(["model=qwen3-4b", "train.seed=9"])
    assert common == {"model": "qwen3-4b", "train.seed": 9}
    cells = plan.plan_cells(
        REPO_ROOT / "experiments/grid.yaml", REPO_ROOT / "params.yaml", ["seeds"],
        REPO_ROOT / "dvc.yaml", common,
    )  # fmt: skip
    assert [c.run.changes for c in cells] == [
        {"model": "qwen3-4b", "train.seed": i} for i in (1, 2, 3)
    ]
    assert {c.preset for c in cells} == {"qwen3-4b"}
    with pytest.raises(plan.FanoutError, match="unknown param 'modle'"):
        plan.parse_sets(["modle=qwen3-4b"])
    with pytest.raises(plan.FanoutError, match="expected KEY=VALUE"):
        plan.parse_sets(["model"])
