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


def full_results(metrics_dir: Path, stage: str) -> Path:
    details = metrics_dir / "details" / f"{stage}.json"
    return details if details.is_file() else metrics_dir / f"{stage}.json"


def entry(rev: str, params: dict, metrics_dir: Path) -> dict:
    """One revision as `dvc exp show --json` reports it, for a revision that is not in git (so
    the report cannot read its metrics/details/): its metrics files hold every number, as
    they did before the headline/details split."""
    metrics = {
        f"metrics/{s}.json": {"data": json.loads(full_results(metrics_dir, s).read_text())}
        for s in STAGES
        if full_results(metrics_dir, s).is_file()
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
    position = json.loads((REPO_ROOT / "metrics/details/eval_position.json").read_text())
    position = position["position"]
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


def test_headline_metrics_are_completed_from_the_details_at_the_same_revision(
    tmp_path, monkeypatch
):
    """`dvc exp show` carries only headline numbers; the report reads the full results from
    metrics/details/ of the same revision: the workspace file, or the committed one."""
    import subprocess

    repo = tmp_path / "repo"
    (repo / "metrics" / "details").mkdir(parents=True)
    details = {"position": {"base": {"accuracy": 0.111}, "tuned": {"accuracy": 0.222}}}
    (repo / "metrics" / "details" / "eval_position.json").write_text(json.dumps(details))
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "details"], check=True)
    commit = subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    # the workspace moves on: a different number than the commit
    changed = {"position": {"base": {"accuracy": 0.333}, "tuned": {"accuracy": 0.444}}}
    (repo / "metrics" / "details" / "eval_position.json").write_text(json.dumps(changed))
    monkeypatch.chdir(repo)
    headline = {"position": {"direct": {"base": 0.5, "tuned": 0.5}}}
    assert report.details_at("workspace", "metrics/eval_position.json") == changed
    assert report.details_at(commit, "metrics/eval_position.json") == details
    assert report.details_at("f" * 40, "metrics/eval_position.json") is None
    entry = {"metrics": {"metrics/eval_position.json": {"data": headline}}}
    run = report._run_of("x", {"rev": commit, "data": entry})
    assert run is not None and run.tasks()["position"]["tuned"]["accuracy"] == 0.222


def test_the_committed_report_renders_again_from_the_committed_results(tmp_path):
    """docs/report.md is exactly what the report command makes of docs/results/grid/ (the
    saved `dvc exp show --json` and every run's metrics/details/): its numbers are those."""
    saved = REPO_ROOT / "docs/results/grid/exp_show.json"
    out = tmp_path / "report.md"
    loss = REPO_ROOT / "dvclive/train/plots/metrics/loss.tsv"
    assert report.main(["--exp-show", str(saved), "--out", str(out), "--loss", str(loss)]) == 0
    assert out.read_text() == (REPO_ROOT / "docs/report.md").read_text()
