"""letterwise/eval/detectors.py on hand-made questions; every expected value is worked out by
hand in the comments next to it."""

from __future__ import annotations

import json

import pytest

from letterwise.eval.detectors import (
    STRATEGIES,
    detector_report,
    explained_delta,
    strategy_answers,
    strategy_right,
)


def position_row(word: str, position: int, *, is_last: bool = False) -> dict:
    return {
        "task": "position",
        "word": word,
        "expected": word[position - 1],
        "position": position,
        "is_last": is_last,
    }


def count_row(word: str, letter: str) -> dict:
    return {
        "task": "count",
        "word": word,
        "letter": letter,
        "expected": str(word.count(letter)),
        "count": word.count(letter),
        "word_length": len(word),
    }


# Six position questions on the words cat, cab, dog, cot.
POSITION_ROWS = [
    position_row("cat", 1),  # c
    position_row("cat", 2),  # a
    position_row("cab", 2),  # a
    position_row("dog", 3, is_last=True),  # g, asked as "the last letter"
    position_row("cot", 3),  # t
    position_row("dog", 2),  # o
]

# Seven count questions; true counts 2, 2, 0, 3, 1, 1, 3 and word lengths 5, 4, 3, 6, 3, 3, 3.
COUNT_ROWS = [
    count_row("apple", "p"),
    count_row("tree", "e"),
    count_row("sky", "a"),
    count_row("banana", "a"),
    count_row("cat", "t"),
    count_row("dog", "o"),
    count_row("aaa", "a"),
]


def test_strategy_names():
    assert STRATEGIES == {
        "position": ("first_letter", "positional_prior"),
        "count": ("word_length", "one", "zero", "presence", "majority_answer"),
    }


def test_position_strategy_answers_by_hand():
    answers = strategy_answers("position", POSITION_ROWS)
    assert answers["first_letter"] == ["c", "c", "c", "d", "c", "d"]
    # Leave-one-word-out most common letter at that place among the OTHER words:
    # cat 1st: cab c, dog d, cot c -> c        cat 2nd: cab a, dog o, cot o -> o
    # cab 2nd: cat a, dog o, cot o -> o        dog last: cat t, cab b, cot t -> t
    # cot 3rd: cat t, cab b, dog g -> t        dog 2nd: cat a, cab a, cot o -> a
    assert answers["positional_prior"] == ["c", "o", "o", "t", "t", "a"]
    right = strategy_right("position", POSITION_ROWS)
    # expected c a a g t o
    assert right["first_letter"] == [True, False, False, False, False, False]
    assert right["positional_prior"] == [True, False, False, False, True, False]


def test_count_strategy_answers_by_hand():
    answers = strategy_answers("count", COUNT_ROWS)
    assert answers["word_length"] == ["5", "4", "3", "6", "3", "3", "3"]
    assert answers["one"] == ["1"] * 7
    assert answers["zero"] == ["0"] * 7
    # presence: p in apple, e in tree, no a in sky, a in banana, t in cat, o in dog, a in aaa
    assert answers["presence"] == ["1", "1", "0", "1", "1", "1", "1"]
    # true counts 2, 2, 0, 3, 1, 1, 3: "1", "2" and "3" twice each; the tie goes to 1, which
    # is the "one" strategy already: one detector per distinct strategy, so none is added
    assert "majority_answer" not in answers
    right = strategy_right("count", COUNT_ROWS)
    assert right["word_length"] == [False] * 6 + [True]  # only "aaa": 3 a's in 3 letters
    assert right["one"] == [False, False, False, False, True, True, False]
    assert right["zero"] == [False, False, True, False, False, False, False]
    # presence is right where the count is 0 or 1: sky, cat, dog
    assert right["presence"] == [False, False, True, False, True, True, False]


def test_majority_tie_goes_to_the_smaller_number_not_the_smaller_string():
    # one question with count 10 and one with count 9: as strings "10" < "9", as numbers 9 < 10
    rows = [count_row("a" * 10, "a"), count_row("b" * 9, "b")]
    assert strategy_answers("count", rows)["majority_answer"] == ["9", "9"]
    # reversing the order does not change the choice
    assert strategy_answers("count", rows[::-1])["majority_answer"] == ["9", "9"]
    # a clear majority wins over a smaller number: counts 2, 2, 1 -> "2"
    rows = [count_row("noon", "n"), count_row("noon", "o"), count_row("cat", "c")]
    assert strategy_answers("count", rows)["majority_answer"] == ["2", "2", "2"]


def test_first_letter_model_report():
    # A model that answers the first letter everywhere.
    report = detector_report("position", POSITION_ROWS, ["c", "c", "c", "d", "c", "d"])
    assert report["n"] == 6 and report["correct"] == 1  # right only on cat 1st
    assert report["accuracy"] == pytest.approx(1 / 6)
    first = report["strategies"]["first_letter"]
    assert first["share"] == 1.0
    assert first["baseline"] == pytest.approx(1 / 6)  # equal to the model's accuracy
    assert first["accuracy_when_strategy_wrong"] == 0.0 and first["n_when_strategy_wrong"] == 5
    prior = report["strategies"]["positional_prior"]
    # prior c o o t t a vs answers c c c d c d: equal only on the first question
    assert prior["share"] == pytest.approx(1 / 6)
    assert prior["baseline"] == pytest.approx(2 / 6)
    # the prior is wrong on questions 2, 3, 4, 6; the model is right on none of them
    assert prior["accuracy_when_strategy_wrong"] == 0.0 and prior["n_when_strategy_wrong"] == 4
    assert report["index_1"] == {"n": 1, "accuracy": 1.0}
    assert report["index_above_1"] == {"n": 5, "accuracy": 0.0}
    assert report["accuracy_by_index"] == {
        "1": {"n": 1, "accuracy": 1.0},
        "2": {"n": 3, "accuracy": 0.0},
        "3": {"n": 2, "accuracy": 0.0},  # dog's last letter counts at its real index 3
    }
    assert json.loads(json.dumps(report)) == report


def test_position_report_with_no_answers_and_a_reader():
    # Right on 1st, 2nd (cat), last (dog) and 3rd (cot); no answer on two questions.
    answers = ["c", "a", None, "g", "t", None]
    report = detector_report("position", POSITION_ROWS, answers)
    assert report["correct"] == 4 and report["accuracy"] == pytest.approx(4 / 6)
    # equal to the first letter only on question 1 ("c"); None never matches
    assert report["strategies"]["first_letter"]["share"] == pytest.approx(1 / 6)
    # first letter wrong on questions 2-6, right there on 2, 4, 5 -> 3 of 5
    assert report["strategies"]["first_letter"]["accuracy_when_strategy_wrong"] == 0.6
    assert report["index_above_1"] == {"n": 5, "accuracy": 0.6}


def test_always_one_count_model():
    report = detector_report("count", COUNT_ROWS, ["1"] * 7)
    assert report["correct"] == 2 and report["accuracy"] == pytest.approx(2 / 7)  # dog, cat
    one = report["strategies"]["one"]
    assert one["share"] == 1.0 and one["baseline"] == pytest.approx(2 / 7)
    assert one["accuracy_when_strategy_wrong"] == 0.0 and one["n_when_strategy_wrong"] == 5
    assert "majority_answer" not in report["strategies"]  # the majority is "1": that is "one"
    assert report["strategies"]["presence"]["share"] == pytest.approx(6 / 7)  # all but sky
    assert report["strategies"]["zero"]["share"] == 0.0
    assert report["strategies"]["word_length"]["share"] == 0.0  # no word has 1 letter
    assert report["answer_shares"] == {"0": 0.0, "1": 1.0, "word_length": 0.0}
    assert report["answer_histogram"] == {"1": 7}
    assert report["accuracy_by_true_count"] == {
        "0": {"n": 1, "accuracy": 0.0},
        "1": {"n": 2, "accuracy": 1.0},
        "2": {"n": 2, "accuracy": 0.0},
        "3": {"n": 2, "accuracy": 0.0},
    }


def test_word_length_count_model():
    report = detector_report("count", COUNT_ROWS, ["5", "4", "3", "6", "3", "3", "3"])
    assert report["correct"] == 1  # only "aaa" (3 of 3)
    length = report["strategies"]["word_length"]
    assert length["share"] == 1.0 and length["baseline"] == pytest.approx(1 / 7)
    assert length["accuracy_when_strategy_wrong"] == 0.0 and length["n_when_strategy_wrong"] == 6
    assert report["answer_shares"] == {"0": 0.0, "1": 0.0, "word_length": 1.0}
    assert list(report["answer_histogram"].items()) == [("3", 4), ("4", 1), ("5", 1), ("6", 1)]


def test_mixed_count_answers_and_the_histogram():
    answers = ["2", None, "0", "3", "1", "5", "3"]
    # right: apple 2, sky 0, banana 3, cat 1, aaa 3 -> 5 of 7
    report = detector_report("count", COUNT_ROWS, answers)
    assert report["correct"] == 5
    # "0" once, "1" once, the word length once (aaa "3"): 1/7 each
    assert report["answer_shares"] == pytest.approx({"0": 1 / 7, "1": 1 / 7, "word_length": 1 / 7})
    # "one" is wrong on apple, tree, sky, banana, aaa; right there on apple, sky, banana, aaa
    assert report["strategies"]["one"]["accuracy_when_strategy_wrong"] == 0.8
    assert report["strategies"]["one"]["n_when_strategy_wrong"] == 5
    # numbers in numeric order, no answer last as "none"
    assert list(report["answer_histogram"].items()) == [
        ("0", 1), ("1", 1), ("2", 1), ("3", 2), ("5", 1), ("none", 1)
    ]  # fmt: skip
    assert json.loads(json.dumps(report)) == report


# Twenty position questions: 1st and 2nd letter of ten words whose 2nd letter differs from
# their 1st, so the first letter is right on exactly the ten 1st-letter questions.
WORDS = ["cat", "dog", "sun", "pen", "map", "fox", "jam", "kit", "rub", "hen"]
TWENTY = [position_row(word, 1) for word in WORDS] + [position_row(word, 2) for word in WORDS]


def test_first_letter_habit_explains_a_gain_on_first_letters_only():
    base = [False] * 20
    tuned = [True] * 10 + [False] * 10  # the first-letter model: right on every 1st letter
    result = explained_delta("position", TWENTY, base, tuned, seed=0)
    # all questions: 10 gains of 20 -> +0.5; half the differences are 1, so resampling keeps
    # the mean well away from 0
    assert result["all"]["delta"] == 0.5 and result["all"]["ci_low"] > 0
    first = result["first_letter"]
    # where the first letter is wrong (the ten 2nd-letter questions) nothing changed: 0, CI [0, 0]
    assert first["n"] == 10 and first["delta"] == 0.0 and first["ci_low"] == 0.0
    assert first["explains"] is True


def test_a_model_also_right_on_later_letters_is_not_explained():
    base = [False] * 20
    tuned = [True] * 20
    result = explained_delta("position", TWENTY, base, tuned, seed=0)
    assert result["all"]["delta"] == 1.0
    # on the ten 2nd-letter questions the gain is still 10 of 10: CI [1, 1]
    assert result["first_letter"]["n"] == 10 and result["first_letter"]["ci_low"] == 1.0
    assert result["first_letter"]["explains"] is False
    assert result["positional_prior"]["explains"] is False


def test_no_gain_is_never_explained():
    result = explained_delta("position", TWENTY, [True] * 20, [True] * 20, seed=0)
    assert result["all"]["delta"] == 0.0
    assert not any(result[name]["explains"] for name in STRATEGIES["position"])


def test_count_gain_from_answering_one():
    # twelve questions with true count 1, eight with true count 2 (word lengths 3 and 4)
    rows = [count_row("cat", "c")] * 12 + [count_row("noon", "n")] * 8
    base = "0" * 20  # bit strings as in eval_position.json
    tuned = "1" * 12 + "0" * 8  # the always-"1" model
    result = explained_delta("count", rows, base, tuned, seed=1)
    assert result["all"]["delta"] == pytest.approx(12 / 20) and result["all"]["ci_low"] > 0
    # "one" (also the majority answer, 12 of 20: counted once) and presence (every letter is
    # present: "1") are wrong on the eight count-2 questions, where nothing changed
    assert "majority_answer" not in result
    for name in ("one", "presence"):
        assert result[name]["n"] == 8 and result[name]["delta"] == 0.0
        assert result[name]["explains"] is True
    # word length (3, 4) and zero are wrong everywhere: their subset is all 20, the gain stays
    for name in ("word_length", "zero"):
        assert result[name]["n"] == 20 and result[name]["explains"] is False


def test_a_strategy_right_everywhere_explains_any_gain():
    # every true count is 1: "one" is never wrong, so no question is left to show a gain
    rows = [count_row("cat", "c")] * 20
    result = explained_delta("count", rows, [False] * 20, [True] * 20, seed=0)
    assert result["one"]["n"] == 0 and result["one"]["delta"] is None
    assert result["one"]["explains"] is True
    assert result["zero"]["explains"] is False


def test_unknown_task_and_wrong_rows_are_refused():
    with pytest.raises(ValueError, match="unknown task 'spelling'"):
        strategy_answers("spelling", [])
    with pytest.raises(ValueError, match="row 1 is a 'count' question, not a 'position' one"):
        strategy_answers("position", [POSITION_ROWS[0], COUNT_ROWS[0]])
    with pytest.raises(ValueError, match="lacks position"):
        strategy_right("position", [{**POSITION_ROWS[0], "position": None}])
    with pytest.raises(ValueError, match="not a number"):
        strategy_answers("count", [{**COUNT_ROWS[0], "expected": "two"}])


def test_length_mismatches_are_refused():
    with pytest.raises(ValueError, match="5 answers for 6 position rows"):
        detector_report("position", POSITION_ROWS, ["c"] * 5)
    with pytest.raises(ValueError, match="20 rows, 20 base and 19 tuned"):
        explained_delta("position", TWENTY, [False] * 20, [True] * 19, seed=0)
    with pytest.raises(ValueError, match="only '0' and '1'"):
        explained_delta("position", TWENTY, "0" * 19 + "x", "1" * 20, seed=0)
