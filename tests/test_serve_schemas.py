"""The API's request validation (letterwise.serve.schemas) at its documented limits, without a
server (fast): valid boundary requests are accepted, one step past each limit is refused with a
message naming the problem. The limits are the ones docs/api.md promises: words of 1 to 64 ASCII
letters (spelling: 2 to 64), `index` from 1 to the word's length, batches of 1 to 32 questions.
tests/test_serve.py sends the same boundary requests to a real server.
"""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from letterwise.serve.schemas import REQUESTS

LONGEST = ("abcdefghijklmnopqrstuvwxyz" * 3)[:64]  # 64 letters, the longest word served


def accepts(task: str, body: dict):
    return TypeAdapter(REQUESTS[task]).validate_python(body)


def refuses(task: str, body: dict, text: str) -> None:
    with pytest.raises(ValidationError) as refused:
        accepts(task, body)
    assert text in str(refused.value), str(refused.value)


@pytest.mark.parametrize("word", ["ab", "strawberry", "Berry", LONGEST])
def test_every_index_up_to_the_last_letter_is_accepted(word):
    for index in range(1, len(word) + 1):
        assert accepts("position", {"word": word, "index": index}).index == index
    past = "less than or equal to 64" if len(word) == 64 else "past the end"
    refuses("position", {"word": word, "index": len(word) + 1}, past)


def test_the_last_index_of_a_one_letter_word_and_inside_a_batch():
    assert accepts("position", {"word": "a", "index": 1}).index == 1
    batch = accepts(
        "position", {"items": [{"word": "berry", "index": 5}, {"word": "ab", "index": 2}]}
    )
    assert [item.index for item in batch.items] == [5, 2]
    refuses("position", {"items": [{"word": "ab", "index": 3}]}, "index 3 is past the end of 'ab'")


def test_words_of_64_letters_are_served_and_65_are_not():
    assert accepts("spelling", {"word": LONGEST}).word == LONGEST
    assert accepts("count", {"word": LONGEST, "letter": "z"}).word == LONGEST
    assert accepts("position", {"word": LONGEST, "index": 64}).index == 64
    for task, extra in (("spelling", {}), ("count", {"letter": "a"}), ("position", {"index": 1})):
        refuses(task, {"word": LONGEST + "a", **extra}, "at most 64 characters")
    # the shortest words: 2 letters to spell, 1 letter to ask about
    assert accepts("spelling", {"word": "ab"}).word == "ab"
    assert accepts("count", {"word": "a", "letter": "a"}).word == "a"


@pytest.mark.parametrize(
    ("task", "item"),
    [
        ("spelling", {"word": "berry"}),
        ("position", {"word": "berry", "index": 5}),
        ("count", {"word": "berry", "letter": "r"}),
    ],
)
def test_batches_of_32_questions_are_served_and_33_are_not(task, item):
    batch = accepts(task, {"items": [item] * 32, "decoding": "greedy"})
    assert len(batch.questions()) == 32
    assert len(accepts(task, {"items": [item]}).questions()) == 1
    refuses(task, {"items": [item] * 33}, "at most 32 items")


def test_decoding_settings_at_their_limits_are_accepted():
    question = {"word": "berry", "letter": "r"}
    for settings in (
        {"temperature": 0.01, "top_p": 0.01, "top_k": 0, "min_p": 0.0, "seed": 0},
        {"temperature": 2.0, "top_p": 1.0, "top_k": 1000, "min_p": 1.0, "seed": 2**31 - 1},
        {"decoding": "greedy", "seed": 5},
        {"mode": "non-thinking"},
    ):
        accepts("count", question | settings)
    refuses("count", question | {"seed": 2**31}, "seed")
