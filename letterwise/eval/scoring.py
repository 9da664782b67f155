"""Scoring generated answers: pure functions from raw output strings to metrics.

Every sample is parsed by its task's tolerant parser; a sample is right when the parsed answer
equals the expected key, and unparseable output is simply wrong. Per question we keep the mean
accuracy over samples and the majority-vote answer; per task, accuracy with a Wilson CI, the
unparseable rate, breakdowns by bucket, and the paired tuned - base delta. No model, no files:
everything here is tested on strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from letterwise.eval import stats
from letterwise.generation import majority_vote
from letterwise.params import Params
from letterwise.tasks import get_task
from letterwise.tasks.common import unclosed_share

MODELS = ("base", "tuned")


# metrics key -> dataset column, per task; numeric ones are also plotted (base vs tuned)
BREAKDOWNS: dict[str, dict[str, str]] = {
    "spelling": {"word_length": "word_length", "freq_band": "freq_band"},
    "position": {
        "word_length": "word_length",
        "position": "position",
        "is_last": "is_last",
        "freq_band": "freq_band",
    },
    "count": {"word_length": "word_length", "true_count": "count", "freq_band": "freq_band"},
}


PLOTTED: dict[str, tuple[str, ...]] = {
    "spelling": ("word_length",),
    "position": ("word_length", "position"),
    "count": ("word_length", "true_count"),
}


# the x field in a plot file (and its name: <task>_by_<x>)
PLOT_X = {"word_length": "word_length", "position": "letter_position", "true_count": "true_count"}


# fields carried from the dataset row into each prediction row
ROW_FIELDS = (
    "id", "task", "word", "question", "expected", "word_length", "freq_band",
    "position", "is_last", "letter", "count", "phrasing", "answer_format",
)  # fmt: skip


def score_question(task: str, expected: str, outputs: Sequence[str]) -> dict[str, Any]:
    """One model's samples for one question -> parsed answers, correctness and scores."""
    if not outputs:
        raise ValueError("a question needs at least one generated sample")
    module = get_task(task)
    parsed = [module.parse(output) for output in outputs]
    sample_correct = [answer is not None and answer == expected for answer in parsed]
    majority = majority_vote(parsed)
    scored: dict[str, Any] = {
        "outputs": list(outputs),
        "parsed": parsed,
        "in_format": [module.in_format(output) for output in outputs],
        "sample_correct": sample_correct,
        "accuracy": sum(sample_correct) / len(sample_correct),  # mean over samples
        "vote": majority,
        "correct": majority is not None and majority == expected,
    }
    if task == "spelling":
        # character-level scores, averaged over samples
        scored["char_accuracy"] = _mean([stats.char_accuracy(p, expected) for p in parsed])
        scored["edit_distance"] = _mean([stats.edit_distance(p, expected) for p in parsed])
    return scored


def summarize(task: str, scored: list[dict[str, Any]], *, n_samples: int, seed: int) -> dict:
    """Aggregate one model's scored questions for one task."""
    if n_samples == 1:
        # one sample: mean accuracy is 0/1 per question -> Wilson interval
        summary = stats.accuracy_ci([s["correct"] for s in scored])
    else:
        summary = stats.mean_ci([s["accuracy"] for s in scored], seed=seed)
        votes = [s["correct"] for s in scored]
        summary["majority_vote_accuracy"] = stats.accuracy_ci(votes)["accuracy"]
    summary.pop("correct")
    summary["unparseable_rate"] = stats.unparseable_rate([p for s in scored for p in s["parsed"]])
    # answered in the asked format (the task's in_format: e.g. a letter, not a spelled word)
    in_format = [f for s in scored for f in s["in_format"]]
    summary["in_format_rate"] = sum(in_format) / len(in_format) if in_format else None
    # thinking traces the budget cut off (eval.thinking_budget): an unclosed <think> scores ""
    summary["unclosed_think_rate"] = unclosed_share([o for s in scored for o in s["outputs"]])
    if task == "spelling":
        summary["char_accuracy"] = _mean([s["char_accuracy"] for s in scored])
        summary["mean_edit_distance"] = _mean([s["edit_distance"] for s in scored])
    return summary


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def task_breakdowns(
    task: str, rows: list[dict], scored: dict[str, list[dict]], *, seed: int
) -> dict[str, dict[str, dict[str, Any]]]:
    """breakdowns[key][value][model] = {accuracy, ci_low, ci_high, n}."""
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for key, column in BREAKDOWNS[task].items():
        per_model = {}
        for model in MODELS:
            records = [
                {"value": row.get(column), "accuracy": s["accuracy"]}
                for row, s in zip(rows, scored[model], strict=True)
            ]
            per_model[model] = stats.breakdown(records, "value", "accuracy", seed=seed)
        result[key] = {
            value: {
                model: {
                    k: per_model[model][value][k] for k in ("accuracy", "ci_low", "ci_high", "n")
                }
                for model in MODELS
            }
            for value in per_model["base"]
        }
    return result


def score_task(
    task: str,
    rows: list[dict],
    outputs: dict[str, list[list[str]]],
    *,
    n_samples: int,
    seed: int,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score both models on one task's questions.

    `outputs[model][i]` holds the raw samples for `rows[i]`. Returns the task's metrics
    (base, tuned, delta, breakdowns) and one prediction row per question.
    """
    for model in MODELS:
        if len(outputs[model]) != len(rows):
            raise ValueError(
                f"{task}: {model} has outputs for {len(outputs[model])} questions, "
                f"expected {len(rows)}"
            )
    scored = {
        model: [
            score_question(task, row["expected"], samples)
            for row, samples in zip(rows, outputs[model], strict=True)
        ]
        for model in MODELS
    }
    metrics: dict[str, Any] = {
        model: summarize(task, scored[model], n_samples=n_samples, seed=seed) for model in MODELS
    }
    # delta on per-question mean accuracy: 0/1 with one sample (exact McNemar),
    # fractions with several (sign-flip permutation test); see letterwise/eval/stats.py
    metrics["delta"] = stats.paired_delta(
        [s["accuracy"] for s in scored["base"]],
        [s["accuracy"] for s in scored["tuned"]],
        seed=seed,
    )
    metrics["breakdowns"] = task_breakdowns(task, rows, scored, seed=seed)
    predictions = [
        {field: row.get(field) for field in ROW_FIELDS}
        | {model: scored[model][i] for model in MODELS}
        for i, row in enumerate(rows)
    ]
    return metrics, predictions


def plot_points(breakdowns: dict[str, Any], task: str) -> dict[str, tuple[str, list[dict]]]:
    """Plot name -> (x field, datapoints) from a task's breakdowns; each datapoint has x, base,
    tuned and n, so one plot (y: [base, tuned]) compares both models."""
    plots = {}
    for key in PLOTTED[task]:
        x = PLOT_X[key]
        points = [
            {
                x: int(value),
                "base": buckets["base"]["accuracy"],
                "tuned": buckets["tuned"]["accuracy"],
                "n": buckets["base"]["n"],
            }
            for value, buckets in breakdowns[key].items()
            if value.lstrip("-").isdigit()
        ]
        plots[f"{task}_by_{x}"] = (x, points)
    return plots


def stage_metrics(
    params: Params,
    sampling: dict[str, Any],
    outputs: dict[str, list[list[str]]],
    questions: dict[str, list[dict]],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """All of a stage's tasks: the metrics document and the prediction rows.

    `outputs[model]` lists samples for the questions of every task, task by task in the
    order of `questions`.
    """
    metrics: dict[str, Any] = {
        "model": params.model,
        "mode": params.eval.mode,
        "decoding": params.eval.decoding,
        "sampling": sampling,
        "split": params.eval.split,
        "n_samples": params.eval.n_samples,
    }
    predictions: list[dict[str, Any]] = []
    start = 0
    for task, rows in questions.items():
        end = start + len(rows)
        task_outputs = {model: outputs[model][start:end] for model in MODELS}
        metrics[task], task_predictions = score_task(
            task, rows, task_outputs, n_samples=params.eval.n_samples, seed=params.eval.seed
        )
        predictions.extend(task_predictions)
        start = end
    return metrics, predictions
