"""letterwise/eval/stats.py against numbers worked out independently of scipy's helpers."""

from __future__ import annotations

import math

import pytest
from scipy.stats import binom, binomtest

from letterwise.eval.stats import (
    accuracy_ci,
    breakdown,
    char_accuracy,
    edit_distance,
    mcnemar_exact_p,
    mean_ci,
    paired_delta,
    unparseable_rate,
)

Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal


def wilson(k: int, n: int) -> tuple[float, float]:
    """Textbook Wilson score interval."""
    p = k / n
    denominator = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denominator
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n**2)) / denominator
    return centre - half, centre + half


def test_accuracy_ci_matches_the_wilson_formula_for_8_of_10():
    result = accuracy_ci([True] * 8 + [False] * 2)
    assert result["accuracy"] == 0.8 and result["n"] == 10 and result["correct"] == 8
    low, high = wilson(8, 10)
    assert result["ci_low"] == pytest.approx(low, abs=1e-9)
    assert result["ci_high"] == pytest.approx(high, abs=1e-9)
    # published values for 8/10: 0.490 to 0.943
    assert result["ci_low"] == pytest.approx(0.4902, abs=1e-4)
    assert result["ci_high"] == pytest.approx(0.9433, abs=1e-4)


def test_accuracy_ci_edge_cases():
    empty = accuracy_ci([])
    assert empty == {"accuracy": None, "ci_low": None, "ci_high": None, "n": 0, "correct": 0}
    none_right = accuracy_ci([False] * 5)
    assert none_right["accuracy"] == 0.0 and none_right["ci_low"] == pytest.approx(0.0, abs=1e-12)
    assert none_right["ci_high"] == pytest.approx(wilson(0, 5)[1])
    all_right = accuracy_ci([True] * 5)
    assert all_right["ci_high"] == pytest.approx(1.0) and all_right["ci_low"] < 1.0


def test_mcnemar_exact_p_for_one_against_nine():
    # two-sided exact: 2 * P(X <= 1), X ~ Binomial(10, 1/2) = 2 * 11 / 1024
    assert mcnemar_exact_p(1, 9) == pytest.approx(0.021484375, abs=1e-12)
    assert mcnemar_exact_p(9, 1) == pytest.approx(0.021484375, abs=1e-12)
    assert mcnemar_exact_p(0, 0) == 1.0
    assert mcnemar_exact_p(0, 3) == pytest.approx(0.25)  # 2 * (1/2)**3


def test_paired_delta_on_booleans():
    base = [True] + [False] * 9 + [True] * 5 + [False] * 5
    tuned = [False] + [True] * 9 + [True] * 5 + [False] * 5
    result = paired_delta(base, tuned, seed=0)
    assert result["delta"] == pytest.approx((14 - 6) / 20)
    assert result["test"] == "mcnemar_exact"
    assert result["p_value"] == pytest.approx(0.021484375, abs=1e-12)
    assert (result["base_only"], result["tuned_only"], result["both"], result["neither"]) == (
        1,
        9,
        5,
        5,
    )
    assert result["n"] == 20
    assert result["ci_low"] <= result["delta"] <= result["ci_high"]
    assert result["ci_low"] > 0  # 9 of 10 discordant questions favour the tuned model


# Per-question scores with many distinct values: every bootstrap or permutation draw moves the
# CI bounds and the p-value, so an ignored seed changes them on every call, not by chance.
SPREAD_BASE = [((i * 37) % 101) / 100 for i in range(60)]
SPREAD_TUNED = [
    min(1.0, max(0.0, b + ((i * 53) % 29) / 100 - 0.12)) for i, b in enumerate(SPREAD_BASE)
]


def test_paired_delta_is_deterministic_for_a_seed():
    runs = [paired_delta(SPREAD_BASE, SPREAD_TUNED, seed=7) for _ in range(3)]
    assert runs[0]["test"] == "sign_flip_permutation"
    assert runs[0] == runs[1] == runs[2]
    other = paired_delta(SPREAD_BASE, SPREAD_TUNED, seed=8)
    assert (other["ci_low"], other["ci_high"]) != (runs[0]["ci_low"], runs[0]["ci_high"])
    assert other["p_value"] != runs[0]["p_value"]
    # the bootstrap CI of a mean (mean_ci) is seeded the same way
    means = [mean_ci(SPREAD_BASE, seed=7) for _ in range(3)]
    assert means[0] == means[1] == means[2]
    assert mean_ci(SPREAD_BASE, seed=8)["ci_low"] != means[0]["ci_low"]


def test_paired_bootstrap_keeps_each_questions_pair_together():
    """40 questions; base right on 20, tuned right on the same 20 and 4 more. The paired
    bootstrap resamples per-question differences (4 of +1, 36 of 0), so its mean is
    Binomial(40, 0.1) / 40 and the percentile CI is that distribution's 2.5% and 97.5%
    quantiles: [1/40, 8/40] = [0.025, 0.2], clear of zero. Resampling base and tuned
    independently would ignore the pairing: the textbook interval for two independent
    proportions (0.5 vs 0.6, n = 40 each) is 0.1 +- 0.217, which straddles zero."""
    base = [True] * 20 + [False] * 20
    tuned = [True] * 24 + [False] * 16
    result = paired_delta(base, tuned, seed=0)
    assert result["delta"] == pytest.approx(0.1)
    assert result["ci_low"] == pytest.approx(binom.ppf(0.025, 40, 0.1) / 40)  # 0.025
    assert result["ci_high"] == pytest.approx(binom.ppf(0.975, 40, 0.1) / 40)  # 0.2
    assert result["ci_low"] > 0
    half = Z95 * math.sqrt(0.5 * 0.5 / 40 + 0.6 * 0.4 / 40)
    assert 0.1 - half < 0 < 0.1 + half  # the unpaired interval would not exclude zero
    # McNemar sees only the 4 discordant questions, all for tuned: p = 2 * (1/2)**4
    assert result["p_value"] == pytest.approx(binomtest(4, 4, 0.5).pvalue)


@pytest.mark.parametrize(("base_only", "tuned_only"), [(7, 2), (2, 7), (0, 5), (12, 30), (3, 3)])
def test_mcnemar_is_the_two_sided_binomial_test_of_the_discordant_pairs(base_only, tuned_only):
    expected = binomtest(tuned_only, base_only + tuned_only, 0.5, alternative="two-sided").pvalue
    assert mcnemar_exact_p(base_only, tuned_only) == pytest.approx(expected, abs=1e-12)
    # the same through paired_delta, with concordant questions (which McNemar ignores) mixed in
    base = [True] * base_only + [False] * tuned_only + [True] * 6 + [False] * 9
    tuned = [False] * base_only + [True] * tuned_only + [True] * 6 + [False] * 9
    result = paired_delta(base, tuned, seed=0)
    assert (result["base_only"], result["tuned_only"]) == (base_only, tuned_only)
    assert result["p_value"] == pytest.approx(expected, abs=1e-12)
    assert result["delta"] == pytest.approx((tuned_only - base_only) / len(base))


def test_identical_models_have_zero_delta_and_p_one():
    scores = [True, False, True, True, False]
    result = paired_delta(scores, scores, seed=0)
    assert result["delta"] == 0.0 and result["p_value"] == 1.0
    assert result["ci_low"] == 0.0 and result["ci_high"] == 0.0
    assert result["base_only"] == result["tuned_only"] == 0


def test_paired_delta_on_mean_of_samples_uses_a_sign_flip_test():
    base = [0.5, 0.2, 1.0, 0.0]
    tuned = [0.7, 0.4, 1.0, 0.3]
    result = paired_delta(base, tuned, seed=0)
    assert result["test"] == "sign_flip_permutation"
    assert result["delta"] == pytest.approx(0.7 / 4)
    # 3 non-zero differences, all positive: exactly 2 of the 8 sign patterns are as extreme
    assert result["p_value"] == pytest.approx(0.25)
    assert (result["base_only"], result["tuned_only"], result["both"], result["neither"]) == (
        0,
        3,
        1,
        0,
    )
    assert result["ci_low"] <= result["delta"] <= result["ci_high"]


def test_paired_delta_rejects_unpaired_or_out_of_range_scores():
    with pytest.raises(ValueError, match="same questions"):
        paired_delta([True, False], [True], seed=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        paired_delta([1.5], [0.0], seed=0)
    empty = paired_delta([], [], seed=0)
    assert empty["delta"] is None and empty["p_value"] is None and empty["n"] == 0


def test_mean_ci_uses_wilson_for_binary_and_bootstrap_for_fractions():
    assert mean_ci([1.0, 0.0, 1.0, 1.0], seed=0) == accuracy_ci([True, False, True, True])
    fractional = mean_ci([0.5, 0.25, 1.0, 0.0, 0.75], seed=0)
    assert fractional["accuracy"] == pytest.approx(0.5)
    assert 0.0 <= fractional["ci_low"] < 0.5 < fractional["ci_high"] <= 1.0


def test_char_accuracy():
    assert char_accuracy("berry", "berry") == 1.0
    assert char_accuracy("bxrry", "berry") == pytest.approx(4 / 5)
    assert char_accuracy("ber", "berry") == pytest.approx(3 / 5)
    assert char_accuracy("berryyy", "berry") == pytest.approx(5 / 7)  # extra letters cost
    assert char_accuracy("BERRY", "berry") == 1.0
    assert char_accuracy(None, "berry") == 0.0
    assert char_accuracy("", "berry") == 0.0


def test_edit_distance():
    assert edit_distance("berry", "berry") == 0
    assert edit_distance("bery", "berry") == 1
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance(None, "berry") == 5


def test_unparseable_rate():
    assert unparseable_rate(["a", None, "b", None]) == 0.5
    assert unparseable_rate(["a"]) == 0.0
    assert unparseable_rate([]) is None


def test_breakdown_groups_in_natural_order():
    records = [
        {"word_length": 10, "correct": True, "band": "low"},
        {"word_length": 5, "correct": True, "band": "high"},
        {"word_length": 5, "correct": False, "band": "high"},
        {"word_length": 5, "correct": True, "band": "high"},
    ]
    by_length = breakdown(records, "word_length", "correct")
    assert list(by_length) == ["5", "10"]  # numeric, not string, order
    assert by_length["5"]["accuracy"] == pytest.approx(2 / 3) and by_length["5"]["n"] == 3
    assert by_length["10"]["accuracy"] == 1.0
    low, high = wilson(2, 3)
    assert by_length["5"]["ci_low"] == pytest.approx(low)
    assert by_length["5"]["ci_high"] == pytest.approx(high)
    assert set(breakdown(records, "band", "correct")) == {"high", "low"}
    assert breakdown(records, "missing", "correct") == {}
