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
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
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
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    ).stdout


def dvc(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PATH": VENV_BIN + os.pathsep + os.environ["PATH"],
        "HF_HUB_OFFLINE": "1",
        "DVC_NO_ANALYTICS": "1",
    }
    result = subprocess.run(
        [str(Path(VENV_BIN) / "dvc"), *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def set_params(clone: Path, overrides: dict) -> None:
    path = clone / "params.yaml"
    path.write_text(yaml.safe_dump(deep_update(yaml.safe_load(path.read_text()), overrides)))


@pytest.mark.parametrize("model", ["smollm2-135m", "qwen3-4b"])
@pytest.mark.slow
def test_data_stages_repro_offline_then_noop(model, tmp_path):
    clone = fresh_clone(tmp_path)
    set_params(clone, {"model": model, "build_dataset": {"max_train_tokens": 300}})
    dvc(clone, "repro", "build_dataset")
    metrics = json.loads((clone / "metrics/details/build_dataset.json").read_text())
    assert metrics["model"] == model and metrics["leakage"]["leaked_words"] == 0
    assert (clone / "data/dataset/hf/dataset_dict.json").exists()
    start = time.perf_counter()
    again = dvc(clone, "repro", "build_dataset")
    print(f"no-op repro of build_dataset took {time.perf_counter() - start:.2f}s")
    assert "didn't change, skipping" in again.stdout and "Running stage" not in again.stdout
    # DVC keeps the outputs out of git.
    ignored = (clone / "data/.gitignore").read_text()
    assert "/tokens" in ignored and "/dataset" in ignored


TINY_RUN = {
    "model": "qwen3-tiny",
    "build_dataset": {"max_train_tokens": 60, "validation_words": 6, "test_words": 12},
    "train": {"max_steps": 4, "batch_size": 4, "save_steps": 2, "max_seq_length": 96},
    "eval": {"max_questions": 6, "batch_size": 8, "thinking_budget": 24},
    "publish": {"load_back_questions": 2},
}


def copy_clone(source: Path, destination: Path) -> Path:
    """A copy of a DVC clone with its git history and DVC cache; DVC's own scratch space
    (.dvc/tmp: locks, experiment workspaces) starts empty, as in a new checkout."""
    scratch = (source / ".dvc" / "tmp").resolve()
    shutil.copytree(
        source,
        destination,
        symlinks=True,
        ignore=lambda folder, names: names if Path(folder).resolve() == scratch else [],
    )
    return destination


def declared_outputs(clone: Path) -> list[str]:
    """Every out, metric and plot file that dvc.yaml declares."""
    spec = yaml.safe_load((clone / "dvc.yaml").read_text())
    paths = []
    for stage in spec["stages"].values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                paths.append(next(iter(entry)) if isinstance(entry, dict) else entry)
    paths += [next(iter(entry)) for entry in spec.get("plots", [])]
    return paths


@pytest.mark.slow
def test_full_pipeline_on_qwen3_tiny_then_noop(tiny_repro, tmp_path):
    clone = copy_clone(tiny_repro[0], tmp_path / "clone")
    first_stdout = tiny_repro[1]
    for stage in (
        "filter_tokens",
        "build_dataset",
        "train",
        "eval_spelling",
        "eval_position",
        "probe",
        "publish",
    ):
        assert f"Running stage '{stage}'" in first_stdout
    missing = [p for p in declared_outputs(clone) if not (clone / p).exists()]
    assert not missing, f"declared but not produced: {missing}"
    for task_file, tasks in (
        ("eval_spelling", ["spelling"]),
        ("eval_position", ["position", "count"]),
    ):
        metrics = json.loads((clone / f"metrics/details/{task_file}.json").read_text())
        for task in tasks:
            for side in ("base", "tuned"):
                assert metrics[task][side]["n"] == TINY_RUN["eval"]["max_questions"]
                assert 0.0 <= metrics[task][side]["accuracy"] <= 1.0
            assert 0.0 <= metrics[task]["delta"]["p_value"] <= 1.0
    assert (clone / "models/published/README.md").exists()
    assert json.loads((clone / "metrics/details/train.json").read_text())["steps"] == 4
    again = dvc(clone, "repro")
    assert "Running stage" not in again.stdout, again.stdout
    status = dvc(clone, "status")
    assert "up to date" in status.stdout


SMOLLM2_SMOKE = {
    # The default preset and every default instrument, at sizes that run in about a minute.
    "build_dataset": {"max_train_tokens": 80, "validation_words": 4, "test_words": 6},
    "train": {"max_steps": 3, "batch_size": 4, "save_steps": 3, "max_seq_length": 96},
    "eval": {"max_questions": 4, "batch_size": 8},
    "publish": {"load_back_questions": 2},
}


@pytest.mark.slow
@pytest.mark.heavy  # ~140 s; CI keeps the qwen3-tiny full pipeline, the study runs this preset
def test_default_preset_smoke_run_on_the_real_smollm2_weights(tmp_path):
    """The default preset end to end on its real (bundled) weights: train, eval, publish.
    The qwen3-tiny runs cover the Qwen3 code paths; this one covers the preset users start on."""
    clone = fresh_clone(tmp_path)
    set_params(clone, SMOLLM2_SMOKE)
    git(clone, "commit", "-qam", "smoke sizes")
    run = dvc(clone, "repro")
    assert "Running stage 'publish'" in run.stdout
    train = json.loads((clone / "metrics/details/train.json").read_text())
    assert train["steps"] == 3 and train["final_loss"] > 0
    provenance = json.loads((clone / "models/adapter/letterwise.json").read_text())
    assert provenance["preset"] == "smollm2-135m"
    assert provenance["base_weights"]["gguf_file"].endswith(".gguf")
    position = json.loads((clone / "metrics/details/eval_position.json").read_text())
    assert position["model"] == "smollm2-135m"
    for task in ("position", "count"):
        for instrument in (position[task], position[task]["cloze_calibrated"]):
            assert instrument["base"]["n"] == instrument["tuned"]["n"] == 4
    load_back = json.loads((clone / "metrics/details/publish.json").read_text())["load_back"]
    assert load_back["matches"] == load_back["questions"] > 0
    card = (clone / "models/published/README.md").read_text()
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card
