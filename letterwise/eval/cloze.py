"""Format-neutral answer slots for position and count: candidates scored after a prefilled reply.

Choice scoring (letterwise.eval.choice) scores each candidate as the *whole* reply, so a model
that learned to answer by spelling ("s t r ...") or whose "1" now opens a numbered list loses
for reasons of format, not knowledge. Here the assistant turn already begins with a neutral stem
that commits to answering, and only the slot after it is scored:

    user:       What is the 3rd letter of 'strawberry'? Answer with the letter only.
    assistant:  In 'strawberry', the 3rd letter is| r        (candidates " a" ... " z")
    user:       How many 'r's are in 'strawberry'? Answer with a number only.
    assistant:  The count is| 3                              (candidates " 0" ... " 9")

Stems. Several per task (`STEMS`, chosen on the validation split from `CANDIDATE_STEMS` by
the rule in letterwise.eval.stems), and a question's candidate scores are averaged over them,
so no single wording decides. No stem ends in the spelling answers' lead-in "'{word}' is"
(the training answers read "'{word}' is spelled ..."): after it a spelling-tuned model
continues with the word's first letter, whatever was asked.

Slot candidates are single tokens after a prefix shared by all of them (" r", or " " then "3"
where a tokenizer splits digits), so their probabilities are disjoint next-token events: no
candidate can win as a prefix of another, and one forward pass scores all of them. A question
runs its chat prompt once; the KV cache is repeated for its stems (`score_slots`).

Variants (each a key of `eval.cloze`):
- cloze: the slot, log-probabilities normalised over the candidates, averaged over stems.
- cloze_calibrated: batch calibration (Zhou et al. 2023): per stem, each candidate's
  normalised log-probability minus the log of its mean probability over the other questions of
  the same kind (position: the same index; count: all), so a fixed preference for some letters
  or numbers, and the positional prior, cannot score. Content-free by construction: no
  placeholder string (and so no letters) is ever put in front of the model, and it costs no
  forward pass. (The earlier placeholder "N/A" held the letters n and a.)
- oracle: the correct spelling is given in the user turn before the question: can the model
  read a letter or a count off a spelled sequence at all?
- two_turn: turn 1 asks for the spelling and holds the model's own answer (from eval_spelling's
  predictions), turn 2 asks the question: spell, then answer (the CPU analogue of thinking).

Records are choice-scoring records (letterwise.eval.choice_metrics.question_record, whose
`p_true` is the continuous outcome: the probability of the right candidate), plus each
stem's normalised scores (`stem_logprobs`) for re-analysis.
"""

from __future__ import annotations

import math
import string
from collections.abc import Sequence
from typing import Any

from letterwise.eval.choice_metrics import CandidateScore, log_softmax, question_record
from letterwise.tasks.common import ordinal, strip_thinking

VARIANTS = ("cloze", "cloze_calibrated", "oracle", "two_turn")
CLOZE_TASKS = ("position", "count")
LEAD_IN = "'{word}' is"  # how the spelling answers open: no stem may end with it

# Every stem tried on validation; `{place}` is "3rd" / "last", `{word}`, `{letter}`.
CANDIDATE_STEMS: dict[str, tuple[str, ...]] = {
    "position": (
        "The {place} letter of '{word}' is",  # the old stem, kept as the confounded reference
        "The {place} letter is",
        "In '{word}', the {place} letter is",
        "Answer:",
        "{Place} letter:",
        "The letter asked for is",
        "Counting from the start, the {place} letter is",
    ),
    "count": (
        "The number of times the letter '{letter}' appears in '{word}' is",  # the old stem
        "The count is",
        "In '{word}', the letter '{letter}' appears this many times:",
        "Answer:",
        "Number of '{letter}'s:",
    ),
}
# The stems scored, per task: chosen on validation (docs/results/stems/validation.json,
# `python -m letterwise.eval.stems`; tests/test_cloze.py holds them to that file).
STEMS: dict[str, tuple[str, ...]] = {
    "position": (
        "In '{word}', the {place} letter is",
        "The letter asked for is",
        "Counting from the start, the {place} letter is",
    ),
    "count": (
        "Answer:",
        "In '{word}', the letter '{letter}' appears this many times:",
        "Number of '{letter}'s:",
    ),
}
COUNT_SLOTS = tuple(str(n) for n in range(10))  # words here never hold a letter 10 times


def slot_keys(task: str) -> list[str]:
    """The answer keys a slot is scored over: a-z, or 0-9."""
    if task == "position":
        return list(string.ascii_lowercase)
    if task == "count":
        return list(COUNT_SLOTS)
    raise ValueError(f"no cloze slot for task {task!r} (only {', '.join(CLOZE_TASKS)})")


def stem(row: dict, template: str, word: str | None = None) -> str:
    """One stem template filled in for a row (no trailing space; candidates bring their own)."""
    if row["task"] not in CLOZE_TASKS:
        raise ValueError(f"no cloze stem for task {row['task']!r} (only {', '.join(CLOZE_TASKS)})")
    word = row["word"] if word is None else word
    place = ""
    if row["task"] == "position":
        place = "last" if row["is_last"] else ordinal(row["position"])
    return template.format(
        word=word, place=place, Place=place[:1].upper() + place[1:], letter=row.get("letter")
    )


def ends_in_lead_in(template: str) -> bool:
    return template.rstrip().endswith(LEAD_IN)


def oracle_question(row: dict) -> str:
    """The question after the word's correct spelling, letters separated by spaces."""
    return f"'{row['word']}' is spelled {' '.join(row['word'])}.\n{row['question']}"


def render(tokenizer: Any, turns: Sequence[tuple[str, str]], reply_start: str = "") -> str:
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


def turns_for(
    variant: str, row: dict, spellings: dict[str, tuple[str, str]] | None = None
) -> list[tuple[str, str]]:
    """The chat turns before the reply under one variant (calibrated: the plain slot's)."""
    if variant in ("cloze", "cloze_calibrated"):
        return [("user", row["question"])]
    if variant == "oracle":
        return [("user", oracle_question(row))]
    if variant == "two_turn":
        if spellings is None or row["word"] not in spellings:
            raise ValueError(f"two_turn needs the model's own spelling of {row['word']!r}")
        question, answer = spellings[row["word"]]
        return [("user", question), ("assistant", answer), ("user", row["question"])]
    raise ValueError(f"unknown cloze variant {variant!r}; expected one of {VARIANTS}")


# --------------------------------------------------------------------------- calibration


def calibration_group(row: dict) -> str:
    """Questions whose slot shares a prior: position by index (or last), count all together."""
    if row["task"] == "position":
        return "position/last" if row["is_last"] else f"position/{row['position']}"
    return row["task"]


def batch_calibrated(
    rows: Sequence[dict], stem_scores: Sequence[Sequence[Sequence[float]]]
) -> list[list[list[float]]]:
    """Per question and stem, the candidate-normalised log-probabilities minus the log of each
    candidate's mean probability over the *other* questions of its calibration group (the
    task's other questions if it is alone in its group; unchanged if it is the only one)."""
    if len(rows) != len(stem_scores):
        raise ValueError(f"{len(stem_scores)} score lists for {len(rows)} rows")
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(calibration_group(row), []).append(i)
        groups.setdefault(row["task"] + "/*", []).append(i)
    probs = [[[math.exp(v) for v in stem_row] for stem_row in q] for q in stem_scores]
    totals: dict[str, list[list[float]]] = {}
    for name, members in groups.items():
        first = probs[members[0]]
        totals[name] = [
            [sum(probs[i][s][c] for i in members) for c in range(len(first[s]))]
            for s in range(len(first))
        ]
    calibrated = []
    for i, row in enumerate(rows):
        name = calibration_group(row)
        if len(groups[name]) == 1:
            name = row["task"] + "/*"
        others = len(groups[name]) - 1
        if others == 0:
            calibrated.append([list(stem_row) for stem_row in stem_scores[i]])
            continue
        per_stem = []
        for s, stem_row in enumerate(stem_scores[i]):
            mean = [(totals[name][s][c] - probs[i][s][c]) / others for c in range(len(stem_row))]
            per_stem.append([v - math.log(max(m, 1e-300)) for v, m in zip(stem_row, mean, strict=True)])
        calibrated.append(per_stem)
    return calibrated


def average_over_stems(per_stem: Sequence[Sequence[float]]) -> list[CandidateScore]:
    """One score per candidate: the mean over stems (each stem's scores already normalised)."""
    n_stems = len(per_stem)
    return [
        CandidateScore(sum(stem_row[c] for stem_row in per_stem) / n_stems, 1)
        for c in range(len(per_stem[0]))
    ]


# --------------------------------------------------------------------------- scoring


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
    stems: dict[str, tuple[str, ...]] | None = None,
) -> dict[str, list[dict]]:
    """Per variant, one choice-scoring record per position/count row (rows' order)."""
    from letterwise.eval.slots import score_slots

    stems = stems or STEMS
    rows = [row for row in rows if row["task"] in CLOZE_TASKS]
    keys = [slot_keys(row["task"]) for row in rows]
    # cloze_calibrated reads the plain slot's scores: score each prompt kind once
    kinds = list(dict.fromkeys("cloze" if v == "cloze_calibrated" else v for v in variants))
    scored: dict[str, list[list[list[float]]]] = {}
    for kind in kinds:
        prompts = [render(tokenizer, turns_for(kind, row, spellings)) for row in rows]
        row_stems = [[stem(row, t) for t in stems[row["task"]]] for row in rows]
        raw = score_slots(
            model, tokenizer, prompts, row_stems, [[f" {k}" for k in ks] for ks in keys],
            batch_size=batch_size, store=store, description=f"{label}, {kind}".lstrip(", "),
        )  # fmt: skip
        scored[kind] = [[log_softmax(stem_row) for stem_row in q] for q in raw]
    records: dict[str, list[dict]] = {}
    for variant in variants:
        per_stem = scored["cloze" if variant == "cloze_calibrated" else variant]
        if variant == "cloze_calibrated":
            per_stem = batch_calibrated(rows, per_stem)
        records[variant] = []
        for row, row_keys, stem_rows in zip(rows, keys, per_stem, strict=True):
            record = question_record(row["task"], row, row_keys, average_over_stems(stem_rows))
            record["stem_logprobs"] = [[round(v, 4) for v in stem_row] for stem_row in stem_rows]
            records[variant].append(record)
    return records
