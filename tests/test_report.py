"""The final report (letterwise.report): every number traced to the runs it reads, absent
results said plainly, figures rendered offline."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from letterwise import report
from letterwise.report.__main__ import main as report_main
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
    return report.render(runs, tmp_path / "report_figures")


def test_numbers_come_from_the_metrics_and_follow_a_change(shown, tmp_path):
    text = render(shown, tmp_path)
    position = json.loads((REPO_ROOT / "metrics/details/eval_position.json").read_text())
    position = position["position"]
    tuned = position["cloze"]["tuned"]
    row = next(line for line in text.splitlines() if line.startswith("| position | cloze slot |"))
    # formatted here, independently of the report code
    assert f"{tuned['accuracy']:.3f} [{tuned['ci_low']:.3f}, {tuned['ci_high']:.3f}]" in row
    # change one metric: the report changes with it
    metrics = shown[1]["data"]["metrics"]["metrics/eval_position.json"]["data"]
    metrics["position"]["cloze"]["tuned"]["accuracy"] = 0.777
    changed = render(shown, tmp_path)
    row = next(
        line for line in changed.splitlines() if line.startswith("| position | cloze slot |")
    )
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
    mode = text[text.index("### Mode comparison") :]
    assert mode.split("\n", 2)[2].startswith("Absent: no thinking-mode run")
    assert "Absent: fewer than two decoding settings" in text
    assert "Not run: no Qwen3 training or evaluation is in these results" in text
    assert "dvc exp run -S model=qwen3-4b\n" in text  # the command that fills it
    # no side files given: the verdict, the choice histograms and the Qwen3 data are absent
    study = text[text.index("### 1a. The powered study") : text.index("### 1b. The pilot")]
    assert "No test-split result of the study is committed yet" in study
    # the pilot's part: its heading, one paragraph naming it, then the absent verdict
    verdict = text[text.index("### 1b. The pilot") :].split("\n\n", 2)[2]
    assert verdict.startswith("**The verdict has not been computed:**")
    assert "`python -m letterwise.eval.verdict docs/results/controls`" in verdict
    assert "Absent: the histograms of the answers choice scoring picked" in text
    assert "Absent: `docs/results/qwen3-data`" in text


def test_no_evaluated_run_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="no evaluated experiments"):
        report.render(report.runs_from_exp_show([{"rev": "workspace", "data": {}}]), tmp_path)


def no_side_files(tmp_path: Path) -> list[str]:
    """Flags that point every optional input at a missing file (so a verdict or Qwen3 data
    committed later does not change what these tests see)."""
    missing = tmp_path / "missing"
    return [
        "--verdict", str(missing / "verdict.json"), "--qwen3-data", str(missing),
        "--replay", str(missing), "--timing", str(missing / "timing.json"),
        "--breakdowns", str(missing / "breakdowns.json"), "--axes", str(missing),
        "--dose", str(missing), "--probe", str(missing / "probe.json"), "--study", str(missing),
    ]  # fmt: skip


def test_main_writes_markdown_html_and_offline_figures(shown, tmp_path):
    saved = tmp_path / "exp.json"
    saved.write_text(json.dumps(shown))
    out = tmp_path / "docs" / "report.md"
    loss = REPO_ROOT / "dvclive/train/plots/metrics/loss.tsv"
    arguments = ["--exp-show", str(saved), "--out", str(out), "--loss", str(loss)]
    assert report_main(arguments + no_side_files(tmp_path)) == 0
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
    # a figure an earlier render made and this one does not is removed, not left stale
    (out.parent / "report_figures" / "temperature.png").write_bytes(b"old")
    assert report_main(arguments + no_side_files(tmp_path)) == 0
    assert not (out.parent / "report_figures" / "temperature.png").exists()


def test_a_named_input_that_does_not_exist_is_a_clear_error(shown, tmp_path):
    saved = tmp_path / "exp.json"
    saved.write_text(json.dumps(shown))
    out = tmp_path / "report.md"
    with pytest.raises(SystemExit, match="--loss .*no such file"):
        report_main(["--exp-show", str(saved), "--out", str(out), "--loss", "nope/loss.tsv"])
    with pytest.raises(SystemExit, match="--predictions .*no such file"):
        report_main(["--exp-show", str(saved), "--out", str(out), "--predictions", "no.jsonl"])
    assert not out.exists()


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
    run = report.run_of("x", {"rev": commit, "data": entry})
    assert run is not None and run.tasks()["position"]["tuned"]["accuracy"] == 0.222


def test_the_committed_report_renders_again_from_the_committed_results(tmp_path, monkeypatch):
    """docs/report.md is exactly what the report command makes of the committed results at the
    repository root (docs/results/grid/: the saved `dvc exp show --json` and every run's
    metrics/details/; dvclive/ curves and breakdowns; docs/results/controls/verdict.json and
    docs/results/qwen3-data/ when committed): its numbers are those."""
    monkeypatch.chdir(REPO_ROOT)
    out = tmp_path / "report.md"
    assert report_main(["--exp-show", "docs/results/grid/exp_show.json", "--out", str(out)]) == 0
    assert out.read_text() == (REPO_ROOT / "docs/report.md").read_text()
    assert out.with_suffix(".html").read_text() == (REPO_ROOT / "docs/report.html").read_text()
    rendered = {p.name for p in (tmp_path / "report_figures").glob("*.png")}
    assert rendered == {p.name for p in (REPO_ROOT / "docs/report_figures").glob("*.png")}


# --------------------------------------------------------------------------- verdict, Qwen3


def interval_text(d: dict, sign: bool = True) -> str:
    """Formatted here, independently of letterwise.numbers."""
    f = "{:+.3f}" if sign else "{:.3f}"
    return f"{f.format(d['delta'])} [{f.format(d['ci_low'])}, {f.format(d['ci_high'])}]"


def made_up_verdict() -> dict:
    """A verdict.json in the schema of docs/notes INTERFACES; every number is invented for this
    test and appears nowhere else."""

    def d(delta, low, high):
        return {"delta": delta, "ci_low": low, "ci_high": high}

    return {
        "rule": "Transfer is claimed only when TEST-RULE-TEXT holds.",
        "claimed": False,
        "sentence": "TEST-SENTENCE: spelling improved; no transfer survives the controls.",
        "arms": {"spelling": [42, 1, 2], "negative_control": [42, 1], "positive_control": [42]},
        "rows": [
            {"task": "position", "instrument": "cloze", "format_neutral": True,
             "treatment": d(0.0431, 0.0112, 0.0788),
             "negative_control": d(0.0377, 0.0021, 0.0702),
             "positive_control": d(0.2913, 0.2222, 0.3604),
             "treatment_minus_negative": {**d(0.0054, -0.0391, 0.0499), "p_value": 0.8123},
             "detects_positive_control": True, "explained_by": ["first_letter"],
             "supports_transfer": False},
            {"task": "count", "instrument": "cloze_calibrated", "format_neutral": True,
             "treatment": d(-0.0123, -0.0456, 0.0210),
             "negative_control": d(-0.0200, -0.0533, 0.0133),
             "positive_control": d(0.1500, 0.0950, 0.2050),
             "treatment_minus_negative": {**d(0.0077, -0.0301, 0.0455), "p_value": 0.6400},
             "detects_positive_control": True, "explained_by": [],
             "supports_transfer": False},
            {"task": "position", "instrument": "direct", "format_neutral": False,
             "treatment": d(-0.1350, -0.1850, -0.0900),
             "negative_control": d(-0.0100, -0.0400, 0.0200),
             "positive_control": d(0.0500, 0.0100, 0.0900),
             "treatment_minus_negative": {**d(-0.1250, -0.1800, -0.0700), "p_value": 0.0001},
             "detects_positive_control": True, "explained_by": [],
             "supports_transfer": False},
        ],
        "per_seed": [
            {"arm": "spelling", "seed": 42, "task": "position", "instrument": "cloze",
             "base": 0.1111, "tuned": 0.1542, **d(0.0431, 0.0101, 0.0799)},
        ],
    }  # fmt: skip


def render_with(tmp_path: Path, **side: object) -> str:
    from letterwise.report.loading import Inputs

    shown = json.loads((REPO_ROOT / "docs/results/grid/exp_show.json").read_text())
    runs = report.runs_from_exp_show(shown, REPO_ROOT / "docs/results/grid")
    return report.render(runs, tmp_path / "report_figures", Inputs(**side))


def test_the_verdict_section_renders_from_verdict_json(tmp_path):
    verdict = made_up_verdict()
    path = tmp_path / "controls" / "verdict.json"
    path.parent.mkdir()
    path.write_text(json.dumps(verdict))
    inputs = report.load_inputs(
        loss=[], breakdowns=[], predictions=None, verdict=path,
        qwen3_data=tmp_path / "none", timing=None, replay=None,
    )  # fmt: skip
    text = report.render(
        report.runs_from_exp_show(
            json.loads((REPO_ROOT / "docs/results/grid/exp_show.json").read_text()),
            REPO_ROOT / "docs/results/grid",
        ),
        tmp_path / "report_figures",
        inputs,
    )
    section = text[text.index("## 1. Verdict") : text.index("### Findings")]
    # in the pilot's part (its heading and one paragraph first): the sentence first, then the
    # rule, then one table row per verdict row
    pilot = section[section.index("### 1b. The pilot") :]
    assert pilot.split("\n\n", 2)[2].startswith(f"**{verdict['sentence']}**")
    assert f"> **Rule.** {verdict['rule']}" in section
    assert "Outcome per task (transfer / equivalent / inconclusive)" in section
    assert "spelling (seeds 42, 1, 2); negative_control (seeds 42, 1)" in section
    row = next(line for line in section.splitlines() if line.startswith("| position | cloze slot"))
    first = verdict["rows"][0]
    for key in ("treatment", "negative_control", "positive_control"):
        assert interval_text(first[key]) in row
    assert f"{interval_text(first['treatment_minus_negative'])}, p 0.812" in row
    assert "first_letter" in row and row.endswith(
        "| **secondary** |"
    )  # made-up rows name no primary
    assert "![treatment vs controls per format-neutral instrument](report_figures/verdict.png)" in (
        section
    )
    assert "has not been computed" not in text
    # the per-seed appendix and the controls paragraph use the file too
    assert "| spelling | 42 | position | cloze slot | 0.111 | 0.154 |" in text
    assert "`negative_control` (seeds 42, 1)" in text


def test_a_verdict_without_its_sentence_is_a_clear_error(tmp_path):
    verdict = made_up_verdict()
    del verdict["sentence"]
    path = tmp_path / "verdict.json"
    path.write_text(json.dumps(verdict))
    with pytest.raises(SystemExit, match="verdict lacks or mistypes sentence"):
        report.load_inputs(
            loss=[], breakdowns=[], predictions=None, verdict=path,
            qwen3_data=tmp_path, timing=None, replay=None,
        )  # fmt: skip


def test_qwen3_data_results_are_rendered_beside_the_reference_when_committed(tmp_path):
    folder = tmp_path / "qwen3-data"
    folder.mkdir()
    made_up = {
        "filter_tokens": {"kept_strings": 12345, "model": "qwen3-4b"},
        "build_dataset": {"leakage": {"leaked_words": 0}},
        "extra": {"answer": 7},
    }
    (folder / "COMMAND").write_text("how it was made\n")
    text = render_with(tmp_path, qwen3_data=made_up, qwen3_data_path=folder)  # fmt: skip
    cpu = text[text.index("### Measured on CPU") : text.index("### Needs the GPU run")]
    grid = REPO_ROOT / "docs/results/grid"
    reference = next(e for e in json.loads((grid / "exp_show.json").read_text())
                     if e["rev"] != "workspace")  # fmt: skip
    kept = json.loads((grid / reference["rev"] / "filter_tokens.json").read_text())["kept_strings"]
    assert "| data | smollm2-135m (reference) | qwen3-4b |" in cpu
    assert f"| distinct strings in the subset | {kept} | 12345 |" in cpu
    assert "| held-out words that are training strings | 0 | 0 |" in cpu
    assert "| vocabulary size | 49152 | – |" in cpu  # absent from the Qwen3 file: a dash
    assert "| answer | 7 |" in cpu  # a file without a dedicated table: its values
    assert f"`{folder / 'COMMAND'}`" in cpu and "Absent" not in cpu


def test_each_row_names_its_own_statistics(tmp_path):
    """The teacher-forced row is a bootstrap CI with a sign-flip permutation p; the 0/1 rows
    are Wilson CIs with exact McNemar p (read from each delta's `test`)."""
    text = render_with(tmp_path)
    results = text[text.index("Table 3.") :]
    forced = next(r for r in results.splitlines() if r.startswith("| spelling | teacher-forced"))
    direct = next(r for r in results.splitlines() if r.startswith("| spelling | direct"))
    assert "| bootstrap; sign-flip permutation |" in forced
    assert "| Wilson; exact McNemar |" in direct


def test_training_details_come_from_params_and_the_train_results(tmp_path):
    grid = REPO_ROOT / "docs/results/grid"
    shown = json.loads((grid / "exp_show.json").read_text())
    reference = next(e for e in shown if e["rev"] != "workspace")
    params = reference["data"]["params"]["params.yaml"]["data"]["train"]
    train = json.loads((grid / reference["rev"] / "train.json").read_text())
    seen = train["steps"] * params["batch_size"] * params["grad_accum"]
    share = round(100 * seen / train["examples"])
    text = render_with(tmp_path)
    assert f"| training examples seen | {seen} of {train['examples']} ({share} %) |" in text
    assert f"| trainable parameters | {train['trainable_params']:,} |" in text
    assert f"| learning rate and schedule | {params['learning_rate']}, " in text


def test_a_verdict_with_a_missing_arm_renders_dashes(tmp_path):
    """verdict.py writes null for an arm without runs and for the difference it cannot make."""
    verdict = made_up_verdict()
    verdict["arms"]["negative_control"] = []
    for row in verdict["rows"]:
        row["negative_control"] = row["treatment_minus_negative"] = None
    text = render_with(tmp_path, verdict=verdict)
    row = next(line for line in text.splitlines() if line.startswith("| position | cloze slot"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3] == "–" and cells[5] == "–, p –"
    assert "negative_control (no run)" in text


def test_control_arms_loss_curves_beside_the_verdict_are_plotted(shown, tmp_path):
    saved = tmp_path / "exp.json"
    saved.write_text(json.dumps(shown))
    controls = tmp_path / "controls"
    for run in ("spelling-seed1", "negative_control-seed1"):
        (controls / run).mkdir(parents=True)
        (controls / run / "loss.tsv").write_text("timestamp\tstep\tloss\n0\t1\t2.5\n0\t2\t1.5\n")
    out = tmp_path / "report.md"
    missing = tmp_path / "missing"
    assert report_main([
        "--exp-show", str(saved), "--out", str(out), "--verdict", str(controls / "verdict.json"),
        "--qwen3-data", str(missing), "--replay", str(missing), "--breakdowns", str(missing),
    ]) == 0  # fmt: skip
    caption = next(line for line in out.read_text().splitlines() if "Training loss per" in line)
    assert "negative_control-seed1, spelling-seed1" in caption
