"""Training data for the LoRA fine-tune: the spelling split, rendered into prompt/completion pairs.

Each row goes through the model's chat template (letterwise.chat.training_pair); TRL's SFTTrainer
then masks the prompt (for Qwen3 including the empty think block) out of the loss.

The train split may also hold replay rows (task "replay", no answer yet): the train stage has the
base model answer them (letterwise.training.replay) before they join the training rows.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from letterwise.chat import training_pair
from letterwise.tasks.replay import TASK as REPLAY_TASK

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase


class TrainInputError(ValueError):
    """The training data is missing or not shaped as the train stage needs."""


def load_train_split(dataset_dir: Path) -> Dataset:
    """The `train` split of the HF dataset build_dataset wrote, checked for question/answer."""
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise TrainInputError(
            f"{dataset_dir} not found: build the training data first (`dvc repro build_dataset`)"
        )
    from datasets import DatasetDict, load_from_disk

    try:
        loaded = load_from_disk(str(dataset_dir))
    except FileNotFoundError as exc:
        raise TrainInputError(f"{dataset_dir} is not a saved HF dataset: {exc}") from None
    if not isinstance(loaded, DatasetDict) or "train" not in loaded:
        splits = list(loaded) if isinstance(loaded, DatasetDict) else "none (a single Dataset)"
        raise TrainInputError(f"{dataset_dir} has no `train` split; splits found: {splits}")
    rows = loaded["train"]
    missing = {"question", "answer"} - set(rows.column_names)
    if missing:
        raise TrainInputError(
            f"{dataset_dir} train split lacks column(s) {sorted(missing)}; "
            f"it has {rows.column_names}"
        )
    if len(rows) == 0:
        raise TrainInputError(f"{dataset_dir} train split is empty")
    check_answers(rows, dataset_dir)
    return rows


def is_replay(tasks: list[str | None]) -> list[bool]:
    return [task == REPLAY_TASK for task in tasks]


def row_tasks(rows: Dataset) -> list[str | None]:
    """The task of every row; a split without a `task` column is all answered turns."""
    return list(rows["task"]) if "task" in rows.column_names else [None] * len(rows)


def check_answers(rows: Dataset, dataset_dir: Path) -> None:
    """Answered rows need an answer; replay rows must not have one (the base model gives it)."""
    answers = rows["answer"]
    replay = is_replay(row_tasks(rows))
    unanswered = [
        i for i, (a, r) in enumerate(zip(answers, replay, strict=True)) if not r and not a
    ]
    if unanswered:
        raise TrainInputError(
            f"{dataset_dir} train split: {len(unanswered)} non-replay rows have no answer "
            f"(first at row {unanswered[0]}); rebuild it with `dvc repro build_dataset`"
        )
    preanswered = [i for i, (a, r) in enumerate(zip(answers, replay, strict=True)) if r and a]
    if preanswered:
        raise TrainInputError(
            f"{dataset_dir} train split: {len(preanswered)} replay rows already have an answer "
            f"(first at row {preanswered[0]}); replay answers come from the base model at train "
            "time, so build_dataset leaves them empty"
        )


def split_replay(rows: Dataset) -> tuple[list[dict], list[dict]]:
    """(answered rows, replay rows awaiting the base model's answer), each {question, answer}."""
    answered: list[dict] = []
    replay: list[dict] = []
    flags = is_replay(row_tasks(rows))
    for question, answer, flag in zip(rows["question"], rows["answer"], flags, strict=True):
        (replay if flag else answered).append({"question": question, "answer": answer})
    return answered, replay


def dataset_fingerprint(questions: list[str], answers: list[str | None]) -> str:
    """sha256 over the (question, answer) rows in order (a missing answer counts as "")."""
    digest = hashlib.sha256()
    for question, answer in zip(questions, answers, strict=True):
        digest.update(question.encode())
        digest.update(b"\x1f")
        digest.update((answer or "").encode())
        digest.update(b"\x1e")
    return digest.hexdigest()


def render_pair(tokenizer: PreTrainedTokenizerBase, question: str, answer: str) -> tuple[str, str]:
    """(prompt, completion) for one row, the completion ending at the end-of-turn token.

    Templates add a newline after the end-of-turn token. Generation stops at that token, so the
    newline is never produced; cutting it also keeps TRL from appending a second end token.
    """
    prompt, completion = training_pair(tokenizer, question, answer)
    eos = tokenizer.eos_token
    if eos and eos in completion:
        completion = completion[: completion.rindex(eos) + len(eos)]
    return prompt, completion


def sft_dataset(tokenizer: PreTrainedTokenizerBase, rows: Dataset | list[dict]) -> Dataset:
    """A prompt/completion dataset (TRL's format for completion-only loss) from question/answer
    rows: a Dataset, or a list of dicts."""
    from datasets import Dataset

    if isinstance(rows, list):
        questions, answers = [r["question"] for r in rows], [r["answer"] for r in rows]
    else:
        questions, answers = rows["question"], rows["answer"]
    pairs = [render_pair(tokenizer, q, a) for q, a in zip(questions, answers, strict=True)]
    return Dataset.from_dict({"prompt": [p for p, _ in pairs], "completion": [c for _, c in pairs]})


def token_lengths(tokenizer: PreTrainedTokenizerBase, pairs: Dataset) -> list[int]:
    texts = [p + c for p, c in zip(pairs["prompt"], pairs["completion"], strict=True)]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
