"""The logit lens at the cloze answer slot: where does the right letter or count appear, and do
the last layers suppress it (as Datta et al. report for counts)?

Prompt: the held-out position/count question as the cloze instrument asks it
(letterwise.eval.cloze: chat prompt, the reply prefilled with a stem), tokenized exactly as the
slot scorer does (letterwise.eval.slots.encode_slots), so the slot is the one the output-level
instrument reads. At every layer the residual stream at the slot (the stem's last token) goes
through the model's final norm and unembedding; the last layer's state is already normed
(transformers' convention, see letterwise.probe.extract) and is unembedded as is, which gives
exactly the model's own logits there.

Per question and layer: the probability of the right answer token over the whole vocabulary,
its rank in the vocabulary and its rank among the task's candidates (a-z, 0-9); a question's
value is the mean over the first `stems` of the task's cloze stems (probe.lens_stems: one by
default, since each stem is a forward pass of the whole chat prompt, the lens's main cost on
CPU; the stems are the instrument's, chosen on validation, so the first is a fair reading).
Per layer: the means with a bootstrap CI over questions (letterwise.eval.stats.mean_ci), the
median vocabulary rank, and top-1 among the candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import median
from typing import Any

import numpy as np
import torch

from letterwise.eval.cloze import STEMS, render, slot_keys, stem, turns_for
from letterwise.eval.slots import encode_slots
from letterwise.eval.stats import mean_ci
from letterwise.probe.extract import run_batches


def final_norm(model: Any) -> Any:
    """The decoder's final norm (through a peft wrapper)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.model.norm


def lens_logits(model: Any, hidden: Sequence[torch.Tensor], layer: int) -> torch.Tensor:
    """Vocabulary logits of one layer's states (batch, hidden) read through norm + unembedding."""
    state = hidden[layer]
    if layer < len(hidden) - 1:  # the last state is normed already
        state = final_norm(model)(state)
    return model.get_output_embeddings()(state).float()


def slot_rows(tokenizer: Any, rows: Sequence[dict], stems: int = 3) -> list[dict[str, Any]]:
    """Per question and stem (the first `stems` of the task's cloze stems): the token ids up to
    the slot, the right answer's token id and every candidate's id (the cloze tokenization)."""
    items = []
    for row in rows:
        keys = slot_keys(row["task"])
        templates = STEMS[row["task"]][:stems]
        (question,) = encode_slots(
            tokenizer,
            [render(tokenizer, turns_for("cloze", row))],
            [[stem(row, t) for t in templates]],
            [[f" {k}" for k in keys]],
        )
        right = keys.index(str(row["expected"]))
        for s, stem_ids in enumerate(question.stems):
            ids = question.candidate_ids[s]
            items.append(
                {
                    "question": row["id"],
                    "ids": question.context + stem_ids,
                    "answer": ids[right],
                    "candidates": ids,
                }
            )
    return items


def read_slots(
    model: Any,
    tokenizer: Any,
    rows: Sequence[dict],
    *,
    layers: Sequence[int],
    stems: int = 3,
    batch_size: int = 16,
    description: str = "logit lens",
) -> dict[str, np.ndarray]:
    """Per question (rows' order) and layer: p (vocabulary), vocabulary rank and candidate rank
    of the right answer, averaged over the question's stems (ranks: 1 = top)."""
    items = slot_rows(tokenizer, rows, stems)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    shape = (len(items), len(layers))
    p, vocab_rank, cand_rank = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    for members, output in run_batches(
        model, [it["ids"] for it in items], pad_id, batch_size=batch_size, description=description
    ):
        hidden = [h[:, -1, :] for h in output.hidden_states]
        answer = torch.tensor([items[i]["answer"] for i in members])
        candidates = torch.tensor([items[i]["candidates"] for i in members])
        for j, layer in enumerate(layers):
            logits = lens_logits(model, hidden, layer).cpu()
            right = logits.gather(1, answer[:, None])
            # float64: a float32 sum over a 150k vocabulary is off by ~1e-4 relative
            p[members, j] = (
                torch.softmax(logits.double(), -1).gather(1, answer[:, None])[:, 0].numpy()
            )
            vocab_rank[members, j] = (logits > right).sum(1).numpy() + 1
            cand_rank[members, j] = (logits.gather(1, candidates) > right).sum(1).numpy() + 1
    order = list(dict.fromkeys(it["question"] for it in items))
    owner = np.array([order.index(it["question"]) for it in items])
    per_question = {}
    for name, values in (("p", p), ("vocab_rank", vocab_rank), ("candidate_rank", cand_rank)):
        summed = np.zeros((len(order), len(layers)))
        np.add.at(summed, owner, values)
        per_question[name] = summed / np.bincount(owner)[:, None]
    return per_question


def summarise(per_question: dict[str, np.ndarray], layers: Sequence[int], *, seed: int) -> dict:
    """Per layer: mean p with its 95% CI, median vocabulary rank, mean candidate rank, top-1
    among candidates; and the peak layer of mean p against the last one (late suppression)."""
    rows = []
    for j, layer in enumerate(layers):
        p = per_question["p"][:, j]
        ci = mean_ci(p.tolist(), seed=seed, n_resamples=2000)
        rows.append(
            {
                "layer": layer,
                "mean_p": float(p.mean()),
                "p_ci_low": ci["ci_low"],
                "p_ci_high": ci["ci_high"],
                "median_vocab_rank": float(median(per_question["vocab_rank"][:, j].tolist())),
                "mean_candidate_rank": float(per_question["candidate_rank"][:, j].mean()),
                "top1_candidates": float((per_question["candidate_rank"][:, j] == 1).mean()),
            }
        )
    peak = max(rows, key=lambda r: (r["mean_p"], -r["layer"]))
    final = rows[-1]
    return {
        "n": int(per_question["p"].shape[0]),
        "layers": rows,
        "peak": {"layer": peak["layer"], "mean_p": peak["mean_p"]},
        "final": {"layer": final["layer"], "mean_p": final["mean_p"]},
        # how much of the peak probability the last layers take away (0 = none)
        "late_drop": peak["mean_p"] - final["mean_p"],
    }
