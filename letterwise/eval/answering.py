"""Model-side answering for the eval stages: every instrument's raw answers from one model.

The runner (letterwise.eval.runner) orchestrates: it loads each model, calls
`answer_with_instruments` and hands the raw answers to the scoring leaves
(letterwise.eval.scoring, .instruments, .cloze records, .detectors). Nothing here scores.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from letterwise.chat import prompt_text
from letterwise.generation import generate, max_new_tokens_for, memory_batch_size
from letterwise.params import Params
from letterwise.tasks import spell_first

TRANSFER_TASKS = ("position", "count")


def prompts_and_budgets(
    tokenizer: Any, rows: Sequence[dict], params: Params, *, spelled_first: bool = False
) -> tuple[list[str], list[int]]:
    """Chat-rendered prompts in the eval's mode and each row's task-aware token budget: for the
    question as asked or, `spelled_first`, for its spell-first version (position/count rows,
    letterwise.tasks.spell_first). The one place an eval prompt is built."""
    thinking = params.eval.mode == "thinking"
    prompts, budgets = [], []
    for row in rows:
        if spelled_first:
            question = spell_first.question(row)
            budget = spell_first.max_new_tokens(row["task"], row["word_length"]) + (
                params.eval.thinking_budget if thinking else 0
            )
        else:
            question = row["question"]
            budget = max_new_tokens_for(
                row["task"],
                row["word_length"],
                thinking=thinking,
                thinking_budget=params.eval.thinking_budget,
            )
        prompts.append(prompt_text(tokenizer, question, thinking=thinking))
        budgets.append(budget)
    return prompts, budgets


# A second turn (two_turn's own spelling, oracle's given spelling) adds the spelled word and a
# turn of template: at most this many tokens a letter, plus this many for the template.
SECOND_TURN_TOKENS_PER_LETTER = 4
SECOND_TURN_TEMPLATE_TOKENS = 64


def eval_max_seq_length(tokenizer: Any, rows: list[dict], params: Params, floor: int = 0) -> int:
    """The sequence length eval needs: the longest prompt + its budget over the direct and the
    spell-first instruments, plus room for a second turn (two_turn, oracle); at least `floor`.

    Not train.max_seq_length (128 by default): Unsloth's model is loaded for that length, and
    longer prompts and thinking traces would be cut to it.
    """
    if not rows:
        return floor
    prompts, budgets = prompts_and_budgets(tokenizer, rows, params)
    first = prompts_and_budgets(tokenizer, spell_first_rows(rows), params, spelled_first=True)
    prompts, budgets = prompts + first[0], budgets + first[1]
    lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    longest = max(n + b for n, b in zip(lengths, budgets, strict=True))
    word = max(row["word_length"] for row in rows)
    second_turn = SECOND_TURN_TOKENS_PER_LETTER * word + SECOND_TURN_TEMPLATE_TOKENS
    return max(floor, longest + second_turn)


def batch_size_for(model: Any, tokenizer: Any, prompts: list, budgets: list, params: Params) -> int:
    """eval.batch_size, or fewer questions where thinking rows would not fit in GPU memory
    (generation.memory_batch_size on the longest prompt and budget)."""
    if params.eval.mode != "thinking" or not prompts:
        return params.eval.batch_size
    longest = max(len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"])
    return memory_batch_size(
        model, longest, max(budgets), params.eval.n_samples, params.eval.batch_size
    )


def generate_answers(
    model: Any,
    tokenizer: Any,
    rows: list[dict],
    params: Params,
    sampling: Any,
    description: str,
    store: Any | None = None,
    *,
    spelled_first: bool = False,
) -> list[list[str]]:
    """Raw samples for every row (all of a stage's tasks in one batched pass); `spelled_first`:
    for the spell-first version of each row (position/count rows only)."""
    prompts, budgets = prompts_and_budgets(tokenizer, rows, params, spelled_first=spelled_first)
    return generate(
        model,
        tokenizer,
        prompts,
        max_new_tokens=budgets,
        sampling=sampling,
        batch_size=batch_size_for(model, tokenizer, prompts, budgets, params),
        description=description,
        store=store,
    )


def spell_first_rows(rows: Sequence[dict]) -> list[dict]:
    """The rows that have a spell-first version: position and count."""
    return [row for row in rows if row["task"] in TRANSFER_TASKS]


def answer_with_instruments(
    model: Any,
    tokenizer: Any,
    rows: list[dict],
    params: Params,
    sampling: Any,
    description: str,
    store: Any | None = None,
    spellings: dict[str, tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """One model's answers under every instrument the params ask for (direct always runs).
    `store`: this model's answer cache (letterwise.eval.answer_cache), batch by batch;
    `spellings`: word -> (spelling question, this model's own answer), for two_turn."""
    seconds: dict[str, float] = {}
    started = time.monotonic()
    answers: dict[str, Any] = {
        "direct": generate_answers(model, tokenizer, rows, params, sampling, description, store)
    }
    seconds["direct"] = time.monotonic() - started
    transfer = spell_first_rows(rows)
    if "spell_first" in params.eval.prompting and transfer:
        started = time.monotonic()
        answers["spell_first"] = generate_answers(
            model,
            tokenizer,
            transfer,
            params,
            sampling,
            f"{description}, spell-first",
            store,
            spelled_first=True,
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
    if params.eval.cloze and transfer:
        from letterwise.eval.cloze import run_cloze

        started = time.monotonic()
        answers["cloze"] = run_cloze(
            model,
            tokenizer,
            transfer,
            params.eval.cloze,
            batch_size=params.eval.batch_size,
            spellings=spellings,
            store=store,
            label=description,
        )
        seconds["cloze"] = time.monotonic() - started
    # what each instrument cost on this machine (wall time, this model)
    answers["seconds"] = {key: round(value, 1) for key, value in seconds.items()}
    return answers
