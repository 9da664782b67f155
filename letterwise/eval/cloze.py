"""Format-neutral answer slots for position and count: candidates scored after a prefilled reply.

Choice scoring (letterwise.eval.choice) scores each candidate as the *whole* reply, so a model
that learned to answer by spelling ("s t r ...") or whose "1" now opens a numbered list loses
for reasons of format, not knowledge. Here the assistant turn already begins with a neutral stem
that commits to answering, and only the slot after it is scored:

    user:       What is the 3rd letter of 'strawberry'? Answer with the letter only.
    assistant:  The 3rd letter of 'strawberry' is| r.          (candidates " a." ... " z.")
    user:       How many 'r's are in 'strawberry'? Answer with a number only.
    assistant:  The number of times the letter 'r' appears in 'strawberry' is| 3.

The stem ends before the space, so every candidate starts with " x" (a word-initial token in
both vocabularies), and ends with "." so that "1" cannot win as a prefix of "10".

Variants (each a key of `eval.cloze`):
- cloze: the slot as above.
- cloze_calibrated: contextual calibration (Zhao et al. 2021): per question, the candidates'
  log-probabilities (normalised over the candidate set) minus those under the same question
  and stem with the word replaced by the content-free "N/A"; removes a fixed preference for
  some letters or numbers that does not depend on the word.
- oracle: the correct spelling is given in the user turn before the question: can the model
  read a letter or a count off a spelled sequence at all?
- two_turn: turn 1 asks for the spelling and holds the model's own answer (from eval_spelling's
  predictions), turn 2 asks the question: spell, then answer (the CPU analogue of thinking).

Records are choice-scoring records (letterwise.eval.choice_metrics.question_record), so the
summaries, deltas and detectors of choice scoring apply unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from letterwise.eval.choice_metrics import (
    CandidateScore,
    candidate_keys,
    log_softmax,
    question_record,
)
from letterwise.tasks.common import ordinal, strip_thinking

VARIANTS = ("cloze", "cloze_calibrated", "oracle", "two_turn")
PLACEHOLDER = "N/A"  # Zhao et al. 2021's content-free input
CLOZE_TASKS = ("position", "count")


def stem(row: dict, word: str | None = None) -> str:
    """The prefilled start of the reply (no trailing space; candidates bring their own)."""
    word = row["word"] if word is None else word
    if row["task"] == "position":
        place = "last" if row["is_last"] else ordinal(row["position"])
        return f"The {place} letter of '{word}' is"
    if row["task"] == "count":
        return f"The number of times the letter '{row['letter']}' appears in '{word}' is"
    raise ValueError(f"no cloze stem for task {row['task']!r} (only {', '.join(CLOZE_TASKS)})")


def slot_text(key: str) -> str:
    """A candidate as the slot holds it: ' r.' / ' 3.'."""
    return f" {key}."


def placeholder_question(row: dict) -> str:
    """The question with its word replaced by the content-free placeholder."""
    word = row["word"]
    quoted = f"'{word}'"
    if quoted not in row["question"]:
        raise ValueError(f"question {row['id']!r} does not quote its word {quoted}")
    return row["question"].replace(quoted, f"'{PLACEHOLDER}'")


def oracle_question(row: dict) -> str:
    """The question after the word's correct spelling, letters separated by spaces."""
    return f"'{row['word']}' is spelled {' '.join(row['word'])}.\n{row['question']}"


def render(tokenizer: Any, turns: Sequence[tuple[str, str]], reply_start: str) -> str:
    """A non-thinking chat prompt over (role, content) turns, then the start of the reply."""
    messages = [{"role": role, "content": content} for role, content in turns]
    prompt = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    return prompt + reply_start


def own_spellings(spelling_predictions: Sequence[dict], model: str) -> dict[str, tuple[str, str]]:
    """word -> (spelling question, the model's own first answer, thinking block dropped) from
    eval_spelling's prediction rows; the first row of a word wins."""
    spelled: dict[str, tuple[str, str]] = {}
    for row in spelling_predictions:
        if row.get("task") == "spelling" and row[model]["outputs"]:
            answer = strip_thinking(row[model]["outputs"][0])
            spelled.setdefault(row["word"], (row["question"], answer))
    return spelled


def prompts_for(
    variant: str,
    tokenizer: Any,
    rows: Sequence[dict],
    spellings: dict[str, tuple[str, str]] | None = None,
) -> list[str]:
    """The rendered prompt (chat turns + stem) of every row under one variant; for
    cloze_calibrated the content-free prompts (the real ones are the cloze prompts)."""
    prompts = []
    for row in rows:
        if variant == "cloze":
            prompts.append(render(tokenizer, [("user", row["question"])], stem(row)))
        elif variant == "cloze_calibrated":
            turns = [("user", placeholder_question(row))]
            prompts.append(render(tokenizer, turns, stem(row, PLACEHOLDER)))
        elif variant == "oracle":
            prompts.append(render(tokenizer, [("user", oracle_question(row))], stem(row)))
        elif variant == "two_turn":
            if spellings is None or row["word"] not in spellings:
                raise ValueError(f"two_turn needs the model's own spelling of {row['word']!r}")
            question, answer = spellings[row["word"]]
            turns = [("user", question), ("assistant", answer), ("user", row["question"])]
            prompts.append(render(tokenizer, turns, stem(row)))
        else:
            raise ValueError(f"unknown cloze variant {variant!r}; expected one of {VARIANTS}")
    return prompts


def calibrated(
    real: Sequence[CandidateScore], content_free: Sequence[CandidateScore]
) -> list[CandidateScore]:
    """Contextual calibration: per candidate, log P(c | question) - log P(c | content-free
    question), each normalised over the candidates (Zhao et al. 2021's diagonal W)."""
    if len(real) != len(content_free):
        raise ValueError(f"{len(real)} candidates vs {len(content_free)} content-free scores")
    real_norm = log_softmax([s.logprob for s in real])
    free_norm = log_softmax([s.logprob for s in content_free])
    return [
        CandidateScore(r - c, s.n_tokens)
        for r, c, s in zip(real_norm, free_norm, real, strict=True)
    ]


def run_cloze(
    model: Any,
    tokenizer: Any,
    rows: Sequence[dict],
    variants: Sequence[str],
    *,
    batch_size: int,
    spellings: dict[str, tuple[str, str]] | None = None,
    store: Any | None = None,
    label: str = "",
) -> dict[str, list[dict]]:
    """Per variant, one choice-scoring record per position/count row (rows' order).

    Identical prompts (the content-free ones repeat across words) are scored once.
    """
    from letterwise.eval.choice import score_candidates

    rows = [row for row in rows if row["task"] in CLOZE_TASKS]
    keys = [candidate_keys(row["task"], row) for row in rows]
    texts = [[slot_text(key) for key in row_keys] for row_keys in keys]
    needed = {"cloze" if v == "cloze_calibrated" else v for v in variants} | (
        {"cloze_calibrated"} if "cloze_calibrated" in variants else set()
    )
    scored: dict[str, list[list[CandidateScore]]] = {}
    for variant in [v for v in VARIANTS if v in needed]:
        prompts = prompts_for(variant, tokenizer, rows, spellings)
        unique: dict[tuple[str, tuple[str, ...]], int] = {}
        for prompt, candidates in zip(prompts, texts, strict=True):
            unique.setdefault((prompt, tuple(candidates)), len(unique))
        distinct = list(unique)
        results = score_candidates(
            model,
            tokenizer,
            [prompt for prompt, _ in distinct],
            [list(candidates) for _, candidates in distinct],
            batch_size=batch_size,
            store=store,
            description=f"{label}, {variant}".lstrip(", "),
        )
        scored[variant] = [
            results[unique[(p, tuple(c))]] for p, c in zip(prompts, texts, strict=True)
        ]
    records: dict[str, list[dict]] = {}
    for variant in variants:
        if variant == "cloze_calibrated":
            per_row = [
                calibrated(real, free)
                for real, free in zip(scored["cloze"], scored["cloze_calibrated"], strict=True)
            ]
        else:
            per_row = scored[variant]
        records[variant] = [
            question_record(row["task"], row, row_keys, row_scores)
            for row, row_keys, row_scores in zip(rows, keys, per_row, strict=True)
        ]
    return records
