"""Shared evaluation for the `eval_spelling` and `eval_position` stages: base vs fine-tuned.

Both models answer the SAME held-out questions (the first `eval.max_questions` per task of
`eval.split`, in dataset order). Every sample is parsed by its task's tolerant parser; a sample
is right when the parsed answer equals the expected key, and unparseable output is simply
wrong. Per question we keep the mean accuracy over samples and the majority-vote answer.

Scoring is a set of pure functions over raw output strings (tested without a model);
`run_stage` is the only part that touches params, files and models, and it checks everything
it can before loading a model.

Outputs (all written atomically):
  metrics/<stage>.json                      per task: base, tuned, delta, breakdowns
  data/predictions/<stage>.jsonl            one row per question with both models' outputs
  dvclive/<stage>/plots/custom/<task>_by_<key>.json   base vs tuned accuracy per bucket
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from stages import stats
from stages.atomic import atomic_dir, write_json, write_jsonl
from stages.chat import prompt_text
from stages.generation import generate, majority_vote, max_new_tokens_for, sampling_for
from stages.params import Params, ParamsError, load_params
from stages.presets import Preset, resolve_preset

STAGE_TASKS: dict[str, tuple[str, ...]] = {
    "eval_spelling": ("spelling",),
    "eval_position": ("position", "count"),
}
DATASET_DIR = Path("data/dataset/hf")
ADAPTER_DIR = Path("models/adapter")
METRICS_DIR = Path("metrics")
PREDICTIONS_DIR = Path("data/predictions")
DVCLIVE_DIR = Path("dvclive")
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


def task_module(task: str) -> ModuleType:
    """stages.tasks.<task>: parse(output) -> key | None."""
    return importlib.import_module(f"stages.tasks.{task}")


# ---------------------------------------------------------------- scoring (pure functions)


def score_question(task: str, expected: str, outputs: Sequence[str]) -> dict[str, Any]:
    """One model's samples for one question -> parsed answers, correctness and scores."""
    if not outputs:
        raise ValueError("a question needs at least one generated sample")
    parse = task_module(task).parse
    parsed = [parse(output) for output in outputs]
    sample_correct = [answer is not None and answer == expected for answer in parsed]
    majority = majority_vote(parsed)
    scored: dict[str, Any] = {
        "outputs": list(outputs),
        "parsed": parsed,
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
    # fractions with several (sign-flip permutation test); see stages/stats.py
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


def plot_points(task_metrics: dict[str, Any], task: str) -> dict[str, tuple[str, list[dict]]]:
    """Plot name -> (x field, datapoints); each datapoint has x, base, tuned and n, so one
    plot (y: [base, tuned]) compares both models."""
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
            for value, buckets in task_metrics["breakdowns"][key].items()
            if value.lstrip("-").isdigit()
        ]
        plots[f"{task}_by_{x}"] = (x, points)
    return plots


# ---------------------------------------------------------------- checks before any model


def check_mode(params: Params) -> Preset:
    """Thinking mode exists only for Qwen3-family models."""
    preset = resolve_preset(params.model)
    if params.eval.mode == "thinking" and not preset.has_thinking_mode:
        raise ParamsError(
            f"eval.mode: thinking needs a Qwen3-family model, but model {params.model!r} "
            f"(family {preset.family}) has no thinking mode; set eval.mode: non-thinking"
        )
    return preset


def check_inputs(dataset_dir: Path = DATASET_DIR, adapter_dir: Path = ADAPTER_DIR) -> None:
    if not dataset_dir.is_dir():
        raise FileNotFoundError(
            f"{dataset_dir} is missing; the build_dataset stage makes it "
            "(`dvc repro build_dataset`)"
        )
    if not (adapter_dir / "adapter_config.json").is_file():
        raise FileNotFoundError(
            f"{adapter_dir} (with adapter_config.json) is missing; the train stage makes it "
            "(`dvc repro train`)"
        )


def select_questions(
    rows: Sequence[dict], tasks: Sequence[str], max_questions: int | None
) -> dict[str, list[dict]]:
    """The first `max_questions` rows of each task, in dataset order (None = all)."""
    selected: dict[str, list[dict]] = {task: [] for task in tasks}
    for row in rows:
        chosen = selected.get(row["task"])
        if chosen is not None and (max_questions is None or len(chosen) < max_questions):
            chosen.append(row)
    empty = [task for task, chosen in selected.items() if not chosen]
    if empty:
        raise ValueError(f"the evaluation split has no questions for task(s) {empty}")
    return selected


def load_questions(
    split: str, tasks: Sequence[str], max_questions: int | None
) -> dict[str, list[dict]]:
    from datasets import load_from_disk

    dataset = load_from_disk(str(DATASET_DIR))
    if split not in dataset:
        raise ValueError(f"{DATASET_DIR} has no {split!r} split (it has {sorted(dataset)})")
    columns = [c for c in dataset[split].column_names if c != "messages"]
    return select_questions(dataset[split].select_columns(columns).to_list(), tasks, max_questions)


# ---------------------------------------------------------------- generation


def prompts_and_budgets(tokenizer: Any, rows: list[dict], params: Params) -> tuple[list, list]:
    """Chat-rendered prompts in the eval's mode and each row's task-aware token budget."""
    thinking = params.eval.mode == "thinking"
    prompts = [prompt_text(tokenizer, row["question"], thinking=thinking) for row in rows]
    budgets = [
        max_new_tokens_for(
            row["task"],
            row["word_length"],
            thinking=thinking,
            thinking_budget=params.eval.thinking_budget,
        )
        for row in rows
    ]
    return prompts, budgets


def generate_answers(
    model: Any,
    tokenizer: Any,
    rows: list[dict],
    params: Params,
    sampling: Any,
    description: str,
) -> list[list[str]]:
    """Raw samples for every row (all of a stage's tasks in one batched pass)."""
    prompts, budgets = prompts_and_budgets(tokenizer, rows, params)
    return generate(
        model,
        tokenizer,
        prompts,
        max_new_tokens=budgets,
        sampling=sampling,
        batch_size=params.eval.batch_size,
        description=description,
    )


def release_memory() -> None:
    """Collect the dropped model and return cached GPU memory before the next one loads."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------- outputs


def write_plots(stage: str, plots: dict[str, tuple[str, list[dict]]]) -> list[Path]:
    """dvclive custom plots, written into a temp dir that replaces dvclive/<stage> whole."""
    from dvclive import Live

    final = DVCLIVE_DIR / stage
    with atomic_dir(final) as tmp:
        live = Live(dir=str(tmp), save_dvc_exp=False, dvcyaml=None, report=None)
        for name, (x, points) in plots.items():
            task, _, key = name.partition("_by_")
            live.log_plot(
                name,
                points,
                x=x,
                y=["base", "tuned"],
                template="linear",
                title=f"{task} accuracy by {key.replace('_', ' ')}: base vs fine-tuned",
                y_label="accuracy",
            )
    return [final / "plots" / "custom" / f"{name}.json" for name in plots]


def _fmt(value: float | None, digits: int = 2, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def print_summary(
    stage: str, tasks: Sequence[str], metrics: dict[str, Any], console: Console
) -> None:
    """One screen: per task, base and tuned accuracy, the paired delta with its CI and p."""
    title = f"{stage}: {metrics['split']} split, {metrics['mode']}, {metrics['decoding']}"
    if metrics["n_samples"] > 1:
        title += f", {metrics['n_samples']} samples"
    table = Table(title=title)
    for column in ("task", "n", "base", "tuned", "delta [95% CI]", "p", "unparsed b/t"):
        table.add_column(column, justify="left" if column == "task" else "right", no_wrap=True)
    for task in tasks:
        base, tuned, delta = metrics[task]["base"], metrics[task]["tuned"], metrics[task]["delta"]
        table.add_row(
            task,
            str(delta["n"]),
            _fmt(base["accuracy"]),
            _fmt(tuned["accuracy"]),
            f"{_fmt(delta['delta'], sign=True)} "
            f"[{_fmt(delta['ci_low'], sign=True)}, {_fmt(delta['ci_high'], sign=True)}]",
            _fmt(delta["p_value"], 3),
            f"{_fmt(base['unparseable_rate'])}/{_fmt(tuned['unparseable_rate'])}",
        )
    console.print(table)


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


# ---------------------------------------------------------------- the stage


def build_parser(stage: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m stages.{stage}", description=description)
    parser.add_argument(
        "--params", default="params.yaml", help="path to params.yaml (default: params.yaml)"
    )
    return parser


def check_adapter_matches(params: Params, provenance: dict[str, Any]) -> dict[str, Any]:
    """The adapter must belong to params.model, or base and tuned are different models.

    Returns the base-model load options recorded at training time, so the base model is
    loaded exactly as the one the adapter was trained on.
    """
    trained_on = provenance.get("model")
    if trained_on != params.model:
        raise ValueError(
            f"{ADAPTER_DIR} was trained on model {trained_on!r} but params.yaml has model "
            f"{params.model!r}; retrain (`dvc repro train`) or set model: {trained_on}"
        )
    recorded = {"base_seed": "seed", "load_in_4bit": "load_in_4bit"}
    return {option: provenance[key] for key, option in recorded.items() if key in provenance}


def run_stage(stage: str, tasks: Sequence[str], args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate base and fine-tuned models on `tasks`; write metrics, predictions, plots.

    Every check (params, thinking mode vs model family, backend vs hardware, inputs on disk,
    adapter provenance, questions in the split) runs before the first model loads.
    """
    console = Console()
    try:
        params = load_params(args.params)
        preset = check_mode(params)
        check_inputs()
    except (ParamsError, FileNotFoundError) as exc:
        raise SystemExit(f"{stage}: {exc}") from None
    if params.eval.mode == "thinking" and params.eval.decoding == "greedy":
        console.print(
            "[yellow]warning: greedy decoding in thinking mode can loop; Qwen recommends "
            "eval.decoding: sampled[/yellow]"
        )

    # imported here so a stand-in can replace it in tests; it imports torch lazily itself
    from stages.modeling import load_base_model, load_tuned_model, read_provenance, resolve_backend

    try:
        backend = resolve_backend(preset, params.train.backend)
        base_options = check_adapter_matches(params, read_provenance(ADAPTER_DIR))
        questions = load_questions(params.eval.split, tasks, params.eval.max_questions)
    except (RuntimeError, ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"{stage}: {exc}") from None
    sampling = sampling_for(params.eval)
    rows = [row for task in tasks for row in questions[task]]
    counts = ", ".join(f"{task}: {len(questions[task])}" for task in tasks)
    console.print(
        f"{stage}: {len(rows)} questions ({counts}) from {params.eval.split}; "
        f"model {preset.name}, backend {backend}"
    )

    outputs: dict[str, list[list[str]]] = {}
    model, tokenizer = load_base_model(preset, backend=backend, **base_options)
    outputs["base"] = generate_answers(model, tokenizer, rows, params, sampling, "base model")
    del model, tokenizer  # the last references: free the base before the tuned one loads
    release_memory()
    model, tokenizer = load_tuned_model(ADAPTER_DIR, backend=backend)
    outputs["tuned"] = generate_answers(
        model, tokenizer, rows, params, sampling, "fine-tuned model"
    )
    del model, tokenizer
    release_memory()

    metrics, predictions = stage_metrics(params, dataclasses.asdict(sampling), outputs, questions)
    plots = {
        name: plot for task in tasks for name, plot in plot_points(metrics[task], task).items()
    }
    write_jsonl(PREDICTIONS_DIR / f"{stage}.jsonl", predictions)
    write_plots(stage, plots)
    write_json(METRICS_DIR / f"{stage}.json", metrics)  # last: its presence means "done"
    print_summary(stage, tasks, metrics, console)
    return metrics
