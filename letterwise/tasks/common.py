"""What the three tasks share: output cleaning, ordinals, number words, the question record.

Pure Python on purpose: the data stages import the tasks on machines without torch.
Every task's parser starts from `clean_output`, so thinking blocks, chat-template tokens,
markdown emphasis, odd unicode forms and letter case are dealt with once, here.
"""

from __future__ import annotations

import re
import unicodedata

# An answer to "answer with the letter only" (or a spelled word) never needs this much text;
# anything longer is a runaway generation (a repetition loop, random text) and is scored as
# unparseable rather than mined for a lucky letter or number.
MAX_ANSWER_CHARS = 2000

NUMBER_WORDS: dict[str, int] = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19, "twenty": 20,
}  # fmt: skip

QUESTION_KEYS = (
    "question", "answer", "expected", "phrasing", "answer_format",
    "position", "is_last", "letter", "count",
)  # fmt: skip

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.IGNORECASE | re.DOTALL)
_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
# Chat-template control tokens such as <|im_end|>, <|endoftext|>, <|im_start|>assistant.
_SPECIAL_TOKEN = re.compile(r"<\|[^|<>\n]{0,40}\|>")
_LEADING_SPECIALS = re.compile(r"^(?:\s*<\|[^|<>\n]{0,40}\|>(?:assistant|user|system)?)+\s*")
# Curly quotes and backticks become plain quotes; markdown emphasis becomes a space.
_CHAR_MAP = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u2032": "'", "`": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u00ab": '"', "\u00bb": '"',
    "*": " ", "_": " ", "~": " ",
})  # fmt: skip


def unclosed_thinking(text: str) -> bool:
    """Whether `text` opens a `<think>` block it never closes: the thinking budget ran out
    before an answer (strip_thinking then gives "", scored wrong)."""
    return isinstance(text, str) and bool(_THINK_OPEN.search(_THINK_BLOCK.sub(" ", text)))


def unclosed_share(outputs: list[str]) -> float | None:
    """Share of outputs with an unclosed `<think>` (None for no outputs)."""
    return sum(unclosed_thinking(o) for o in outputs) / len(outputs) if outputs else None


def strip_thinking(text: str) -> str:
    """`text` without its `<think>…</think>` blocks, stripped of surrounding whitespace.

    An unclosed `<think>` means the thinking budget ran out before an answer: returns "".
    A closing tag with no opening one (templates that put `<think>` in the prompt) keeps
    only what follows the last `</think>`.
    """
    text = _THINK_BLOCK.sub(" ", text)
    if _THINK_OPEN.search(text):
        return ""
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:
        text = text[closes[-1].end() :]
    return text.strip()


def clean_output(text: str) -> str:
    """Raw model output -> the lowercase answer text every parser works on ("" = no answer).

    Drops thinking blocks, leading chat tokens and everything from the next chat token on,
    folds unicode compatibility forms (fullwidth letters, ligatures) with NFKC, maps curly
    quotes/backticks to plain quotes and markdown emphasis to spaces.
    """
    if not isinstance(text, str):
        return ""
    text = strip_thinking(unicodedata.normalize("NFKC", text))
    text = _LEADING_SPECIALS.sub("", text)
    special = _SPECIAL_TOKEN.search(text)
    if special:
        text = text[: special.start()]
    text = text.translate(_CHAR_MAP).strip().lower()
    return "" if len(text) > MAX_ANSWER_CHARS else text


def ordinal(n: int) -> str:
    """1 -> '1st', 2 -> '2nd', 11 -> '11th', 22 -> '22nd' (English ordinal suffixes)."""
    if n % 100 in (11, 12, 13):
        return f"{n}th"
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def check_word(word: str, min_length: int = 1) -> str:
    """`word` itself if it is lowercase ASCII letters of at least `min_length`; else ValueError."""
    if not isinstance(word, str) or not re.fullmatch(r"[a-z]+", word):
        raise ValueError(f"word must be lowercase ASCII letters a-z, got {word!r}")
    if len(word) < min_length:
        raise ValueError(f"word must have at least {min_length} letters, got {word!r}")
    return word


def check_count(n: int) -> int:
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"number of questions must be a non-negative int, got {n!r}")
    return n


def check_rate(name: str, rate: float) -> float:
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {rate!r}")
    return rate


def question_record(
    question: str,
    answer: str,
    expected: str,
    phrasing: int,
    answer_format: str = "plain",
    *,
    position: int | None = None,
    is_last: bool = False,
    letter: str | None = None,
    count: int | None = None,
) -> dict:
    """One question as the dataset stores it: always exactly the keys in QUESTION_KEYS."""
    record = {
        "question": question, "answer": answer, "expected": expected, "phrasing": phrasing,
        "answer_format": answer_format, "position": position, "is_last": is_last,
        "letter": letter, "count": count,
    }  # fmt: skip
    assert tuple(record) == QUESTION_KEYS
    return record
