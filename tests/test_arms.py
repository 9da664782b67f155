"""The experiment arms (build_dataset.arm) and the training seed (train.seed).

Arms differ only in their train split: the held-out splits are the same rows in every arm, the
positive control asks position/count questions about training strings only (answers worked out
here from the strings themselves), and the negative control holds no letter-level content.
"""

from __future__ import annotations

import re

import pytest

from letterwise.data.dataset import train_split
from letterwise.params import ParamsError, parse_params
from letterwise.tasks.replay import contains_letter_content

STRINGS = ["straw", "berry", "ing", "tion", "apple", "ok", "zz", "hello"]
HELD_OUT = {"banana", "kitchen"}


def arm_params(arm: str, **extra) -> object:
    return parse_params({"build_dataset": {"arm": arm, "control_rows": 12, **extra}})


def test_positive_control_asks_position_and_count_about_training_strings_only():
    rows = train_split(STRINGS, arm_params("positive_control"), HELD_OUT)
    assert len(rows) == 12
    assert [row["task"] for row in rows] == ["position", "count"] * 6
    assert {row["word"] for row in rows} <= set(STRINGS)
    # 12 rows over 8 strings: every string is used before any repeats
    assert len({row["word"] for row in rows[:8]}) == 8
    for row in rows:
        word = row["word"]
        assert f"'{word}'" in row["question"]
        if row["task"] == "position":
            assert row["answer"] == word[row["position"] - 1]
        else:
            letter = re.search(r"'([a-z])'", row["question"]).group(1)
            assert row["answer"] == str(word.count(letter))
        assert row["messages"][-1] == {"role": "assistant", "content": row["answer"]}


def test_negative_control_is_letter_free_replay_awaiting_the_base_models_answers():
    rows = train_split(STRINGS, arm_params("negative_control"), HELD_OUT)
    assert len(rows) == 12
    assert {row["task"] for row in rows} == {"replay"}
    assert all(row["answer"] is None for row in rows)  # the train stage asks the base model
    assert not any(contains_letter_content(row["question"]) for row in rows)
    assert not any(set(re.findall(r"[a-z]+", r["question"].lower())) & HELD_OUT for r in rows)


def test_spelling_arm_is_unchanged_by_control_rows():
    spelling = train_split(STRINGS, arm_params("spelling"), HELD_OUT)
    default = train_split(STRINGS, parse_params({}), HELD_OUT)
    assert spelling == default
    assert {row["task"] for row in spelling} == {"spelling"}
    assert len(spelling) == 2 * len(STRINGS)  # examples_per_token = 2


def test_arms_and_seeds_are_validated():
    with pytest.raises(ParamsError, match="build_dataset.arm"):
        parse_params({"build_dataset": {"arm": "treatment"}})
    with pytest.raises(ParamsError, match="build_dataset.control_rows"):
        parse_params({"build_dataset": {"control_rows": 0}})
    with pytest.raises(ParamsError, match="train.seed"):
        parse_params({"train": {"seed": -1}})


def test_training_seed_defaults_to_the_top_level_seed():
    assert parse_params({"seed": 7}).training_seed == 7
    assert parse_params({"seed": 7, "train": {"seed": 1}}).training_seed == 1
    # the data seed stays the top-level one, so every training seed sees the same data
    assert parse_params({"seed": 7, "train": {"seed": 1}}).seed == 7


@pytest.mark.parametrize("arm", ["spelling", "negative_control", "positive_control"])
def test_every_arms_train_rows_have_the_dataset_columns(arm):
    """The columns are written out here, not read from dataset_features(): a row kind that
    lacks one (the replay rows once lacked `boundary`) breaks saving the negative control."""
    columns = {
        "id", "task", "split", "word", "question", "answer", "expected", "phrasing",
        "answer_format", "position", "is_last", "letter", "count", "word_length",
        "freq_band", "boundary", "messages",
    }  # fmt: skip
    rows = train_split(STRINGS, arm_params(arm), HELD_OUT)
    assert rows and all(set(row) == columns for row in rows)


def test_saving_a_split_with_a_row_lacking_a_column_names_the_row():
    from stages.build_dataset import check_row_keys

    good = {"id": "train-000001", "task": "spelling", "a": 1, "b": 2}
    bad = {"id": "train-replay-000000", "task": "replay", "a": 1}
    check_row_keys("train", [good], {"id", "task", "a", "b"})
    with pytest.raises(ValueError, match=r"train-replay-000000.*missing \['b'\]"):
        check_row_keys("train", [good, bad], {"id", "task", "a", "b"})
