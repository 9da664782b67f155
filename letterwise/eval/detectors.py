"""Strategy detectors: which part of a measured accuracy an answer habit explains.

Why: an instrument scores answers, not reasons. A model fine-tuned to spell can learn to say a
word's FIRST letter to every position question; it is then right on every "1st letter" question
(and on any later position that repeats the first letter) without reading the position at all,
and its accuracy rises over the base model's. Count questions have the same trap: answering
"1", "0" or the word's length, or always the most common true count, scores whatever share of
the questions happen to have that answer. A gain that such a habit explains is not transfer.

Strategies (`STRATEGIES`), each an answer key per question computed from the question alone:
- position / first_letter: the word's first letter;
- position / positional_prior: the most common letter at that place among the other words of
  these questions (letterwise.eval.choice_metrics.positional_prior, leave-one-word-out);
- count / word_length: the word's length, as a number string;
- count / one, zero: "1", "0";
- count / presence: "1" if the letter is in the word, else "0" (knows presence, not counts);
- count / majority_answer: the most common true answer among these questions, a tie going to
  the smallest number (so the choice does not depend on question order); left out when it is
  "0" or "1", which `zero` / `one` already are (one detector per distinct strategy).

Rules:
- `detector_report`: for one model's answers, the share of answers equal to each strategy's
  (1.0 = the model follows the habit everywhere), the strategy's own accuracy (its baseline),
  and the model's accuracy on the questions the strategy gets wrong (a habit cannot earn those).
  Position adds accuracy at index 1 vs later indexes, count the accuracy per true count and
  the answer histogram.
- `explained_delta`: the paired tuned - base delta (letterwise.eval.stats.paired_delta) on all
  questions and on each strategy's wrong questions only. A strategy `explains` the delta when
  the full delta's 95% CI lies above 0 but the restricted one's does not (ci_low <= 0, or no
  question is left): the gain vanishes where the habit cannot help.

Answers are compared to the dataset's answer keys exactly (lowercase letter, number string);
None (no answer) never matches. Torch-free, pure functions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from letterwise.eval import stats
from letterwise.eval.choice_metrics import positional_prior

STRATEGIES: dict[str, tuple[str, ...]] = {
    "position": ("first_letter", "positional_prior"),
    "count": ("word_length", "one", "zero", "presence", "majority_answer"),
}
_REQUIRED_KEYS = {
    "position": ("word", "expected", "position", "is_last"),
    "count": ("word", "expected", "letter"),
}


def _check_rows(task: str, rows: Sequence[dict]) -> None:
    if task not in STRATEGIES:
        raise ValueError(f"unknown task {task!r}; strategies exist for {', '.join(STRATEGIES)}")
    for i, row in enumerate(rows):
        if row.get("task") != task:
            raise ValueError(f"row {i} is a {row.get('task')!r} question, not a {task!r} one")
        missing = [key for key in _REQUIRED_KEYS[task] if row.get(key) is None]
        if missing:
            raise ValueError(f"{task} row {i} ({row.get('id')}) lacks {', '.join(missing)}")
        if task == "count" and not str(row["expected"]).isdigit():
            raise ValueError(f"count row {i}: expected {row['expected']!r} is not a number")


def _majority_answer(rows: Sequence[dict]) -> str | None:
    if not rows:
        return None
    tally = Counter(str(row["expected"]) for row in rows)
    return min(tally, key=lambda answer: (-tally[answer], int(answer)))


def strategy_answers(task: str, rows: Sequence[dict]) -> dict[str, list[str]]:
    """Per strategy of `task`, its answer key for each row (see the module docstring)."""
    _check_rows(task, rows)
    if task == "position":
        return {
            "first_letter": [row["word"][0] for row in rows],
            "positional_prior": positional_prior(rows),
        }
    majority = _majority_answer(rows)
    answers = {
        "word_length": [str(len(row["word"])) for row in rows],
        "one": ["1"] * len(rows),
        "zero": ["0"] * len(rows),
        "presence": ["1" if row["letter"] in row["word"] else "0" for row in rows],
    }
    if majority not in ("0", "1"):
        answers["majority_answer"] = [] if majority is None else [majority] * len(rows)
    return answers


def strategy_right(task: str, rows: Sequence[dict]) -> dict[str, list[bool]]:
    """Per strategy, whether its answer to each row is the row's expected answer."""
    return {
        name: [answer == str(row["expected"]) for answer, row in zip(keys, rows, strict=True)]
        for name, keys in strategy_answers(task, rows).items()
    }


def _share(flags: Sequence[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def _accuracy_by(keys: Sequence[Any], correct: Sequence[bool]) -> dict[str, dict[str, Any]]:
    groups: dict[Any, list[bool]] = {}
    for key, right in zip(keys, correct, strict=True):
        groups.setdefault(key, []).append(right)
    return {
        str(key): {"n": len(groups[key]), "accuracy": _share(groups[key])} for key in sorted(groups)
    }


def _histogram(answers: Sequence[str | None]) -> dict[str, int]:
    tally = Counter("none" if a is None else a for a in answers)

    def order(answer: str) -> tuple[int, int, str]:  # numbers numerically, then text, then none
        if answer.isdigit():
            return (0, int(answer), "")
        return (2, 0, "") if answer == "none" else (1, 0, answer)

    return {answer: tally[answer] for answer in sorted(tally, key=order)}


def detector_report(
    task: str, rows: Sequence[dict], answers: Sequence[str | None]
) -> dict[str, Any]:
    """One model's answers under one instrument against each strategy of `task` (JSON-ready).

    accuracy/ci_low/ci_high/n/correct: the model's accuracy (Wilson CI); strategies: per
    strategy `share` (answers equal to its answer), `baseline` (its own accuracy) and
    `accuracy_when_strategy_wrong` with `n_when_strategy_wrong`. Position adds `index_1`,
    `index_above_1` ({n, accuracy}) and `accuracy_by_index`; count adds
    `accuracy_by_true_count`, `answer_shares` ("0", "1", "word_length") and `answer_histogram`
    (answer -> how many, no answer as "none").
    """
    if len(answers) != len(rows):
        raise ValueError(f"{len(answers)} answers for {len(rows)} {task} rows")
    keys = strategy_answers(task, rows)
    expected = [str(row["expected"]) for row in rows]
    correct = [a is not None and a == e for a, e in zip(answers, expected, strict=True)]
    report: dict[str, Any] = dict(stats.accuracy_ci(correct))
    strategies: dict[str, dict[str, Any]] = {}
    for name, strategy in keys.items():
        right = [s == e for s, e in zip(strategy, expected, strict=True)]
        when_wrong = [c for c, r in zip(correct, right, strict=True) if not r]
        strategies[name] = {
            "share": _share([a == s for a, s in zip(answers, strategy, strict=True)]),
            "baseline": _share(right),
            "accuracy_when_strategy_wrong": _share(when_wrong),
            "n_when_strategy_wrong": len(when_wrong),
        }
    report["strategies"] = strategies
    boundaries = [row.get("boundary") for row in rows]
    if all(b is not None for b in boundaries):
        # letter inside a token / at a token edge; count: in one token / across tokens
        report["accuracy_by_boundary"] = _accuracy_by(boundaries, correct)
    if task == "position":
        index = [int(row["position"]) for row in rows]
        first = [c for c, i in zip(correct, index, strict=True) if i == 1]
        later = [c for c, i in zip(correct, index, strict=True) if i > 1]
        report["index_1"] = {"n": len(first), "accuracy": _share(first)}
        report["index_above_1"] = {"n": len(later), "accuracy": _share(later)}
        report["accuracy_by_index"] = _accuracy_by(index, correct)
    else:
        report["accuracy_by_true_count"] = _accuracy_by([int(e) for e in expected], correct)
        at_least_2 = [c for c, e in zip(correct, expected, strict=True) if int(e) >= 2]
        report["answer_at_least_2"] = {"n": len(at_least_2), "accuracy": _share(at_least_2)}
        report["answer_shares"] = {
            "0": strategies["zero"]["share"],
            "1": strategies["one"]["share"],
            "word_length": strategies["word_length"]["share"],
        }
        report["answer_histogram"] = _histogram(answers)
    return report


def _scores(values: Sequence[bool | float] | str, name: str) -> list[float]:
    """Per-question scores; a string is read as eval_position.json's "0110..." bit string."""
    if isinstance(values, str):
        if set(values) - {"0", "1"}:
            raise ValueError(f"{name}: a bit string may hold only '0' and '1'")
        return [float(bit) for bit in values]
    return [float(v) for v in values]


def explained_delta(
    task: str,
    rows: Sequence[dict],
    base_correct: Sequence[bool | float] | str,
    tuned_correct: Sequence[bool | float] | str,
    *,
    seed: int,
) -> dict[str, dict[str, Any]]:
    """The paired tuned - base delta on all questions ("all") and, per strategy, on the
    questions that strategy gets wrong, with `explains` (see the module docstring).

    Correctness is per question in row order: booleans, scores in [0, 1], or a "0110..." string.
    """
    base, tuned = _scores(base_correct, "base_correct"), _scores(tuned_correct, "tuned_correct")
    if not len(base) == len(tuned) == len(rows):
        raise ValueError(
            f"explained_delta needs one score per row: {len(rows)} rows, "
            f"{len(base)} base and {len(tuned)} tuned scores"
        )
    right = strategy_right(task, rows)
    full = stats.paired_delta(base, tuned, seed=seed)
    full_positive = full["ci_low"] is not None and full["ci_low"] > 0
    result: dict[str, dict[str, Any]] = {"all": full}
    for name, strategy_ok in right.items():
        wrong = [i for i, ok in enumerate(strategy_ok) if not ok]
        restricted = stats.paired_delta(
            [base[i] for i in wrong], [tuned[i] for i in wrong], seed=seed
        )
        survives = restricted["ci_low"] is not None and restricted["ci_low"] > 0
        result[name] = {**restricted, "explains": full_positive and not survives}
    return result
