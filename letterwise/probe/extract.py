"""Hidden states at every layer, at the last token of each probed string, in batched passes.

Input text: `PREFIX + " " + string`. The fixed prefix keeps the probed token off the first
position (in many LMs an attention sink with outsized norms, unlike any mid-text token) and
puts every string, training token or held-out word, in the same word-like context; the leading
space gives the word form a token takes inside text. The state read is the LAST token's: for a
single-token training string that is the token itself (Kaushal & Mahowald's setting), for a
multi-token held-out word the position where the whole word has been read.

Layers follow transformers' `output_hidden_states`: 0 is the embedding output, l the residual
stream after block l, and the last one is after the final norm (transformers ties it to
`last_hidden_state`); letterwise.probe.lens relies on the same convention.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from letterwise.generation import padded

PREFIX = "Word:"


def progress() -> Progress:
    """A rich bar with elapsed time and ETA (the eval scorers' columns plus the remaining time)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )


def encode(tokenizer: Any, strings: Sequence[str], prefix: str = PREFIX) -> list[list[int]]:
    """Token ids of each probed text (prefix, space, string; the tokenizer's special tokens)."""
    texts = [f"{prefix} {s}" for s in strings]
    return [list(ids) for ids in tokenizer(texts)["input_ids"]]


def n_layers(model: Any) -> int:
    """Hidden states a forward pass returns: the embeddings plus one per block."""
    return int(model.config.get_text_config().num_hidden_layers) + 1


def model_device(model: Any) -> torch.device:
    return next(model.parameters()).device


def run_batches(
    model: Any,
    rows: Sequence[Sequence[int]],
    pad_id: int,
    *,
    batch_size: int,
    description: str,
) -> Any:
    """Yield (row indices, output with hidden_states) per batch of left-padded rows, shortest
    first (less padding), positions counted from each row's first real token."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    device = model_device(model)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), progress() as bar:
            task = bar.add_task(description, total=len(rows))
            for start in range(0, len(order), batch_size):
                members = order[start : start + batch_size]
                ids, mask = padded([list(rows[i]) for i in members], pad_id, left=True)
                positions = (mask.cumsum(1) - 1).clamp(min=0)
                output = model(
                    input_ids=ids.to(device),
                    attention_mask=mask.to(device),
                    position_ids=positions.to(device),
                    output_hidden_states=True,
                    use_cache=False,
                    logits_to_keep=1,  # states are read, logits not: skip the head elsewhere
                )
                yield members, output
                bar.advance(task, len(members))
    finally:
        model.train(was_training)


def last_token_states(
    model: Any,
    rows: Sequence[Sequence[int]],
    pad_id: int,
    *,
    layers: Sequence[int],
    batch_size: int = 64,
    description: str = "hidden states",
) -> np.ndarray:
    """(len(layers), len(rows), hidden) float32: each row's last-token state at each layer."""
    states: np.ndarray | None = None
    for members, output in run_batches(
        model, rows, pad_id, batch_size=batch_size, description=description
    ):
        hidden = output.hidden_states
        picked = torch.stack([hidden[layer][:, -1, :] for layer in layers]).float().cpu().numpy()
        if states is None:
            states = np.zeros((len(layers), len(rows), picked.shape[-1]), dtype=np.float32)
        states[:, members, :] = picked
    if states is None:
        raise ValueError("no strings to probe")
    return states
