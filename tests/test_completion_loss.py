"""The CPU trainer's completion-only loss (logits only where a label is read) equals the
full-logits loss of the model's own forward pass, value and LoRA gradients."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from datasets import Dataset

from letterwise import modeling
from letterwise.params import parse_params
from letterwise.presets import PRESETS
from letterwise.training import data
from letterwise.training import trainer as training
from letterwise.training.completion_loss import (
    completion_logits_sft_trainer,
    loss_positions,
)

ROWS = {
    "question": ["Spell 'berry'.", "How do you spell 'strawberry'? Use dashes.", "Spell 'ox'."],
    "answer": ["b e r r y", "s-t-r-a-w-b-e-r-r-y", "o x"],
}


def test_loss_positions_shift_by_one() -> None:
    labels = torch.tensor([[-100, -100, 5, 6], [-100, 7, -100, -100]])
    keep, targets = loss_positions(labels)
    # position i predicts token i+1: row 0 keeps 1 and 2, row 1 keeps 0
    assert keep.tolist() == [[False, True, True, False], [True, False, False, False]]
    assert targets.tolist() == [5, 6, 7]


def lora_grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def compare(preset: str, tmp_path: Path) -> None:
    params = parse_params({"model": preset, "train": {"max_steps": 1, "batch_size": 3}})
    model, tokenizer = modeling.load_base_model(PRESETS[preset], for_training=True)
    pairs = data.sft_dataset(tokenizer, Dataset.from_dict(ROWS))
    model = training.add_lora(model, params, "transformers")
    trainer = training.build_trainer(
        model, tokenizer, pairs, params, backend="transformers", checkpoint_dir=tmp_path
    )
    assert type(trainer).__name__ == "CompletionLogitsSFTTrainer"
    full = training.full_logits_sft_trainer()
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    items = (batch["labels"] != -100).sum()
    for num_items in (items, None):
        results = []
        for compute in (full.compute_loss, completion_logits_sft_trainer().compute_loss):
            model.zero_grad()
            loss = compute(trainer, model, dict(batch), num_items_in_batch=num_items)
            loss.backward()
            results.append((loss.detach(), lora_grads(model)))
        (old_loss, old_grads), (new_loss, new_grads) = results
        assert torch.allclose(new_loss, old_loss, rtol=1e-5, atol=1e-6), (new_loss, old_loss)
        for name, grad in old_grads.items():
            assert torch.allclose(new_grads[name], grad, rtol=1e-4, atol=1e-6), name


def test_completion_loss_equals_full_logits_loss_qwen3_tiny(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    compare("qwen3-tiny", tmp_path)


@pytest.mark.slow
def test_completion_loss_equals_full_logits_loss_smollm2(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    compare("smollm2-135m", tmp_path)
