"""letterwise.numbers: how a number reads in the report, the model card and results_table;
and the model card quoting the verdict sentence."""

from __future__ import annotations

import json

import pytest

from letterwise.cards.model_card import CardError, verdict_of, verdict_section
from letterwise.numbers import ci, interval, num, p_scientific, p_value, p_with_sign, percent


def test_fixed_point_signs_and_missing_values():
    assert num(0.1349) == "0.135"
    assert num(0.12, sign=True) == "+0.120"
    assert num(-0.0851, digits=2, sign=True) == "-0.09"
    assert num(None) == "–"
    assert percent(0.16) == "16 %"


def test_p_values():
    assert p_value(0.0004) == "< 0.001"
    assert p_value(0.0421) == "0.042"
    assert p_with_sign(0.0421) == "= 0.042"
    assert p_with_sign(1e-9) == "< 0.001"
    assert p_scientific(7.6e-06) == "7.6e-06"
    assert p_scientific(0.5) == "0.500"
    assert p_value(None) == p_scientific(None) == "–"


def test_intervals_of_accuracies_and_deltas():
    assert interval(0.0944, 0.1893) == "[0.094, 0.189]"
    assert ci({"accuracy": 0.165, "ci_low": 0.11997, "ci_high": 0.22266}) == "0.165 [0.120, 0.223]"
    delta = {"delta": 0.12, "ci_low": 0.06, "ci_high": 0.185}
    assert ci(delta, sign=True) == "+0.120 [+0.060, +0.185]"
    assert ci({"accuracy": 0.5}) == "0.500 [–, –]"


def test_the_model_card_quotes_the_verdict_sentence_when_the_folder_has_one(tmp_path):
    assert verdict_of(tmp_path) is None
    assert verdict_section([]) == ""
    sentence = "TEST-SENTENCE: no transfer survives the controls."
    arms = {"spelling": [1, 2, 3], "negative_control": [1, 2, 3]}
    outcome = {"treatment_minus_negative": {"n_questions": 1000}}
    (tmp_path / "verdict.json").write_text(
        json.dumps({"sentence": sentence, "rows": [], "arms": arms,
                    "outcomes": {"position": outcome, "count": outcome}})
    )  # fmt: skip
    verdict = verdict_of(tmp_path)
    section = verdict_section([("the study", verdict)])
    assert (
        "**Verdict, the study (n = 1,000 questions per task; 3 seed(s) per arm):** "
        "TEST-SENTENCE: no transfer survives the controls." in section
    )
    (tmp_path / "verdict.json").write_text(json.dumps({"rows": []}))
    with pytest.raises(CardError, match="no verdict `sentence`"):
        verdict_of(tmp_path)
