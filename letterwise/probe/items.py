"""The probe's strings and labels: training-vocabulary strings to fit on, held-out words to test on.

Fit set: strings of the English vocabulary subset (data/tokens/tokens.jsonl, the filter_tokens
stage), sampled with a seed, minus every held-out word of the dataset (validation and test,
case-insensitive). Test set: the held-out words of one split (data/dataset/jsonl/<split>.jsonl,
in dataset order). `check_no_leak` proves the two never meet before any probe is fitted: a
probe tested on a word it was fitted on would measure memory, not decodability.

Labels per task, one column per sub-probe, -1 where a label does not exist (the 5th letter of
a 4-letter word):
- letter_in_token: 26 binary columns, 1 if the letter occurs in the string;
- letter_position: columns "1".."5" and "last", the letter there as 0..25;
- letter_count: one column per letter of `count_letters`, its count capped at 3 (0, 1, 2, 3+).

Torch-free: this module is what the tests and a data-only check can import.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

LETTERS = string.ascii_lowercase
TASKS = ("letter_in_token", "letter_position", "letter_count")
POSITIONS = ("1", "2", "3", "4", "5", "last")
COUNT_CAP = 3  # counts of 3 or more share a class: words here rarely hold a letter 4 times
TOKENS_FILE = Path("data/tokens/tokens.jsonl")
DATASET_JSONL = Path("data/dataset/jsonl")
HELDOUT_SPLITS = ("validation", "test")


class LeakError(ValueError):
    """A held-out word is among the probe's training strings."""


@dataclass(frozen=True)
class TaskLabels:
    task: str
    columns: tuple[str, ...]  # sub-probe names
    n_classes: int
    labels: np.ndarray  # (n_items, n_columns) int, -1 = no label


def training_strings(tokens_file: Path = TOKENS_FILE) -> list[str]:
    """Every string of the English vocabulary subset, in file order."""
    if not tokens_file.is_file():
        raise FileNotFoundError(
            f"{tokens_file} is missing; the filter_tokens stage makes it "
            "(`dvc repro filter_tokens`)"
        )
    rows = (json.loads(line) for line in tokens_file.read_text().splitlines() if line)
    return [row["string"] for row in rows]


def check_tokens_belong(
    tokenizer: Any, model: str, tokens_file: Path = TOKENS_FILE, n_rows: int = 50
) -> None:
    """The token subset was made from this tokenizer: the first `n_rows` rows' token ids decode
    to their string. Else a ValueError before any state is extracted (a probe of one model on
    another model's vocabulary and held-out words would be silently wrong)."""
    rows = [json.loads(line) for line in tokens_file.read_text().splitlines()[:n_rows] if line]
    wrong = [
        row["string"]
        for row in rows
        for token_id in row["token_ids"][:1]
        if tokenizer.decode([token_id]).strip().lower() != row["string"]
    ]
    if wrong:
        raise ValueError(
            f"{tokens_file} was not made from {model}'s tokenizer ({len(wrong)} of {len(rows)} "
            f"checked token ids decode to something else, first: {wrong[0]!r}); rebuild the data "
            f"for it first: `dvc repro build_dataset` with model: {model} in params.yaml"
        )


def split_words(split: str, dataset_dir: Path = DATASET_JSONL) -> list[str]:
    """The distinct words of one held-out split, in dataset order."""
    path = dataset_dir / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing; the build_dataset stage makes it (`dvc repro build_dataset`)"
        )
    rows = (json.loads(line) for line in path.read_text().splitlines() if line)
    return list(dict.fromkeys(row["word"] for row in rows))


def heldout_words(dataset_dir: Path = DATASET_JSONL) -> set[str]:
    """Every held-out word of every held-out split, lower-cased (what training must avoid)."""
    return {w.lower() for split in HELDOUT_SPLITS for w in split_words(split, dataset_dir)}


def sample_training(
    strings: Sequence[str], excluded: Iterable[str], n: int, *, seed: int
) -> list[str]:
    """`n` distinct strings (lower-cased, letters only) not in `excluded`, by a seeded shuffle."""
    banned = {w.lower() for w in excluded}
    pool = sorted({s.lower() for s in strings if s.isalpha() and s.isascii()} - banned)
    if len(pool) < n:
        raise ValueError(f"only {len(pool)} training strings left after exclusion; asked for {n}")
    random.Random(seed).shuffle(pool)
    return pool[:n]


def check_no_leak(train: Iterable[str], heldout: Iterable[str]) -> None:
    """Raise LeakError naming the held-out words found among the training strings."""
    leaked = sorted({s.lower() for s in train} & {w.lower() for w in heldout})
    if leaked:
        raise LeakError(
            f"{len(leaked)} held-out word(s) among the probe's training strings (first: "
            f"{leaked[:5]}); probes must be tested only on words they were not fitted on"
        )


def fit_val_split(n: int, val_share: float, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the fitting part and the validation slice (for choosing C) of n strings."""
    if not 0.0 < val_share < 1.0:
        raise ValueError(f"val_share must lie in (0, 1), got {val_share}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(n * val_share))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def task_labels(words: Sequence[str], task: str, count_letters: str = "") -> TaskLabels:
    """Labels of one task for `words` (lower-case letter strings)."""
    words = [w.lower() for w in words]
    if task == "letter_in_token":
        labels = np.array([[int(c in w) for c in LETTERS] for w in words], dtype=int)
        return TaskLabels(task, tuple(LETTERS), 2, labels.reshape(len(words), 26))
    if task == "letter_position":
        labels = np.full((len(words), len(POSITIONS)), -1, dtype=int)
        for i, w in enumerate(words):
            for j, place in enumerate(POSITIONS):
                index = len(w) - 1 if place == "last" else int(place) - 1
                if index < len(w):
                    labels[i, j] = LETTERS.index(w[index])
        return TaskLabels(task, POSITIONS, 26, labels)
    if task == "letter_count":
        if not count_letters:
            raise ValueError("letter_count needs at least one letter in count_letters")
        labels = np.array(
            [[min(w.count(c), COUNT_CAP) for c in count_letters] for w in words], dtype=int
        )
        return TaskLabels(task, tuple(count_letters), COUNT_CAP + 1, labels.reshape(len(words), -1))
    raise ValueError(f"unknown probe task {task!r}; expected one of {TASKS}")


def encode_predictions(task: str, predicted: np.ndarray) -> list[str]:
    """Per item, its predictions as one short string (what probe.json stores per word, so two
    runs can be compared over the same words): letter_in_token 26 '0'/'1', letter_position
    one letter per column ('.' = no label), letter_count one digit per column."""
    if task == "letter_in_token":
        return ["".join(str(int(v)) for v in row) for row in predicted]
    if task == "letter_position":
        return ["".join("." if v < 0 else LETTERS[v] for v in row) for row in predicted]
    return ["".join("." if v < 0 else str(int(v)) for v in row) for row in predicted]


def decode_predictions(task: str, encoded: Sequence[str]) -> np.ndarray:
    """The inverse of `encode_predictions`."""
    if task == "letter_position":
        return np.array([[-1 if c == "." else LETTERS.index(c) for c in s] for s in encoded])
    return np.array([[-1 if c == "." else int(c) for c in s] for s in encoded])
