"""The three-way verdict (transfer / equivalent / inconclusive) and the rule defects the issue
"A verdict that can decide" found, each on hand-made per-question bits.

Expected numbers are counted by hand from the fixtures' construction (which questions gain),
never read back from letterwise.eval.verdict. Every test named `test_defect_*` fails on the
verdict of 763ec74 (it raised, or gave the other answer).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from letterwise.eval.verdict import Plan, hierarchical_delta, question_draws, verdict_from_dir
from tests.test_verdict import BASE, FIRST_LETTER, POSITIONAL_PRIOR, N, Q, row, write_arms

PLAN = Plan(primary_instrument="cloze", primary_outcome="accuracy", margin_share=0.5)
HABIT_FREE = np.flatnonzero(~(FIRST_LETTER | POSITIONAL_PRIOR))  # questions 90..199: 110


def gain(extra: np.ndarray) -> np.ndarray:
    """Tuned bits: the base's right answers plus `extra`."""
    return BASE | extra


def test_equivalent_when_the_90_interval_lies_inside_the_margin(tmp_path):
    # spelling gains 2 questions more than the negative control: +0.01
    spelling = gain((Q % 10 == 1) | np.isin(Q, [3, 4]))
    negative = gain(Q % 10 == 1)
    positive = np.ones(N, dtype=bool)
    write_arms(tmp_path, {"spelling": {"cloze": spelling}, "negative_control": {"cloze": negative},
                          "positive_control": {"cloze": positive}})  # fmt: skip
    verdict = verdict_from_dir(tmp_path, plan=PLAN)
    cloze = row(verdict, "cloze")
    # habit-free questions 90..199: the base is right on the 22 multiples of 5 there, the
    # positive control on all 110: effect 88/110 = 0.8, margin 0.5 x 0.8 = 0.4
    assert cloze["positive_control_habit_free"]["n_questions"] == 110
    assert cloze["positive_control_habit_free"]["delta"] == pytest.approx(0.8)
    assert cloze["margin"] == pytest.approx(0.4)
    assert cloze["treatment_minus_negative"]["delta"] == pytest.approx(0.01)
    assert verdict["outcomes"]["position"]["outcome"] == "equivalent"
    assert verdict["claimed"] is False
    assert "equivalent" in verdict["sentence"] and "No transfer" not in verdict["sentence"]


def test_inconclusive_reports_the_minimum_detectable_effect_and_the_n_it_would_take(tmp_path):
    # spelling gains 10 questions the negative control does not, the negative control 4 that
    # spelling does not: d = +1 on 10, -1 on 4, 0 on 186 -> mean 0.03
    spelling_only = np.isin(Q, [91, 92, 93, 94, 96, 97, 98, 99, 101, 102])
    negative_only = np.isin(Q, [103, 104, 106, 107])
    # the positive control gains 10 habit-free questions: effect 10/110, margin 5/110
    positive_extra = np.isin(Q, [111, 112, 113, 114, 116, 117, 118, 119, 121, 122])
    write_arms(tmp_path, {
        "spelling": {"cloze": gain(spelling_only)},
        "negative_control": {"cloze": gain(negative_only)},
        "positive_control": {"cloze": gain(positive_extra)},
    })  # fmt: skip
    verdict = verdict_from_dir(tmp_path, plan=PLAN, resamples=4000)
    cloze = row(verdict, "cloze")
    assert cloze["treatment_minus_negative"]["delta"] == pytest.approx(0.03)
    assert cloze["margin"] == pytest.approx(0.5 * 10 / 110)
    # by hand: sd of d = sqrt(14/200 - 0.03^2) = 0.26287, se = sd / sqrt(200) = 0.018588
    # (seeds agree, so resampling them adds nothing); MDE = (1.95996 + 0.84162) x se
    se = math.sqrt(14 / 200 - 0.03**2) / math.sqrt(200)
    assert cloze["treatment_minus_negative"]["se"] == pytest.approx(se, rel=0.06)
    assert cloze["mde"] == pytest.approx((1.95996 + 0.84162) * se, rel=0.06)
    expected_n = 200 * ((1.95996 + 0.84162) * se / (0.5 * 10 / 110)) ** 2  # ~1,313
    assert cloze["n_for_margin"] == pytest.approx(expected_n, rel=0.12)
    outcome = verdict["outcomes"]["position"]
    assert outcome["outcome"] == "inconclusive"
    assert "minimum detectable effect" in verdict["sentence"]
    assert "No transfer" not in verdict["sentence"]


def test_defect_detectors_apply_to_the_positive_control(tmp_path):
    # the positive control gains only where the first letter is the answer (questions 0..49):
    # "always say the first letter" explains it, so it does not license a claim
    write_arms(tmp_path, {
        "spelling": {"cloze": gain(Q % 5 == 1)},
        "negative_control": {"cloze": BASE},
        "positive_control": {"cloze": gain(FIRST_LETTER)},
    })  # fmt: skip
    verdict = verdict_from_dir(tmp_path, plan=PLAN)
    cloze = row(verdict, "cloze")
    assert cloze["positive_control"]["ci_low"] > 0  # 40 of 200 gained
    assert cloze["positive_control_explained_by"] == ["first_letter"]
    assert cloze["detects_positive_control"] is False
    assert cloze["supports_transfer"] is False
    assert verdict["outcomes"]["position"]["outcome"] == "inconclusive"


def test_defect_explained_by_only_when_the_full_interval_is_above_0(tmp_path):
    # spelling and the negative control gain the same questions: the difference is exactly 0,
    # so no strategy can "explain" it
    same = gain(Q % 5 == 1)
    write_arms(tmp_path, {
        "spelling": {"cloze": same}, "negative_control": {"cloze": same},
        "positive_control": {"cloze": np.ones(N, dtype=bool)},
    })  # fmt: skip
    cloze = row(verdict_from_dir(tmp_path, plan=PLAN), "cloze")
    assert cloze["treatment_minus_negative"]["ci_high"] == 0
    assert cloze["explained_by"] == []


def test_defect_an_arm_without_the_instrument_is_a_row_not_a_crash(tmp_path):
    write_arms(tmp_path, {
        "spelling": {"cloze": gain(Q % 5 == 1), "direct": BASE},
        "negative_control": {"cloze": BASE, "direct": BASE},
        "positive_control": {"direct": BASE},  # never measured the cloze slot
    })  # fmt: skip
    verdict = verdict_from_dir(tmp_path, plan=PLAN)
    cloze = row(verdict, "cloze")
    assert cloze["not_measured"] == ["positive_control"]
    assert cloze["positive_control"] is None
    assert "not measured" in cloze["reason"]
    assert verdict["outcomes"]["position"]["outcome"] == "inconclusive"
    assert "No transfer" not in verdict["sentence"]


def test_defect_one_detector_per_distinct_strategy(tmp_path):
    # "one" and "majority_answer" right on exactly the same questions are one strategy
    ones = Q % 3 == 0
    write_arms(tmp_path, {
        "spelling": {"cloze": gain(Q % 5 == 1)}, "negative_control": {"cloze": BASE},
        "positive_control": {"cloze": np.ones(N, dtype=bool)},
    }, strategies={"one": ones, "majority_answer": ones, "zero": Q % 7 == 0})  # fmt: skip
    verdict = verdict_from_dir(tmp_path, plan=PLAN)
    assert set(row(verdict, "cloze")["strategies"]) == {"one", "zero"}
    assert any("majority_answer" in note and "one" in note for note in verdict["notes"])


def test_defect_every_subset_is_drawn_from_the_tasks_one_stream(tmp_path):
    # a strategy wrong on every question restricts to all questions: drawn from the same
    # stream as the full comparison, its interval is the full interval exactly
    write_arms(tmp_path, {
        "spelling": {"cloze": gain(Q % 5 == 1)}, "negative_control": {"cloze": gain(Q % 10 == 1)},
        "positive_control": {"cloze": np.ones(N, dtype=bool)},
    }, strategies={"never": np.zeros(N, dtype=bool), "first_letter": FIRST_LETTER})  # fmt: skip
    cloze = row(verdict_from_dir(tmp_path, plan=PLAN), "cloze")
    full, never = cloze["treatment_minus_negative"], cloze["strategies"]["never"]
    assert (never["ci_low"], never["ci_high"]) == (full["ci_low"], full["ci_high"])


def test_a_subset_of_shared_draws_is_the_mean_over_its_drawn_questions():
    # by hand on 4 questions, one resample drawing question 0 twice and question 2 twice:
    # the subset {0, 1} sees question 0 twice, so its mean is question 0's difference
    draws = np.array([[2.0, 0.0, 2.0, 0.0]])
    differences = np.array([[1.0, 0.0, 0.0, 1.0]])
    subset = hierarchical_delta(differences[:, :2], question_counts=draws[:, :2], seed=1)
    assert subset["ci_low"] == subset["ci_high"] == 1.0
    assert question_draws(4, seed=0, resamples=3).sum(axis=1).tolist() == [4, 4, 4]


def test_the_outcome_measure_can_differ_per_task(tmp_path):
    # Each task carries 0/1 bits and probabilities. Position's probabilities move (+0.2 on every
    # question), its bits do not; count's bits move (spelling +20 questions of 200 = +0.1), its
    # probabilities do not. Per task, each measure must be read from its own source.
    n = 200
    ids = {task: [f"test-{task}-{i:06d}" for i in range(n)] for task in ("position", "count")}
    base_bits = "0" * n
    moved_bits = "1" * 20 + "0" * (n - 20)
    for arm in ("spelling", "negative_control", "positive_control"):
        for seed in (1, 2):
            treated = arm != "negative_control"
            tuned = [0.3 if treated else 0.1] * n
            per_question = {
                "position": {
                    "ids": ids["position"],
                    "correct": {"cloze": {"base": base_bits, "tuned": base_bits}},
                    "scores": {"cloze": {"base": [0.1] * n, "tuned": tuned}},
                    "strategy_right": {},
                },
                "count": {
                    "ids": ids["count"],
                    "correct": {"cloze": {"base": base_bits,
                                          "tuned": moved_bits if treated else base_bits}},
                    "scores": {"cloze": {"base": [0.1] * n, "tuned": [0.1] * n}},
                    "strategy_right": {},
                },
            }  # fmt: skip
            folder = tmp_path / f"{arm}-seed{seed}"
            folder.mkdir()
            (folder / "eval_position.json").write_text(json.dumps({"per_question": per_question}))
    plan = Plan(
        primary_instrument="cloze",
        primary_outcome={"position": "probability", "count": "accuracy"},
    )
    verdict = verdict_from_dir(tmp_path, plan=plan, resamples=200)
    position, count = row(verdict, "cloze", "position"), row(verdict, "cloze", "count")
    assert position["outcome_measure"] == "probability"
    assert count["outcome_measure"] == "accuracy"
    assert position["treatment_minus_negative"]["delta"] == pytest.approx(0.2)
    assert count["treatment_minus_negative"]["delta"] == pytest.approx(0.1)
    assert verdict["plan"]["primary_outcome"] == {"position": "probability", "count": "accuracy"}
    assert "position: probability, count: accuracy" in verdict["rule"]


def test_a_per_task_outcome_must_name_both_tasks():
    with pytest.raises(ValueError, match="must name exactly position, count"):
        Plan(primary_outcome={"position": "probability"})
    with pytest.raises(ValueError, match="'accurate'"):
        Plan(primary_outcome={"position": "probability", "count": "accurate"})


def test_habit_free_questions_only_the_second_studys_rule(tmp_path):
    # Spelling gains every first-letter question (0..49) and 11 habit-free ones (91, 101, ...,
    # 191: Q % 10 == 1 from 90 up); the negative control gains the same 11. On all questions
    # the first-letter habit explains spelling's gain; on the 110 habit-free questions (90..199)
    # the two arms gain the same, so the difference is exactly 0.
    habit_free_gain = (Q >= 90) & (Q % 10 == 1)
    spelling = gain(FIRST_LETTER | habit_free_gain)
    negative = gain(habit_free_gain)
    positive = np.ones(N, dtype=bool)
    write_arms(tmp_path, {"spelling": {"cloze": spelling}, "negative_control": {"cloze": negative},
                          "positive_control": {"cloze": positive}})  # fmt: skip
    everything = verdict_from_dir(tmp_path, plan=PLAN)
    assert row(everything, "cloze")["explained_by"] == ["first_letter"]
    # first-letter questions 0..49: the base is right on the 10 multiples of 5, spelling on all
    assert row(everything, "cloze")["treatment_minus_negative"]["delta"] == pytest.approx(40 / 200)
    habit_free_plan = Plan(
        primary_instrument="cloze", primary_outcome="accuracy", margin_share=0.5,
        questions="habit_free",
    )  # fmt: skip
    verdict = verdict_from_dir(tmp_path, plan=habit_free_plan)
    cloze = row(verdict, "cloze")
    assert cloze["treatment_minus_negative"]["n_questions"] == 110
    assert cloze["treatment_minus_negative"]["delta"] == pytest.approx(0.0)
    assert cloze["treatment_minus_negative"]["ci_low"] == pytest.approx(0.0)
    assert cloze["strategies"] == {} and cloze["explained_by"] == []
    # the positive control on the same questions: right on all 110, the base on the 22
    # multiples of 5 there: 88/110 = 0.8, margin 0.4; a difference of exactly 0 is inside it
    assert cloze["positive_control"]["delta"] == pytest.approx(0.8)
    assert cloze["margin"] == pytest.approx(0.4)
    assert verdict["outcomes"]["position"]["outcome"] == "equivalent"
    assert verdict["outcomes"]["position"]["habit_free_questions"] == 110
    assert verdict["plan"]["questions"] == "habit_free"
    assert "habit-free questions" in verdict["rule"]
    assert any("110 of 200 questions" in note for note in verdict["notes"])


def test_an_unknown_question_set_is_refused():
    with pytest.raises(ValueError, match="questions 'some'"):
        Plan(questions="some")
