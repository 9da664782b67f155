"""Replay turns for format retention: short-answer questions with no letter-level content.

Fine-tuning only on spelling can make a model spell words whatever it is asked. Replay turns
mixed into training keep the base model's habit of answering in the asked format: each question
ends with an explicit answer-format instruction (a number, yes/no, one word), and its target is
the base model's own greedy answer, filled in by the train stage (self-distillation).

Nothing here may touch letters: no spelling, letter positions, letter counts, word lengths,
rhymes or "starts with" questions, and no lettered multiple-choice options. The families are
arithmetic on small numbers, number comparisons, parity, yes/no facts, capitals, categories,
odd one out, opposites, synonyms and everyday facts. `contains_letter_content` is the guard:
every generated question passes it, and the train stage runs it on the targets too.

Not a task in `letterwise.tasks.TASKS`: a replay question has no expected answer or parser, so
the evaluation code never sees it. Pure Python, no torch (build_dataset imports it).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from letterwise.tasks.common import check_count

# Below this share of the base model's replay answers kept as targets, a replay arm is not its
# recipe any more (a base model that never ends its turn left Gemma 3 270M's negative control
# one training row); the train stage refuses it and the verdict flags a saved run that had it.
MIN_KEPT_SHARE = 0.5

TASK = "replay"

# --------------------------------------------------------------------------- the guard

# Words that make a text about letters, spelling or the written form of words.
_LETTER_WORDS = re.compile(
    r"\b(?:letters?|lettered|spell\w*|characters?|alphabet\w*|vowels?|consonants?|syllables?|"
    r"anagrams?|palindromes?|acronyms?|initials?|backwards?|reversed?|rhym\w*|"
    r"uppercase|lowercase|capitali[sz]\w*|"
    r"(?:starts?|begins?|ends?|starting|beginning|ending)\s+with)\b",
    re.IGNORECASE,
)
# A single letter in quotes: 'r', "r", `r`, curly quotes too ('r's counts).
_QUOTED_LETTER = re.compile(r"""(?<![A-Za-z])['"`‘’“”][A-Za-z]['"`‘’“”]""")
# Three or more single letters in a row joined by separators: a-p-p-l-e, a p p l e, A, P, P.
_LONE_LETTER = r"[A-Za-z](?![A-Za-z0-9'’])"
_GAP = r"(?:[ \t]*[-,.;:/|·•*_+][ \t]*|[ \t]*\n[ \t]*|[ \t]+)"
_SPELLED_RUN = re.compile(rf"(?<![A-Za-z0-9'’]){_LONE_LETTER}(?:{_GAP}{_LONE_LETTER}){{2,}}")
# A numbered list of single letters ("1. a" / "2) p" on their own lines).
_NUMBERED_LETTER = re.compile(r"(?m)^\s*\d+\s*[.):-]\s*[A-Za-z]\s*$")


def contains_letter_content(text: str) -> bool:
    """Whether `text` asks about or shows letters: letter/spelling words, a quoted single
    letter, a spelled-out run of single letters, or a numbered list of letters."""
    if not isinstance(text, str):
        raise TypeError(f"expected a string, got {type(text).__name__}")
    return bool(
        _LETTER_WORDS.search(text)
        or _QUOTED_LETTER.search(text)
        or _SPELLED_RUN.search(text)
        or len(_NUMBERED_LETTER.findall(text)) >= 2
    )


# --------------------------------------------------------------------------- answer formats

FORMAT_INSTRUCTIONS: dict[str, tuple[str, ...]] = {
    "number": (
        "Answer with just the number.",
        "Reply with only the number.",
        "Give only the number as your answer.",
        "Respond with a single number and nothing else.",
    ),
    "yes_no": (
        "Answer yes or no.",
        "Reply with just yes or no.",
        "Answer with a single word: yes or no.",
        "Respond only with yes or no.",
    ),
    "word": (
        "Answer with one word.",
        "Reply with a single word.",
        "Give just the word, nothing else.",
        "Respond with only one word.",
    ),
}

# --------------------------------------------------------------------------- content

CAPITALS = {
    "France": "Paris", "Italy": "Rome", "Spain": "Madrid", "Germany": "Berlin",
    "Japan": "Tokyo", "Egypt": "Cairo", "Canada": "Ottawa", "Australia": "Canberra",
    "Portugal": "Lisbon", "Austria": "Vienna", "Greece": "Athens", "Ireland": "Dublin",
    "Norway": "Oslo", "Russia": "Moscow", "China": "Beijing", "Kenya": "Nairobi",
    "Peru": "Lima", "Poland": "Warsaw", "Sweden": "Stockholm", "Finland": "Helsinki",
}  # fmt: skip

# Category -> (the category with its article, members).
CATEGORIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "fruit": ("a fruit", ("apple", "banana", "grape", "orange", "pear", "cherry", "mango",
                          "lemon", "peach", "plum")),
    "animal": ("an animal", ("dog", "cat", "horse", "lion", "tiger", "rabbit", "sheep", "cow",
                             "bear", "wolf")),
    "colour": ("a colour", ("red", "blue", "green", "yellow", "purple", "black", "white",
                            "brown", "pink", "grey")),
    "vehicle": ("a vehicle", ("car", "bus", "train", "bicycle", "truck", "plane", "boat",
                              "tractor")),
    "furniture": ("a piece of furniture", ("chair", "table", "bed", "sofa", "desk", "shelf",
                                           "wardrobe")),
    "body part": ("a part of the body", ("hand", "foot", "knee", "elbow", "shoulder", "nose",
                                         "ear", "finger")),
    "drink": ("a drink", ("water", "milk", "tea", "coffee", "juice", "lemonade")),
    "instrument": ("a musical instrument", ("piano", "guitar", "violin", "drum", "flute",
                                            "trumpet")),
}  # fmt: skip

OPPOSITES = (
    ("hot", "cold"), ("big", "small"), ("up", "down"), ("fast", "slow"), ("happy", "sad"),
    ("light", "dark"), ("open", "closed"), ("early", "late"), ("full", "empty"),
    ("hard", "soft"), ("wet", "dry"), ("old", "young"), ("rich", "poor"), ("strong", "weak"),
    ("loud", "quiet"), ("high", "low"), ("day", "night"), ("win", "lose"), ("push", "pull"),
    ("buy", "sell"), ("true", "false"), ("inside", "outside"), ("heavy", "light"),
    ("thick", "thin"), ("clean", "dirty"), ("near", "far"), ("love", "hate"),
    ("friend", "enemy"), ("above", "below"), ("arrive", "leave"), ("laugh", "cry"),
    ("remember", "forget"), ("sweet", "sour"), ("summer", "winter"), ("north", "south"),
)  # fmt: skip

SYNONYM_WORDS = (
    "big", "small", "quick", "happy", "begin", "finish", "angry", "smart", "tired", "scared",
    "pretty", "simple", "shout", "gift", "house", "sofa", "rock", "road", "job", "car",
)  # fmt: skip

# (question, is it true?) pairs about the world: plain facts a small model may know.
YES_NO_FACTS = (
    ("Is the sun a star?", True), ("Is the moon a planet?", False),
    ("Do fish live in water?", True), ("Do cows eat meat?", False),
    ("Is ice colder than boiling water?", True), ("Is snow usually black?", False),
    ("Does a week have seven days?", True), ("Does a year have ten months?", False),
    ("Is the Pacific an ocean?", True), ("Is Africa a country?", False),
    ("Do plants need water to grow?", True), ("Can a fish climb a tree?", False),
    ("Is a whale a mammal?", True), ("Is a spider an insect?", False),
    ("Does the Earth go around the sun?", True), ("Is gold a metal?", True),
    ("Do people breathe oxygen?", True), ("Is a lemon sweet?", False),
    ("Is a kilometre more than a metre?", True), ("Is an hour less than a minute?", False),
    ("Is the Sahara a desert?", True), ("Is Mount Everest under the sea?", False),
    ("Do bees make honey?", True), ("Can humans breathe underwater without help?", False),
)  # fmt: skip

WORD_FACTS = (
    "What colour is the sky on a clear day?", "What do bees make?",
    "What is frozen water called?", "Which planet do we live on?",
    "What is the largest ocean on Earth?", "What animal is known as the king of the jungle?",
    "Which season comes after winter?", "What do you call a baby cat?",
    "What do you call a baby dog?", "What colour is fresh grass?",
    "What gas do plants take in from the air?", "Which meal is eaten in the morning?",
    "What is the closest star to the Earth?", "Which day comes after Monday?",
    "Which month comes after March?", "What do caterpillars turn into?",
    "What is the opposite direction of east?", "What falls from clouds when it rains?",
    "What do cows give us to drink?", "Which body organ pumps blood?",
)  # fmt: skip

# --------------------------------------------------------------------------- families


@dataclass(frozen=True)
class Family:
    name: str
    answer_format: str  # a key of FORMAT_INSTRUCTIONS
    templates: tuple[str, ...]
    fill: Callable[[random.Random], dict[str, object]]  # template fields, drawn with the rng
    weight: int = 1


def _arithmetic(rng: random.Random) -> dict[str, object]:
    op = rng.choice(("+", "-", "*"))
    if op == "*":
        a, b = rng.randint(1, 10), rng.randint(1, 10)
    else:
        a, b = rng.randint(0, 20), rng.randint(0, 20)
        if op == "-" and b > a:
            a, b = b, a
    words = {"+": "plus", "-": "minus", "*": "times"}
    symbols = {"+": "+", "-": "-", "*": rng.choice(("*", "×"))}
    return {"a": a, "b": b, "op": symbols[op], "op_word": words[op]}


def _two_numbers(rng: random.Random) -> dict[str, object]:
    a, b = rng.sample(range(0, 101), 2)
    return {"a": a, "b": b}


def _one_number(rng: random.Random) -> dict[str, object]:
    return {"a": rng.randint(1, 99)}


def _capital(rng: random.Random) -> dict[str, object]:
    country = rng.choice(sorted(CAPITALS))
    # Half the time another country's capital, so "no" is as common as "yes".
    city = CAPITALS[country] if rng.random() < 0.5 else rng.choice(sorted(CAPITALS.values()))
    return {"country": country, "city": city}


def _category_member(rng: random.Random) -> dict[str, object]:
    name = rng.choice(sorted(CATEGORIES))
    kind, members = CATEGORIES[name]
    pool = members if rng.random() < 0.5 else _outside(name)
    return {"kind": kind, "item": rng.choice(sorted(pool))}


def _outside(category: str) -> list[str]:
    return [w for name, (_, members) in CATEGORIES.items() if name != category for w in members]


def _category_pick(rng: random.Random) -> dict[str, object]:
    name = rng.choice(sorted(CATEGORIES))
    kind, members = CATEGORIES[name]
    options = [rng.choice(members), *rng.sample(_outside(name), 2)]
    rng.shuffle(options)
    return {"kind": kind, "x": options[0], "y": options[1], "z": options[2]}


def _odd_one_out(rng: random.Random) -> dict[str, object]:
    name = rng.choice(sorted(CATEGORIES))
    options = [*rng.sample(CATEGORIES[name][1], 3), rng.choice(_outside(name))]
    rng.shuffle(options)
    return dict(zip("abcd", options, strict=True))


def _opposite(rng: random.Random) -> dict[str, object]:
    pair = rng.choice(OPPOSITES)
    return {"w": pair[rng.randint(0, 1)]}


def _synonym(rng: random.Random) -> dict[str, object]:
    return {"w": rng.choice(SYNONYM_WORDS)}


def _yes_no_fact(rng: random.Random) -> dict[str, object]:
    return {"fact": rng.choice(YES_NO_FACTS)[0]}


def _word_fact(rng: random.Random) -> dict[str, object]:
    return {"fact": rng.choice(WORD_FACTS)}


FAMILIES: tuple[Family, ...] = (
    Family("arithmetic", "number", (
        "What is {a} {op} {b}?", "Calculate {a} {op} {b}.", "How much is {a} {op} {b}?",
        "What is {a} {op_word} {b}?", "Work out {a} {op_word} {b}.", "{a} {op} {b} = ?",
    ), _arithmetic, weight=3),
    Family("compare", "number", (
        "Which is larger, {a} or {b}?", "Which number is smaller: {a} or {b}?",
        "What is the bigger of the two numbers {a} and {b}?",
        "Of {a} and {b}, which is the smaller number?",
    ), _two_numbers),
    Family("next_number", "number", (
        "What number comes right after {a}?", "What number comes just before {a}?",
        "Counting up from {a}, what is the next number?", "What is one more than {a}?",
    ), _one_number),
    Family("parity", "yes_no", (
        "Is {a} an even number?", "Is {a} an odd number?", "Is {a} divisible by 2?",
    ), _one_number),
    Family("number_yes_no", "yes_no", (
        "Is {a} greater than {b}?", "Is {a} less than {b}?", "Is {a} bigger than {b}?",
    ), _two_numbers),
    Family("capital_yes_no", "yes_no", (
        "Is {city} the capital of {country}?", "Is the capital of {country} {city}?",
        "Is {city} the capital city of {country}?",
    ), _capital),
    Family("capital", "word", (
        "What is the capital of {country}?", "Which city is the capital of {country}?",
        "Name the capital city of {country}.",
    ), _capital),
    Family("category_yes_no", "yes_no", (
        "Is {item} {kind}?", "Does the word '{item}' name {kind}?",
        "Would you say that {item} is {kind}?",
    ), _category_member),
    Family("category_pick", "word", (
        "Which word is {kind}: {x}, {y} or {z}?", "Pick {kind} from this list: {x}, {y}, {z}.",
        "Among {x}, {y} and {z}, which one is {kind}?",
    ), _category_pick),
    Family("odd_one_out", "word", (
        "Which word does not belong: {a}, {b}, {c}, {d}?",
        "Find the odd one out: {a}, {b}, {c}, {d}.",
        "One of these is different from the others: {a}, {b}, {c}, {d}. Which one?",
    ), _odd_one_out),
    Family("opposite", "word", (
        "What is the opposite of '{w}'?", "Give the opposite of the word '{w}'.",
        "What word means the opposite of '{w}'?", "Name the antonym of '{w}'.",
    ), _opposite),
    Family("synonym", "word", (
        "Give a word that means the same as '{w}'.", "What is a synonym for '{w}'?",
        "Name another word for '{w}'.",
    ), _synonym),
    Family("fact_yes_no", "yes_no", ("{fact}",), _yes_no_fact),
    Family("fact_word", "word", ("{fact}",), _word_fact),
)  # fmt: skip

# phrasing = an index into TEMPLATES, so the dataset's phrasing column says family and wording.
TEMPLATES: tuple[tuple[str, str], ...] = tuple(
    (family.name, template) for family in FAMILIES for template in family.templates
)
_FIRST_TEMPLATE = {
    family.name: sum(len(f.templates) for f in FAMILIES[:i]) for i, family in enumerate(FAMILIES)
}
# Redraws allowed for a question not yet drawn before a repeat is accepted: small families
# run out of distinct questions long before large training sets are filled.
_FRESH_TRIES = 50


def family_of(phrasing: int) -> str:
    """The family of a replay row from its phrasing index."""
    return TEMPLATES[phrasing][0]


def _words_in(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def _draw(rng: random.Random) -> dict:
    family = rng.choices(FAMILIES, weights=[f.weight for f in FAMILIES])[0]
    index = rng.randrange(len(family.templates))
    body = family.templates[index].format(**family.fill(rng))
    instruction = rng.choice(FORMAT_INSTRUCTIONS[family.answer_format])
    return {
        "question": f"{body} {instruction}",
        "family": family.name,
        "phrasing": _FIRST_TEMPLATE[family.name] + index,
        "answer_format": family.answer_format,
    }


def replay_questions(rng: random.Random, n: int, *, avoid_words: Iterable[str] = ()) -> list[dict]:
    """`n` replay questions drawn with `rng`: dicts with question, family, phrasing (index into
    TEMPLATES) and answer_format ("number", "yes_no" or "word").

    Distinct while fresh ones can be found in a few draws, repeats after that. A question that
    uses any of `avoid_words` (whole words, case-insensitive; the held-out evaluation words) is
    never returned. Raises ValueError if a question fails `contains_letter_content` (a template
    bug, never silently dropped).
    """
    check_count(n)
    avoid = {w.lower() for w in avoid_words}
    seen: set[str] = set()
    questions: list[dict] = []
    while len(questions) < n:
        for attempt in range(_FRESH_TRIES * 20):
            question = _draw(rng)
            if avoid and _words_in(question["question"]) & avoid:
                continue
            if question["question"] not in seen or attempt >= _FRESH_TRIES:
                break
        else:
            raise ValueError("every replay question drawn uses an avoided word; avoid fewer")
        if contains_letter_content(question["question"]):
            raise ValueError(f"replay template produced letter-level content: {question}")
        seen.add(question["question"])
        questions.append(question)
    return questions
