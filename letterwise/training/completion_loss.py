"""The CPU trainer's loss: the LM head only at the positions the completion-only loss reads.

The train stage's loss is on the answer only (TRL's completion-only labels: -100 on the prompt
and the padding). The model's own forward pass (`Trainer.compute_loss`) still projects every
position onto the vocabulary (hidden x 49,152 for SmolLM2) and runs a softmax over each, forward
and backward, though the loss reads only the answer positions (about a fifth of a batch's
tokens). Here the forward pass is asked for the logits of those positions alone
(transformers' `logits_to_keep` as a boolean batch x sequence mask) and the cross-entropy is
taken over them: the same loss (the ignored positions add nothing to it) and the same gradients,
for less work. letterwise.bench measures the step.
"""

from __future__ import annotations

from typing import Any

IGNORE_INDEX = -100


def loss_positions(labels: Any) -> tuple[Any, Any]:
    """(keep mask, targets): the positions whose next token is a label, and those labels.

    Position i predicts token i+1 (the causal shift); the last position predicts nothing.
    """
    import torch.nn.functional as F

    shifted = F.pad(labels, (0, 1), value=IGNORE_INDEX)[:, 1:]
    keep = shifted != IGNORE_INDEX
    return keep, shifted[keep]


def completion_loss(
    model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None
) -> tuple[Any, Any]:
    """(loss, outputs) as `model(**inputs)` with labels would give it (transformers'
    ForCausalLMLoss: summed over the labelled tokens and divided by num_items_in_batch, or the
    mean when that is None), computing logits only where a label is read."""
    from transformers.loss.loss_utils import fixed_cross_entropy

    keep, targets = loss_positions(inputs["labels"])
    rest = {key: value for key, value in inputs.items() if key != "labels"}
    outputs = model(**rest, logits_to_keep=keep)
    logits = outputs.logits.float().reshape(-1, outputs.logits.shape[-1])
    loss = fixed_cross_entropy(logits, targets, num_items_in_batch, IGNORE_INDEX)
    return loss, outputs


def completion_logits_sft_trainer() -> type:
    """SFTTrainer whose loss computes logits on the completion positions only (see above).

    Like the full-logits trainer it replaces, it skips TRL's fused-head metrics (entropy, token
    accuracy); the labels, and so the completion-only mask, are TRL's own.
    """
    from trl import SFTTrainer

    class CompletionLogitsSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if "labels" not in inputs:
                raise ValueError("the completion-only loss needs labels in the batch")
            if not self.model_accepts_loss_kwargs:
                num_items_in_batch = None  # as Trainer.compute_loss: the model takes the mean
            loss, outputs = completion_loss(model, inputs, num_items_in_batch)
            if (
                self.args.average_tokens_across_devices
                and self.model_accepts_loss_kwargs
                and num_items_in_batch is not None
            ):  # as Trainer.compute_loss (one process here: a factor of 1)
                loss = loss * (self.accelerator.num_processes // self.get_tp_size())
            return (loss, outputs) if return_outputs else loss

    return CompletionLogitsSFTTrainer
