"""Adversarial model outputs for the three answer parsers, and a never-raises property test."""

from __future__ import annotations

import random
import re

import pytest

from letterwise.tasks import count, position, spelling
from letterwise.tasks.common import MAX_ANSWER_CHARS, strip_thinking

LONG_LETTERS = "r " * 5000  # a 10k-character repetition loop
LONG_DIGITS = "3 " * 5000
LONG_SPELLING = "b e r r y " * 1000
UNICODE_SOUP = "🍓∑∂ƒ©˙∆˚¬… ßøπ“‘«» 漢字 ﷽ \u200b\u202e ͡° ͜ʖ ͡°"

POSITION_CASES = [
    ("r", "r"),
    ("R", "r"),
    ("R.", "r"),
    ("'r'", "r"),
    ('"R"', "r"),
    ("**r**", "r"),
    ("`r`", "r"),
    ("  r  \n", "r"),
    ("\u2018r\u2019", "r"),
    ("Ｒ", "r"),  # fullwidth
    ("The 3rd letter is R.", "r"),
    ("The 3rd letter of 'strawberry' is 'r'.", "r"),
    ('Sure! The 3rd letter of "strawberry" is "R".', "r"),
    ("The letter at position 3 is **R**.", "r"),
    ("The last letter of 'strawberry' is y", "y"),
    ("It's the letter 'y'.", "y"),
    ("Answer: r", "r"),
    ("The third letter in strawberry \u2192 r", "r"),
    ("The answer is a.", "a"),
    ("The answer is A", "a"),
    ("A", "a"),
    ("a.", "a"),
    ("I", "i"),
    ("A letter r", "r"),  # "A" is the article here
    ("I think it's r.", "r"),
    ("i think r", "r"),
    ("It is a consonant, r", "r"),
    ("The answer is 'r', not 'a'.", "r"),
    ("The 3rd letter is 'r'. Wait, no: the 3rd letter is 'a'.", "a"),  # last statement wins
    ("What is the 3rd letter of 'strawberry'? r", "r"),  # question echoed
    ("<think>s t r a w ... so the third is r</think> r", "r"),
    ("<think>\n\n</think>\n\nr", "r"),
    ("</think>r", "r"),  # template put <think> in the prompt
    ("r<|im_end|>", "r"),
    ("<|im_start|>assistant\nR<|im_end|>", "r"),
    ("<think>let me count the letters: s, t", None),  # budget ran out
    ("", None),
    ("   ", None),
    ("3", None),
    ("strawberry", None),
    ("s t r a w b e r r y", None),
    ("The letters are s, t, r.", None),
    (LONG_LETTERS, None),
    (UNICODE_SOUP, None),
]

COUNT_CASES = [
    ("3", "3"),
    ("3.", "3"),
    ("**3**", "3"),
    ("'3'", "3"),
    ("３", "3"),  # fullwidth
    ("03", "3"),
    ("three", "3"),
    ("Three.", "3"),
    ("twelve", "12"),
    ("3 times", "3"),
    ("The answer is 3", "3"),
    ("The answer is three.", "3"),
    ("The answer is: **3**", "3"),
    ("Answer: 0", "0"),
    ("r: 3", "3"),
    ("twice", "2"),
    ("It appears once.", "1"),
    ("Only one.", "1"),
    ("zero", "0"),
    ("none", "0"),
    ("0", "0"),
    ("There are no z's in 'strawberry'.", "0"),
    ("The letter 'z' does not appear in 'strawberry'.", "0"),
    ("'strawberry' doesn't contain the letter z.", "0"),
    ("There are two.", "2"),
    ("There are 3 r's in strawberry.", "3"),
    ("'strawberry' has 10 letters, and 3 of them are r", "3"),
    ("The letter 'r' appears 3 times in 'strawberry', which has 10 letters.", "3"),
    ("The number of 'r's in 'strawberry' is 3.", "3"),
    ("It's not 2, it's 3.", "3"),
    ("The count is 2. Actually, the count is 3.", "3"),
    ("I count 1, 2, 3 - so 3 r's", "3"),
    ("<think>s-t-r-a-w-b-e-r-r-y: r at 3, 8, 9</think> 3", "3"),
    ("<think>two</think> 2", "2"),
    ("3<|im_end|>", "3"),
    ("The answer is 3\n<|im_end|>\n<|im_start|>user\nHow many 'e's in 'tree'? 2", "3"),
    ("<think>counting the r's: 1, 2", None),
    ("", None),
    ("strawberry has 10 letters", None),
    ("10 letters", None),
    ("3rd", None),
    ("1.5", None),
    ("r appears at positions 3, 8 and 9", None),
    ("I don't know.", None),
    (LONG_DIGITS, None),
    (UNICODE_SOUP, None),
]

SPELLING_CASES = [
    ("b e r r y", "berry"),
    ("b-e-r-r-y", "berry"),
    ("b, e, r, r, y", "berry"),
    ("B E R R Y", "berry"),
    ("B-E-R-R-Y", "berry"),
    ("B-e-R-r-Y", "berry"),
    ("b.e.r.r.y", "berry"),
    ("b|e|r|r|y", "berry"),
    ("b  e  r  r  y", "berry"),
    ("B\tE\tR\tR\tY", "berry"),
    ("b - e - r - r - y", "berry"),
    ("1. b\n2. e\n3. r\n4. r\n5. y", "berry"),
    ("1) b 2) e 3) r 4) r 5) y", "berry"),
    ("b\ne\nr\nr\ny", "berry"),
    ("- b\n- e\n- r\n- r\n- y", "berry"),
    ("'b', 'e', 'r', 'r', 'y'", "berry"),
    ("**b** **e** **r** **r** **y**", "berry"),
    ("B, E, R, R, and Y", "berry"),
    ("Ｂ Ｅ Ｒ Ｒ Ｙ", "berry"),  # fullwidth
    ("'berry' is spelled b-e-r-r-y.", "berry"),
    ("Sure! 'berry' is spelled:\n1. B\n2. E\n3. R\n4. R\n5. Y", "berry"),
    ("Spelling: b e r r y", "berry"),
    ("It's spelled s t r a w b e r r y!", "strawberry"),
    ("s-t-r-a-w-b-e-r-r-y (10 letters)", "strawberry"),
    ("b e r r y. I hope this helps!", "berry"),  # the pronoun does not join the run
    ("Here is a b-e-r-r-y", "berry"),  # the article does not join the dashed run
    ("b e r r y, or in capitals: B-E-R-R-Y", "berry"),
    ("b e r r y<|im_end|>", "berry"),
    ("<think>hmm, b then e</think>\nb e r r y", "berry"),
    ("s t r a w berry", "straw"),  # a partial spelling is what it is
    ("b e rr y", "be"),
    ("b é r r y", "rry"),  # a non-ASCII letter breaks the run
    ("<think>b e r", None),
    ("", None),
    ("berry", None),  # unspelled: nothing shown about the letters
    ("The word is berry.", None),
    ("a", None),
    (LONG_SPELLING, None),
    (UNICODE_SOUP, None),
]


@pytest.mark.parametrize(("output", "expected"), POSITION_CASES)
def test_position_parse(output: str, expected: str | None) -> None:
    assert position.parse(output) == expected


@pytest.mark.parametrize(("output", "expected"), COUNT_CASES)
def test_count_parse(output: str, expected: str | None) -> None:
    assert count.parse(output) == expected


@pytest.mark.parametrize(("output", "expected"), SPELLING_CASES)
def test_spelling_parse(output: str, expected: str | None) -> None:
    assert spelling.parse(output) == expected


def test_case_tables_are_big_enough() -> None:
    assert min(len(POSITION_CASES), len(COUNT_CASES), len(SPELLING_CASES)) >= 30


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>a</think> 2", "2"),
        ("<THINK>a</THINK>b", "b"),
        ("<think>a</think>x<think>b</think>y", "x y"),
        ("<think>never closed", ""),
        ("done</think> 7", "7"),
        ("plain", "plain"),
        ("", ""),
    ],
)
def test_strip_thinking(text: str, expected: str) -> None:
    assert strip_thinking(text) == expected


def test_is_correct_uses_parse() -> None:
    assert position.is_correct("The 3rd letter is R.", "r")
    assert not position.is_correct("The 3rd letter is A.", "r")
    assert count.is_correct("three", "3") and not count.is_correct("two", "3")
    assert spelling.is_correct("B-E-R-R-Y", "berry") and not spelling.is_correct("berry", "berry")


def test_over_long_answers_are_unparseable_even_when_they_end_well() -> None:
    padding = "x" * MAX_ANSWER_CHARS
    assert count.parse(padding + " The answer is 3") is None
    assert count.parse("<think>" + padding + "</think> The answer is 3") == "3"  # thinking is free


_PIECES = [
    "<think>", "</think>", "<|im_end|>", "<|im_start|>", "'", '"', "`", "**", " is ", " a ",
    "times", "no ", "three", "\n", "\ud800", "\u0301", "🍓", "漢", "ß", "İ", "K", "ﬁ", "3rd",
]  # fmt: skip
_ALPHABET = [chr(c) for c in range(32, 127)] + list("\t\n\u00e9\u2192\u2019\u201c\u00a0\uff32")


def _random_text(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randrange(0, 40)):
        if rng.random() < 0.2:
            parts.append(rng.choice(_PIECES))
        else:
            parts.append("".join(rng.choices(_ALPHABET, k=rng.randrange(1, 6))))
    return "".join(parts)


@pytest.mark.parametrize("task", [spelling, position, count], ids=lambda t: t.TASK)
def test_parse_never_raises_and_returns_a_key_or_none(task) -> None:
    key_shape = {"spelling": r"[a-z]{2,}", "position": r"[a-z]", "count": r"[0-9]+"}[task.TASK]
    rng = random.Random(1234)
    for _ in range(3000):
        text = _random_text(rng)
        parsed = task.parse(text)
        assert parsed is None or re.fullmatch(key_shape, parsed), (text, parsed)
        assert task.is_correct(text, "x") in (True, False)
