"""Per-word coupling (letterwise.eval.coupling) on tables whose numbers are worked out here.

Fisher's p is checked against a hypergeometric sum written in this file, the odds-ratio
interval against Woolf's formula computed by hand (and scipy's sample odds ratio), and the
conditional probabilities' intervals against the Wilson formula.
"""

from __future__ import annotations

import math

import pytest
from scipy.stats.contingency import odds_ratio as scipy_odds_ratio

from letterwise.eval.coupling import coupling_table, join_by_word

Z95 = 1.959963984540054  # the 97.5% standard normal quantile


def outcomes(both_right: int, spelled_only: int, answered_only: int, both_wrong: int):
    """(spelled_right, answered_right) lists that make the given 2x2 table, interleaved."""
    pairs = (
        [(True, True)] * both_right
        + [(True, False)] * spelled_only
        + [(False, True)] * answered_only
        + [(False, False)] * both_wrong
    )
    pairs = pairs[1::2] + pairs[::2]  # order must not matter
    return [s for s, _ in pairs], [a for _, a in pairs]


def fisher_two_sided(a: int, b: int, c: int, d: int) -> float:
    """Sum of the hypergeometric probabilities of tables with the same margins that are no more
    likely than the observed one (the usual two-sided Fisher p)."""
    row1, col1, n = a + b, a + c, a + b + c + d

    def prob(x: int) -> float:
        return math.comb(row1, x) * math.comb(n - row1, col1 - x) / math.comb(n, col1)

    observed = prob(a)
    support = range(max(0, row1 + col1 - n), min(row1, col1) + 1)
    return sum(p for x in support if (p := prob(x)) <= observed * (1 + 1e-7))


def wilson(k: int, n: int) -> tuple[float, float]:
    p = k / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 / (1 + Z95**2 / n) * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n**2))
    return centre - half, centre + half


def test_counts_and_conditional_probabilities():
    table = coupling_table(*outcomes(12, 5, 3, 9))
    assert {k: table[k] for k in ("n", "both_right", "spelled_only", "answered_only")} == {
        "n": 29,
        "both_right": 12,
        "spelled_only": 5,
        "answered_only": 3,
    }
    assert table["both_wrong"] == 9
    assert table["n_spelled_right"] == 17 and table["n_spelled_wrong"] == 12
    assert table["p_right_given_spelled_right"] == pytest.approx(12 / 17)
    assert table["p_right_given_spelled_wrong"] == pytest.approx(3 / 12)
    low, high = wilson(12, 17)
    assert table["p_right_given_spelled_right_ci_low"] == pytest.approx(low, abs=1e-9)
    assert table["p_right_given_spelled_right_ci_high"] == pytest.approx(high, abs=1e-9)
    low, high = wilson(3, 12)
    assert table["p_right_given_spelled_wrong_ci_low"] == pytest.approx(low, abs=1e-9)
    assert table["p_right_given_spelled_wrong_ci_high"] == pytest.approx(high, abs=1e-9)


def test_odds_ratio_and_woolf_interval_on_a_known_table():
    table = coupling_table(*outcomes(12, 5, 3, 9))
    # OR = 12*9 / (5*3) = 7.2; SE(log OR) = sqrt(1/12 + 1/5 + 1/3 + 1/9)
    se = math.sqrt(1 / 12 + 1 / 5 + 1 / 3 + 1 / 9)
    assert table["odds_ratio"] == pytest.approx(7.2)
    assert table["odds_ratio_ci_low"] == pytest.approx(7.2 * math.exp(-Z95 * se))
    assert table["odds_ratio_ci_high"] == pytest.approx(7.2 * math.exp(Z95 * se))
    assert table["odds_ratio_ci_low"] == pytest.approx(1.35261, abs=1e-4)
    assert table["odds_ratio_ci_high"] == pytest.approx(38.3258, abs=1e-3)
    assert table["odds_ratio_corrected"] is False
    reference = scipy_odds_ratio([[12, 5], [3, 9]], kind="sample")
    interval = reference.confidence_interval(0.95)
    assert (table["odds_ratio_ci_low"], table["odds_ratio_ci_high"]) == pytest.approx(
        (interval.low, interval.high)
    )


@pytest.mark.parametrize(
    "cells", [(12, 5, 3, 9), (1, 0, 0, 1), (5, 5, 5, 5), (20, 1, 2, 30), (0, 7, 4, 3), (3, 1, 1, 0)]
)
def test_fisher_p_matches_the_hypergeometric_sum(cells):
    assert coupling_table(*outcomes(*cells))["fisher_p"] == pytest.approx(
        fisher_two_sided(*cells), rel=1e-9
    )


def test_fisher_p_by_hand_on_a_small_table():
    # [[3, 0], [0, 3]]: margins 3/3 of 6; only x=3 and x=0 are as unlikely as observed,
    # each with probability 1 / C(6, 3) = 1/20
    assert coupling_table(*outcomes(3, 0, 0, 3))["fisher_p"] == pytest.approx(0.1)


def test_a_zero_cell_uses_the_haldane_correction():
    table = coupling_table(*outcomes(10, 0, 4, 6))
    # (10.5 * 6.5) / (0.5 * 4.5) = 30.333...; SE = sqrt(1/10.5 + 1/0.5 + 1/4.5 + 1/6.5)
    expected = 10.5 * 6.5 / (0.5 * 4.5)
    se = math.sqrt(1 / 10.5 + 1 / 0.5 + 1 / 4.5 + 1 / 6.5)
    assert table["odds_ratio"] == pytest.approx(expected)
    assert table["odds_ratio_ci_low"] == pytest.approx(expected * math.exp(-Z95 * se))
    assert table["odds_ratio_ci_high"] == pytest.approx(expected * math.exp(Z95 * se))
    assert table["odds_ratio_corrected"] is True
    assert table["fisher_p"] == pytest.approx(fisher_two_sided(10, 0, 4, 6))


def test_no_association_gives_an_odds_ratio_of_one_and_p_one():
    table = coupling_table(*outcomes(4, 4, 4, 4))
    assert table["odds_ratio"] == pytest.approx(1.0)
    assert table["odds_ratio_ci_low"] < 1.0 < table["odds_ratio_ci_high"]
    assert table["fisher_p"] == pytest.approx(1.0)
    assert table["p_right_given_spelled_right"] == table["p_right_given_spelled_wrong"] == 0.5


UNDEFINED = ("odds_ratio", "odds_ratio_ci_low", "odds_ratio_ci_high", "odds_ratio_corrected")


@pytest.mark.parametrize(
    ("cells", "given_right", "given_wrong"),
    [
        ((6, 0, 0, 0), 1.0, None),  # everything right: no spelled-wrong row
        ((0, 0, 0, 6), None, 0.0),  # everything wrong: no spelled-right row
        ((0, 0, 3, 4), None, 3 / 7),  # nobody spelled right
        ((5, 2, 0, 0), 5 / 7, None),  # nobody spelled wrong
        ((4, 0, 3, 0), 1.0, 1.0),  # everybody answered right: an empty column
        ((0, 0, 0, 0), None, None),  # no pairs at all
    ],
)
def test_degenerate_tables_report_none_and_never_raise(cells, given_right, given_wrong):
    table = coupling_table(*outcomes(*cells))
    assert table["n"] == sum(cells)
    assert table["p_right_given_spelled_right"] == given_right
    assert table["p_right_given_spelled_wrong"] == given_wrong
    for key in (*UNDEFINED, "fisher_p"):
        assert table[key] is None, key
    if given_right is None:
        assert table["p_right_given_spelled_right_ci_low"] is None
        assert table["p_right_given_spelled_right_ci_high"] is None


def test_unpaired_outcomes_are_refused():
    with pytest.raises(ValueError, match="paired"):
        coupling_table([True, False], [True])


# --------------------------------------------------------------------------- join_by_word
def prediction(task: str, word: str, index: int, correct: bool = True) -> dict:
    return {
        "id": f"test-{task}-{index:06d}",
        "task": task,
        "word": word,
        "base": {"correct": correct},
        "tuned": {"correct": not correct},
    }


def test_join_pairs_every_question_with_its_words_spelling():
    spelling = [prediction("spelling", w, i) for i, w in enumerate(["cat", "dog", "emu"])]
    other = [
        prediction("position", "dog", 0),
        prediction("position", "cat", 1),
        prediction("position", "dog", 2),  # a second question about "dog": used too
        prediction("count", "dog", 0),
        prediction("position", "yak", 3),  # never spelled: left out
    ]
    pairs = join_by_word(spelling, other)
    assert [(s["id"], o["id"]) for s, o in pairs] == [
        ("test-spelling-000001", "test-position-000000"),
        ("test-spelling-000000", "test-position-000001"),
        ("test-spelling-000001", "test-position-000002"),
        ("test-spelling-000001", "test-count-000000"),
    ]


def test_join_shares_several_spelling_rows_of_a_word_in_turn():
    spelling = [prediction("spelling", "cat", i) for i in range(2)]
    other = [prediction("position", "cat", i) for i in range(3)]
    assert [s["id"] for s, _ in join_by_word(spelling, other)] == [
        "test-spelling-000000",
        "test-spelling-000001",
        "test-spelling-000000",
    ]


def test_join_then_table_counts_per_model():
    spelling = [
        prediction("spelling", "cat", 0, correct=True),
        prediction("spelling", "dog", 1, correct=False),
    ]
    other = [
        prediction("position", "cat", 0, correct=True),
        prediction("position", "cat", 1, correct=False),
        prediction("position", "dog", 2, correct=False),
    ]
    pairs = join_by_word(spelling, other)
    base = coupling_table(
        [s["base"]["correct"] for s, _ in pairs], [o["base"]["correct"] for _, o in pairs]
    )
    assert (
        base["both_right"],
        base["spelled_only"],
        base["answered_only"],
        base["both_wrong"],
    ) == (
        1,
        1,
        0,
        1,
    )


def test_join_refuses_rows_of_the_wrong_kind():
    with pytest.raises(ValueError, match="spelling rows"):
        join_by_word([prediction("position", "cat", 0)], [])
    with pytest.raises(ValueError, match="position/count"):
        join_by_word([prediction("spelling", "cat", 0)], [prediction("spelling", "cat", 1)])
    with pytest.raises(ValueError, match="without a word"):
        join_by_word([{"task": "spelling"}], [])
