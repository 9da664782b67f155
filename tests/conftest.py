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
