"""Comparing runs as a researcher does: `dvc exp show` lists headline numbers only (a column
budget), and the README's compare command fits a 200-column terminal with no collapsed column.

The experiments are real DVC experiments (`dvc exp save`) of a clone of this repo: its committed
params and metrics, a changed param per experiment, and results edited to differ."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT, deep_update

METRIC_COLUMN_BUDGET = 60
WIDTH = 200


def run(cwd: Path, *args: str, **env: str) -> str:
    done = subprocess.run(
        args, cwd=cwd, capture_output=True, text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT), **env),
    )  # fmt: skip
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


def placeholder_outputs(clone: Path) -> None:
    """Every DVC output present (tiny stand-ins), so `dvc exp save` can record the workspace."""
    spec = yaml.safe_load((clone / "dvc.yaml").read_text())["stages"]
    for stage in spec.values():
        for out in stage.get("outs", []) + stage.get("deps", []):
            path = clone / (out if isinstance(out, str) else next(iter(out)))
            if path.exists():
                continue
            if path.suffix:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("stand-in\n")
            else:
                path.mkdir(parents=True)
                (path / "stand-in.txt").write_text("stand-in\n")


def save_experiment(clone: Path, name: str, params: dict, tuned_position_choice: float) -> None:
    """An experiment: one changed param and a different position cloze-slot result, in both
    the headline metrics and the details (as a real run writes them)."""
    original = (clone / "params.yaml").read_text()
    (clone / "params.yaml").write_text(
        yaml.safe_dump(deep_update(yaml.safe_load(original), params), sort_keys=False)
    )
    files = {
        "metrics/eval_position.json": ("position", "cloze", "tuned"),
        "metrics/details/eval_position.json": ("position", "cloze", "tuned", "accuracy"),
    }
    kept = {}
    for name_, keys in files.items():
        kept[name_] = (clone / name_).read_text()
        data = json.loads(kept[name_])
        node = data
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = tuned_position_choice
        (clone / name_).write_text(json.dumps(data))
    run(clone, "dvc", "exp", "save", "-n", name)
    (clone / "params.yaml").write_text(original)
    for name_, text in kept.items():
        (clone / name_).write_text(text)


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    clone = tmp_path_factory.mktemp("compare") / "repo"
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(clone)], check=True)
    placeholder_outputs(clone)
    run(clone, "dvc", "commit", "-f")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    run(clone, *git, "commit", "-qam", "stand-in outputs")
    sampled = {"eval": {"decoding": "sampled", "temperature": 0.3}}
    save_experiment(clone, "sampled-t03", sampled, 0.321)
    save_experiment(clone, "lora-r32", {"train": {"lora": {"r": 32, "alpha": 64}}}, 0.432)
    return clone


@pytest.mark.slow
def test_dvc_exp_show_lists_headline_metrics_only(clone):
    shown = json.loads(run(clone, "dvc", "exp", "show", "--json"))

    def leaves(tree) -> int:
        return sum(leaves(v) for v in tree.values()) if isinstance(tree, dict) else 1

    rows = [
        row
        for baseline in shown
        for row in [baseline, *(r for e in baseline["experiments"] or [] for r in e["revs"])]
    ]
    assert len(rows) == 4  # workspace, the baseline commit, two experiments
    for row in rows:
        metrics = row["data"]["metrics"]
        counted = sum(leaves(entry["data"]) for entry in metrics.values())
        assert counted <= METRIC_COLUMN_BUDGET, f"{counted} metric columns"
        # what a run is compared by is all there: per task and instrument, with a CI
        position = metrics["metrics/eval_position.json"]["data"]["position"]
        for instrument in ("direct", "cloze", "cloze_calibrated"):
            expected = {"base", "tuned", "delta", "delta_low", "delta_high"}
            assert expected <= set(position[instrument])
    header = run(clone, "dvc", "exp", "show", "--csv").splitlines()[0].split(",")
    print(f"dvc exp show --csv: {len(header)} columns")


@pytest.mark.slow
def test_the_readme_compare_command_fits_200_columns(clone):
    readme = (REPO_ROOT / "README.md").read_text()
    command = re.search(r"^(python -m letterwise\.report --compare)\b", readme, re.M)
    assert command, "README gives no compare command"
    out = run(clone, *[sys.executable if w == "python" else w for w in command[1].split()],
              COLUMNS=str(WIDTH))  # fmt: skip
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= WIDTH
    assert "…" not in out, "a column collapsed at 200 columns"
    names = ("sampled-t03", "lora-r32")
    # a run's block: from the row naming it to the next rule line
    starts = {name: next(i for i, line in enumerate(lines) if name in line) for name in names}
    block = {
        name: "\n".join(lines[i : next(j for j in range(i + 1, len(lines)) if "───" in lines[j])])
        for name, i in starts.items()
    }
    # the changed params and the edited numbers, each on its experiment's row
    assert "eval.decoding=sampled" in out and "train.lora.r=32" in out
    assert "0.321 (" in block["sampled-t03"] and "0.432 (" in block["lora-r32"]
    assert "0.432 (" not in block["sampled-t03"] and "0.321 (" not in block["lora-r32"]
    # the default run's instruments (choice scoring is off by default)
    for label in ("direct", "cloze", "cloze cal.", "position", "count"):
        assert label in out
