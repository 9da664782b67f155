"""Count: "How many 'r's are in 'strawberry'? Answer with a number only." -> "3".

Never trained: a transfer task. A share of questions (absent_rate) asks about a letter that
is not in the word (drawn from a-z minus the word's letters), whose answer is 0; the others
ask about one of the word's distinct letters, each equally likely.

Parsing (lowercase, digits or number words zero..twenty), in order of trust:
1. the whole answer is one number, give or take punctuation and "times" ("3", "Three.");
2. the last number tied to the count: "answer/count/total ... is N", "N times", "N of them",
   "N r's", "appears N", "there are N", "once"/"twice"/"thrice", and zero phrasings ("none",
   "no r's", "does not appear", "absent") -- a later statement overrides an earlier one;
3. the last number stated after "is", "'s", ":", "=" or an arrow;
4. any other number, if all agree.
Numbers that give a length ("10 letters"), ordinals ("3rd") and decimals are never counts,
so "'strawberry' has 10 letters, and 3 of them are r" -> 3.
"""

from __future__ import annotations

import random
import re
import string

from letterwise.tasks import spelling
from letterwise.tasks.common import (
    NUMBER_WORDS,
    check_count,
    check_rate,
    check_word,
    clean_output,
    question_record,
)

TASK = "count"

PHRASINGS: tuple[str, ...] = (
    "How many times does the letter '{letter}' appear in '{word}'? Answer with a number only.",
    "How many '{letter}'s are in '{word}'? Answer with a number only.",
    "Count the letter '{letter}' in '{word}'. Answer with a number only.",
    "How often does '{letter}' occur in the word '{word}'? Reply with just the number.",
    "In '{word}', how many times does '{letter}' appear? Answer with a number only.",
    "How many occurrences of the letter '{letter}' are there in '{word}'? Give the number only.",
)


def repeated_letters(word: str) -> list[str]:
    """The word's letters that occur at least twice, sorted."""
    return sorted(letter for letter in set(word) if word.count(letter) >= 2)


def eval_questions(
    word: str,
    rng: random.Random,
    n: int,
    *,
    absent_rate: float = 0.25,
    multiple: int = 0,
) -> list[dict]:
    """`n` count questions about `word`; each asks about an absent letter with chance absent_rate.

    The first `multiple` questions ask about a letter the word holds at least twice (answer >= 2; the caller keeps the split's share of those, see
    letterwise.data.dataset), while the word has one. Why: "1 if the letter is present, else
    0" otherwise answers most count questions right, and the task would measure presence.
    Letters for one word are distinct while possible (within each kind); a kind repeats only
    once exhausted. Letter pools are sorted so a seeded rng gives the same questions in every
    process.
    """
    check_word(word)
    check_rate("absent_rate", absent_rate)
    present = sorted(set(word))
    absent = sorted(set(string.ascii_lowercase) - set(word))
    repeated = repeated_letters(word)
    unused: dict[str, list[str]] = {"absent": [], "present": [], "repeated": []}
    pools = {"absent": absent, "present": present, "repeated": repeated}
    questions = []
    for _ in range(check_count(n)):
        # A word using all 26 letters has nothing absent to ask about.
        kind = "absent" if bool(absent) and rng.random() < absent_rate else "present"
        if multiple > 0 and repeated:  # owed answers >= 2 come first: they are the scarce kind
            kind, multiple = "repeated", multiple - 1
        unused[kind] = unused[kind] or list(pools[kind])
        letter = unused[kind].pop(rng.randrange(len(unused[kind])))
        count = word.count(letter)
        phrasing = rng.randrange(len(PHRASINGS))
        question = PHRASINGS[phrasing].format(word=word, letter=letter)
        questions.append(
            question_record(question, str(count), str(count), phrasing, letter=letter, count=count)
        )
    return questions


_WORDS = "|".join(NUMBER_WORDS)
_N = r"(?P<n>(?<![\w.])\d{1,6}(?!\d|\.\d|(?:st|nd|rd|th)\b)|\b(?:" + _WORDS + r")\b)"
_NOT_LENGTH = r"(?!\s*-?\s*(?:letters?|characters?|chars?)\b)"
_A_LETTER = r"(?:letters?\s+)?['\"]?[a-z]['\"]?(?:'?s)?(?![a-z])"  # r / 'r' / r's / letter r
_TIED = [
    re.compile(r"\b(?:answer|count|total|result|number|tally)\b[^.\d\n]{0,40}?"
               r"(?:\bis\b|:|=|\bof\b)\s*(?:exactly\s+|just\s+|only\s+)?" + _N),
    re.compile(_N + r"\s*(?:times?\b|x\b|occurrences?\b|instances?\b|of them\b)"),
    re.compile(_N + r"\s+" + _A_LETTER),
    re.compile(r"\b(?:appears?|occurs?|shows up|there (?:are|is)|there's|has|contains)\s+"
               r"(?:exactly\s+|only\s+|just\s+)?" + _N + _NOT_LENGTH),
]  # fmt: skip
_TIMES_WORDS = re.compile(r"\b(?P<n>once|twice|thrice)\b")
_ZERO = re.compile(
    r"\bno\s+" + _A_LETTER + r"|\bnone\b|\bno\s+(?:times|occurrences|instances)\b"
    r"|(?:\bnot|n't|\bnever)\s+(?:at all\s+)?(?:appear|occur|contain|present|found|in\b"
    r"|include|have any|there)|\b(?:absent|missing)\b"
)
_STATED = re.compile(r"(?:\bis|\bbe|'s|:|=|->|\u2192)\s*" + _N)
_ANY = re.compile(_N + _NOT_LENGTH)
_WHOLE = re.compile(r"[\W_]*" + _N + r"[\W_]*(?:times?)?[\W_]*")
_TIMES_VALUES = {"once": 1, "twice": 2, "thrice": 3}


def _value(token: str) -> int:
    if token.isdigit():
        return int(token)
    return NUMBER_WORDS.get(token, _TIMES_VALUES.get(token, 0))


def parse(output: str) -> str | None:
    """The count `output` answers with, as a decimal string ("three" -> "3"), or None."""
    text = clean_output(output)
    whole = _WHOLE.fullmatch(text)
    if whole:
        return str(_value(whole.group("n")))
    tied = [(m.end(), _value(m.group("n"))) for p in _TIED for m in p.finditer(text)]
    tied += [(m.end(), _value(m.group("n"))) for m in _TIMES_WORDS.finditer(text)]
    tied += [(m.end(), 0) for m in _ZERO.finditer(text)]
    if tied:
        # The statement that ends last wins: models restate or correct themselves at the end.
        return str(max(tied, key=lambda found: found[0])[1])
    stated = [_value(m.group("n")) for m in _STATED.finditer(text)]
    if stated:
        return str(stated[-1])
    numbers = {_value(m.group("n")) for m in _ANY.finditer(text)}
    return str(numbers.pop()) if len(numbers) == 1 else None


def is_correct(output: str, expected: str) -> bool:
    return parse(output) == expected


def in_format(output: str) -> bool:
    """Answered in the asked format ("Answer with a number only"), strictly:
    1. `parse` finds a count;
    2. the output does not spell anything out: no run of 3+ single letters joined by a
       separator ("s t r", "s-t-r-a-w", "1. s 2. t 3. r"; see spelling.spells_out);
    3. it is short: at most spelling.SHORT_ANSWER_MAX_WORDS words.
    All three are judged on the cleaned answer (thinking block and chat tokens dropped).
    "3", "Three.", "There are 3 r's in 'strawberry'." are in format;
    "s-t-r-a-w-b-e-r-r-y has 3 r's" and a long explanation are not.
    """
    return spelling.short_answer_in_format(output, parse)
