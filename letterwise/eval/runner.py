"""Shared evaluation for the `eval_spelling` and `eval_position` stages: base vs fine-tuned.

Both models answer the SAME held-out questions (the first `eval.max_questions` per task of
`eval.split`, in dataset order). Every sample is parsed by its task's tolerant parser; a sample
is right when the parsed answer equals the expected key, and unparseable output is simply
wrong. Per question we keep the mean accuracy over samples and the majority-vote answer.

Scoring is a set of pure functions over raw output strings (tested without a model);
`run_stage` is the only part that touches params, files and models, and it checks everything
it can before loading a model.

Outputs (all written atomically):
  metrics/details/<stage>.json              per task and instrument: every summary number
  metrics/<stage>.json                      the headline numbers only (what `dvc exp show` lists)
  data/predictions/<stage>.jsonl            one row per question with both models' outputs
  dvclive/<stage>/plots/custom/<task>_by_<key>.json   base vs tuned accuracy per bucket
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from letterwise.eval.answer_cache import eval_stores
from letterwise.eval.answering import answer_with_instruments
from letterwise.eval.instruments import (
    INSTRUMENT_LABELS,
    TRANSFER_TASKS,
    add_detectors,
    headline_coupling,
    score_choice,
    score_spell_first,
    word_coupling,
)
from letterwise.eval.scoring import plot_points, stage_metrics
from letterwise.generation import sampling_for
from letterwise.io import atomic_dir, write_json, write_jsonl, write_metrics
from letterwise.params import Params, ParamsError, load_params
from letterwise.presets import Preset, resolve_preset

STAGE_TASKS: dict[str, tuple[str, ...]] = {
    "eval_spelling": ("spelling",),
    "eval_position": ("position", "count"),
}


DATASET_DIR = Path("data/dataset/hf")
ADAPTER_DIR = Path("models/adapter")
METRICS_DIR = Path("metrics")
PREDICTIONS_DIR = Path("data/predictions")
DVCLIVE_DIR = Path("dvclive")


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


def release_memory() -> None:
    """Collect the dropped model and return cached GPU memory before the next one loads."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def write_plots(
    stage: str,
    plots: dict[str, tuple[str, list[dict]]],
    instruments: list[dict],
    breakdowns: dict[str, Any],
) -> list[Path]:
    """dvclive custom plots (base vs tuned per bucket, and accuracy per instrument) and the
    full breakdowns, written into a temp dir that replaces dvclive/<stage> whole. The
    breakdowns live here rather than in metrics/, so `dvc exp show` stays readable."""
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
        live.log_plot(
            "instruments",
            instruments,
            x="accuracy",
            y="instrument",
            template="bar_horizontal",
            title="accuracy per task and instrument: base vs fine-tuned",
        )
        write_json(Path(tmp) / "breakdowns.json", breakdowns)
    custom = final / "plots" / "custom"
    return [custom / f"{name}.json" for name in plots] + [custom / "instruments.json"]


# What `dvc exp show` lists per task (the rest is in metrics/details): the user-facing
# instrument, the format-neutral ones that may call a verdict, and spelling's own instruments.
HEADLINE_INSTRUMENTS = ("direct", "cloze", "cloze_calibrated", "choice", "teacher_forced")


def instrument_points(metrics: dict[str, Any], tasks: Sequence[str]) -> list[dict]:
    """One bar per task x instrument x model: the headline accuracy of each."""
    points = []
    for task in tasks:
        sections = {"direct": metrics[task]} | {
            key: metrics[task][key] for key in INSTRUMENT_LABELS if key in metrics[task]
        }
        for key, section in sections.items():
            for model in ("base", "tuned"):
                value = section[model].get("accuracy")
                if value is not None:
                    label = f"{task}: {INSTRUMENT_LABELS[key]} ({model})"
                    points.append({"instrument": label, "accuracy": value})
    return points


def headline_metrics(metrics: dict[str, Any], tasks: Sequence[str]) -> dict[str, Any]:
    """What a run is compared by, per task and headline instrument: base and tuned accuracy,
    the paired delta with its 95% CI and (where the answer format is asked) the tuned in-format
    rate. Position/count choice scoring, oracle, two-turn and spell-first, p-values, per-model
    CIs, baselines, detectors, coupling and timings stay in metrics/details/<stage>.json, so
    `dvc exp show` keeps to its 60-column budget (tests/test_compare.py)."""
    headline: dict[str, Any] = {}
    for task in tasks:
        sections = {"direct": metrics[task]} | {
            key: metrics[task][key] for key in HEADLINE_INSTRUMENTS if key in metrics[task]
        }
        if task in TRANSFER_TASKS and any(k.startswith("cloze") for k in sections):
            sections.pop("choice", None)  # superseded by the format-neutral slot
        headline[task] = {}
        for key, section in sections.items():
            delta = section["delta"]
            numbers = {
                "base": section["base"]["accuracy"],
                "tuned": section["tuned"]["accuracy"],
                "delta": delta["delta"],
                "delta_low": delta["ci_low"],
                "delta_high": delta["ci_high"],
            }
            if "in_format_rate" in section["tuned"]:
                numbers["in_format_tuned"] = section["tuned"]["in_format_rate"]
            headline[task][key] = numbers
    return headline


def add_instruments(
    metrics: dict[str, Any],
    predictions: list[dict],
    answers: dict[str, dict[str, Any]],
    questions: dict[str, list[dict]],
    *,
    seed: int,
) -> None:
    """Spell-first, choice and cloze results beside each task's direct-generation metrics,
    and their per-question records in the prediction rows (same order as `questions`)."""
    by_id = {row["id"]: row for row in predictions}
    if "cloze" in answers["base"]:
        add_cloze(metrics, by_id, answers, questions, seed=seed)
    for instrument in ("spell_first", "choice"):
        if instrument not in answers["base"]:
            continue
        start = 0
        for task, rows in questions.items():
            if instrument == "spell_first" and task not in TRANSFER_TASKS:
                continue
            end = start + len(rows)
            per_model = {model: answers[model][instrument][start:end] for model in answers}
            start = end
            if instrument == "spell_first":
                metrics[task]["spell_first"], scored = score_spell_first(
                    task, rows, per_model, seed=seed
                )
            else:
                metrics[task]["choice"], scored, forced = score_choice(task, per_model, seed=seed)
                if forced is not None:
                    metrics[task]["teacher_forced"] = forced
            for i, row in enumerate(rows):
                for model in scored:
                    by_id[row["id"]][model][instrument] = scored[model][i]


def add_cloze(
    metrics: dict[str, Any],
    by_id: dict[str, dict],
    answers: dict[str, dict[str, Any]],
    questions: dict[str, list[dict]],
    *,
    seed: int,
) -> None:
    """Each cloze variant scored like choice scoring (its records are choice records), per
    transfer task; the variants' records cover the transfer rows in `questions` order."""
    variants = list(answers["base"]["cloze"])
    start = 0
    for task, rows in questions.items():
        if task not in TRANSFER_TASKS:
            continue
        end = start + len(rows)
        for variant in variants:
            per_model = {model: answers[model]["cloze"][variant][start:end] for model in answers}
            metrics[task][variant], scored, _ = score_choice(task, per_model, seed=seed)
            for i, row in enumerate(rows):
                for model in scored:
                    by_id[row["id"]][model][variant] = scored[model][i]
        start = end


def add_word_coupling(metrics: dict[str, Any], predictions: list[dict], spelling: Path) -> None:
    """Per word: spelled right (eval_spelling) x answered right (direct), for base and tuned."""
    if not spelling.is_file():
        return
    spelling_rows = [json.loads(line) for line in spelling.read_text().splitlines() if line]
    for task in TRANSFER_TASKS:
        rows = [row for row in predictions if row["task"] == task]
        tables = word_coupling(spelling_rows, rows)
        metrics[task]["coupling"] = {model: headline_coupling(t) for model, t in tables.items()}


def _fmt(value: float | None, digits: int = 2, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def print_summary(
    stage: str, tasks: Sequence[str], metrics: dict[str, Any], console: Console
) -> None:
    """One screen: per task and instrument, base and tuned accuracy, the paired delta with its
    CI and p, and the unparseable rates."""
    title = f"{stage}: {metrics['split']} split, {metrics['mode']}, {metrics['decoding']}"
    if metrics["n_samples"] > 1:
        title += f", {metrics['n_samples']} samples"
    table = Table(title=title)
    columns = ("task", "instrument", "n", "base", "tuned", "delta [95% CI]", "p", "unparsed b/t")
    for column in columns:
        table.add_column(column, justify="left" if column in columns[:2] else "right", no_wrap=True)
    for task in tasks:
        sections = {"direct": metrics[task]} | {
            key: metrics[task][key]
            for key in INSTRUMENT_LABELS
            if key != "direct" and key in metrics[task]
        }
        for key, section in sections.items():
            base, tuned, delta = section["base"], section["tuned"], section["delta"]
            unparsed = "-"
            if "unparseable_rate" in base:
                unparsed = f"{_fmt(base['unparseable_rate'])}/{_fmt(tuned['unparseable_rate'])}"
            table.add_row(
                task,
                INSTRUMENT_LABELS[key],
                str(delta["n"]),
                _fmt(base["accuracy"]),
                _fmt(tuned["accuracy"]),
                f"{_fmt(delta['delta'], sign=True)} "
                f"[{_fmt(delta['ci_low'], sign=True)}, {_fmt(delta['ci_high'], sign=True)}]",
                _fmt(delta["p_value"], 3),
                unparsed,
            )
    console.print(table)


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


def answer_settings(params: Params) -> dict[str, Any]:
    """What shapes a model's answers to given questions, as resolved (so `temperature: null`
    and the mode's recommended 0.7 are the same setting): the sampling, the mode and its
    thinking budget, the instruments and the batch size (padding). Which questions are asked
    (split, max_questions) is the request's row list itself."""
    settings = params.eval
    return {
        "sampling": dataclasses.asdict(sampling_for(settings)),
        "mode": settings.mode,
        "thinking_budget": settings.thinking_budget if settings.mode == "thinking" else None,
        "batch_size": settings.batch_size,
        "prompting": sorted(settings.prompting),
        "choice_scoring": settings.choice_scoring,
        "cloze": sorted(settings.cloze),
    }


def two_turn_spellings(
    params: Params, rows: Sequence[dict], spelling_file: Path
) -> dict[str, dict[str, tuple[str, str]]] | None:
    """Per model, word -> (spelling question, the model's own spelling) from eval_spelling's
    predictions, for the two_turn instrument; None when it is not asked for. Checked before
    any model loads: every position/count word must have been spelled by both models."""
    from letterwise.eval.cloze import own_spellings

    if "two_turn" not in params.eval.cloze or not any(r["task"] in TRANSFER_TASKS for r in rows):
        return None
    if not spelling_file.is_file():
        raise FileNotFoundError(
            f"eval.cloze has two_turn, which needs {spelling_file} (the models' own spellings); "
            "run eval_spelling first (`dvc repro eval_spelling`)"
        )
    predictions = [json.loads(line) for line in spelling_file.read_text().splitlines() if line]
    spellings = {model: own_spellings(predictions, model) for model in ("base", "tuned")}
    words = {row["word"] for row in rows if row["task"] in TRANSFER_TASKS}
    missing = sorted(words - set(spellings["base"]))
    if missing:
        raise ValueError(
            f"two_turn: {len(missing)} position/count words have no spelling in {spelling_file} "
            f"(first: {missing[:5]}); evaluate spelling on the same split and max_questions"
        )
    return spellings


def answers_of(
    label: str,
    store: Any | None,
    request: dict[str, Any],
    load: Any,
    rows: list[dict],
    params: Params,
    sampling: Any,
    console: Console,
    spellings: dict[str, tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """One model's answers under every instrument: read whole from the answer cache when this
    model already answered these questions with these settings (the base model across
    training experiments: it is not even loaded), else computed batch by batch (resuming any
    batches a killed run completed) and saved."""
    name = "base" if label == "base" else "fine-tuned"
    cached = store.get({"answers": request}) if store is not None else None
    if cached is not None:
        console.print(
            f"{name}: every answer read from the answer cache ({store.root})", soft_wrap=True
        )
        return cached
    model, tokenizer = load()
    answers = answer_with_instruments(
        model, tokenizer, rows, params, sampling, name, store, spellings=spellings
    )
    del model, tokenizer  # the last references: free this model before the next one loads
    release_memory()
    if store is not None:
        # the first miss was the whole-answers lookup; hits are a killed run's batches
        console.print(
            f"{name}: {store.misses - 1} batch(es) computed, {store.hits} read from the answer "
            f"cache ({store.root})",
            soft_wrap=True,
        )
        store.put({"answers": request}, answers)
    return answers


def run_stage(stage: str, tasks: Sequence[str], args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate base and fine-tuned models on `tasks`; write metrics, predictions, plots.

    Every check (params, thinking mode vs model family, backend vs hardware, inputs on disk,
    adapter provenance, questions in the split) runs before the first model loads.
    """
    console = Console()
    if not console.is_terminal:  # a log (dvc queue logs, CI): keep the summary table whole
        console = Console(width=120)
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
    from letterwise.eval.answering import eval_max_seq_length
    from letterwise.modeling import (
        load_base_model,
        load_tokenizer,
        load_tuned_model,
        read_provenance,
        resolve_backend,
    )

    try:
        backend = resolve_backend(preset, params.train.backend)
        base_options = check_adapter_matches(params, read_provenance(ADAPTER_DIR))
        questions = load_questions(params.eval.split, tasks, params.eval.max_questions)
        rows = [row for task in tasks for row in questions[task]]
        spellings = two_turn_spellings(params, rows, PREDICTIONS_DIR / "eval_spelling.jsonl")
    except (RuntimeError, ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"{stage}: {exc}") from None
    sampling = sampling_for(params.eval)
    counts = ", ".join(f"{task}: {len(questions[task])}" for task in tasks)
    console.print(
        f"{stage}: {len(rows)} questions ({counts}) from {params.eval.split}; "
        f"model {preset.name}, backend {backend}"
    )

    answers: dict[str, dict[str, Any]] = {}
    # the longest prompt + budget, not train.max_seq_length (issue 35)
    seq = eval_max_seq_length(load_tokenizer(preset), rows, params, floor=2048)
    loaders = {
        "base": lambda: load_base_model(
            preset, backend=backend, max_seq_length=seq, **base_options
        ),
        "tuned": lambda: load_tuned_model(ADAPTER_DIR, backend=backend, max_seq_length=seq),
    }
    stores = eval_stores(preset, base_options, ADAPTER_DIR, backend)
    for label, load in loaders.items():
        request = {"rows": rows, "eval": answer_settings(params)}
        own = spellings[label] if spellings else None
        if own:  # two_turn's first turn is this model's own spelling
            request["spellings"] = own
        answers[label] = answers_of(
            label, stores[label], request, load, rows, params, sampling, console, own
        )
    outputs = {model: answers[model]["direct"] for model in answers}
    metrics, predictions = stage_metrics(params, dataclasses.asdict(sampling), outputs, questions)
    add_instruments(metrics, predictions, answers, questions, seed=params.eval.seed)
    add_detectors(metrics, predictions, questions, seed=params.eval.seed)
    metrics["seconds"] = {model: answers[model]["seconds"] for model in answers}
    if stage == "eval_position":
        add_word_coupling(metrics, predictions, PREDICTIONS_DIR / "eval_spelling.jsonl")
    breakdowns = {task: metrics[task].pop("breakdowns") for task in tasks}
    plots = {
        name: plot for task in tasks for name, plot in plot_points(breakdowns[task], task).items()
    }
    write_jsonl(PREDICTIONS_DIR / f"{stage}.jsonl", predictions)
    write_plots(stage, plots, instrument_points(metrics, tasks), breakdowns)
    # last: the headline file's presence means "done"
    write_metrics(METRICS_DIR / f"{stage}.json", metrics, headline_metrics(metrics, tasks))
    print_summary(stage, tasks, metrics, console)
    return metrics
