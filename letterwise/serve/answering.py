"""Questions, prompts, budgets and scoring for the API, all from the shared letterwise core.

A request's question becomes a row shaped like a dataset row (letterwise.tasks.common.
question_record plus task, word and word_length), asked with one fixed phrasing per task taken
from the task modules. Prompts are rendered by letterwise.chat.prompt_text in non-thinking mode,
budgets come from letterwise.generation.max_new_tokens_for (or the spell-first instrument's),
and answers are parsed and scored by the task modules, exactly as the eval stages do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from letterwise.chat import prompt_text
from letterwise.generation import Sampling, max_new_tokens_for, sampling_for
from letterwise.params import EvalParams
from letterwise.tasks import count, get_task, position, spell_first, spelling
from letterwise.tasks.common import ordinal, question_record

# The phrasing each endpoint asks with: the first held-out spelling phrasing, and the plainest
# position and count phrasings (all three occur in the eval sets).
SPELLING_PHRASING = 0  # index into spelling.EVAL_PHRASINGS
POSITION_PHRASING = 0  # "What is the {nth} letter of '{word}'? Answer with the letter only."
COUNT_PHRASING = 0  # "How many times does the letter '{letter}' appear in '{word}'? ..."
OUTCOMES = ("correct", "wrong", "unparseable")


def question_row(task: str, item: Any) -> dict[str, Any]:
    """The dataset-shaped row for one validated request item (`word`, plus `index`/`letter`)."""
    word = item.word.lower()
    if task == "spelling":
        template = spelling.EVAL_PHRASINGS[SPELLING_PHRASING]
        spelled = spelling.SPELLING_FORMATS[spelling.EVAL_FORMAT].spell(word)
        phrasing = len(spelling.TRAIN_PHRASINGS) + SPELLING_PHRASING
        record = question_record(
            template.format(word=word), spelled, word, phrasing, spelling.EVAL_FORMAT
        )
    elif task == "position":
        template, _ = position.PHRASINGS[POSITION_PHRASING]
        index = item.index
        letter = word[index - 1]
        question = template.format(word=word, nth=ordinal(index), n=index)
        record = question_record(
            question, letter, letter, POSITION_PHRASING, position=index, letter=letter
        )
    elif task == "count":
        letter = item.letter.lower()
        n = word.count(letter)
        question = count.PHRASINGS[COUNT_PHRASING].format(word=word, letter=letter)
        record = question_record(question, str(n), str(n), COUNT_PHRASING, letter=letter, count=n)
    else:
        raise ValueError(f"unknown task {task!r}")
    return {"task": task, "word": word, "word_length": len(word), **record}


def prompt_and_budget(tokenizer: Any, row: dict[str, Any], strategy: str) -> tuple[str, int]:
    """The chat-rendered non-thinking prompt and the new-token budget, as the eval uses them."""
    if strategy == "spell_first":
        question = spell_first.question(row)
        budget = spell_first.max_new_tokens(row["task"], row["word_length"])
    else:
        question = row["question"]
        budget = max_new_tokens_for(
            row["task"], row["word_length"], thinking=False, thinking_budget=0
        )
    return prompt_text(tokenizer, question, thinking=False), budget


def sampling_of(options: Any, defaults: dict[str, float | int]) -> Sampling:
    """A request's decoding settings: its own values over the published model's defaults."""
    explicit = {
        name: getattr(options, name) if getattr(options, name) is not None else defaults[name]
        for name in ("temperature", "top_p", "top_k", "min_p")
    }
    params = EvalParams(
        mode="non-thinking", decoding=options.decoding, seed=options.seed, **explicit
    )
    return sampling_for(params)


@dataclass(frozen=True)
class Scored:
    answer: str | None  # the parsed answer key ("berry", "r", "3"); None = unparseable
    in_format: bool
    correct: bool
    spelled: str | None  # spell_first only: the letters spelled before answering

    @property
    def outcome(self) -> str:
        if self.answer is None:
            return "unparseable"
        return "correct" if self.correct else "wrong"


def score(row: dict[str, Any], strategy: str, output: str) -> Scored:
    """Parse and score one raw answer with the task's own parser (and the spell-first one)."""
    if strategy == "spell_first":
        parsed = spell_first.parse(row["task"], output)
        answer = parsed.answer
        return Scored(answer, parsed.has_answer_line, answer == row["expected"], parsed.spelled)
    module = get_task(row["task"])
    answer = module.parse(output)
    return Scored(answer, module.in_format(output), answer == row["expected"], None)


def result(row: dict[str, Any], strategy: str, output: str, scored: Scored) -> dict[str, Any]:
    """The response's per-question fields (see schemas.*Result)."""
    common = {
        "word": row["word"],
        "raw": output,
        "in_format": scored.in_format,
        "correct": scored.correct,
        "strategy": strategy,
    }
    task = row["task"]
    if task == "spelling":
        letters = list(scored.answer) if scored.answer is not None else None
        return common | {"letters": letters, "expected": list(row["expected"])}
    if task == "position":
        return common | {
            "index": row["position"],
            "letter": scored.answer,
            "expected": row["expected"],
            "spelled": scored.spelled,
        }
    answered = int(scored.answer) if scored.answer is not None else None
    return common | {
        "letter": row["letter"],
        "count": answered,
        "expected": int(row["expected"]),
        "spelled": scored.spelled,
    }
