"""Thinking mode as a measured comparison (issue 35): the same position/count questions asked
in Qwen3's thinking and non-thinking modes, each sampled at its own recommended values.

    python -m letterwise.eval.thinking --model qwen3-4b [--adapter models/adapter] [--out F]

The questions are the first `--max-questions` per task of the dataset's split, in dataset
order (as the eval stages pick them). Each mode renders them with its own chat template
(`letterwise.chat.prompt_text`), gets its task-aware budgets (plus the thinking budget when
thinking) and its sampling from `letterwise.generation.sampling_for` with every sampling value
left null, so the values are `QWEN3_SAMPLING`'s (thinking T 0.6 / top_p 0.95 / top_k 20 /
min_p 0; non-thinking T 0.7 / 0.8 / 20 / 0), whatever params.yaml sets. Both modes draw
`--n-samples` samples per question with the same fixed seed. Thinking batches are cut to what
fits in free GPU memory at the budget (`letterwise.eval.answering.batch_size_for`).

Reported per mode and task: mean accuracy over samples (95% CI: Wilson for 0/1 scores, a
bootstrap over questions otherwise) and majority-vote accuracy (Wilson); the unparseable rate;
the share of samples whose `<think>` block never closed (the budget ran out: scored wrong);
the share of samples with a trace and their mean trace length in tokens (the model's tokenizer
on the text inside `<think>…</think>`; an unclosed trace counts up to where it was cut); and
the "use gap" below. Per task, thinking minus non-thinking on per-question mean accuracy is a
paired delta (`stats.paired_delta`).

The use gap: is the answer right more often when the reasoning spells the word right?
Each sample's reasoning text is its trace in thinking mode (the text inside `<think>…</think>`;
a sample without one has no spelling) and its visible answer in non-thinking mode (no trace
there; a model may still spell the word in its reply). `trace_spelling` reads a spelling out of
that text (the rule below); each sample is then "spelled right", "spelled wrong" or "no
spelling". Reported: accuracy given right and given wrong (Wilson), their difference with a
Newcombe hybrid-score interval (from the two Wilson intervals), and accuracy given no spelling.
Samples are the unit there, and several samples of one question are not independent, so those
intervals are somewhat optimistic; the counts are exact.

The spelling rule (`trace_spelling`, tolerant on purpose):
1. A spelling letter is a single ASCII letter with no letter next to it ("S" in "S-T-R", "s"
   in "'s', 't'"), except a contraction's ("it's", "don't") and a letter followed by 's
   ("the r's").
2. Consecutive spelling letters form one run while what lies between two of them is at most
   16 characters with no letters once digits with an optional ordinal suffix ("1", "3rd") and
   the words "and", "then", "letter", "position" are removed: so separators may be spaces,
   dashes, commas, dots, arrows, quotes, markdown, line breaks and list numbering
   ("S-T-R", "s, t, and r", "1. S\\n2. T", "Letter 1: S, Letter 2: T", "s (1), t (2)").
3. A run is a spelling attempt when it has at least 3 letters and at least half as many as the
   word; shorter runs ("I", "a", "e.g.") are not.
4. Of the attempts, the one to judge is the closest (Levenshtein) to the word among those of
   the word's length; if none has its length, the closest of all. Ties go to the later one
   (a trace's last spelling is the one it goes on with). Letters are compared lowercased.
5. No attempt: "no spelling" (None). A spelling is right when it equals the word.
Not read as spellings: the word written whole ("strawberry"), chunks ("straw-berry"), and two
attempts with only separators between them (they join into one run of the wrong length).

Output: one JSON file (atomic, letterwise.io.write_json) with the settings, each mode's
sampling, batch size and timing, every summary, the comparison, and one record per question
and mode (prompt id, samples with output, parsed answer, correct, unclosed, trace tokens,
trace spelling, spelled right); then a rich table. The random-weight `qwen3-tiny` preset
exercises the code on a CPU; its numbers mean nothing, and the JSON and table say so.
"""

from __future__ import annotations

import argparse
import math
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from letterwise.eval import stats
from letterwise.params import Params, ParamsError, load_params
from letterwise.tasks.common import strip_thinking, unclosed_thinking

MODES = ("thinking", "non-thinking")
TASKS = ("position", "count")
RANDOM_WEIGHTS_NOTE = "random-weight tiny model: exercises the code, not a result"
DATASET_DIR = Path("data/dataset/hf")
OUT_DIR = Path("results/thinking")
DEFAULT_SAMPLES = 4

# --- reading a spelling out of a trace -------------------------------------------------------

# A letter with no letter beside it, not a contraction's ("it's", "don't") nor before 's ("r's").
_SPELLING_LETTER = re.compile(
    r"(?<![A-Za-z])(?<![A-Za-z]['\u2019])[A-Za-z](?![A-Za-z])(?!['\u2019]s(?![A-Za-z]))"
)
# What may sit between two letters of one spelling, beside separators: list numbers and ordinals,
# and a few joining words.
_FILLER = re.compile(r"\d+(?:st|nd|rd|th)?|\b(?:and|then|letter|position)\b", re.IGNORECASE)
_HAS_LETTER = re.compile(r"[A-Za-z]")
MAX_GAP_CHARS = 16
MIN_ATTEMPT_LETTERS = 3

SPELLING_RULE = (
    "single letters with no letter beside them (not contractions or a letter's 's), joined "
    f"while at most {MAX_GAP_CHARS} characters without letters lie between them (digits, "
    "ordinals and 'and'/'then'/'letter'/'position' allowed); a run of at least "
    f"{MIN_ATTEMPT_LETTERS} letters and half the word's length is an attempt; the attempt "
    "closest to the word among those of its length (else of all) is judged, ties to the later; "
    "no attempt = no spelling"
)


def spelling_attempts(text: str) -> list[str]:
    """Every run of separated single letters in `text`, lowercased, in order (rule 1-2)."""
    runs: list[list[str]] = []
    previous_end: int | None = None
    for match in _SPELLING_LETTER.finditer(text):
        gap = text[previous_end : match.start()] if previous_end is not None else None
        joins = (
            gap is not None
            and len(gap) <= MAX_GAP_CHARS
            and not _HAS_LETTER.search(_FILLER.sub("", gap))
        )
        if joins:
            runs[-1].append(match.group().lower())
        else:
            runs.append([match.group().lower()])
        previous_end = match.end()
    return ["".join(run) for run in runs]


def trace_spelling(text: str | None, word: str) -> str | None:
    """The spelling of `word` that `text` attempts (rules 3-4), or None for no attempt."""
    if not text:
        return None
    word = word.lower()
    shortest = max(MIN_ATTEMPT_LETTERS, math.ceil(len(word) / 2))
    attempts = [a for a in spelling_attempts(text) if len(a) >= shortest]
    if not attempts:
        return None
    same_length = [a for a in attempts if len(a) == len(word)]
    pool = same_length or attempts
    best = None
    for attempt in pool:  # ties go to the later attempt: <=
        distance = stats.edit_distance(attempt, word)
        if best is None or distance <= best[0]:
            best = (distance, attempt)
    return best[1]


_THINK = re.compile(r"<think>(.*?)(?:</think>|$)", re.IGNORECASE | re.DOTALL)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)


def thinking_trace(output: str) -> str | None:
    """The text inside the `<think>…</think>` blocks of `output` (an unclosed one runs to the
    end: the budget cut it there), or None when there is no block. A closing tag with no
    opening one (a template that put `<think>` in the prompt) makes everything before the last
    `</think>` the trace."""
    if not isinstance(output, str):
        return None
    blocks = _THINK.findall(output)
    if blocks:
        return "\n".join(block.strip() for block in blocks)
    closes = list(_THINK_CLOSE.finditer(output))
    if closes:
        return output[: closes[-1].start()].strip()
    return None


def reasoning_text(output: str, mode: str) -> str | None:
    """What the use gap reads a spelling from: the trace when thinking, the visible answer when
    not (non-thinking prompts end with an empty think block, so there is no trace)."""
    if mode == "thinking":
        return thinking_trace(output)
    return strip_thinking(output) if isinstance(output, str) else None


# --- scoring -----------------------------------------------------------------------------------


def score_samples(
    row: dict, outputs: Sequence[str], mode: str, count_tokens: Callable[[str], int]
) -> dict[str, Any]:
    """One question's samples in one mode -> its record (see the module docstring)."""
    from letterwise.eval.scoring import score_question

    scored = score_question(row["task"], row["expected"], outputs)
    samples = []
    for output, parsed, correct in zip(
        outputs, scored["parsed"], scored["sample_correct"], strict=True
    ):
        trace = thinking_trace(output)
        spelling = trace_spelling(reasoning_text(output, mode), row["word"])
        samples.append(
            {
                "output": output,
                "parsed": parsed,
                "correct": bool(correct),
                "unclosed": unclosed_thinking(output),
                "trace_tokens": None if trace is None else count_tokens(trace),
                "trace_spelling": spelling,
                "spelled_right": None if spelling is None else spelling == row["word"].lower(),
            }
        )
    return {
        "id": row.get("id"),
        "task": row["task"],
        "word": row["word"],
        "question": row.get("question"),
        "expected": row["expected"],
        "mode": mode,
        "samples": samples,
        "accuracy": scored["accuracy"],
        "vote": scored["vote"],
        "vote_correct": scored["correct"],
    }


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _wilson(right: int, wrong: int) -> dict[str, Any]:
    ci = stats.accuracy_ci([True] * right + [False] * wrong)
    return {key: ci[key] for key in ("accuracy", "ci_low", "ci_high", "n")}


def newcombe_difference(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """first - second accuracy with Newcombe's hybrid-score 95% interval, from the two Wilson
    intervals (`accuracy`, `ci_low`, `ci_high`); None throughout when either side is empty."""
    if first["accuracy"] is None or second["accuracy"] is None:
        return {"gap": None, "ci_low": None, "ci_high": None}
    p1, l1, u1 = first["accuracy"], first["ci_low"], first["ci_high"]
    p2, l2, u2 = second["accuracy"], second["ci_low"], second["ci_high"]
    gap = p1 - p2
    return {
        "gap": gap,
        "ci_low": gap - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
        "ci_high": gap + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2),
    }


def use_gap(samples: Sequence[dict]) -> dict[str, Any]:
    """Accuracy given the reasoning spells the word right vs wrong (and given no spelling).

    `samples`: dicts with `spelled_right` (True, False or None = no spelling) and `correct`.
    """
    groups: dict[Any, list[bool]] = {True: [], False: [], None: []}
    for sample in samples:
        groups[sample["spelled_right"]].append(bool(sample["correct"]))
    given = {key: _wilson(sum(values), len(values) - sum(values)) for key, values in groups.items()}
    difference = newcombe_difference(given[True], given[False])
    return {
        "n": len(samples),
        "n_spelled_right": len(groups[True]),
        "n_spelled_wrong": len(groups[False]),
        "n_no_spelling": len(groups[None]),
        "accuracy_given_right": given[True],
        "accuracy_given_wrong": given[False],
        "accuracy_given_no_spelling": given[None],
        "gap": difference["gap"],
        "gap_ci_low": difference["ci_low"],
        "gap_ci_high": difference["ci_high"],
        "gap_interval": "newcombe_hybrid_score",
    }


def trace_summary(samples: Sequence[dict]) -> dict[str, Any]:
    """Unclosed share over all samples; trace share and length over the samples with a trace."""
    lengths = [s["trace_tokens"] for s in samples if s["trace_tokens"] is not None]
    return {
        "unclosed_share": _rate(sum(s["unclosed"] for s in samples), len(samples)),
        "traced_share": _rate(len(lengths), len(samples)),
        "mean_trace_tokens": sum(lengths) / len(lengths) if lengths else None,
        "max_trace_tokens": max(lengths) if lengths else None,
    }


def summarize(records: Sequence[dict], *, seed: int) -> dict[str, Any]:
    """One mode x task: accuracies with CIs, the traces and the use gap."""
    samples = [s for record in records for s in record["samples"]]
    accuracy = stats.mean_ci([r["accuracy"] for r in records], seed=seed)
    vote = stats.accuracy_ci([r["vote_correct"] for r in records])
    return {
        "n_questions": len(records),
        "n_samples": len(samples),
        "samples_per_question": len(samples) // len(records) if records else 0,
        "accuracy": {key: accuracy[key] for key in ("accuracy", "ci_low", "ci_high")},
        "majority_vote": {key: vote[key] for key in ("accuracy", "ci_low", "ci_high")},
        "unparseable_rate": stats.unparseable_rate([s["parsed"] for s in samples]),
        **trace_summary(samples),
        "use_gap": use_gap(samples),
    }


def compare_modes(by_mode: dict[str, list[dict]], *, seed: int) -> dict[str, Any]:
    """Thinking minus non-thinking per-question mean accuracy on the same questions (paired)."""
    thinking = {r["id"]: r["accuracy"] for r in by_mode["thinking"]}
    plain = {r["id"]: r["accuracy"] for r in by_mode["non-thinking"]}
    ids = [i for i in thinking if i in plain]
    delta = stats.paired_delta([plain[i] for i in ids], [thinking[i] for i in ids], seed=seed)
    keys = ("delta", "ci_low", "ci_high", "p_value", "n", "test")
    return {key: delta[key] for key in keys}


# --- running ------------------------------------------------------------------------------------

# (params for one mode, rows) -> (samples per row, facts about the run such as the batch size)
Answerer = Callable[[Params, list[dict]], tuple[list[list[str]], dict[str, Any]]]


def mode_params(params: Params, mode: str, **eval_overrides: Any) -> Params:
    """`params` with eval set to `mode`, sampled decoding and every sampling value null, so
    `sampling_for` gives the mode's recommended values (one source: QWEN3_SAMPLING)."""
    from letterwise.params import EvalParams

    settings = params.eval.model_dump() | eval_overrides
    settings |= {"mode": mode, "decoding": "sampled"}
    settings |= {"temperature": None, "top_p": None, "top_k": None, "min_p": None}
    return params.model_copy(update={"eval": EvalParams.model_validate(settings)})


def evaluate(
    questions: dict[str, list[dict]],
    params_by_mode: dict[str, Params],
    answer: Answerer,
    count_tokens: Callable[[str], int],
    *,
    seed: int,
) -> dict[str, Any]:
    """Both modes on the same questions: summaries, the comparison and the records.

    Model-free: `answer` produces the samples (a model in `run`, a script in the tests).
    """
    import dataclasses

    from letterwise.generation import sampling_for

    rows = [row for task in questions for row in questions[task]]
    modes: dict[str, Any] = {}
    records: list[dict] = []
    by_mode: dict[str, dict[str, list[dict]]] = {}
    for mode, params in params_by_mode.items():
        started = time.monotonic()
        outputs, facts = answer(params, rows)
        seconds = time.monotonic() - started
        if len(outputs) != len(rows):
            raise ValueError(f"{mode}: {len(outputs)} answers for {len(rows)} questions")
        mode_records = [
            score_samples(row, samples, mode, count_tokens)
            for row, samples in zip(rows, outputs, strict=True)
        ]
        records += mode_records
        by_mode[mode] = {t: [r for r in mode_records if r["task"] == t] for t in questions}
        modes[mode] = {
            "sampling": dataclasses.asdict(sampling_for(params.eval)),
            "thinking_budget": params.eval.thinking_budget if mode == "thinking" else None,
            "seconds": round(seconds, 1),
            **facts,
            "tasks": {t: summarize(by_mode[mode][t], seed=seed) for t in questions},
        }
    comparison = {}
    if set(MODES) <= set(by_mode):
        comparison = {
            task: compare_modes({m: by_mode[m][task] for m in MODES}, seed=seed)
            for task in questions
        }
    return {
        "modes": modes,
        "thinking_minus_non_thinking": comparison,
        "records": records,
        "spelling_rule": SPELLING_RULE,
    }


def load_split(dataset_dir: Path, split: str, tasks: Sequence[str], max_questions: int | None):
    """The first `max_questions` rows per task of `split`, as the eval stages select them."""
    from datasets import load_from_disk

    from letterwise.eval.runner import select_questions

    if not Path(dataset_dir).is_dir():
        raise FileNotFoundError(
            f"{dataset_dir} is missing; the build_dataset stage makes it (`dvc repro "
            "build_dataset`, with the same model's tokenizer)"
        )
    dataset = load_from_disk(str(dataset_dir))
    if split not in dataset:
        raise ValueError(f"{dataset_dir} has no {split!r} split (it has {sorted(dataset)})")
    columns = [c for c in dataset[split].column_names if c != "messages"]
    return select_questions(dataset[split].select_columns(columns).to_list(), tasks, max_questions)


def model_answerer(model: Any, tokenizer: Any) -> Answerer:
    """Samples from a loaded model: the eval stages' prompts, budgets and batch sizing."""
    from letterwise.eval.answering import batch_size_for, prompts_and_budgets
    from letterwise.generation import generate, sampling_for

    def answer(params: Params, rows: list[dict]) -> tuple[list[list[str]], dict[str, Any]]:
        prompts, budgets = prompts_and_budgets(tokenizer, rows, params)
        batch = batch_size_for(model, tokenizer, prompts, budgets, params)
        outputs = generate(
            model,
            tokenizer,
            prompts,
            max_new_tokens=budgets,
            sampling=sampling_for(params.eval),
            batch_size=batch,
            description=params.eval.mode,
        )
        return outputs, {"batch_size": batch}

    return answer


def token_counter(tokenizer: Any) -> Callable[[str], int]:
    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0

    return count


def _base_params(path: str) -> Params:
    if Path(path).is_file():
        return load_params(path)
    if path == "params.yaml":
        return Params()
    raise ParamsError(f"{path} not found")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Load the model (and adapter), ask both modes, write the JSON and print the table."""
    from rich.console import Console

    from letterwise.io import write_json
    from letterwise.presets import resolve_preset

    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # a log: keep the table whole
    params = _base_params(args.params)
    preset = resolve_preset(args.model)
    if not preset.has_thinking_mode:
        raise SystemExit(
            f"thinking: model {args.model!r} (family {preset.family}) has no thinking mode"
        )
    overrides = {
        "split": args.split or params.eval.split,
        "n_samples": args.n_samples,
        "seed": params.eval.seed if args.seed is None else args.seed,
        "thinking_budget": args.thinking_budget or params.eval.thinking_budget,
        "batch_size": args.batch_size or params.eval.batch_size,
    }
    params = params.model_copy(update={"model": preset.name})
    try:
        by_mode = {mode: mode_params(params, mode, **overrides) for mode in MODES}
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise SystemExit(f"thinking: {exc}") from None
    max_questions = params.eval.max_questions if args.max_questions is None else args.max_questions
    if max_questions == 0:
        max_questions = None
    tasks = tuple(args.tasks)
    try:
        questions = load_split(Path(args.dataset), overrides["split"], tasks, max_questions)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"thinking: {exc}") from None

    from letterwise.eval.answering import eval_max_seq_length
    from letterwise.modeling import (
        load_base_model,
        load_tokenizer,
        load_tuned_model,
        read_provenance,
        resolve_backend,
    )

    backend = resolve_backend(preset, args.backend or params.train.backend)
    if args.adapter:
        trained_on = read_provenance(Path(args.adapter)).get("model")
        if trained_on != preset.name:
            raise SystemExit(
                f"thinking: {args.adapter} was trained on {trained_on!r}, not {preset.name!r}"
            )
    rows = [row for task in tasks for row in questions[task]]
    seq = eval_max_seq_length(load_tokenizer(preset), rows, by_mode["thinking"], floor=2048)
    counts = ", ".join(f"{task}: {len(questions[task])}" for task in tasks)
    console.print(
        f"thinking vs non-thinking: {len(rows)} questions ({counts}) from {overrides['split']}, "
        f"{args.n_samples} samples each; model {preset.name}, backend {backend}"
        + (f", adapter {args.adapter}" if args.adapter else ""),
        soft_wrap=True,
    )
    if args.adapter:
        model, tokenizer = load_tuned_model(Path(args.adapter), backend=backend, max_seq_length=seq)
    else:
        model, tokenizer = load_base_model(preset, backend=backend, max_seq_length=seq)
    result = evaluate(
        questions,
        by_mode,
        model_answerer(model, tokenizer),
        token_counter(tokenizer),
        seed=overrides["seed"],
    )
    random_weights = preset.weights.startswith("random:")
    result = {
        "note": RANDOM_WEIGHTS_NOTE if random_weights else None,
        "model": preset.name,
        "adapter": str(args.adapter) if args.adapter else None,
        "backend": backend,
        "device": str(model.device),
        "split": overrides["split"],
        "tasks": list(tasks),
        "n_questions": {task: len(questions[task]) for task in tasks},
        "n_samples": args.n_samples,
        "seed": overrides["seed"],
        "max_seq_length": seq,
        **result,
    }
    out = Path(args.out) if args.out else default_out(preset.name, args.adapter)
    write_json(out, result)
    print_table(result, console)
    console.print(f"wrote {out}", soft_wrap=True)
    return result


def default_out(model: str, adapter: str | None) -> Path:
    label = Path(model).name + (f"+{Path(adapter).name}" if adapter else "")
    return OUT_DIR / f"{label}.json"


def _fmt(value: float | None, digits: int = 2, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _with_ci(section: dict[str, Any], key: str = "accuracy", sign: bool = False) -> str:
    return (
        f"{_fmt(section[key], sign=sign)} "
        f"[{_fmt(section['ci_low'], sign=sign)}, {_fmt(section['ci_high'], sign=sign)}]"
    )


def print_table(result: dict[str, Any], console: Any) -> None:
    """Per mode and task: accuracies, traces and the use gap; then thinking - non-thinking."""
    from rich.table import Table

    title = f"thinking vs non-thinking: {result.get('model')}"
    if result.get("adapter"):
        title += f" + {result['adapter']}"
    if result.get("note"):
        title += f"\n[bold red]{result['note']}[/bold red]"
    table = Table(title=title)
    columns = (
        "mode", "task", "n x s", "T/top_p", "accuracy [95% CI]", "vote [95% CI]", "unclosed",
        "trace tok", "spelled r/w/none", "acc | right", "acc | wrong", "use gap [95% CI]",
    )  # fmt: skip
    for column in columns:
        justify = "left" if column in columns[:2] else "right"
        table.add_column(column, justify=justify, no_wrap=True)
    for mode, section in result["modes"].items():
        sampling = section["sampling"]
        for task, summary in section["tasks"].items():
            gap = summary["use_gap"]
            table.add_row(
                mode,
                task,
                f"{summary['n_questions']} x {summary['samples_per_question']}",
                f"{sampling['temperature']}/{sampling['top_p']}",
                _with_ci(summary["accuracy"]),
                _with_ci(summary["majority_vote"]),
                _fmt(summary["unclosed_share"]),
                _fmt(summary["mean_trace_tokens"], 0),
                f"{gap['n_spelled_right']}/{gap['n_spelled_wrong']}/{gap['n_no_spelling']}",
                _fmt(gap["accuracy_given_right"]["accuracy"]),
                _fmt(gap["accuracy_given_wrong"]["accuracy"]),
                f"{_fmt(gap['gap'], sign=True)} "
                f"[{_fmt(gap['gap_ci_low'], sign=True)}, {_fmt(gap['gap_ci_high'], sign=True)}]",
            )
    console.print(table)
    for task, delta in result.get("thinking_minus_non_thinking", {}).items():
        console.print(
            f"{task}: thinking - non-thinking {_with_ci(delta, 'delta', sign=True)}, "
            f"p {_fmt(delta['p_value'], 3)} (n {delta['n']})"
        )
    if result.get("note"):
        console.print(f"[bold red]{result['note']}[/bold red]")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m letterwise.eval.thinking",
        description="Position/count questions in Qwen3's thinking and non-thinking modes, each "
        "at its recommended sampling: accuracy, majority vote, unclosed traces, trace length "
        "and the use gap (accuracy given the trace spells the word right vs wrong).",
    )
    parser.add_argument(
        "--model",
        default="qwen3-tiny",
        help="a Qwen3 preset (qwen3-tiny on CPU, qwen3-4b on a GPU) or a local Qwen3 "
        "directory (default: qwen3-tiny)",
    )
    parser.add_argument(
        "--adapter",
        default=None,
        help="a LoRA adapter folder written by the train stage (e.g. models/adapter); "
        "default: the base model alone",
    )
    parser.add_argument(
        "--dataset",
        default=str(DATASET_DIR),
        help=f"the build_dataset stage's dataset folder (default: {DATASET_DIR})",
    )
    parser.add_argument(
        "--params",
        default="params.yaml",
        help="params.yaml for the eval defaults (split, max_questions, seed, thinking_budget, "
        "batch_size, train.backend); sampling values there are ignored: each mode uses its "
        "recommended ones (default: params.yaml, built-in defaults when absent)",
    )
    parser.add_argument("--split", default=None, help="validation or test (default: eval.split)")
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=list(TASKS),
        choices=TASKS,
        help="tasks to ask (default: position count)",
    )
    parser.add_argument(
        "--max-questions",
        type=int,
        default=None,
        help="questions per task, from the start of the split; 0 = all "
        "(default: eval.max_questions)",
    )
    parser.add_argument(
        "--n-samples",
        type=int,
        default=DEFAULT_SAMPLES,
        help=f"samples per question in each mode (default: {DEFAULT_SAMPLES})",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="sampling seed, both modes (default: eval.seed)"
    )
    parser.add_argument(
        "--thinking-budget",
        type=int,
        default=None,
        help="max thinking tokens before the answer (default: eval.thinking_budget)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="questions per generate() batch at most; thinking batches are cut to free GPU "
        "memory at the budget (default: eval.batch_size)",
    )
    parser.add_argument(
        "--backend",
        default=None,
        choices=("auto", "transformers", "unsloth"),
        help="model backend (default: train.backend)",
    )
    parser.add_argument(
        "--out",
        default=None,
        help=f"the JSON file to write (default: {OUT_DIR}/<model>[+<adapter>].json)",
    )
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from letterwise.io import hub_offline_by_default

    hub_offline_by_default()
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
