"""The study in the report: the outcome table, the equivalence figure's rows and the text when
nothing is committed yet, on a hand-written verdict (numbers chosen here, not computed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from letterwise.report.common import Figures
from letterwise.report.figures import equivalence_chart, png_size, save_png
from letterwise.report.loading import load_study
from letterwise.report.study import equivalence_rows, outcome_table, study_lines


def interval(delta: float, low: float, high: float) -> dict:
    return {"delta": delta, "ci_low": low, "ci_high": high, "n_questions": 1000}


def outcome(task: str, result: str, tmn: dict | None, tost: dict | None, margin: float | None,
            mde: float | None) -> dict:  # fmt: skip
    return {
        "task": task, "instrument": "cloze_calibrated", "outcome": result,
        "treatment_minus_negative": tmn, "treatment_minus_negative_tost": tost,
        "margin": margin, "mde": mde,
        "positive_control_habit_free": interval(0.06, 0.04, 0.08),
    }  # fmt: skip


VERDICT = {
    "rule": "the rule",
    "claimed": False,
    "sentence": "position: equivalent; count: inconclusive",
    "plan": {"primary_outcome": {"position": "probability", "count": "accuracy"}},
    "outcomes": {
        "position": outcome("position", "equivalent", interval(0.004, -0.012, 0.020),
                            interval(0.004, -0.009, 0.017), 0.03, 0.022),
        "count": outcome("count", "inconclusive", interval(0.01, -0.03, 0.05),
                         interval(0.01, -0.024, 0.044), 0.03, 0.056),
    },  # fmt: skip
    "rows": [],
    "arms": {},
}


@pytest.fixture
def study_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "study"
    (folder / "smollm2-135m").mkdir(parents=True)
    (folder / "smollm2-135m" / "verdict.json").write_text(json.dumps(VERDICT))
    # a confirm run's verdict under validation/ is not the study's answer
    (folder / "smollm2-135m" / "validation" / "steps500").mkdir(parents=True)
    (folder / "smollm2-135m" / "validation" / "steps500" / "verdict.json").write_text("{}")
    return folder


def test_only_the_test_split_verdicts_are_loaded(study_dir):
    study = load_study(study_dir)
    assert list(study) == ["smollm2-135m"]


def test_equivalence_rows_carry_both_intervals_the_band_and_the_positive_control(study_dir):
    rows = equivalence_rows(load_study(study_dir))
    assert [(r["panel"], r["family"]) for r in rows] == [
        ("position", "smollm2-135m"), ("count", "smollm2-135m")
    ]  # fmt: skip
    position = rows[0]
    assert (position["low95"], position["high95"]) == (-0.012, 0.020)
    assert (position["low90"], position["high90"]) == (-0.009, 0.017)
    assert (position["minus_margin"], position["margin"]) == (-0.03, 0.03)
    assert position["positive_control"] == 0.06
    assert position["outcome"] == "equivalent"


def test_a_task_without_a_measured_difference_has_no_row(study_dir):
    verdict = json.loads(json.dumps(VERDICT))
    verdict["outcomes"]["count"]["treatment_minus_negative"] = None
    (study_dir / "smollm2-135m" / "verdict.json").write_text(json.dumps(verdict))
    assert [r["panel"] for r in equivalence_rows(load_study(study_dir))] == ["position"]


def test_the_outcome_table_names_outcome_interval_margin_mde_and_measure(study_dir):
    table = outcome_table(load_study(study_dir))
    assert len(table) == 4  # header, rule, two tasks
    position, count = table[2], table[3]
    assert "**equivalent**" in position and "+0.004 [−0.012, +0.020]" in position
    assert "[−0.009, +0.017]" in position and "±0.030" in position and "0.022" in position
    assert position.rstrip().endswith("probability |")
    assert "**inconclusive**" in count and "0.056" in count
    assert count.rstrip().endswith("accuracy |")


def test_without_results_the_section_says_how_to_run_the_study(tmp_path):
    lines = "\n".join(study_lines({}, Figures("figs", {}), tmp_path / "study"))
    assert "No test-split result of the study is committed yet" in lines
    assert "python -m letterwise.study run --phase test" in lines
    assert "No transfer" not in lines


@pytest.mark.slow
def test_the_equivalence_figure_renders_at_page_width(study_dir, tmp_path):
    spec = equivalence_chart(equivalence_rows(load_study(study_dir)))
    save_png(spec, tmp_path / "eq.png")
    width, height = png_size(tmp_path / "eq.png")
    assert 800 <= width <= 2 * 1000  # rendered at 2x: at most a 1,000 px page
    assert height > 100
