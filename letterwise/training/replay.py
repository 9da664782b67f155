"""Replay targets: the base model's own greedy answers to the replay questions (self-distillation).

build_dataset writes replay rows (task "replay") with an empty answer; before LoRA is added, the
train stage has the base model answer them, non-thinking and greedy, with a short budget. An
answer is dropped when it is cut off by the budget (training on it would teach stopping
mid-sentence), empty, or shows letter-level content (a spelled word, a quoted letter): replay
must keep the base model's format, never teach letters.

The answers are cached in the checkpoint directory, so a resumed run trains on exactly the
targets its checkpoints were trained on instead of generating them again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from letterwise.chat import prompt_text
from letterwise.gemma3_assets import GEMMA3_QA_TEMPLATE
from letterwise.io import write_json
from letterwise.modeling import import_unsloth
from letterwise.tasks.common import strip_thinking
from letterwise.tasks.replay import MIN_KEPT_SHARE, contains_letter_content

# One-word, number and yes/no answers take a few tokens; a polite sentence around them fits too.
REPLAY_MAX_NEW_TOKENS = 48
REPLAY_BATCH_SIZE = 64  # fixed, not eval.batch_size: batch shape can nudge greedy outputs
CACHE_FILE = "letterwise_replay.json"  # in the checkpoint directory
DROP_REASONS = ("truncated", "empty", "echo", "letters")
ANSWER_ENDS = ("turn", "first_line")
# The plain question/answer format's own markers: a first line starting with one is the model
# running on into the template, not an answer.
QA_MARKERS = ("Question:", "Answer:")


class ReplayError(ValueError):
    """Too few of the base model's replay answers can be training targets."""


def answer_end_for(tokenizer: Any, requested: str = "auto") -> str:
    """Where the model's replay answers end: `requested`, or for "auto" "first_line" when the
    tokenizer prompts in the plain question/answer format (a base model with no chat template
    of its own) and "turn" otherwise."""
    if requested == "auto":
        plain = getattr(tokenizer, "chat_template", None) == GEMMA3_QA_TEMPLATE
        return "first_line" if plain else "turn"
    return _checked(requested)


def _checked(answer_end: str) -> str:
    if answer_end not in ANSWER_ENDS:
        known = ", ".join(ANSWER_ENDS)
        raise ValueError(f"unknown replay answer end {answer_end!r} (known: auto, {known})")
    return answer_end


def drop_reason(answer: str, answer_tokens: int, max_new_tokens: int) -> str | None:
    """Why a generated replay answer (a whole turn) cannot be a training target, or None."""
    if answer_tokens >= max_new_tokens:
        return "truncated"  # never reached the end of its turn
    if not answer:
        return "empty"
    if contains_letter_content(answer):
        return "letters"
    return None


def replay_target(
    completion: str,
    completion_tokens: int,
    max_new_tokens: int,
    *,
    answer_end: str = "turn",
    question: str = "",
) -> tuple[str, str | None]:
    """(the answer a completion gives, why it cannot be a training target or None).

    "turn": the whole completion, thinking stripped. "first_line": its first non-blank line,
    which must be complete (a line break follows it, or the model ended within the budget) and
    must not repeat the prompt (the question or a QA_MARKERS marker).
    """
    text = strip_thinking(completion)  # "" when an unclosed think block ate the budget
    if _checked(answer_end) == "turn":
        return text, drop_reason(text, completion_tokens, max_new_tokens)
    rest = text.lstrip()
    answer, newline, _ = rest.partition("\n")
    answer = answer.strip()
    if not newline and completion_tokens >= max_new_tokens:
        return answer, "truncated"  # the first line itself ran past the budget
    if not answer:
        return answer, "empty"
    if answer.startswith(QA_MARKERS) or answer == question.strip():
        return answer, "echo"
    if contains_letter_content(answer):
        return answer, "letters"
    return answer, None


def answer_replay_rows(
    model: Any,
    tokenizer: Any,
    rows: list[dict],
    batch_size: int = REPLAY_BATCH_SIZE,
    *,
    max_new_tokens: int = REPLAY_MAX_NEW_TOKENS,
    answer_end: str = "turn",
) -> tuple[list[dict], dict[str, Any]]:
    """(rows kept, with `answer` set to the model's greedy answer; stats) for replay rows.

    Each row needs a `question`. Generation is non-thinking and greedy via
    letterwise.generation.generate; `answer_end` says where an answer ends (replay_target).
    Stats: questions, rows (kept), dropped, dropped_by_reason, max_new_tokens, answer_end, and
    `outputs`: every question with its completion, the answer taken from it and why it was
    dropped.
    """
    # Here, not at the top: generation imports transformers, which must come after Unsloth.
    from letterwise.generation import Sampling, generate

    greedy = Sampling("greedy", None, None, None, None, n_samples=1, seed=0)
    prompts = [prompt_text(tokenizer, row["question"], thinking=False) for row in rows]
    completions = generate(
        model,
        tokenizer,
        prompts,
        max_new_tokens=max_new_tokens,
        sampling=greedy,
        batch_size=batch_size,
        description="replay answers",
    )
    kept: list[dict] = []
    outputs: list[dict] = []
    reasons: Counter[str] = Counter()
    for row, (raw,) in zip(rows, completions, strict=True):
        # generate() hands back text, so the length is re-counted from it (whitespace runs can
        # re-tokenize shorter, but a whitespace-only answer is dropped as empty anyway)
        tokens = len(tokenizer(raw, add_special_tokens=False)["input_ids"])
        answer, reason = replay_target(
            raw, tokens, max_new_tokens, answer_end=answer_end, question=row["question"]
        )
        outputs.append(
            {"question": row["question"], "completion": raw, "answer": answer, "dropped": reason}
        )
        if reason is None:
            kept.append({**row, "answer": answer})
        else:
            reasons[reason] += 1
    stats = {
        "questions": len(rows),
        "rows": len(kept),
        "dropped": sum(reasons.values()),
        "dropped_by_reason": {reason: reasons[reason] for reason in DROP_REASONS},
        "max_new_tokens": max_new_tokens,
        "answer_end": answer_end,
        "outputs": outputs,
    }
    return kept, stats


def cache_key(
    questions: list[str], model_identity: dict[str, Any], max_new_tokens: int, answer_end: str
) -> str:
    """What the cached answers depend on: the questions, the base model, how it generated and
    where its answers were cut."""
    blob = json.dumps(
        {
            "questions": questions,
            "model": model_identity,
            "max_new_tokens": max_new_tokens,
            "batch_size": REPLAY_BATCH_SIZE,
            "answer_end": answer_end,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def targets_sha256(rows: list[dict]) -> str:
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps([row["question"], row["answer"]]).encode())
    return digest.hexdigest()


def _from_cache(path: Path, key: str, rows: list[dict]) -> tuple[list[dict], dict] | None:
    if not path.is_file():
        return None
    try:
        cached = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    stats = cached.get("stats", {})
    outputs = stats.get("outputs", [])
    if cached.get("key") != key or len(outputs) != len(rows):
        return None
    kept = [
        {**row, "answer": out["answer"]}
        for row, out in zip(rows, outputs, strict=True)
        if out["dropped"] is None
    ]
    return kept, stats


def replay_targets(
    model: Any,
    tokenizer: Any,
    rows: list[dict],
    *,
    cache_dir: Path,
    model_identity: dict[str, Any],
    backend: str,
    console: Console,
    answer_end: str = "turn",
) -> tuple[list[dict], dict[str, Any]]:
    """Replay rows with the base model's answers, from `cache_dir` when it holds them for these
    questions and this model; generated (and cached) otherwise. Stats as answer_replay_rows,
    without `outputs`, plus targets_sha256 and from_cache."""
    path = Path(cache_dir) / CACHE_FILE
    questions = [row["question"] for row in rows]
    key = cache_key(questions, model_identity, REPLAY_MAX_NEW_TOKENS, answer_end)
    cached = _from_cache(path, key, rows)
    if cached is not None:
        kept, stats = cached
        console.print(f"replay: reusing the base model's {len(kept)} cached answers from {path}")
    else:
        fast_language_model = None
        if backend == "unsloth":  # Unsloth generates only in inference mode
            fast_language_model = import_unsloth()
            fast_language_model.for_inference(model)
        try:
            kept, stats = answer_replay_rows(model, tokenizer, rows, answer_end=answer_end)
        finally:
            if fast_language_model is not None:
                fast_language_model.for_training(model)
        write_json(path, {"key": key, "stats": stats})
    summary = {k: v for k, v in stats.items() if k != "outputs"}
    summary["targets_sha256"] = targets_sha256(kept)
    summary["from_cache"] = cached is not None
    reasons = ", ".join(f"{n} {r}" for r, n in summary["dropped_by_reason"].items() if n)
    console.print(
        f"replay: {summary['questions']} questions answered by the base model, "
        f"{summary['rows']} kept, {summary['dropped']} dropped"
        + (f" ({reasons})" if reasons else "")
    )
    if summary["rows"] < MIN_KEPT_SHARE * summary["questions"]:
        hint = (
            "train.replay_answer_end=first_line takes a base model's first line as its answer"
            if answer_end == "turn"
            else "check first (python -m letterwise.training.replay --help)"
        )
        raise ReplayError(
            f"only {summary['rows']} of {summary['questions']} replay answers can be training "
            f"targets (dropped: {reasons}; answers end at: {answer_end}; the minimum is "
            f"{MIN_KEPT_SHARE:.0%}): training would run on the few rows left. The answers are "
            f"cached in {path}; {hint}."
        )
    return kept, summary


# --------------------------------------------------------------------------- the check


def family_table(outputs: list[dict], families: list[str]) -> dict[str, dict[str, int]]:
    """Per replay family: questions and answers kept."""
    table: dict[str, dict[str, int]] = {}
    for out, family in zip(outputs, families, strict=True):
        entry = table.setdefault(family, {"questions": 0, "kept": 0})
        entry["questions"] += 1
        entry["kept"] += out["dropped"] is None
    return dict(sorted(table.items()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m letterwise.training.replay",
        description="Can a base model supply its own replay answers? Draws replay questions "
        "(never the training draw: pick a seed of your own), has the model answer them as the "
        "train stage does, and writes every completion with the answer taken from it and why "
        "it was dropped. Run it before a replay or negative-control arm on a new model.",
    )
    parser.add_argument("--model", required=True, help="a preset, Hub id or local model directory")
    parser.add_argument(
        "--questions", type=int, default=256, help="replay questions to draw (default: %(default)s)"
    )
    parser.add_argument(
        "--seed", type=int, default=7001, help="seed of the question draw (default: %(default)s)"
    )
    parser.add_argument(
        "--answer-end",
        choices=("auto", *ANSWER_ENDS),
        default="auto",
        help="where an answer ends: a chat turn, or a base model's first line; auto picks by "
        "the model's prompt format (default: %(default)s)",
    )
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.questions < 1:
        raise SystemExit(f"--questions must be >= 1, got {args.questions}")
    # Here, not at the top: this module is imported by the train stage, which loads the model.
    from letterwise.modeling import load_base_model
    from letterwise.presets import resolve_preset
    from letterwise.tasks.replay import replay_questions

    console = Console(stderr=True)
    questions = replay_questions(random.Random(args.seed), args.questions)
    model, tokenizer = load_base_model(resolve_preset(args.model))
    answer_end = answer_end_for(tokenizer, args.answer_end)
    started = time.perf_counter()
    _, stats = answer_replay_rows(model, tokenizer, questions, answer_end=answer_end)
    seconds = time.perf_counter() - started
    summary = {k: v for k, v in stats.items() if k != "outputs"}
    families = [q["family"] for q in questions]
    result = {
        "command": "python -m letterwise.training.replay " + " ".join(argv or sys.argv[1:]),
        "model": args.model,
        "seed": args.seed,
        **summary,
        "kept_share": summary["rows"] / summary["questions"],
        "min_kept_share": MIN_KEPT_SHARE,
        "by_family": family_table(stats["outputs"], families),
        "seconds": round(seconds, 1),
        "outputs": [
            {**out, "family": family}
            for out, family in zip(stats["outputs"], families, strict=True)
        ],
    }
    write_json(args.out, result)
    table = Table(title=f"{args.model}: replay answers ending at {answer_end}")
    table.add_column("")
    table.add_column("questions", justify="right")
    kept = f"{summary['rows']:,} of {summary['questions']:,} ({result['kept_share']:.0%})"
    table.add_row("kept", kept)
    for reason, n in summary["dropped_by_reason"].items():
        table.add_row(f"dropped: {reason}", f"{n:,}")
    console.print(table)
    verdict = "can" if result["kept_share"] >= MIN_KEPT_SHARE else "cannot"
    console.print(
        f"the train stage {verdict} use these (it needs {MIN_KEPT_SHARE:.0%} kept); "
        f"{seconds:.0f} s; wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
