"""Per-word coupling: does spelling a word right go with answering its position/count right?

The 2x2 table, rows by spelling, columns by the other task's answer:

                      answered right   answered wrong
    spelled right     both_right       spelled_only
    spelled wrong     answered_only    both_wrong

Reported: the four counts; P(answered right | spelled right) and P(answered right | spelled
wrong), each with a 95% Wilson interval (letterwise.eval.stats.accuracy_ci); the odds ratio
(both_right * both_wrong) / (spelled_only * answered_only) with a 95% Woolf interval
(normal approximation on the log scale); and Fisher's exact two-sided p (scipy).

Degenerate tables never raise:
- a conditional probability whose row is empty is None (with None bounds);
- when a row or a column is empty (nobody spelled wrong, everybody answered right, no pairs)
  the table compares nothing: odds ratio, its interval and Fisher's p are None (Fisher's test
  conditions on the margins, and with an empty one there is a single possible table);
- when only some cells are 0 the sample odds ratio is 0 or infinite and Woolf's interval
  undefined, so the Haldane-Anscombe correction adds 0.5 to every cell for the odds ratio and
  its interval (flagged by `odds_ratio_corrected`); Fisher's p uses the raw counts.

Questions of one word are not independent of each other, so with several questions per word
the intervals and p are somewhat optimistic; the counts stay exact.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from scipy import stats as scipy_stats

from letterwise.eval import stats

HALDANE = 0.5


def _conditional(name: str, right: int, wrong: int) -> dict[str, Any]:
    ci = stats.accuracy_ci([True] * right + [False] * wrong)
    return {name: ci["accuracy"], f"{name}_ci_low": ci["ci_low"], f"{name}_ci_high": ci["ci_high"]}


def _woolf(a: float, b: float, c: float, d: float) -> tuple[float, float, float]:
    """Sample odds ratio a*d / (b*c) and its Woolf interval; all cells must be > 0."""
    log_or = math.log(a) + math.log(d) - math.log(b) - math.log(c)
    se = math.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
    z = float(scipy_stats.norm.ppf(0.5 + stats.CONFIDENCE / 2))
    return math.exp(log_or), math.exp(log_or - z * se), math.exp(log_or + z * se)


def coupling_table(spelled_right: Sequence[bool], answered_right: Sequence[bool]) -> dict[str, Any]:
    """The 2x2 coupling table and its statistics for paired per-question outcomes.

    `spelled_right[i]` and `answered_right[i]` belong to the same word (see `join_by_word`).
    Keys: n, both_right, spelled_only, answered_only, both_wrong, n_spelled_right,
    n_spelled_wrong, p_right_given_spelled_right (+ _ci_low, _ci_high),
    p_right_given_spelled_wrong (+ _ci_low, _ci_high), odds_ratio, odds_ratio_ci_low,
    odds_ratio_ci_high, odds_ratio_corrected, fisher_p. Undefined values are None.
    """
    if len(spelled_right) != len(answered_right):
        raise ValueError(
            f"coupling needs paired outcomes: {len(spelled_right)} spelling results vs "
            f"{len(answered_right)} answers"
        )
    cells = {"both_right": 0, "spelled_only": 0, "answered_only": 0, "both_wrong": 0}
    for spelled, answered in zip(spelled_right, answered_right, strict=True):
        key = {
            (True, True): "both_right",
            (True, False): "spelled_only",
            (False, True): "answered_only",
            (False, False): "both_wrong",
        }[(bool(spelled), bool(answered))]
        cells[key] += 1
    a, b, c, d = cells.values()
    table: dict[str, Any] = {
        "n": a + b + c + d,
        **cells,
        "n_spelled_right": a + b,
        "n_spelled_wrong": c + d,
        **_conditional("p_right_given_spelled_right", a, b),
        **_conditional("p_right_given_spelled_wrong", c, d),
        "odds_ratio": None,
        "odds_ratio_ci_low": None,
        "odds_ratio_ci_high": None,
        "odds_ratio_corrected": None,
        "fisher_p": None,
    }
    if min(a + b, c + d, a + c, b + d) == 0:
        return table  # an empty margin: nothing to compare
    corrected = min(a, b, c, d) == 0
    shift = HALDANE if corrected else 0.0
    ratio, low, high = _woolf(a + shift, b + shift, c + shift, d + shift)
    table |= {
        "odds_ratio": ratio,
        "odds_ratio_ci_low": low,
        "odds_ratio_ci_high": high,
        "odds_ratio_corrected": corrected,
        "fisher_p": float(scipy_stats.fisher_exact([[a, b], [c, d]]).pvalue),
    }
    return table


def _word(row: dict, side: str) -> str:
    word = row.get("word") if isinstance(row, dict) else None
    if not isinstance(word, str) or not word:
        raise ValueError(f"{side} prediction row without a word: {row!r:.200}")
    return word


def join_by_word(
    spelling_rows: Sequence[dict], other_rows: Sequence[dict]
) -> list[tuple[dict, dict]]:
    """Pair every position/count prediction row with a spelling prediction row of its word.

    Every row of `other_rows` whose word has a spelling row appears once, in input order; rows
    whose word was not spelled are left out. When a word has several spelling rows, the k-th
    question of a task about that word takes the (k mod m)-th of its m spelling rows, so each
    question counts once and the spelling samples are shared out evenly.
    """
    spelled: dict[str, list[dict]] = defaultdict(list)
    for row in spelling_rows:
        word = _word(row, "spelling")
        if row.get("task", "spelling") != "spelling":
            raise ValueError(f"spelling rows must be spelling predictions, not {row['task']!r}")
        spelled[word].append(row)
    seen: dict[tuple[str | None, str], int] = defaultdict(int)
    pairs = []
    for row in other_rows:
        word = _word(row, "position/count")
        if row.get("task") == "spelling":
            raise ValueError("other rows must be position/count predictions, got a spelling row")
        candidates = spelled.get(word)
        if not candidates:
            continue
        key = (row.get("task"), word)
        pairs.append((candidates[seen[key] % len(candidates)], row))
        seen[key] += 1
    return pairs
