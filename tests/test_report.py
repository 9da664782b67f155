"""The final report (letterwise.report): every number traced to the runs it reads, absent
results said plainly, figures rendered offline."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from letterwise import report
from tests.conftest import REPO_ROOT

STAGES = ("filter_tokens", "build_dataset", "train", "eval_spelling", "eval_position", "publish")


def entry(rev: str, params: dict, metrics_dir: Path) -> dict:
    """One revision as `dvc exp show --json` reports it."""
    metrics = {
        f"metrics/{s}.json": {"data": json.loads((metrics_dir / f"{s}.json").read_text())}
        for s in STAGES
        if (metrics_dir / f"{s}.json").is_file()
    }
    return {"rev": rev, "data": {"params": {"params.yaml": {"data": params}}, "metrics": metrics}}


@pytest.fixture
def shown() -> list[dict]:
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    replay = copy.deepcopy(params)
    replay["build_dataset"]["replay_share"] = 0.25
    replay["eval"] |= {"split": "validation", "prompting": ["direct", "spell_first"]}
    baseline = entry("a" * 40, params, REPO_ROOT / "metrics")
    experiment = entry("b" * 40, replay, REPO_ROOT / "docs/results/replay/val-replay25")
    baseline["experiments"] = [{"name": "replay25", "revs": [experiment]}]
    return [{"rev": "workspace", "data": {}}, baseline]


def render(shown: list[dict], tmp_path: Path) -> str:
    runs = report.runs_from_exp_show(shown)
    return report.render(runs, tmp_path / "report_figures", None)


def test_numbers_come_from_the_metrics_and_follow_a_change(shown, tmp_path):
    text = render(shown, tmp_path)
    position = json.loads((REPO_ROOT / "metrics/eval_position.json").read_text())["position"]
    tuned = position["choice"]["tuned"]
    row = next(line for line in text.splitlines() if line.startswith("| position | choice"))
    # formatted here, independently of the report code
    assert f"{tuned['accuracy']:.3f} [{tuned['ci_low']:.3f}, {tuned['ci_high']:.3f}]" in row
    # change one metric: the report changes with it
    metrics = shown[1]["data"]["metrics"]["metrics/eval_position.json"]["data"]
    metrics["position"]["choice"]["tuned"]["accuracy"] = 0.777
    changed = render(shown, tmp_path)
    row = next(line for line in changed.splitlines() if line.startswith("| position | choice"))
    assert "0.777 [" in row
    assert f"{tuned['accuracy']:.3f} [" not in row


def test_experiments_are_listed_with_their_changes_and_commands(shown, tmp_path):
    text = render(shown, tmp_path)
    line = next(row for row in text.splitlines() if row.startswith("| replay25 |"))
    assert "build_dataset.replay_share=0.25" in line and "eval.split=validation" in line
    assert "dvc exp run" in line and "-S 'build_dataset.replay_share=0.25'" in line
    spelling = json.loads(
        (REPO_ROOT / "docs/results/replay/val-replay25/eval_spelling.json").read_text()
    )["spelling"]["delta"]
    assert f"{spelling['delta']:+.3f} [{spelling['ci_low']:+.3f}, {spelling['ci_high']:+.3f}]" in (
        line
    )


def test_absent_results_are_said_plainly(shown, tmp_path):
    text = render(shown, tmp_path)
    mode = text[text.index("## Mode comparison") :]
    assert mode.split("\n", 2)[2].startswith("Absent: no thinking-mode run")
    assert "Absent: fewer than two sampled runs differ in `eval.temperature`" in text
    assert "Absent: the reference is not a Qwen3 run" in text


def test_no_evaluated_run_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="no evaluated experiments"):
        report.render(report.runs_from_exp_show([{"rev": "workspace", "data": {}}]), tmp_path, None)


def test_main_writes_markdown_html_and_offline_figures(shown, tmp_path):
    saved = tmp_path / "exp.json"
    saved.write_text(json.dumps(shown))
    out = tmp_path / "docs" / "report.md"
    loss = REPO_ROOT / "dvclive/train/plots/metrics/loss.tsv"
    assert report.main(["--exp-show", str(saved), "--out", str(out), "--loss", str(loss)]) == 0
    figures = sorted((out.parent / "report_figures").glob("*.png"))
    assert {f.name for f in figures} == {"instruments.png", "deltas.png", "training_loss.png"}
    for figure in figures:
        data = figure.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and 10_000 < len(data) <= 2 * 1024 * 1024
    text = out.read_text()
    for figure in figures:
        assert f"report_figures/{figure.name}" in text
    html = out.with_suffix(".html").read_text()
    assert "<table>" in html and 'src="report_figures/instruments.png"' in html
    assert "<script" not in html and "http" not in html.split("</style>")[0]
