"""Question generation for the three tasks: expected answers, options, determinism, round trips."""

from __future__ import annotations

import json
import math
import os
import random
import string
import subprocess
import sys
from pathlib import Path

import pytest

from letterwise.tasks import TASKS, count, get_task, position, spelling
from letterwise.tasks.common import NUMBER_WORDS, QUESTION_KEYS, ordinal

# Written out by hand, not computed with the code under test.
STRAWBERRY_LETTERS = {
    1: "s",
    2: "t",
    3: "r",
    4: "a",
    5: "w",
    6: "b",
    7: "e",
    8: "r",
    9: "r",
    10: "y",
}
STRAWBERRY_COUNTS = {"s": 1, "t": 1, "r": 3, "a": 1, "w": 1, "b": 1, "e": 1, "y": 1}
WORDS = ["strawberry", "banana", "mississippi", "rhythm", "queue", "abracadabra", "aa", "ox"]


def _random_words(count_: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [
        "".join(rng.choices(string.ascii_lowercase, k=rng.randint(4, 14))) for _ in range(count_)
    ]


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"), (10, "10th"), (11, "11th"), (12, "12th"),
     (13, "13th"), (14, "14th"), (21, "21st"), (22, "22nd"), (23, "23rd"), (101, "101st"),
     (111, "111th"), (112, "112th"), (113, "113th")],
)  # fmt: skip
def test_ordinal(n: int, expected: str) -> None:
    assert ordinal(n) == expected


def test_number_words() -> None:
    assert NUMBER_WORDS["zero"] == 0 and NUMBER_WORDS["three"] == 3 and NUMBER_WORDS["twenty"] == 20
    assert sorted(NUMBER_WORDS.values()) == list(range(21))


def test_registry() -> None:
    assert set(TASKS) == {"spelling", "position", "count"}
    assert get_task("count") is count
    with pytest.raises(ValueError, match="unknown task 'counting'"):
        get_task("counting")


def test_strawberry_positions() -> None:
    seen = set()
    for seed in range(40):
        for q in position.eval_questions("strawberry", random.Random(seed), 10, last_rate=0.3):
            assert q["expected"] == q["answer"] == q["letter"] == STRAWBERRY_LETTERS[q["position"]]
            if q["is_last"]:
                assert (
                    q["position"] == 10
                    and q["expected"] == "y"
                    and (
                        "last" in q["question"]
                        or "final" in q["question"]
                        or "end with" in q["question"]
                    )
                )
                assert "10" not in q["question"]
            else:
                assert str(q["position"]) in q["question"]
            seen.add((q["position"], q["is_last"]))
    assert seen == {(p, False) for p in range(1, 11)} | {(10, True)}
    third = position._question("strawberry", 0, 3)
    assert (
        third["question"] == "What is the 3rd letter of 'strawberry'? Answer with the letter only."
    )
    assert third["expected"] == "r"


def test_strawberry_counts() -> None:
    letters_seen = set()
    for seed in range(40):
        for q in count.eval_questions("strawberry", random.Random(seed), 6, absent_rate=0.4):
            truth = STRAWBERRY_COUNTS.get(q["letter"], 0)
            assert q["count"] == truth and q["expected"] == q["answer"] == str(truth)
            assert f"'{q['letter']}'" in q["question"] and "'strawberry'" in q["question"]
            letters_seen.add(q["letter"])
    assert set(STRAWBERRY_COUNTS) <= letters_seen
    assert "z" in letters_seen or letters_seen - set(STRAWBERRY_COUNTS)  # absent letters asked


def test_strawberry_spelling() -> None:
    for q in spelling.eval_questions("strawberry", random.Random(0), 3):
        assert q["answer"] == "s t r a w b e r r y" and q["expected"] == "strawberry"
        assert "'strawberry'" in q["question"]


@pytest.mark.parametrize("task", [spelling, position, count], ids=lambda t: t.TASK)
def test_records_have_exactly_the_interface_keys(task) -> None:
    for q in task.eval_questions("banana", random.Random(3), 5):
        assert tuple(q) == QUESTION_KEYS
        assert isinstance(q["phrasing"], int) and isinstance(q["is_last"], bool)
        assert "'banana'" in q["question"]


@pytest.mark.parametrize("task", [spelling, position, count], ids=lambda t: t.TASK)
def test_determinism(task) -> None:
    first = [task.eval_questions(w, random.Random(11), 4) for w in WORDS]
    again = [task.eval_questions(w, random.Random(11), 4) for w in WORDS]
    other = [task.eval_questions(w, random.Random(12), 4) for w in WORDS]
    assert first == again
    assert first != other


_GENERATE = """
import json, random
from letterwise.tasks import TASKS
out = {name: [t.eval_questions(w, random.Random(3), 3) for w in ("strawberry", "queue", "rhythm")]
       for name, t in TASKS.items()}
out["train"] = TASKS["spelling"].training_examples("berry", random.Random(3), 5)
print(json.dumps(out))
"""


def test_determinism_across_processes() -> None:
    """Same seed, same questions in another process (set iteration order varies by hash seed)."""
    root = Path(__file__).resolve().parent.parent
    runs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-c", _GENERATE], cwd=root, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        runs.append(json.loads(done.stdout))
    assert runs[0] == runs[1]


def test_training_examples_deterministic() -> None:
    assert spelling.training_examples("berry", random.Random(5), 8) == spelling.training_examples(
        "berry", random.Random(5), 8
    )


@pytest.mark.parametrize("rate", [0.0, 0.25, 0.6, 1.0])
def test_absent_rate_is_honoured(rate: float) -> None:
    words = _random_words(3000)
    rng = random.Random(99)
    absent = 0
    for word in words:
        (q,) = count.eval_questions(word, rng, 1, absent_rate=rate)
        absent += q["letter"] not in word
        assert q["count"] == word.count(q["letter"])
    share, sigma = absent / len(words), math.sqrt(rate * (1 - rate) / len(words))
    assert abs(share - rate) <= 4 * sigma + 1e-9


@pytest.mark.parametrize("rate", [0.0, 0.15, 1.0])
def test_last_rate_is_honoured(rate: float) -> None:
    words = _random_words(3000, seed=8)
    rng = random.Random(5)
    questions = [q for w in words for q in position.eval_questions(w, rng, 1, last_rate=rate)]
    share = sum(q["is_last"] for q in questions) / len(questions)
    assert abs(share - rate) <= 4 * math.sqrt(rate * (1 - rate) / len(questions)) + 1e-9


def test_questions_for_one_word_are_distinct_where_possible() -> None:
    word = "abracadabra"
    positions = position.eval_questions(word, random.Random(1), len(word), last_rate=0.0)
    assert sorted(q["position"] for q in positions) == list(range(1, len(word) + 1))
    letters = count.eval_questions(word, random.Random(1), 5, absent_rate=0.0)
    assert sorted(q["letter"] for q in letters) == ["a", "b", "c", "d", "r"]
    lasts = position.eval_questions(word, random.Random(1), 3, last_rate=1.0)
    assert len({q["question"] for q in lasts}) == 3
    spell = spelling.eval_questions(word, random.Random(1), len(spelling.EVAL_PHRASINGS))
    assert len({q["question"] for q in spell}) == len(spelling.EVAL_PHRASINGS)
    # More questions than distinct ones: repeats, not an error.
    assert len(count.eval_questions("aa", random.Random(1), 4, absent_rate=0.0)) == 4


def test_count_on_a_pangram_never_asks_an_absent_letter() -> None:
    pangram = "thequickbrownfoxjumpsoverthelazydog"
    for q in count.eval_questions(pangram, random.Random(2), 20, absent_rate=1.0):
        assert q["count"] > 0


@pytest.mark.parametrize("task", [position, count, spelling], ids=lambda t: t.TASK)
def test_every_eval_answer_parses_back(task) -> None:
    phrasings = set()
    for seed, word in enumerate(WORDS * 20):
        for q in task.eval_questions(word, random.Random(seed), 6):
            assert task.parse(q["answer"]) == q["expected"], q
            assert task.is_correct(q["answer"], q["expected"])
            phrasings.add(q["phrasing"])
    n_phrasings = {"spelling": len(spelling.EVAL_PHRASINGS), "position": len(position.PHRASINGS),
                   "count": len(count.PHRASINGS)}[task.TASK]  # fmt: skip
    assert len(phrasings) == n_phrasings


@pytest.mark.parametrize("word", ["berry", "strawberry", "aa", "ai", "is", "queue"])
def test_training_examples_cover_all_combos_and_parse_back(word: str) -> None:
    total = len(spelling.TRAIN_PHRASINGS) * len(spelling.SPELLING_FORMATS)
    examples = spelling.training_examples(word, random.Random(0), total)
    combos = {(q["phrasing"], q["answer_format"]) for q in examples}
    assert len(combos) == total
    for q in examples:
        assert tuple(q) == QUESTION_KEYS and q["expected"] == word
        assert spelling.parse(q["answer"]) == word, q
        assert f"'{word}'" in q["question"]
        instruction = spelling.SPELLING_FORMATS[q["answer_format"]].instruction
        assert instruction in q["question"].lower()  # the question names its format
        assert q["position"] is None and q["is_last"] is False and q["count"] is None


def test_training_examples_are_distinct_and_bounded() -> None:
    assert len(spelling.TRAIN_PHRASINGS) >= 10 and len(spelling.SPELLING_FORMATS) >= 5
    examples = spelling.training_examples("berry", random.Random(3), 7)
    assert len({(q["phrasing"], q["answer_format"]) for q in examples}) == 7
    assert any(q["answer"].startswith("'berry' is spelled") for q in
               spelling.training_examples("berry", random.Random(3), 40))  # fmt: skip
    with pytest.raises(ValueError, match="at most"):
        spelling.training_examples("berry", random.Random(3), 10_000)


def test_eval_spelling_phrasings_are_held_out() -> None:
    total = len(spelling.TRAIN_PHRASINGS) * len(spelling.SPELLING_FORMATS)
    train_questions = {
        q["question"] for q in spelling.training_examples("berry", random.Random(0), total)
    }
    for q in spelling.eval_questions("berry", random.Random(0), 3):
        assert q["question"] not in train_questions
        assert q["phrasing"] >= len(spelling.TRAIN_PHRASINGS)


@pytest.mark.parametrize("bad", ["Berry", "", "ber ry", "naïve", "x1", None])
@pytest.mark.parametrize("task", [spelling, position, count], ids=lambda t: t.TASK)
def test_bad_words_are_rejected(task, bad) -> None:
    with pytest.raises(ValueError, match="lowercase ASCII letters"):
        task.eval_questions(bad, random.Random(0), 1)


def test_bad_options_are_rejected() -> None:
    with pytest.raises(ValueError, match="at least 2 letters"):
        spelling.training_examples("a", random.Random(0), 1)
    with pytest.raises(ValueError, match="at least 2 letters"):
        spelling.eval_questions("q", random.Random(0), 1)
    # One-letter words are fine for the transfer tasks.
    assert position.eval_questions("q", random.Random(0), 1)[0]["expected"] == "q"
    assert count.eval_questions("q", random.Random(0), 1, absent_rate=0.0)[0]["expected"] == "1"
    with pytest.raises(ValueError, match="absent_rate"):
        count.eval_questions("berry", random.Random(0), 1, absent_rate=1.5)
    with pytest.raises(ValueError, match="last_rate"):
        position.eval_questions("berry", random.Random(0), 1, last_rate=-0.1)
    with pytest.raises(ValueError, match="non-negative"):
        position.eval_questions("berry", random.Random(0), -1)
