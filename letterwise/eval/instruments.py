"""The instruments beside direct generation: spell-first prompting, choice scoring, coupling.

A fine-tuned model can know the letters and still stop answering in the asked format, so each
transfer task is measured three ways and the results sit side by side in the metrics:

- direct generation (letterwise.eval.scoring): the question as a user asks it, parsed strictly;
- spell_first: the question plus an instruction to spell the word first and end with an answer
  line (letterwise.tasks.spell_first): is the spelling skill usable for the answer?
- choice: the log-likelihood of every answer candidate after the same prompt, format-free
  (letterwise.eval.choice), as lm-evaluation-harness scores multiple choice;

plus the per-word coupling between spelling a word right and answering its question right
(letterwise.eval.coupling), the format-neutral cloze slots (letterwise.eval.cloze, scored as
choice records) and the strategy detectors over every instrument (letterwise.eval.detectors).
Model work is in letterwise.eval.answering; everything here is pure functions over its records
(a leaf: nothing here imports the runner).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from letterwise.eval import stats
from letterwise.eval.coupling import coupling_table, join_by_word
from letterwise.eval.detectors import (
    detector_report,
    explained_delta,
    strategy_answers,
    strategy_right,
)
from letterwise.tasks import spell_first

MODELS = ("base", "tuned")
TRANSFER_TASKS = ("position", "count")
# Every instrument by its key (in a task's metrics and a prediction row's per-model record),
# with its label in plots and tables; in the order they are shown.
INSTRUMENT_LABELS = {
    "direct": "direct generation",
    "spell_first": "spell-first generation",
    "choice": "choice scoring",
    "teacher_forced": "teacher-forced letters",
    "cloze": "cloze slot",
    "cloze_calibrated": "cloze, calibrated",
    "oracle": "cloze after the right spelling",
    "two_turn": "cloze after own spelling",
}
# position/count instruments beside direct generation: direct is the task's own section and
# teacher_forced is spelling's own
SCORED_INSTRUMENTS = tuple(k for k in INSTRUMENT_LABELS if k not in ("direct", "teacher_forced"))


def _rate(values: Sequence[bool]) -> float | None:
    return sum(values) / len(values) if values else None


def score_spell_first(
    task: str, rows: list[dict], outputs: dict[str, list[list[str]]], *, seed: int
) -> tuple[dict[str, Any], dict[str, list[dict]]]:
    """Spell-first metrics for one task: accuracy of the final answer (Wilson CI), the share
    whose spelled letters were right, the share with an answer line, the paired delta, and
    the within-answer coupling (spelled right x answered right). Per-sample scores are
    averaged per question; with one sample they are 0/1."""
    scored: dict[str, list[dict]] = {}
    metrics: dict[str, Any] = {}
    for model in MODELS:
        records = []
        for row, samples in zip(rows, outputs[model], strict=True):
            parsed = [spell_first.parse(task, text) for text in samples]
            right = [p.answer is not None and p.answer == row["expected"] for p in parsed]
            spelled = [spell_first.spelled_right(row, p) for p in parsed]
            records.append(
                {
                    "outputs": list(samples),
                    "parsed": [p.answer for p in parsed],
                    "spelled": [p.spelled for p in parsed],
                    "accuracy": sum(right) / len(right),
                    "correct": sum(right) * 2 > len(right),
                    "spelled_right": sum(spelled) * 2 > len(spelled),
                    "answer_line": all(p.has_answer_line for p in parsed),
                }
            )
        scored[model] = records
        summary = stats.accuracy_ci([r["correct"] for r in records])
        summary.pop("correct")
        summary["spelled_right_rate"] = _rate([r["spelled_right"] for r in records])
        summary["answer_line_rate"] = _rate([r["answer_line"] for r in records])
        summary["unparseable_rate"] = stats.unparseable_rate(
            [p for r in records for p in r["parsed"]]
        )
        metrics[model] = summary
    metrics["delta"] = stats.paired_delta(
        [r["accuracy"] for r in scored["base"]], [r["accuracy"] for r in scored["tuned"]], seed=seed
    )
    metrics["coupling"] = {
        model: headline_coupling(
            coupling_table(
                [r["spelled_right"] for r in scored[model]], [r["correct"] for r in scored[model]]
            )
        )
        for model in MODELS
    }
    return metrics, scored


def score_choice(
    task: str, records: dict[str, list[dict]], *, seed: int
) -> tuple[dict[str, Any], dict[str, list[dict]], dict[str, Any] | None]:
    """Choice-scoring metrics for one task (per model the summary, the paired delta of raw
    choice accuracy) and, for spelling, the teacher-forced letter accuracy as its own section.
    """
    from letterwise.eval.choice_metrics import choice_delta, summarize_choice

    summaries = {model: summarize_choice(task, records[model], seed=seed) for model in MODELS}
    deltas = choice_delta(records["base"], records["tuned"], seed=seed)
    teacher_forced = None
    if "teacher_forced" in deltas:
        teacher_forced = {}
        for model in MODELS:
            section = summaries[model].pop("teacher_forced")
            section.pop("correct", None)
            for key in ("exact", "all_letters"):
                section[key] = summaries[model].pop(f"teacher_forced_{key}")
            teacher_forced[model] = section
        teacher_forced["delta"] = deltas["teacher_forced"]
    metrics: dict[str, Any] = dict(summaries)
    metrics["delta"] = deltas["raw"]
    if "normalised" in deltas:
        metrics["delta_normalised"] = deltas["normalised"]
    return metrics, records, teacher_forced


def headline_coupling(table: dict[str, Any]) -> dict[str, Any]:
    """The numbers that belong in a metrics file; the full table goes to the breakdowns."""
    keep = (
        "n",
        "p_right_given_spelled_right",
        "p_right_given_spelled_wrong",
        "odds_ratio",
        "odds_ratio_ci_low",
        "odds_ratio_ci_high",
        "fisher_p",
    )
    return {key: table[key] for key in keep if key in table}


def word_coupling(
    spelling_predictions: list[dict], task_predictions: list[dict]
) -> dict[str, dict[str, Any]]:
    """Per model: did spelling the word right go with answering its position/count right?
    Both lists are prediction rows (one per question) of the same split and models."""
    pairs = join_by_word(spelling_predictions, task_predictions)
    return {
        model: coupling_table(
            [bool(spelled[model]["correct"]) for spelled, _ in pairs],
            [bool(answered[model]["correct"]) for _, answered in pairs],
        )
        for model in MODELS
    }


def _majority(values: Sequence[str | None]) -> str | None:
    counts = Counter(v for v in values if v is not None)
    if not counts:
        return None
    ranked = counts.most_common()
    return ranked[0][0] if len(ranked) == 1 or ranked[0][1] > ranked[1][1] else None


def instrument_answers(prediction: dict, model: str, instrument: str) -> tuple[str | None, bool]:
    """(answer key, right?) of one model on one prediction row under one instrument."""
    if instrument == "direct":
        scored = prediction[model]
        return scored["vote"], bool(scored["correct"])
    record = prediction[model][instrument]
    if instrument == "spell_first":
        return _majority(record["parsed"]), bool(record["correct"])
    return record["choice"], bool(record["correct"])


def instrument_probability(prediction: dict, model: str, instrument: str) -> float | None:
    """The probability an instrument gives the right answer (rounded to 6 places), for the
    scored instruments (choice, cloze slots); None for generated answers."""
    if instrument in ("direct", "spell_first"):
        return None
    value = prediction[model][instrument].get("p_true")
    return None if value is None else round(float(value), 6)


def _bits(flags: Sequence[bool]) -> str:
    return "".join("1" if flag else "0" for flag in flags)


def add_detectors(
    metrics: dict[str, Any],
    predictions: list[dict],
    questions: dict[str, list[dict]],
    *,
    seed: int,
) -> None:
    """Per transfer task and instrument: each model's detector report (habit shares, the
    habits' own accuracy, accuracy where a habit cannot help) and which habits explain the
    delta (`explained_by`); plus `metrics["per_question"]`: per task the question ids, each
    instrument's right/wrong bits per model and each strategy's, for the cross-arm verdict
    (letterwise.eval.verdict)."""
    by_id = {row["id"]: row for row in predictions}
    per_question: dict[str, Any] = {}
    for task, rows in questions.items():
        if task not in TRANSFER_TASKS:
            continue
        instruments = ["direct"] + [key for key in SCORED_INSTRUMENTS if key in metrics[task]]
        correct_bits: dict[str, dict[str, str]] = {}
        scores: dict[str, dict[str, list[float]]] = {}
        for instrument in instruments:
            answers = {
                model: [instrument_answers(by_id[row["id"]], model, instrument) for row in rows]
                for model in MODELS
            }
            section = metrics[task] if instrument == "direct" else metrics[task][instrument]
            reports = {}
            for model in MODELS:
                report = detector_report(task, rows, [a for a, _ in answers[model]])
                report.pop("correct", None)
                reports[model] = report
            explained = explained_delta(
                task,
                rows,
                [right for _, right in answers["base"]],
                [right for _, right in answers["tuned"]],
                seed=seed,
            )
            section["detectors"] = reports
            section["explained_by"] = sorted(
                name for name, result in explained.items() if result.get("explains")
            )
            section["delta_where_habit_wrong"] = {
                name: {key: result[key] for key in ("n", "delta", "ci_low", "ci_high")}
                for name, result in explained.items()
                if name != "all"
            }
            correct_bits[instrument] = {
                model: _bits([right for _, right in answers[model]]) for model in MODELS
            }
            probability = {
                model: [instrument_probability(by_id[row["id"]], model, instrument) for row in rows]
                for model in MODELS
            }
            if all(p is not None for values in probability.values() for p in values):
                scores[instrument] = probability
        per_question[task] = {
            "ids": [row["id"] for row in rows],
            "correct": correct_bits,
            # the continuous outcome: probability of the right candidate (scored instruments)
            "scores": scores,
            "strategy_right": {
                name: _bits(flags) for name, flags in strategy_right(task, rows).items()
            },
            "strategy_answers": strategy_answers(task, rows),
        }
    if per_question:
        metrics["per_question"] = per_question
