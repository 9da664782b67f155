"""The experiment grid (experiments/grid.yaml, letterwise.experiments): validation before
anything is queued, skips with reasons, and the exact dvc commands it would run."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from letterwise.experiments.cli import main
from letterwise.experiments.grid import Grid, GridError, load_grid, plan, set_arguments
from tests.conftest import REPO_ROOT

PARAMS = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())


@pytest.fixture
def no_dvc(monkeypatch):
    """Fail the test if anything tries to run a command (nothing may be queued)."""
    calls = []

    def refuse(args, *a, **k):
        calls.append(args)
        raise AssertionError(f"ran {args}")

    monkeypatch.setattr(subprocess, "run", refuse)
    return calls


def write_grid(tmp_path, groups: dict) -> str:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    return str(path)


def test_every_run_of_the_committed_grid_is_a_valid_params_change():
    grid = load_grid(REPO_ROOT / "experiments/grid.yaml")
    runs = plan(grid, PARAMS, list(grid.groups))
    assert {"mode", "decoding", "temperature", "n_samples", "prompting"} <= set(grid.groups)
    # a training axis too
    assert {"lora_rank", "replay"} & set(grid.groups)
    assert len({run.name for run in runs}) == len(runs)
    # the verdict's arms and seeds, and the three axes of "recipe or model?" (recipe search on
    # validation only, dose-response in steps, a second model family)
    assert {"controls", "seeds", "control_seeds", "recipe", "dose", "models"} <= set(grid.groups)
    arms = {run.changes.get("build_dataset.arm") for run in runs if run.group == "controls"}
    assert arms == {"spelling", "negative_control", "positive_control"}
    assert all(run.changes["eval.split"] == "validation" for run in runs if run.group == "recipe")
    # one epoch = 4,000 training examples / batch 8 = 500 steps
    assert sorted(run.changes["train.max_steps"] for run in runs if run.group == "dose") == [
        40, 160, 320, 500
    ]
    # the control arms at every dose except the default's (its arms are the controls group)
    dose_controls = {(run.changes["build_dataset.arm"], run.changes["train.max_steps"])
                     for run in runs if run.group == "dose_controls"}  # fmt: skip
    assert dose_controls == {(arm, steps) for arm in ("negative_control", "positive_control")
                             for steps in (40, 160, 320)}  # fmt: skip
    assert {run.changes["model"] for run in runs if run.group == "models"} == {"gemma3-270m"}


def test_unknown_param_is_named_and_nothing_is_queued(tmp_path, no_dvc, capsys):
    grid = write_grid(
        tmp_path,
        {
            "ok": {"about": "fine", "runs": {"a": {"eval.decoding": "sampled"}}},
            "typo": {"about": "x", "runs": {"b": {"eval.tempreature": 0.5}}},
        },
    )
    with pytest.raises(GridError) as error:
        main(["--grid", grid, "--params", str(REPO_ROOT / "params.yaml")])
    message = str(error.value)
    assert "group 'typo', run 'b'" in message and "eval.tempreature" in message
    assert "temperature" in message  # the allowed keys are listed
    assert "nothing was" in message
    assert no_dvc == []


def test_bad_value_and_section_keys_are_refused(tmp_path):
    grid = Grid.model_validate(
        {
            "groups": {
                "g": {
                    "about": "x",
                    "runs": {"zero": {"eval.n_samples": 0}, "section": {"eval": "sampled"}},
                }
            }
        }
    )
    with pytest.raises(GridError) as error:
        plan(grid, PARAMS, ["g"])
    message = str(error.value)
    assert "run 'zero'" in message and "eval.n_samples" in message
    assert "'eval' is a section" in message


def test_unknown_group_and_malformed_grid(tmp_path):
    grid = load_grid(REPO_ROOT / "experiments/grid.yaml")
    with pytest.raises(GridError, match="unknown group"):
        plan(grid, PARAMS, ["nope"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("groups:\n  g:\n    runs: {}\n")
    with pytest.raises(GridError, match="about"):
        load_grid(bad)


def test_thinking_group_is_skipped_with_its_reason_on_smollm2(tmp_path, no_dvc, capsys):
    grid = write_grid(
        tmp_path,
        {
            "mode": {
                "about": "modes",
                "requires": "thinking_mode",
                "runs": {"thinking": {"eval.mode": "thinking"}},
            }
        },
    )
    assert main(["--grid", grid, "mode"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "skip mode-thinking: smollm2-135m has no thinking mode" in out
    assert no_dvc == []


def test_dry_run_prints_the_dvc_commands(tmp_path, capsys, no_dvc):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({**PARAMS, "model": "qwen3-tiny"}))
    code = main(["--params", str(params), "--dry-run", "-j", "2", "mode", "prompting"])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "dvc exp run --queue -n mode-non-thinking -S eval.mode=non-thinking "
        "-S eval.decoding=sampled",
        "dvc exp run --queue -n mode-thinking -S eval.mode=thinking -S eval.decoding=sampled",
        "dvc exp run --queue -n prompting-direct -S 'eval.prompting=[direct]'",
        "dvc exp run --queue -n prompting-spell-first -S 'eval.prompting=[direct, spell_first]'",
        "dvc queue start -j 2",
    ]
    assert no_dvc == []


def test_set_arguments_round_trip_through_yaml():
    args = set_arguments(
        {"eval.temperature": 0.3, "eval.prompting": ["direct", "spell_first"], "model": "qwen3-4b"}
    )
    pairs = dict(arg.split("=", 1) for arg in args[1::2])
    assert yaml.safe_load(pairs["eval.temperature"]) == 0.3
    assert yaml.safe_load(pairs["eval.prompting"]) == ["direct", "spell_first"]
    assert pairs["model"] == "qwen3-4b"


@pytest.mark.slow
def test_a_queued_eval_only_group_never_retrains(tiny_repro, tmp_path):
    """The grid's queue path for real, on qwen3-tiny: after a committed run, an eval-only group
    queued with `dvc exp run --queue` re-evaluates in DVC's temp workspace without training."""
    import json
    import os

    from tests.test_pipeline import VENV_BIN, copy_clone, dvc, git

    clone = copy_clone(tiny_repro[0], tmp_path / "clone")
    git(clone, "add", "-A")
    git(clone, "commit", "-qm", "tiny reference run")
    grid = clone / "grid.yaml"
    grid.write_text(
        yaml.safe_dump(
            {"groups": {"eval": {"about": "eval only", "runs": {"q4": {"eval.max_questions": 4}}}}}
        )
    )
    env = {**os.environ, "PATH": VENV_BIN + os.pathsep + os.environ["PATH"]}
    done = subprocess.run(
        [f"{VENV_BIN}/python", "-m", "letterwise.experiments", "--grid", str(grid), "eval"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    logs = dvc(clone, "queue", "logs", "eval-q4").stdout
    assert "Running stage 'eval_spelling'" in logs
    assert "Running stage 'train'" not in logs, logs[-3000:]
    shown = json.loads(dvc(clone, "exp", "show", "--json").stdout)
    names = {e.get("name") for base in shown for e in base.get("experiments") or []}
    assert "eval-q4" in names


def test_list_prints_list_values_as_text(capsys):
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "prompting-direct: -S 'eval.prompting=[direct]'" in out
