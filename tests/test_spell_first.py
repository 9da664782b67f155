"""Spell-first prompting (letterwise.tasks.spell_first) and the in-format checks of the tasks.

Every expected (answer, spelled, has_answer_line) below is written by hand from the rules in
the module docstring, not produced by the code under test.
"""

from __future__ import annotations

import random
import re

import pytest

from letterwise.presets import PRESETS
from letterwise.tasks import count, position, spell_first, spelling

WORD = "strawberry"

# (task, output, answer, spelled, has_answer_line)
CASES = [
    # the asked shape, with the usual variations of separator, case and markdown
    ("position", "'strawberry' is spelled s t r a w b e r r y.\nAnswer: r", "r", WORD, True),
    ("position", "s t r a w b e r r y\nAnswer: R", "r", WORD, True),
    ("position", "S-T-R-A-W-B-E-R-R-Y\nANSWER: 'R'.", "r", WORD, True),
    ("position", "s, t, r, a, w, b, e, r, r, y\n**Answer:** r", "r", WORD, True),
    ("position", "s.t.r.a.w.b.e.r.r.y\nanswer: r", "r", WORD, True),
    ("position", "S t R a W\nFinal Answer: W", "w", "straw", True),
    ("position", "s t r a w\n- Answer : a", "a", "straw", True),
    ("position", 's t r a w\n### Answer: "t"', "t", "straw", True),
    ("position", "s, t, r, a, and w\nAnswer: a", "a", "straw", True),
    ("position", "s t r a w\nAnswer: r<|im_end|>", "r", "straw", True),
    ("position", "\uff53 \uff54 \uff52 \uff41 \uff57\n\uff21nswer: \uff32", "r", "straw", True),
    # numbered lists: the list numbers are neither letters nor answers
    ("position", "1. s\n2. t\n3. r\n4. a\n5. w\nAnswer: r", "r", "straw", True),
    ("position", "1. s 2. t 3. r 4. a 5. w\nAnswer: a", "a", "straw", True),
    ("count", "1. s\n2. t\n3. r\n4. a\n5. w", None, "straw", False),
    ("count", "1. b 2. e 3. e\nAnswer: 2", "2", "bee", True),
    # several answer lines: the last one is the answer
    ("position", "Answer: t\ns t r a w\nAnswer: r", "r", "straw", True),
    ("count", "b e e\nAnswer: 2\nWait, let me recount.\nAnswer: 1", "1", "bee", True),
    # answer line before the spelling
    ("position", "Answer: w\ns t r a w", "w", "straw", True),
    # the value on the line after "Answer:"
    ("position", "s t r a w\nAnswer:\n**r**", "r", "straw", True),
    # answer lines with an unusable value: no answer, nothing else mined
    ("position", "s t r a w\nAnswer: I am not sure", None, "straw", True),
    ("position", "s t r a w\nAnswer: <letter>", None, "straw", True),
    ("count", "b e e\nAnswer: <number>", None, "bee", True),
    ("position", "s t r a w\nAnswer: s-t-r-a-w", None, "straw", True),
    # numbers as words and zero phrasings
    ("count", "b e e\nAnswer: two", "2", "bee", True),
    ("count", "Answer: Three.", "3", None, True),
    ("count", "c a t\nFinal answer: none", "0", "cat", True),
    ("count", "c a t\nAnswer: 0", "0", "cat", True),
    ("count", "s t r a w b e r r y\nAnswer: 3 (r appears three times)", "3", WORD, True),
    # no answer line: the task parser reads only what follows the spelling
    ("position", "s t r a w b e r r y\nThe 3rd letter is r.", "r", WORD, False),
    ("count", "s t r a w b e r r y\nThere are 3 r's.", "3", WORD, False),
    ("count", "s, t, r, a, w, b, e, r, r, and y. So 'r' appears twice.", "2", WORD, False),
    (
        "position",
        "The word 'straw' is spelled: S - T - R - A - W. So the 3rd is R.",
        "r",
        "straw",
        False,
    ),
    ("position", "s t r a w. Answer: r", "r", "straw", False),  # not at a line start
    ("position", "s t r a w b e r r y", None, WORD, False),  # spelled, never answered
    ("position", "'bee' is b e e", None, "bee", False),  # "is b" belongs to the spelling
    ("count", "b-e-e", None, "bee", False),
    ("position", "'instalments' is spelled i-n-s-t-a-l-e-s-t-a-", None, "instalesta", False),
    ("position", "The answer is r", "r", None, False),  # no spelling: the whole text is read
    ("position", "Answer - r", "r", None, False),  # a dash is not the stated colon
    ("count", "3", "3", None, False),
    # thinking blocks (Qwen3 thinking mode)
    (
        "position",
        "<think>s t r a w, third is r</think>\n\ns t r a w\nAnswer: r",
        "r",
        "straw",
        True,
    ),
    ("position", "<think>s t r a w b e r r y</think>\nAnswer: r", "r", None, True),
    ("position", "<think>\n\n</think>\n\ns t r a w\nAnswer: r", "r", "straw", True),
    ("position", "</think>\n\ns t r a w\nAnswer: r", "r", "straw", True),  # <think> in prompt
    ("position", "<think>s t r a w\nAnswer: r</think>", None, None, False),  # only thinking
    ("position", "<think>s t r a w", None, None, False),  # thinking budget ran out
    # nothing usable
    ("position", "", None, None, False),
    ("count", "  \n\t ", None, None, False),
    (
        "position",
        "\U0001f353\u2211\u2202 \u6f22\u5b57 \u200b\u202e \u0361\u00b0",
        None,
        None,
        False,
    ),
    ("count", "strawberry", None, None, False),
    ("position", "s t r a w " * 400 + "\nAnswer: r", None, None, False),  # runaway output
]


@pytest.mark.parametrize(("task", "output", "answer", "spelled", "has_line"), CASES)
def test_parse_adversarial_outputs(task, output, answer, spelled, has_line):
    assert spell_first.parse(task, output) == spell_first.SpellFirstAnswer(
        answer, spelled, has_line
    )


def test_parse_never_raises_on_random_strings():
    rng = random.Random(20240609)
    pieces = [
        "a", "r", "R", "s t r", "-", ", ", ". ", "\n", " ", "1. ", "10", "three", "zero",
        "Answer:", "answer :", "Final answer:", "**", "'", '"', "<think>", "</think>",
        "<|im_end|>", "\U0001f353", "\u6f22", "\u200b", "\uff52", "and", "is", "times", ":",
    ]  # fmt: skip
    for i in range(3000):
        size = rng.randrange(0, 40) if i % 10 else rng.randrange(100, 400)  # some past the cap
        output = "".join(rng.choice(pieces) for _ in range(size))
        for task, shape in (("position", r"[a-z]"), ("count", r"\d+")):
            parsed = spell_first.parse(task, output)
            assert parsed.answer is None or re.fullmatch(shape, parsed.answer), output
            assert parsed.spelled is None or re.fullmatch(r"[a-z]{2,}", parsed.spelled), output
            assert isinstance(parsed.has_answer_line, bool)
    assert spell_first.parse("count", None) == spell_first.SpellFirstAnswer(None, None, False)


def test_parse_and_question_refuse_other_tasks():
    with pytest.raises(ValueError, match="spelling"):
        spell_first.parse("spelling", "b e r r y")
    with pytest.raises(ValueError, match="spell-first covers"):
        spell_first.question({"task": "spelling", "word": "berry", "question": "Spell it."})


def _rows(task: str, words: list[str]) -> list[dict]:
    make = {"position": position.eval_questions, "count": count.eval_questions}[task]
    rows = []
    for word in words:
        for question in make(word, random.Random(word), 6):
            rows.append(question | {"task": task, "word": word, "id": f"test-{len(rows)}"})
    return rows


def _every_phrasing(task: str, word: str) -> list[dict]:
    """One row per direct phrasing of the task, asking about the word's 3rd letter."""
    if task == "position":
        questions = [t.format(word=word, nth="3rd", n=3) for t, _ in position.PHRASINGS]
    else:
        questions = [t.format(word=word, letter=word[2]) for t in count.PHRASINGS]
    return [
        {"task": task, "word": word, "question": q, "id": f"test-{task}-{i:06d}"}
        for i, q in enumerate(questions)
    ]


@pytest.mark.parametrize(
    ("task", "slot", "dropped"),
    [
        (
            "position",
            "'Answer: <letter>'",
            ("letter only", "reply with just the letter", "a single letter", "just the letter"),
        ),
        ("count", "'Answer: <number>'", ("a number only", "just the number", "number only")),
    ],
)
def test_question_replaces_the_format_sentence_with_the_spell_first_instruction(
    task, slot, dropped
):
    for row in _every_phrasing(task, "strawberry"):
        prompt = spell_first.question(row)
        first_sentence = re.split(r"(?<=[?.])\s", row["question"])[0]
        assert prompt.startswith(first_sentence + " ")
        assert all(phrase not in prompt.lower() for phrase in dropped), prompt
        assert prompt.endswith(slot + ".")
        instruction = prompt[len(first_sentence) + 1 :]
        assert "'strawberry'" in instruction
        assert "letter by letter" in instruction or "one at a time" in instruction


def test_question_is_fixed_per_row_id_and_varies_across_ids():
    row = {"task": "count", "word": "cat", "question": "How many 'a's are in 'cat'? X."}
    prompts = {spell_first.question(row | {"id": f"val-count-{i:06d}"}) for i in range(40)}
    assert len(prompts) == len(spell_first.INSTRUCTIONS)
    for i in range(40):
        again = row | {"id": f"val-count-{i:06d}"}
        assert spell_first.question(again) == spell_first.question(dict(again))
    # an unknown closing sentence is kept as it is
    assert spell_first.question(row | {"id": 1}).startswith("How many 'a's are in 'cat'? X. ")


@pytest.mark.parametrize("task", ["position", "count"])
def test_an_answer_that_follows_the_instruction_parses_to_the_key(task):
    for row in _rows(task, ["strawberry", "mississippi", "quiz"]):
        reply = f"{' '.join(row['word'])}\nAnswer: {row['expected']}"
        parsed = spell_first.parse(task, reply)
        assert parsed == spell_first.SpellFirstAnswer(row["expected"], row["word"], True)
        assert spell_first.spelled_right(row, parsed)


def test_spelled_right_compares_the_letters_with_the_word():
    row = {"word": "berry"}
    assert spell_first.spelled_right(row, spell_first.parse("count", "b e r r y\nAnswer: 2"))
    assert not spell_first.spelled_right(row, spell_first.parse("count", "b e r y\nAnswer: 1"))
    assert not spell_first.spelled_right(row, spell_first.parse("count", "Answer: 2"))


def test_max_new_tokens_is_the_spelling_plus_the_answer_budget():
    # generation.max_new_tokens_for: spelling 2 * L + 16, position/count L + 16
    assert spell_first.max_new_tokens("position", 10) == (2 * 10 + 16) + (10 + 16)
    assert spell_first.max_new_tokens("count", 3) == (2 * 3 + 16) + (3 + 16)
    with pytest.raises(ValueError, match="spell-first covers"):
        spell_first.max_new_tokens("spelling", 5)


@pytest.fixture(scope="module")
def qwen3_tokenizer():
    from letterwise.modeling import load_tokenizer

    return load_tokenizer(PRESETS["qwen3-tiny"])  # the real Qwen3 tokenizer, bundled


@pytest.mark.parametrize("word", ["cat", "strawberry", "internationalization"])
def test_budget_fits_a_chatty_spell_first_reply_in_qwen3_tokens(qwen3_tokenizer, word):
    reply = (
        f"Sure! Let me spell '{word}' letter by letter: {' '.join(word)}.\n"
        f"The 3rd letter of '{word}' is '{word[2]}', and it appears {word.count(word[2])} times."
        f"\nAnswer: {word[2]}"
    )
    tokens = len(qwen3_tokenizer(reply, add_special_tokens=False)["input_ids"])
    assert tokens <= spell_first.max_new_tokens("position", len(word))


@pytest.mark.parametrize("thinking", [False, True])
def test_qwen3_prompt_and_reply_in_both_modes(qwen3_tokenizer, thinking):
    from letterwise.chat import prompt_text

    row = _rows("position", ["strawberry"])[0]
    prompt = prompt_text(qwen3_tokenizer, spell_first.question(row), thinking=thinking)
    assert spell_first.question(row) in prompt
    # non-thinking: the template closes an empty think block in the prompt; thinking: the
    # model writes the block itself, then the reply
    assert prompt.rstrip().endswith("</think>") is not thinking
    reply = f"s t r a w b e r r y\nAnswer: {row['expected']}<|im_end|>"
    output = reply if not thinking else f"<think>\nr is {row['expected']}?\n</think>\n\n{reply}"
    assert spell_first.parse("position", output) == spell_first.SpellFirstAnswer(
        row["expected"], WORD, True
    )


# --------------------------------------------------------------------------- in_format
POSITION_IN_FORMAT = [
    ("r", True),
    ("**R**", True),
    ("'r'.", True),
    ("The 3rd letter of 'strawberry' is 'r'.", True),
    ("<think>s t r a w b e r r y: the 3rd is r</think>\n\nr", True),  # spelled only in thought
    ("The answer is a.", True),
    ("'strawberry' is spelled s t r a w b e r r y, so the 3rd letter is r", False),
    ("'instalments' is spelled i-n-s-t-a-l-e-s-t-a-", False),  # the example
    ("s-t-r: r", False),
    ("1. s 2. t 3. r -> r", False),
    ("Let me think about this. The word strawberry has ten letters and the third one is r.", False),
    ("3", False),  # no letter
    ("", False),
    ("<think>s t r", False),
]
COUNT_IN_FORMAT = [
    ("3", True),
    ("Three.", True),
    ("There are 3 r's in 'strawberry'.", True),
    ("The letter 'r' appears 3 times in 'strawberry'.", True),
    ("none", True),
    ("s-t-r-a-w-b-e-r-r-y has 3 r's", False),
    ("s t r a w b e r r y\nAnswer: 3", False),
    (
        "The word 'strawberry' is a fruit and if we look closely the letter r appears 3 times.",
        False,
    ),
    ("r", False),  # no number
    ("strawberry", False),
    ("", False),
]
SPELLING_IN_FORMAT = [
    ("b e r r y", True),
    ("'berry' is spelled B-E-R-R-Y.", True),
    ("1. b\n2. e\n3. r\n4. r\n5. y", True),
    ("b e", True),
    ("berry", False),  # the word, unspelled
    ("The word is berry.", False),
    ("", False),
    ("<think>b e r r y", False),
]


@pytest.mark.parametrize(("output", "expected"), POSITION_IN_FORMAT)
def test_position_in_format(output, expected):
    assert position.in_format(output) is expected


@pytest.mark.parametrize(("output", "expected"), COUNT_IN_FORMAT)
def test_count_in_format(output, expected):
    assert count.in_format(output) is expected


@pytest.mark.parametrize(("output", "expected"), SPELLING_IN_FORMAT)
def test_spelling_in_format(output, expected):
    assert spelling.in_format(output) is expected


def test_spells_out_needs_three_letters_in_a_run():
    assert spelling.spells_out("s t r")
    assert spelling.spells_out("1. s 2. t 3. r")
    assert not spelling.spells_out("r or s")
    assert not spelling.spells_out("The 3rd letter is 'r'.")
    assert spelling.spells_out("b e", min_letters=2)
