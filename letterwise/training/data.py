"""Training data for the LoRA fine-tune: the spelling split, rendered into prompt/completion pairs.

Each row goes through the model's chat template (letterwise.chat.training_pair); TRL's SFTTrainer
then masks the prompt (for Qwen3 including the empty think block) out of the loss.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from letterwise.chat import training_pair

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
    return rows


def dataset_fingerprint(questions: list[str], answers: list[str]) -> str:
    """sha256 over the (question, answer) rows in order: what the model is trained on."""
    digest = hashlib.sha256()
    for question, answer in zip(questions, answers, strict=True):
        digest.update(question.encode())
        digest.update(b"\x1f")
        digest.update(answer.encode())
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


def sft_dataset(tokenizer: PreTrainedTokenizerBase, rows: Dataset) -> Dataset:
    """A prompt/completion dataset (TRL's format for completion-only loss)."""
    from datasets import Dataset

    pairs = [
        render_pair(tokenizer, q, a) for q, a in zip(rows["question"], rows["answer"], strict=True)
    ]
    return Dataset.from_dict({"prompt": [p for p, _ in pairs], "completion": [c for _, c in pairs]})


def token_lengths(tokenizer: PreTrainedTokenizerBase, pairs: Dataset) -> list[int]:
    texts = [p + c for p, c in zip(pairs["prompt"], pairs["completion"], strict=True)]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
