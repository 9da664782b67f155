"""Spell-first prompting for position and count: spell the word, then answer on a fixed line.

A fine-tuned model can know the letters and still stop answering in the asked format. This
instrument asks it to use the skill openly: the row's question (its "answer with the letter
only" sentence dropped, since it contradicts spelling first) plus an instruction to spell the
word letter by letter and end with a line "Answer: <letter>" or "Answer: <number>".

Parsing rules (lowercase throughout, never raises):
- The output is cleaned like every task's (letterwise.tasks.common.clean_output): thinking
  blocks and chat tokens dropped, so in Qwen3 thinking mode only what follows `</think>` counts
  (a spelling done only inside the thinking block is not "spelled"); an unclosed `<think>`
  or a runaway output (over MAX_ANSWER_CHARS) gives no answer, no spelling, no answer line.
- An answer line is a line whose first word is "answer" or "final answer", followed by a colon
  ("Answer: r", "**Final answer:** 3", "- answer : R"). With several, the last one wins
  (models restate or correct themselves). Its value is the rest of the line, or the next
  non-empty line when the line stops at the colon. The value goes through the task's own
  parser (position.parse / count.parse); an unparseable value is no answer: the model
  committed to that line, and no other text is mined instead.
- No answer line: the task's parser reads the text *after* the spelled letters (all of the
  text when nothing was spelled), never the spelling itself, whose lone letters and list
  numbers would otherwise pass for an answer. Text before the spelling is not read.
- The spelling is letterwise.tasks.spelling.parse of the text without its answer lines: the
  longest run of single letters joined by one separator (spaces, dashes, commas, dots,
  numbered lists "1. s 2. t"), wherever it sits, also after the answer line.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

from letterwise.tasks import count, position, spelling
from letterwise.tasks.common import clean_output

TASK_PARSERS = {"position": position.parse, "count": count.parse}
# What stands in for the answer in the stated answer line.
ANSWER_SLOTS = {"position": "<letter>", "count": "<number>"}

# {word} is the row's word, {slot} the task's ANSWER_SLOTS entry. One is picked per row id.
INSTRUCTIONS: tuple[str, ...] = (
    "First spell '{word}' letter by letter, with a space between the letters. "
    "Then give your final answer on a last line of the form 'Answer: {slot}'.",
    "Before answering, write out the letters of '{word}' one at a time, separated by spaces. "
    "End with a final line that reads 'Answer: {slot}'.",
    "Spell the word '{word}' first, letter by letter with spaces in between, "
    "then finish with one line in the form 'Answer: {slot}'.",
)


def _format_sentences(templates: list[str]) -> tuple[str, ...]:
    """The closing "answer with ... only" sentence of each direct-question template."""
    tails = {re.split(r"(?<=[?.])\s+", template)[-1] for template in templates}
    if any("{" in tail for tail in tails):  # a template whose last sentence is not fixed text
        raise ValueError(f"direct phrasings must end with a fixed format sentence: {tails}")
    return tuple(sorted(tails, key=len, reverse=True))


# Direct questions end with a format sentence that forbids spelling; it is dropped.
FORMAT_SENTENCES = {
    "position": _format_sentences([template for template, _ in position.PHRASINGS]),
    "count": _format_sentences(list(count.PHRASINGS)),
}


@dataclass(frozen=True)
class SpellFirstAnswer:
    """A parsed spell-first output.

    answer: the key in the task's `expected` format ("r", "3"), or None (scored wrong);
    spelled: the letters spelled, lowercase, separators removed, or None;
    has_answer_line: whether an "Answer: ..." line was written (even with an unusable value).
    """

    answer: str | None
    spelled: str | None
    has_answer_line: bool


def _check_task(task: str) -> str:
    if task not in TASK_PARSERS:
        raise ValueError(f"spell-first covers {sorted(TASK_PARSERS)}, got task {task!r}")
    return task


def question(row: dict) -> str:
    """The spell-first prompt for a position or count row (keys task, word, question, id).

    The instruction wording is picked by a CRC32 of the row's id (its question when it has no
    id): the same row always gets the same prompt, in every process.
    """
    task = _check_task(row["task"])
    word, text = row["word"], row["question"].strip()
    for sentence in FORMAT_SENTENCES[task]:
        if text.endswith(sentence):
            text = text[: -len(sentence)].rstrip()
            break
    key = str(row.get("id", text))
    instruction = INSTRUCTIONS[zlib.crc32(key.encode("utf-8")) % len(INSTRUCTIONS)]
    return f"{text} {instruction.format(word=word, slot=ANSWER_SLOTS[task])}"


def max_new_tokens(task: str, word_length: int) -> int:
    """Generation budget for spelling a `word_length`-letter word and then answering.

    The spelling budget plus the direct answer's budget from
    letterwise.generation.max_new_tokens_for (each with its slack for wrapper text); the
    caller adds the thinking budget in thinking mode.
    """
    _check_task(task)
    # Imported here: letterwise.tasks stays importable without torch (the data stages).
    from letterwise.generation import max_new_tokens_for

    spell = max_new_tokens_for("spelling", word_length, thinking=False, thinking_budget=0)
    answer = max_new_tokens_for(task, word_length, thinking=False, thinking_budget=0)
    return spell + answer


# A line starting (after markdown bullets, quotes, hashes) with "answer:" / "final answer:".
_ANSWER_LINE = re.compile(r"^[^\w\n]*(?:final\s+)?answer\s*:(?P<value>[^\n]*)$", re.MULTILINE)
_NEXT_LINE = re.compile(r"\s*(?P<line>[^\n]*\S)")
# Between two spelled letters: non-letters or the word "and" (a superset of spelling's gaps).
_GAP = r"(?:[^a-z]|\band\b){1,16}"


def _after_spelling(text: str, spelled: str) -> str:
    """The text after the last place where `spelled` is written letter by letter."""
    pattern = r"(?<![a-z])" + _GAP.join(re.escape(letter) for letter in spelled) + r"(?![a-z])"
    matches = list(re.finditer(pattern, text))
    return text[matches[-1].end() :] if matches else ""


def _complement(spans: list[tuple[int, int]], length: int) -> list[tuple[int, int]]:
    """The stretches of [0, length) outside `spans`, each joined back with a line break."""
    kept, start = [], 0
    for span_start, span_end in sorted(spans):
        kept.append((start, max(start, span_start)))
        start = max(start, span_end)
    return kept + [(start, length)]


def parse(task: str, output: str) -> SpellFirstAnswer:
    """The answer, the spelled letters and whether an answer line was written (module rules)."""
    task_parse = TASK_PARSERS[_check_task(task)]
    text = clean_output(output)
    lines = list(_ANSWER_LINE.finditer(text))
    if lines:
        cuts = []
        for line in lines:  # after the loop, `value` is the last line's
            value = line.group("value").strip()
            cuts.append(line.span())
            below = None if value else _NEXT_LINE.match(text, line.end())
            if below:  # "Answer:" with the value on the next non-empty line
                value = below.group("line")
                cuts.append(below.span("line"))
        # the spelling is looked for everywhere but in the answer lines and their values
        kept = "\n".join(text[start:end] for start, end in _complement(cuts, len(text)))
        return SpellFirstAnswer(task_parse(value), spelling.parse(kept), True)
    spelled = spelling.parse(text)
    after = text if spelled is None else _after_spelling(text, spelled)
    return SpellFirstAnswer(task_parse(after), spelled, False)


def spelled_right(row: dict, parsed: SpellFirstAnswer) -> bool:
    """Whether the spelled letters are exactly the row's word."""
    return parsed.spelled is not None and parsed.spelled == row["word"]
