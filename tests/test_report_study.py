"""The study in the report: the outcome table, the equivalence figure's rows and the text when
nothing is committed yet, on a hand-written verdict (numbers chosen here, not computed)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from letterwise.report.common import Figures
from letterwise.report.figures import equivalence_chart, png_size, save_png
from letterwise.report.loading import load_study, load_study_extras
from letterwise.report.study import (
    breakdown_lines,
    equivalence_rows,
    habit_table,
    outcome_table,
    seeds_line,
    study_lines,
)


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


def test_a_study_short_of_its_planned_seeds_is_called_interim():
    partial = {"arms": {"spelling": [1, 2], "negative_control": [1], "positive_control": [1]}}
    line = seeds_line("smollm2-135m", partial, [1, 2, 3])
    assert "interim" in line
    assert "spelling 1, 2; negative control 1; positive control 1, of 1, 2, 3" in line
    whole = {"arms": {arm: [1, 2, 3] for arm in ("spelling", "negative_control",
                                                 "positive_control")}}  # fmt: skip
    assert "interim" not in seeds_line("smollm2-135m", whole, [3, 2, 1])
    assert "every planned seed" in seeds_line("smollm2-135m", whole, [1, 2, 3])


def test_the_habit_table_shows_the_effect_where_each_detector_is_wrong(study_dir):
    verdict = json.loads(json.dumps(VERDICT))
    verdict["rows"] = [
        {"task": "position", "instrument": "cloze", "primary": False,
         "treatment": interval(0.07, 0.05, 0.09),
         "treatment_minus_negative": interval(0.07, 0.04, 0.1),
         "strategies": {"first_letter": interval(0.5, 0.4, 0.6)}},
        {"task": "position", "instrument": "cloze_calibrated", "primary": True,
         "treatment": interval(0.067, 0.052, 0.083),
         "treatment_minus_negative": interval(0.04, 0.027, 0.054),
         "strategies": {"first_letter": {**interval(-0.033, -0.039, -0.026), "n_questions": 838}},
         "positive_control_strategies": {"first_letter": interval(0.071, 0.063, 0.079)}},
    ]  # fmt: skip
    (study_dir / "smollm2-135m" / "verdict.json").write_text(json.dumps(verdict))
    table = habit_table(load_study(study_dir))
    assert len(table) == 3  # header, rule, the primary row only
    assert "| position | first_letter | 838 | −0.033 [−0.039, −0.026] |" in table[2]
    assert table[2].endswith("+0.071 [+0.063, +0.079] |")


def test_breakdown_rows_and_the_plan_seeds_are_read_beside_the_verdicts(study_dir):
    breakdown = {
        "primary_instrument": "cloze_calibrated",
        "tasks": {"count": {"count >= 2": {"n_questions": 401, "cloze_calibrated": {
            "base": interval(0.067, 0.044, 0.094),
            "spelling": interval(0.047, 0.029, 0.069),
            "negative_control": interval(0.099, 0.067, 0.135),
            "spelling_minus_negative": interval(-0.051, -0.085, -0.019),
        }}}},
    }  # fmt: skip
    (study_dir / "smollm2-135m" / "breakdown.json").write_text(json.dumps(breakdown))
    (study_dir / "plan.yaml").write_text(
        "seeds:\n  smollm2-135m: [1, 2, 3]\n  gemma3-270m: [1, 2]\n"
    )
    seeds, breakdowns = load_study_extras(study_dir)
    assert seeds == {"smollm2-135m": [1, 2, 3], "gemma3-270m": [1, 2]}
    path, loaded = breakdowns["smollm2-135m"]
    row = breakdown_lines("smollm2-135m", loaded, path)[4]
    assert row == (
        "| count | count >= 2 | 401 | 0.067 [0.044, 0.094] | 0.047 [0.029, 0.069] | "
        "0.099 [0.067, 0.135] | – | −0.051 [−0.085, −0.019] |"
    )
    lines = "\n".join(study_lines(load_study(study_dir), Figures("figs", {}), study_dir,
                                  seeds, breakdowns))  # fmt: skip
    assert "Table 1c (smollm2-135m)" in lines
    assert "an interim reading" in lines  # VERDICT pools no seed of the 3 planned


@pytest.mark.slow
def test_the_equivalence_figure_renders_at_page_width(study_dir, tmp_path):
    spec = equivalence_chart(equivalence_rows(load_study(study_dir)))
    save_png(spec, tmp_path / "eq.png")
    width, height = png_size(tmp_path / "eq.png")
    assert 800 <= width <= 2 * 1000  # rendered at 2x: at most a 1,000 px page
    assert height > 100


def test_compute_line_reads_the_buckets():
    from letterwise.report.study import compute_line

    entry = {
        "estimate": "9 runs x ~50 min ~ 7.5 h",
        "test": {"runs": 7, "minutes": 270.0, "planned": 9},
        "confirm": {"runs": 2, "minutes": 57.6},
        "superseded": {"runs": 1, "minutes": 82.2},
    }
    # 270 min = 4.5 h, 57.6 min = 0.96 h, 82.2 min = 1.37 h
    assert compute_line("toy", entry) == (
        "toy: test split 7 of 9 planned runs, 4.5 h; confirm (validation) 2 run(s), 1.0 h; "
        "superseded (redone, not pooled) 1 run(s), 1.4 h (plan's estimate: 9 runs x ~50 min "
        "~ 7.5 h)."
    )
    entry["superseded"] = {"runs": 0, "minutes": 0.0}
    assert "superseded" not in compute_line("toy", entry)


def test_what_would_decide_each_inconclusive_outcome() -> None:
    from letterwise.report.study import what_would_decide

    tested = {"delta": 0.04, "ci_low": 0.03, "ci_high": 0.05, "n_questions": 1000}
    # the positive control unseen (no habit named): no margin, so a margin is what is missing
    unseen = what_would_decide(
        {"detects_positive_control": False, "positive_control_explained_by": []},
        {"outcome": "inconclusive", "treatment_minus_negative": tested},
    )
    assert unseen.startswith("an instrument or recipe that sees the positive control")
    assert "not above 0" in unseen
    # seen, with a margin the interval is too wide for: 4,000 questions of 1,000
    wide = what_would_decide(
        {"detects_positive_control": True},
        {"outcome": "inconclusive", "treatment_minus_negative": tested, "margin": 0.02,
         "n_for_margin": 4000, "treatment_minus_negative_tost": tested},
    )  # fmt: skip
    assert wide == (
        "a 90% interval inside ±0.020, for equivalence: about 4,000 questions (now 1,000) "
        "at this seed-to-seed spread"
    )
    # a habit explains the gain and the interval is already narrow: more n would not help
    habit = what_would_decide(
        {"detects_positive_control": True, "explained_by": ["first_letter"]},
        {"outcome": "inconclusive", "treatment_minus_negative": tested, "margin": 0.038,
         "n_for_margin": 280, "treatment_minus_negative_tost": tested},
    )  # fmt: skip
    assert "first_letter habit gets wrong" in habit
    assert "[+0.030, +0.050] is narrower than the ±0.038 band" in habit
    # decided outcomes need nothing
    assert what_would_decide({}, {"outcome": "equivalent"}) is None
    assert what_would_decide({}, {"outcome": "transfer"}) is None


def test_a_follow_up_study_says_how_to_run_it_then_reads_its_verdict(tmp_path):
    from letterwise.report.loading import load_follow_up
    from letterwise.report.study import direction_lines, follow_up_sections, recipe_search_lines

    folder = tmp_path / "study3"
    assert load_follow_up(folder) is None  # no plan: no study
    folder.mkdir()
    (folder / "plan.yaml").write_text(
        "code_commit: cecc3626ec493b247b96be0ad19e95995933ff4c\n"
        "recipe: {train.max_steps: 1500}\n"
        "n: {build_dataset.validation_words: 2400, build_dataset.test_words: 1000}\n"
        "primary: {questions: habit_free}\n"
        "arms: [positive_control, spelling, negative_control]\n"
        "seeds: {smollm2-135m: [1, 2]}\n"
    )
    follow_up = load_follow_up(folder)
    waiting = "\n".join(follow_up_sections([follow_up]))
    assert "#### The second study" in waiting  # the first follow-up is the second study
    # words 2,401-3,400: validation takes the first 2,400 of the pool, test the next 1,000
    assert "1,500 training steps" in waiting and "test words 2,401-3,400" in waiting
    assert "at code cecc362" in waiting and "smollm2-135m seeds 1, 2" in waiting
    assert f"--plan {folder / 'plan.yaml'} run" in waiting and "No verdict" in waiting
    below = {
        **VERDICT,
        "arms": {"spelling": [2, 3], "negative_control": [2, 3], "positive_control": [2, 3]},
        "outcomes": {
            "position": outcome("position", "inconclusive", interval(-0.034, -0.040, -0.027),
                                interval(-0.034, -0.039, -0.028), 0.038, 0.010),
            "count": outcome("count", "inconclusive", interval(-0.02, -0.06, 0.02),
                             interval(-0.02, -0.05, 0.01), None, 0.04),
        },
    }  # fmt: skip
    study = {"smollm2-135m": (folder / "smollm2-135m" / "verdict.json", below)}
    second = replace(follow_up, verdicts=study, seeds={"smollm2-135m": [2, 3]})
    text = "\n".join(follow_up_sections([second, replace(second, verdicts={})]))
    assert "Table 1d" in text and "--questions habit_free" in text and "Table 1e" not in text
    assert "#### The third study" in text and "No verdict of the third study" in text
    assert "habit-free questions of the 1,000 per task" in text
    assert "| smollm2-135m | position | **inconclusive** | −0.034 [−0.040, −0.027] |" in text
    assert "every planned seed (2, 3) of every arm is pooled" in text
    # only position's whole interval is below 0: only it is said to answer worse
    [worse] = direction_lines(study)
    assert worse.startswith("- smollm2-135m, position: spelling − negative control is below 0")
    search = {
        "positive_control": interval(0.10, 0.05, 0.15),
        "positive_control_habit_free": interval(0.03, -0.01, 0.07),
        "detects_positive_control": False,
    }
    searches = {"smollm2-135m at 1500 steps": (Path("v.json"), {"outcomes": {"count": search}})}
    [line] = [x for x in recipe_search_lines(searches) if x.startswith("- ")]
    assert "+0.100 [+0.050, +0.150]" in line and "+0.030 [−0.010, +0.070]" in line
    assert "does not see it" in line and "n = 1000" in line
