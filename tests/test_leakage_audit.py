"""build_dataset's leakage audit (letterwise.data.dataset.leakage_audit) on hand-made splits:
it passes clean rows and stops the stage, naming the words, when a held-out word is a training
string or when any TRAIN row is about a held-out word (a test word's rows copied into train).
"""

from __future__ import annotations

import random

import pytest

from letterwise.data.dataset import example_row, is_multi_token_word, leakage_audit
from letterwise.data.vocab import load_vocab_tokenizer, word_pieces
from letterwise.presets import resolve_preset
from letterwise.tasks import position, spelling

TRAIN_STRINGS = ["straw", "berry", "kitchen"]
VALIDATION_WORDS = ["strawberry"]
TEST_WORDS = ["unbelievable", "grandmother"]


@pytest.fixture(scope="module")
def tokenizer():
    return load_vocab_tokenizer(resolve_preset("qwen3-tiny"))


def eval_rows(split: str, words: list[str]) -> list[dict]:
    """Per word one spelling and two position questions, as build_dataset writes them."""
    rng = random.Random(0)
    rows = []
    for word in words:
        for task, questions in (
            ("spelling", spelling.eval_questions(word, rng, 1)),
            ("position", position.eval_questions(word, rng, 2)),
        ):
            rows += [example_row(split, task, len(rows), word, q, "mid") for q in questions]
    return rows


def clean_splits() -> dict[str, list[dict]]:
    rng = random.Random(0)
    train = [
        example_row("train", "spelling", i, string, question, None)
        for i, string in enumerate(TRAIN_STRINGS)
        for question in spelling.training_examples(string, rng, 1)
    ]
    train.append({"id": "train-replay-000000", "task": "replay", "split": "train", "word": None})
    return {
        "train": train,
        "validation": eval_rows("validation", VALIDATION_WORDS),
        "test": eval_rows("test", TEST_WORDS),
    }


def test_the_words_are_held_out_words(tokenizer):
    # the audit's other checks must pass on these words, so the tests below isolate one problem
    for word in VALIDATION_WORDS + TEST_WORDS:
        assert is_multi_token_word(word_pieces(tokenizer, word)), word


def test_clean_splits_pass_and_are_counted(tokenizer):
    audit = leakage_audit(tokenizer, set(TRAIN_STRINGS), clean_splits())
    assert audit["held_out_words"] == 3
    assert audit["leaked_words"] == 0
    assert audit["train_rows_with_held_out_words"] == 0
    assert audit["multi_token_share"] == 1.0


def test_a_test_words_rows_copied_into_train_fail_the_audit(tokenizer):
    splits = clean_splits()
    copied = [dict(row, split="train", id=f"train-copied-{i}") for i, row in
              enumerate(r for r in splits["test"] if r["word"] == "grandmother")]  # fmt: skip
    assert len(copied) == 3  # its spelling row and its two position rows
    splits["train"] += copied
    # the training STRINGS are still clean: only the train rows show the leak
    with pytest.raises(SystemExit) as stopped:
        leakage_audit(tokenizer, set(TRAIN_STRINGS), splits)
    message = str(stopped.value)
    assert "leakage audit failed" in message
    assert "3 train rows are about held-out words ['grandmother']" in message
    assert "train-copied-0" in message


def test_one_spelling_training_row_about_a_validation_word_fails(tokenizer):
    splits = clean_splits()
    [question] = spelling.training_examples("strawberry", random.Random(1), 1)
    splits["train"].append(example_row("train", "spelling", 99, "strawberry", question, None))
    with pytest.raises(SystemExit, match=r"1 train rows are about held-out words \['strawberry'\]"):
        leakage_audit(tokenizer, set(TRAIN_STRINGS), splits)


def test_a_held_out_word_among_the_training_strings_fails(tokenizer):
    with pytest.raises(
        SystemExit, match=r"1 held-out words are training strings: \['strawberry'\]"
    ):
        leakage_audit(tokenizer, set(TRAIN_STRINGS) | {"Strawberry"}, clean_splits())
