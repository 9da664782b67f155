"""Count questions re-balanced towards answers >= 2 and the token-boundary field, by hand."""

from __future__ import annotations

import random

from letterwise.data.dataset import evaluation_rows, token_boundary
from letterwise.params import BuildDatasetParams
from letterwise.tasks import count


def test_token_boundary_by_hand():
    pieces = ["straw", "berry"]
    position = {"task": "position", "word": "strawberry"}
    assert token_boundary(position | {"position": 3}, pieces) == "inside"  # r inside "straw"
    assert token_boundary(position | {"position": 5}, pieces) == "edge"  # w ends "straw"
    assert token_boundary(position | {"position": 6}, pieces) == "edge"  # b starts "berry"
    letter = {"task": "count", "word": "strawberry"}
    assert token_boundary(letter | {"letter": "r"}, pieces) == "across_tokens"  # r in both
    assert token_boundary(letter | {"letter": "e"}, pieces) == "one_token"
    assert token_boundary(letter | {"letter": "z"}, pieces) == "absent"
    assert token_boundary(letter | {"letter": "r"}, ["strawberr"]) is None  # not the word


def test_a_word_with_a_repeated_letter_is_asked_about_it_when_owed():
    assert count.repeated_letters("banana") == ["a", "n"]
    for seed in range(20):
        (question,) = count.eval_questions("banana", random.Random(seed), 1, multiple=1)
        assert question["count"] >= 2


def test_the_split_keeps_the_share_of_answers_at_least_2():
    params = BuildDatasetParams(count_multiple_share=0.4, count_absent_rate=0.25)
    # half the words have a repeated letter: 40% of all questions is reachable
    words = ["banana", "planet", "letter", "cat", "apple", "road"] * 20
    rows = evaluation_rows("test", words, params, random.Random(0))
    counts = [r for r in rows if r["task"] == "count"]
    share = sum(r["count"] >= 2 for r in counts) / len(counts)
    assert len(counts) == 120 and share >= 0.4
    # without the share the same words give far fewer (a present letter of a word is drawn
    # uniformly among its distinct letters)
    plain = evaluation_rows("test", words, BuildDatasetParams(count_multiple_share=0.0),
                            random.Random(0))  # fmt: skip
    assert sum(r["count"] >= 2 for r in plain if r["task"] == "count") / 120 < 0.4
