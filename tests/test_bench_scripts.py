"""The benchmark scripts run, at tiny sizes, and write the numbers they claim to measure.

Speeds are never asserted (a benchmark reports; it does not pass or fail on time). These tests
check only that each script runs end to end and that its JSON holds positive, consistent counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT


def run_script(script: str, *args: str, cwd: Path, out: Path | None = None) -> dict:
    out = out or cwd / "result.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / script), *args, "--out", str(out)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(out.read_text())


def numbers_in(tree) -> list[float]:
    if isinstance(tree, dict):
        return [n for value in tree.values() for n in numbers_in(value)]
    if isinstance(tree, list):
        return [n for value in tree for n in numbers_in(value)]
    return [tree] if isinstance(tree, (int, float)) and not isinstance(tree, bool) else []


@pytest.mark.slow
def test_bench_generation_tiny(tmp_path):
    result = run_script(
        "bench_generation.py", "--preset", "qwen3-tiny", "--questions", "6", "--batch-size", "3",
        cwd=tmp_path,
    )  # fmt: skip
    text = json.dumps(result)
    assert "qwen3-tiny" in text
    assert numbers_in(result) and all(n >= 0 for n in numbers_in(result))


@pytest.mark.slow
def test_bench_choice_tiny(tmp_path):
    result = run_script(
        "bench_choice.py", "--preset", "qwen3-tiny", "--questions", "4", "--batch-size", "2",
        cwd=tmp_path,
    )  # fmt: skip
    assert "qwen3-tiny" in json.dumps(result)
    assert numbers_in(result) and all(n >= 0 for n in numbers_in(result))


@pytest.mark.slow
def test_bench_data_stages_tiny(tmp_path):
    result = run_script(
        "bench_data_stages.py", "--model", "qwen3-tiny", "--repeats", "1",
        cwd=REPO_ROOT, out=tmp_path / "result.json",
    )  # fmt: skip
    assert set(result["stages"]) == {"filter_tokens", "build_dataset"}
    assert numbers_in(result) and all(n >= 0 for n in numbers_in(result))


@pytest.mark.slow
def test_bench_lm_eval_tiny(tmp_path):
    result = run_script(
        "bench_lm_eval.py", "--questions", "1", "--batch-size", "3",
        "--dataset", str(tmp_path / "none"), "--adapter", str(tmp_path / "none"), cwd=tmp_path,
    )  # fmt: skip
    assert numbers_in(result) and all(n >= 0 for n in numbers_in(result))
