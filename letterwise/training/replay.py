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

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console

from letterwise.chat import prompt_text
from letterwise.io import write_json
from letterwise.modeling import import_unsloth
from letterwise.tasks.common import strip_thinking
from letterwise.tasks.replay import MIN_KEPT_SHARE, contains_letter_content

# One-word, number and yes/no answers take a few tokens; a polite sentence around them fits too.
REPLAY_MAX_NEW_TOKENS = 48
REPLAY_BATCH_SIZE = 64  # fixed, not eval.batch_size: batch shape can nudge greedy outputs
CACHE_FILE = "letterwise_replay.json"  # in the checkpoint directory
DROP_REASONS = ("truncated", "empty", "letters")

class ReplayError(ValueError):
    """Too few of the base model's replay answers can be training targets."""


def drop_reason(answer: str, answer_tokens: int, max_new_tokens: int) -> str | None:
    """Why a generated replay answer cannot be a training target, or None if it can."""
    if answer_tokens >= max_new_tokens:
        return "truncated"  # never reached the end of its turn
    if not answer:
        return "empty"
    if contains_letter_content(answer):
        return "letters"
    return None


def answer_replay_rows(
    model: Any,
    tokenizer: Any,
    rows: list[dict],
    batch_size: int = REPLAY_BATCH_SIZE,
    *,
    max_new_tokens: int = REPLAY_MAX_NEW_TOKENS,
) -> tuple[list[dict], dict[str, Any]]:
    """(rows kept, with `answer` set to the model's greedy answer; stats) for replay rows.

    Each row needs a `question`. Generation is non-thinking and greedy via
    letterwise.generation.generate. Stats: questions, rows (kept), dropped, dropped_by_reason,
    max_new_tokens, and `outputs`: every question with the answer it got and why it was dropped.
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
        answer = strip_thinking(raw)  # "" when an unclosed think block ate the budget
        # generate() hands back text, so the length is re-counted from it (whitespace runs can
        # re-tokenize shorter, but a whitespace-only answer is dropped as empty anyway)
        tokens = len(tokenizer(raw, add_special_tokens=False)["input_ids"])
        reason = drop_reason(answer, tokens, max_new_tokens)
        outputs.append({"question": row["question"], "answer": answer, "dropped": reason})
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
        "outputs": outputs,
    }
    return kept, stats


def cache_key(questions: list[str], model_identity: dict[str, Any], max_new_tokens: int) -> str:
    """What the cached answers depend on: the questions, the base model and how it generated."""
    blob = json.dumps(
        {
            "questions": questions,
            "model": model_identity,
            "max_new_tokens": max_new_tokens,
            "batch_size": REPLAY_BATCH_SIZE,
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
) -> tuple[list[dict], dict[str, Any]]:
    """Replay rows with the base model's answers, from `cache_dir` when it holds them for these
    questions and this model; generated (and cached) otherwise. Stats as answer_replay_rows,
    without `outputs`, plus targets_sha256 and from_cache."""
    path = Path(cache_dir) / CACHE_FILE
    key = cache_key([row["question"] for row in rows], model_identity, REPLAY_MAX_NEW_TOKENS)
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
            kept, stats = answer_replay_rows(model, tokenizer, rows)
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
        raise ReplayError(
            f"only {summary['rows']} of {summary['questions']} replay answers can be training "
            f"targets (dropped: {reasons}; the minimum is {MIN_KEPT_SHARE:.0%}). A base model "
            f"that does not end its turn within {REPLAY_MAX_NEW_TOKENS} tokens cannot supply "
            "its own replay answers; training would run on the few rows left. The answers are "
            f"cached in {path}; use a model that ends its turns (an instruct model) for replay."
        )
    return kept, summary
