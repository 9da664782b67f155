"""Position: "What is the 3rd letter of 'strawberry'? Answer with the letter only." -> "r".

Never trained: a transfer task. Positions are 1-indexed; a share of questions (last_rate)
asks for the last letter instead, recorded with its real index in `position`.

Parsing, in order of trust (lowercase throughout):
1. the whole answer is one letter, give or take quotes and punctuation ("R.", "**r**");
2. the last letter stated as the answer: after "is", "be", "'s", ":", "=" or an arrow,
   optionally "the letter" ("The 3rd letter of 'strawberry' is 'r'." -> r);
3. the last quoted single letter ('r');
4. a lone letter anywhere, if all such letters agree.
"a" and "i" also serve as the article and the pronoun: unquoted and followed by another word
("A letter r", "I think r") they are not candidates; at the end of a clause they are
("The answer is a." -> a). Ordinal suffixes ("3rd") and contractions ("it's") never count.
"""

from __future__ import annotations

import random
import re

from letterwise.tasks import spelling
from letterwise.tasks.common import (
    check_count,
    check_rate,
    check_word,
    clean_output,
    ordinal,
    question_record,
)

TASK = "position"

# (template, asks for the last letter?). {nth} = "3rd", {n} = "3".
PHRASINGS: tuple[tuple[str, bool], ...] = (
    ("What is the {nth} letter of '{word}'? Answer with the letter only.", False),
    ("Which letter is in position {n} of '{word}'? Answer with the letter only.", False),
    ("In the word '{word}', what is letter number {n}? Reply with just the letter.", False),
    ("What letter comes {nth} in '{word}'? Answer with a single letter.", False),
    ("Give the {nth} letter of the word '{word}'. Answer with the letter only.", False),
    ("Counting from 1, which letter of '{word}' is at position {n}? Just the letter.", False),
    ("What is the last letter of '{word}'? Answer with the letter only.", True),
    ("Which letter does '{word}' end with? Answer with the letter only.", True),
    ("In the word '{word}', what is the final letter? Reply with just the letter.", True),
)  # fmt: skip
_INDEXED = [i for i, (_, last) in enumerate(PHRASINGS) if not last]
_LAST = [i for i, (_, last) in enumerate(PHRASINGS) if last]


def _question(word: str, phrasing: int, position: int) -> dict:
    template, is_last = PHRASINGS[phrasing]
    letter = word[position - 1]
    question = template.format(word=word, nth=ordinal(position), n=position)
    return question_record(
        question, letter, letter, phrasing, position=position, is_last=is_last, letter=letter
    )


def eval_questions(word: str, rng: random.Random, n: int, *, last_rate: float = 0.15) -> list[dict]:
    """`n` position questions about `word`; each is a "last letter" one with chance last_rate.

    Questions for one word are distinct while possible: unused positions first, and unused
    "last letter" phrasings; only when a kind is exhausted does it repeat.
    """
    check_word(word)
    check_rate("last_rate", last_rate)
    unused_positions: list[int] = []
    unused_last: list[int] = []
    questions = []
    for _ in range(check_count(n)):
        if rng.random() < last_rate:
            unused_last = unused_last or list(_LAST)
            phrasing = unused_last.pop(rng.randrange(len(unused_last)))
            questions.append(_question(word, phrasing, len(word)))
        else:
            unused_positions = unused_positions or list(range(1, len(word) + 1))
            position = unused_positions.pop(rng.randrange(len(unused_positions)))
            questions.append(_question(word, rng.choice(_INDEXED), position))
    return questions


_Q = r"(?P<q>['\"]?)"
_STATED = re.compile(
    r"(?:\bis|\bbe|\bwas|'s|:|=|->|\u2192)\s*(?:(?:the|a)\s+letter\s+|letter\s+)?"
    + _Q
    + r"(?P<letter>[a-z])(?P=q)(?![a-z'])"
)
_QUOTED = re.compile(r"(['\"])([a-z])\1")
_LONE = re.compile(r"(?<![a-z0-9])(?<![a-z]')[a-z](?![a-z'])")
_WHOLE = re.compile(r"[\W_]*([a-z])[\W_]*")
_NEXT_WORD = re.compile(r"\s+[a-z]")


def _is_word_not_letter(text: str, letter: str, end: int, quoted: bool) -> bool:
    """An unquoted "a"/"i" followed by another word is the article or the pronoun."""
    return not quoted and letter in "ai" and bool(_NEXT_WORD.match(text, end))


def parse(output: str) -> str | None:
    """The letter `output` answers with, lowercase, or None if there is no single answer."""
    text = clean_output(output)
    whole = _WHOLE.fullmatch(text)
    if whole:
        return whole.group(1)
    stated = [
        m.group("letter")
        for m in _STATED.finditer(text)
        if not _is_word_not_letter(text, m.group("letter"), m.end(), bool(m.group("q")))
    ]
    if stated:
        return stated[-1]
    quoted = [m.group(2) for m in _QUOTED.finditer(text)]
    if quoted:
        return quoted[-1]
    lone = {
        m.group()
        for m in _LONE.finditer(text)
        if not _is_word_not_letter(text, m.group(), m.end(), quoted=False)
    }
    return lone.pop() if len(lone) == 1 else None


def is_correct(output: str, expected: str) -> bool:
    return parse(output) == expected


def in_format(output: str) -> bool:
    """Answered in the asked format ("Answer with the letter only"), strictly:
    1. `parse` finds a letter;
    2. the output does not spell anything out: no run of 3+ single letters joined by a
       separator ("s t r", "s-t-r-a-w", "1. s 2. t 3. r"; see spelling.spells_out);
    3. it is short: at most spelling.SHORT_ANSWER_MAX_WORDS words.
    All three are judged on the cleaned answer (thinking block and chat tokens dropped).
    "r", "**R**", "The 3rd letter of 'strawberry' is 'r'." are in format;
    "'strawberry' is spelled s-t-r-a-w-b-e-r-r-y, so r" and a long explanation are not.
    """
    return spelling.short_answer_in_format(output, parse)
