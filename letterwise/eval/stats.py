"""Evaluation statistics: accuracy with confidence intervals, the paired base-vs-tuned delta,
spelling distances and breakdowns. Pure functions over plain Python values (scipy, rapidfuzz;
no torch), so they are tested on hand-checked numbers.

Per-question scores come in two shapes:
- booleans (one sample per question, or majority-vote correctness): accuracy gets a Wilson
  interval and the paired test is the exact McNemar test on the discordant questions;
- floats in [0, 1] (mean accuracy over n samples per question): accuracy gets a bootstrap
  interval over questions and the paired test is a sign-flip permutation test on the
  per-question differences (the exact McNemar test is its special case for 0/1 scores).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from rapidfuzz.distance import Levenshtein
from scipy import stats

CONFIDENCE = 0.95


def _as_scores(values: Sequence[bool | float], name: str) -> np.ndarray:
    scores = np.asarray([float(v) for v in values], dtype=float)
    if scores.size and (np.isnan(scores).any() or scores.min() < 0.0 or scores.max() > 1.0):
        raise ValueError(f"{name}: per-question scores must lie in [0, 1]")
    return scores


def _is_binary(scores: np.ndarray) -> bool:
    return bool(np.all((scores == 0.0) | (scores == 1.0)))


def _bootstrap_mean_ci(values: np.ndarray, *, seed: int, n_resamples: int) -> tuple[float, float]:
    """95% percentile-bootstrap CI of a mean, resampling questions with a fixed seed.

    Percentile rather than BCa: on small, discrete 0/1 data BCa's corrections can push the
    bounds to the extremes of the data (e.g. [0, 1] for 9 of 10 differences at +1).
    """
    if values.size < 2 or np.all(values == values[0]):
        # no spread: every resample has the same mean
        mean = float(values.mean())
        return mean, mean
    result = stats.bootstrap(
        (values,),
        np.mean,
        n_resamples=n_resamples,
        confidence_level=CONFIDENCE,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def accuracy_ci(correct: Sequence[bool]) -> dict[str, Any]:
    """Exact-match accuracy with a 95% Wilson interval.

    No questions gives accuracy None (and None bounds) rather than a division by zero.
    """
    n = len(correct)
    k = int(sum(bool(c) for c in correct))
    if n == 0:
        return {"accuracy": None, "ci_low": None, "ci_high": None, "n": 0, "correct": 0}
    interval = stats.binomtest(k, n).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return {
        "accuracy": k / n,
        "ci_low": float(interval.low),
        "ci_high": float(interval.high),
        "n": n,
        "correct": k,
    }


def mean_ci(
    scores: Sequence[bool | float], *, seed: int, n_resamples: int = 10000
) -> dict[str, Any]:
    """Mean per-question score with a 95% CI: Wilson for 0/1 scores, bootstrap otherwise.

    `correct` is the summed score (equal to the number right for 0/1 scores).
    """
    values = _as_scores(scores, "scores")
    if values.size == 0 or _is_binary(values):
        return accuracy_ci([bool(v) for v in values])
    low, high = _bootstrap_mean_ci(values, seed=seed, n_resamples=n_resamples)
    return {
        "accuracy": float(values.mean()),
        "ci_low": low,
        "ci_high": high,
        "n": int(values.size),
        "correct": float(values.sum()),
    }


def mcnemar_exact_p(base_only: int, tuned_only: int) -> float:
    """Two-sided exact McNemar p: a binomial test of the discordant pairs against 1/2."""
    discordant = base_only + tuned_only
    if discordant == 0:
        return 1.0
    return float(stats.binomtest(tuned_only, discordant, 0.5).pvalue)


def _sign_flip_p(differences: np.ndarray, *, seed: int, n_resamples: int) -> float:
    """Two-sided paired permutation test: under H0 each difference's sign is a coin flip."""
    if not np.any(differences != 0):
        return 1.0
    result = stats.permutation_test(
        (differences,),
        np.mean,
        permutation_type="samples",  # with one sample this flips signs
        n_resamples=n_resamples,
        alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    return float(min(1.0, result.pvalue))


def paired_delta(
    base: Sequence[bool | float],
    tuned: Sequence[bool | float],
    *,
    seed: int,
    n_resamples: int = 10000,
) -> dict[str, Any]:
    """Transfer delta = mean(tuned) - mean(base) over the same questions, in the same order.

    - ci_low/ci_high: 95% bootstrap CI of the mean per-question difference (paired: questions
      are resampled, each keeping its base and tuned score together), fixed `seed`.
    - p_value: exact McNemar for 0/1 scores; for mean-of-samples scores a sign-flip
      permutation test on the per-question differences (`test` names which).
    - base_only / tuned_only: questions where only that model is right (for float scores:
      where that model scores higher); both / neither: ties with a score above 0 / of 0.
    """
    b, t = _as_scores(base, "base"), _as_scores(tuned, "tuned")
    if b.size != t.size:
        raise ValueError(
            f"paired scores need the same questions: base has {b.size}, tuned has {t.size}"
        )
    binary = _is_binary(b) and _is_binary(t)
    counts = {
        "base_only": int(np.sum(b > t)),
        "tuned_only": int(np.sum(t > b)),
        "both": int(np.sum((b == t) & (b > 0))),
        "neither": int(np.sum((b == t) & (b == 0))),
    }
    test = "mcnemar_exact" if binary else "sign_flip_permutation"
    if b.size == 0:
        return {
            "delta": None,
            "ci_low": None,
            "ci_high": None,
            "p_value": None,
            "n": 0,
            "test": test,
            **counts,
        }
    differences = t - b
    low, high = _bootstrap_mean_ci(differences, seed=seed, n_resamples=n_resamples)
    if binary:
        p_value = mcnemar_exact_p(counts["base_only"], counts["tuned_only"])
    else:
        p_value = _sign_flip_p(differences, seed=seed, n_resamples=n_resamples)
    return {
        "delta": float(differences.mean()),
        "ci_low": low,
        "ci_high": high,
        "p_value": p_value,
        "n": int(b.size),
        "test": test,
        **counts,
    }


def char_accuracy(predicted: str | None, expected: str) -> float:
    """Share of letter positions right, over the longer of the two spellings.

    Dividing by the longer length (not only the expected one) keeps extra trailing letters
    from scoring 1.0. Unparseable (None) scores 0.
    """
    if not expected:
        raise ValueError("expected spelling is empty")
    if predicted is None:
        return 0.0
    predicted, expected = predicted.lower(), expected.lower()
    matches = sum(p == e for p, e in zip(predicted, expected, strict=False))
    return matches / max(len(predicted), len(expected))


def edit_distance(predicted: str | None, expected: str) -> int:
    """Levenshtein distance in letters; unparseable (None) costs every expected letter."""
    if predicted is None:
        return len(expected)
    return int(Levenshtein.distance(predicted.lower(), expected.lower()))


def unparseable_rate(parsed: Sequence[Any]) -> float | None:
    """Share of answers the parser could not read (None); None when there are no answers."""
    if not parsed:
        return None
    return sum(p is None for p in parsed) / len(parsed)


def _sort_key(value: Any) -> tuple[int, Any]:
    # numbers in numeric order, then strings, then missing values
    if isinstance(value, bool) or value is None:
        return (2, str(value))
    if isinstance(value, int | float):
        return (0, value)
    return (1, str(value))


def breakdown(
    records: list[dict[str, Any]],
    key: str,
    correct_field: str,
    *,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Accuracy and 95% CI per value of `key` (word length, position, true count, band...).

    Keys are the values as strings, in natural order (numbers numerically). Records without
    the key are skipped; a None value forms its own "None" group.
    """
    groups: dict[Any, list[Any]] = {}
    for record in records:
        if key in record:
            groups.setdefault(record[key], []).append(record[correct_field])
    return {
        str(value): mean_ci(groups[value], seed=seed) for value in sorted(groups, key=_sort_key)
    }
