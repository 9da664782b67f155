"""The instruments beside direct generation: spell-first prompting, choice scoring, coupling.

A fine-tuned model can know the letters and still stop answering in the asked format, so each
transfer task is measured three ways and the results sit side by side in the metrics:

- direct generation (letterwise.eval.scoring): the question as a user asks it, parsed strictly;
- spell_first: the question plus an instruction to spell the word first and end with an answer
  line (letterwise.tasks.spell_first): is the spelling skill usable for the answer?
- choice: the log-likelihood of every answer candidate after the same prompt, format-free
  (letterwise.eval.choice), as lm-evaluation-harness scores multiple choice;

plus the per-word coupling between spelling a word right and answering its question right
(letterwise.eval.coupling). Model work (generation, scoring) is in `answer_with_instruments`;
everything else is pure functions over its records.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from letterwise.eval import stats
from letterwise.eval.coupling import coupling_table, join_by_word
from letterwise.generation import generate
from letterwise.params import Params
from letterwise.tasks import spell_first

MODELS = ("base", "tuned")
TRANSFER_TASKS = ("position", "count")


def spell_first_rows(rows: Sequence[dict]) -> list[dict]:
    return [row for row in rows if row["task"] in TRANSFER_TASKS]


def spell_first_answers(
    model: Any,
    tokenizer: Any,
    rows: list[dict],
    params: Params,
    sampling: Any,
    description: str,
    store: Any | None = None,
) -> list[list[str]]:
    """Raw samples for the spell-first version of every position/count row."""
    from letterwise.chat import prompt_text

    thinking = params.eval.mode == "thinking"
    prompts = [prompt_text(tokenizer, spell_first.question(row), thinking=thinking) for row in rows]
    budgets = [
        spell_first.max_new_tokens(row["task"], row["word_length"])
        + (params.eval.thinking_budget if thinking else 0)
        for row in rows
    ]
    return generate(
        model,
        tokenizer,
        prompts,
        max_new_tokens=budgets,
        sampling=sampling,
        batch_size=params.eval.batch_size,
        description=f"{description}, spell-first",
        store=store,
    )


def answer_with_instruments(
    model: Any,
    tokenizer: Any,
    rows: list[dict],
    params: Params,
    sampling: Any,
    description: str,
    store: Any | None = None,
) -> dict[str, Any]:
    """One model's answers under every instrument the params ask for (direct always runs).
    `store`: this model's answer cache (letterwise.eval.answer_cache), batch by batch."""
    from letterwise.eval.runner import generate_answers

    seconds: dict[str, float] = {}
    started = time.monotonic()
    answers: dict[str, Any] = {
        "direct": generate_answers(model, tokenizer, rows, params, sampling, description, store)
    }
    seconds["direct"] = time.monotonic() - started
    transfer = spell_first_rows(rows)
    if "spell_first" in params.eval.prompting and transfer:
        started = time.monotonic()
        answers["spell_first"] = spell_first_answers(
            model, tokenizer, transfer, params, sampling, description, store
        )
        seconds["spell_first"] = time.monotonic() - started
    if params.eval.choice_scoring:
        from letterwise.eval.choice import run_choice

        started = time.monotonic()
        answers["choice"] = run_choice(
            model,
            tokenizer,
            rows,
            batch_size=params.eval.batch_size,
            thinking=params.eval.mode == "thinking",
            seed=params.eval.seed,
            store=store,
        )
        seconds["choice"] = time.monotonic() - started
    # what each instrument cost on this machine (wall time, this model)
    answers["seconds"] = {key: round(value, 1) for key, value in seconds.items()}
    return answers


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
