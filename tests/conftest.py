"""Shared fixtures. Everything runs offline: no test may reach the Hugging Face Hub."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
# Stages would reuse answers across runs (letterwise.eval.answer_cache); tests measure each run
# afresh, and the cache's own tests turn it on with a folder of their own.
os.environ["LETTERWISE_ANSWER_CACHE"] = "off"


def deep_update(base: dict, overrides: dict) -> dict:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_update(merged[key], value)
        else:
            merged[key] = value
    return merged


def write_params(directory: Path, overrides: dict | None = None) -> Path:
    """params.yaml in `directory`: the repo's defaults with `overrides` merged in."""
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    path = directory / "params.yaml"
    path.write_text(yaml.safe_dump(deep_update(params, overrides or {}), sort_keys=False))
    return path


SMALL_DATA = {
    "build_dataset": {"max_train_tokens": 400, "validation_words": 20, "test_words": 40},
}


@pytest.fixture(scope="session")
def qwen3_data(tmp_path_factory) -> Path:
    """Both data stages run once on the real bundled Qwen3 tokenizer, in a scratch directory."""
    from stages import build_dataset, filter_tokens

    workdir = tmp_path_factory.mktemp("qwen3-data")
    write_params(workdir, {"model": "qwen3-tiny", **SMALL_DATA})
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        filter_tokens.main([])
        build_dataset.main([])
    finally:
        os.chdir(cwd)
    return workdir


# The fixtures below are shared by several test modules. They live here, not in a test module
# that others import them from: an imported session fixture is a second definition, so pytest
# would build it again for each module that imports it.


@pytest.fixture(scope="session")
def qwen3_run(qwen3_data, tmp_path_factory) -> Path:
    """A real qwen3-tiny run: the data stages' output, then train and both eval stages."""
    import shutil

    from tests.test_publish import RUN_PARAMS, base_env, run_stage

    workdir = tmp_path_factory.mktemp("qwen3-run")
    for name in ("data", "metrics"):
        shutil.copytree(qwen3_data / name, workdir / name)
    write_params(workdir, RUN_PARAMS)
    for stage in ("train", "eval_spelling", "eval_position"):
        result = run_stage(workdir, stage, base_env())
        assert result.returncode == 0, f"{stage} failed:\n{result.stderr[-3000:]}"
    return workdir


@pytest.fixture(scope="session")
def published(qwen3_run, tmp_path_factory):
    """The run published locally (offline, no token, no repo id): (its folder, the process)."""
    from tests.test_publish import base_env, copy_run, run_stage

    workdir = copy_run(qwen3_run, tmp_path_factory.mktemp("published") / "run")
    result = run_stage(workdir, "publish", base_env())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return workdir, result


@pytest.fixture(scope="session")
def tiny_repro(tmp_path_factory) -> tuple[Path, str]:
    """A fresh clone on TINY_RUN (params committed) after one full `dvc repro` (its lock and
    outputs not committed, as after `make repro`), and that repro's stdout. Tests that need a
    reproduced clone copy it (tests.test_pipeline.copy_clone) rather than repro again."""
    from tests.test_pipeline import TINY_RUN, dvc, fresh_clone, git, set_params

    clone = fresh_clone(tmp_path_factory.mktemp("tiny-repro") / "clone")
    set_params(clone, TINY_RUN)
    git(clone, "commit", "-qam", "tiny run")
    return clone, dvc(clone, "repro").stdout
