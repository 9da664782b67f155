"""Spelling: "Spell 'berry' letter by letter, separated by dashes." -> "b-e-r-r-y".

The only task the model is trained on. Training questions mix 16 phrasings (word-first and
spelling-first) with 6 answer formats; every phrasing names the format it wants, so the
answer is determined by the question. Some phrasings take a sentence-shaped answer
("'berry' is spelled b-e-r-r-y.") so the model learns letters, not one answer template.

Evaluation uses 3 further phrasings that never occur in training (held out), all asking for
lowercase letters separated by spaces, with the bare letters as the ideal answer.

Parsing finds runs of single letters joined by one consistent separator; the longest run is
the spelling. An output that only writes the word unspelled ("berry") is unparseable (None):
it shows nothing about the letters, and scoring it as a spelling would reward copying.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from letterwise.tasks.common import check_count, check_word, clean_output, question_record

TASK = "spelling"


@dataclass(frozen=True)
class SpellingFormat:
    """How letters are joined, and the words a question uses to ask for that."""

    instruction: str  # fits "Spell 'berry' letter by letter, <instruction>."
    separator: str
    upper: bool = False
    numbered: bool = False

    def spell(self, word: str) -> str:
        letters = word.upper() if self.upper else word
        if self.numbered:
            return self.separator.join(f"{i}. {c}" for i, c in enumerate(letters, start=1))
        return self.separator.join(letters)

    @property
    def multiline(self) -> bool:
        return "\n" in self.separator


SPELLING_FORMATS: dict[str, SpellingFormat] = {
    "space": SpellingFormat("separated by spaces", " "),
    "dash": SpellingFormat("separated by dashes", "-"),
    "comma": SpellingFormat("separated by commas", ", "),
    "upper": SpellingFormat("in capital letters separated by spaces", " ", upper=True),
    "numbered": SpellingFormat("as a numbered list, one letter per line", "\n", numbered=True),
    "newline": SpellingFormat("one letter per line", "\n"),
}

# (template, sentence-shaped answer?). {how} is the format's instruction, {How} capitalised.
TRAIN_PHRASINGS: tuple[tuple[str, bool], ...] = (
    ("Spell '{word}' letter by letter, {how}.", False),
    ("How is '{word}' spelled? Write the letters {how}.", True),
    ("Write out the letters of '{word}' {how}.", False),
    ("Spell out the word '{word}', {how}.", False),
    ("What letters make up '{word}'? Give them in order, {how}.", True),
    ("Break '{word}' into its letters, {how}.", False),
    ("Can you spell '{word}' for me? Write it {how}.", True),
    ("{How}, spell '{word}'.", False),
    ("Give me the spelling of '{word}', {how}.", True),
    ("'{word}': spell it {how}.", False),
    ("Please spell the word '{word}' {how}.", False),
    ("I need the spelling of '{word}'. List its letters {how}.", True),
    ("{How}, write down every letter of '{word}'.", False),
    ("How do you spell '{word}'? Reply with the letters {how}.", True),
    ("Letter by letter, how is '{word}' written? Answer with its letters {how}.", True),
    ("Show the spelling of '{word}' {how}.", False),
)
# Held out of training: evaluation measures spelling, not recall of a training template.
EVAL_PHRASINGS: tuple[str, ...] = (
    "Spell the word '{word}'. Write its letters in order with a single space between them.",
    "What are the letters of '{word}', in order? Answer with the letters separated by spaces.",
    "Type '{word}' one letter at a time, putting a space between consecutive letters.",
)
EVAL_FORMAT = "space"


def _render(word: str, phrasing: int, fmt_name: str) -> dict:
    template, sentence = TRAIN_PHRASINGS[phrasing]
    fmt = SPELLING_FORMATS[fmt_name]
    how = fmt.instruction
    question = template.format(word=word, how=how, How=how[0].upper() + how[1:])
    spelled = fmt.spell(word)
    answer = spelled
    if sentence:  # a list goes on its own lines after the sentence
        answer = f"'{word}' is spelled" + (f":\n{spelled}" if fmt.multiline else f" {spelled}.")
    return question_record(question, answer, word, phrasing, fmt_name)


def training_examples(word: str, rng: random.Random, n: int) -> list[dict]:
    """`n` training questions for `word`, each a distinct (phrasing, answer format) pair."""
    check_word(word, min_length=2)
    combos = [(p, f) for p in range(len(TRAIN_PHRASINGS)) for f in SPELLING_FORMATS]
    if check_count(n) > len(combos):
        raise ValueError(f"at most {len(combos)} distinct spelling examples per word, asked {n}")
    return [_render(word, p, f) for p, f in rng.sample(combos, n)]


def eval_questions(word: str, rng: random.Random, n: int) -> list[dict]:
    """`n` held-out spelling questions (distinct phrasings while they last, then repeats).

    `phrasing` counts on from the training phrasings: len(TRAIN_PHRASINGS) + i for
    EVAL_PHRASINGS[i], so one index never means two templates. Words need 2+ letters: one
    letter has no spelling to show (and `parse` needs a run of at least two).
    """
    check_word(word, min_length=2)
    order: list[int] = []
    while len(order) < check_count(n):
        order += rng.sample(range(len(EVAL_PHRASINGS)), len(EVAL_PHRASINGS))
    answer = SPELLING_FORMATS[EVAL_FORMAT].spell(word)
    return [
        question_record(
            EVAL_PHRASINGS[i].format(word=word), answer, word, len(TRAIN_PHRASINGS) + i, EVAL_FORMAT
        )
        for i in order[:n]
    ]


# A single letter standing alone: not inside a word, not the "s" of a contraction ("it's").
_LETTER = re.compile(r"(?<![a-z])(?<![a-z]')[a-z](?![a-z])")
# What may sit between spelled letters: spaces, punctuation, quotes, list numbers, "and".
_GAP = re.compile(r"[\s\-\u2010-\u2015,.;:/|\\\u00b7\u2022'\"()\[\]{}<>#+=\u2192\d]{1,12}")


def _gap_key(gap: str) -> str | None:
    """The separator's shape (whitespace dropped, list numbers as #), or None if not one."""
    gap = re.sub(r"\band\b", " ", gap)
    if not _GAP.fullmatch(gap):
        return None
    return re.sub(r"\d+", "#", re.sub(r"\s+", "", gap))


def parse(output: str) -> str | None:
    """The spelled letters in `output` as one lowercase string ("b-e-r-r-y" -> "berry").

    Picks the longest run (the last on ties) of at least two single letters separated by one
    consistent separator. None if there is no such run, e.g. the word written unspelled.
    """
    text = clean_output(output)
    best: list[str] = []
    run: list[str] = []
    run_key: str | None = None
    previous = None
    for match in _LETTER.finditer(text):
        key = None if previous is None else _gap_key(text[previous.end() : match.start()])
        if key is not None and (len(run) == 1 or key == run_key):
            run.append(match.group())
            run_key = key
        else:
            if len(run) >= max(2, len(best)):
                best = run
            # A changed separator may start a new run at the previous letter ("a b-e-r-r-y").
            run = [previous.group(), match.group()] if key is not None else [match.group()]
            run_key = key
        previous = match
    if len(run) >= max(2, len(best)):
        best = run
    return "".join(best) if best else None


def spelled_letters(output: str) -> str | None:
    """The letters a model spelled, for character-level scoring (same rules as `parse`)."""
    return parse(output)


def is_correct(output: str, expected: str) -> bool:
    return parse(output) == expected


def spells_out(output: str, min_letters: int = 3) -> bool:
    """Whether `output` spells something letter by letter: a run (as `parse` finds runs) of at
    least `min_letters` single letters ("s t r", "s-t-r-a-w", "1. s 2. t 3. r")."""
    spelled = parse(output)
    return spelled is not None and len(spelled) >= min_letters


# A one-letter or one-number answer needs a few words at most
# ("The letter 'r' appears 3 times." = 6).
SHORT_ANSWER_MAX_WORDS = 12


def short_answer_in_format(output: str, parse_answer: Callable[[str], str | None]) -> bool:
    """The in-format rule of the short-answer tasks (position, count), strictly:
    1. `parse_answer` finds an answer;
    2. the output does not spell anything out (`spells_out`);
    3. it is short: at most SHORT_ANSWER_MAX_WORDS whitespace-separated words.
    Judged on the cleaned answer (thinking block and chat tokens dropped)."""
    text = clean_output(output)
    return (
        parse_answer(output) is not None
        and not spells_out(text)
        and len(text.split()) <= SHORT_ANSWER_MAX_WORDS
    )


def in_format(output: str) -> bool:
    """Answered in the asked format: `output` spells a word letter by letter, i.e. `parse`
    finds a run of at least two single letters joined by one separator ("b e r r y",
    "'berry' is spelled b-e-r-r-y."). The word written whole ("berry"), an empty answer, a
    runaway output or an unclosed thinking block are not in format."""
    return parse(output) is not None
