"""Slot scoring: the log-probability of each single-token answer candidate at the end of a
prefilled reply stem, for several stems per question, in one forward pass per batch.

Why its own scorer: choice scoring (letterwise.eval.choice) runs every candidate as a
continuation of the prompt (26 rows per position question). A slot candidate is one token, so
the model's next-token distribution at the end of the stem scores all of them at once; a
question's chat prompt runs once and its KV cache is repeated for each stem, so three stems
cost about what one choice-scored question did.

Tokens. For each question and stem, prompt + stem + candidate is tokenized joined, for every
candidate; the tokens all candidates share are the context, and each candidate must add
exactly one token after it (" r"; or " " then "3" where a tokenizer splits digits, the " "
then belonging to the shared context). Otherwise `SlotTokenError` names the candidate: its
probability would not be a single next-token event.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from letterwise.eval.choice import _model_device, _progress, _run_contexts
from letterwise.generation import padded, select_cache_rows


class SlotTokenError(ValueError):
    """A candidate is not one token after the shared context."""


@dataclass(frozen=True)
class SlotQuestion:
    context: list[int]  # tokens every stem of the question shares (run once)
    stems: list[list[int]]  # per stem: its tokens after the context (at least one)
    candidate_ids: list[list[int]]  # per stem: each candidate's one token


def _common_prefix(rows: Sequence[Sequence[int]]) -> int:
    n = 0
    while all(len(row) > n for row in rows) and all(row[n] == rows[0][n] for row in rows):
        n += 1
    return n


def encode_slots(
    tokenizer: Any,
    prompts: Sequence[str],
    stems: Sequence[Sequence[str]],
    candidates: Sequence[Sequence[str]],
) -> list[SlotQuestion]:
    """Token layout of every question's stems and candidates (see the module docstring)."""
    if not len(prompts) == len(stems) == len(candidates):
        raise ValueError(
            f"{len(prompts)} prompts, {len(stems)} stem lists, {len(candidates)} candidate lists"
        )
    texts = [
        prompt + s + c
        for prompt, row_stems, cands in zip(prompts, stems, candidates, strict=True)
        for s in row_stems
        for c in cands
    ]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    questions, at = [], 0
    for i, (row_stems, cands) in enumerate(zip(stems, candidates, strict=True)):
        if not row_stems or not cands:
            raise ValueError(f"question {i} needs at least one stem and one candidate")
        prefixes, chosen = [], []
        for s in row_stems:
            group = ids[at : at + len(cands)]
            at += len(cands)
            shared = _common_prefix(group)
            for cand, full in zip(cands, group, strict=True):
                if len(full) != shared + 1:
                    raise SlotTokenError(
                        f"question {i}, stem {s!r}: candidate {cand!r} is {len(full) - shared} "
                        "tokens after the shared context, not 1; slot scoring needs one-token "
                        "candidates"
                    )
            prefixes.append(group[0][:shared])
            chosen.append([full[shared] for full in group])
        # the stems' shared start runs once; each stem keeps at least one token of its own
        context = min(_common_prefix(prefixes), min(len(p) for p in prefixes) - 1)
        if context < 1:
            raise SlotTokenError(f"question {i}: its stems share no prompt tokens")
        questions.append(SlotQuestion(prefixes[0][:context], [p[context:] for p in prefixes], chosen))
    return questions


def _score_batch(model: Any, questions: list[SlotQuestion], pad_id: int) -> list[list[list[float]]]:
    device = _model_device(model)
    _, cache, context_mask = _run_contexts(model, [q.context for q in questions], pad_id)
    owner = torch.tensor([qi for qi, q in enumerate(questions) for _ in q.stems])
    stem_ids, stem_mask = padded([s for q in questions for s in q.stems], pad_id, left=True)
    cache = select_cache_rows(cache, owner.to(device))
    mask = torch.cat([context_mask[owner], stem_mask], 1)
    positions = context_mask.sum(1)[owner][:, None] + (stem_mask.cumsum(1) - 1).clamp(min=0)
    logits = model(
        input_ids=stem_ids.to(device),
        attention_mask=mask.to(device),
        position_ids=positions.to(device),
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    ).logits[:, -1, :].float()
    logprobs = torch.log_softmax(logits, -1).cpu()
    results, row = [], 0
    for q in questions:
        per_stem = []
        for ids in q.candidate_ids:
            per_stem.append(logprobs[row, ids].tolist())
            row += 1
        results.append(per_stem)
    return results


def score_slots(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    stems: Sequence[Sequence[str]],
    candidates: Sequence[Sequence[str]],
    *,
    batch_size: int,
    store: Any | None = None,
    description: str = "slot scoring",
) -> list[list[list[float]]]:
    """Per question, per stem, log P(candidate | prompt + stem) for each candidate (over the
    whole vocabulary, not renormalised). Questions are batched by context length; with a
    `store` (letterwise.eval.answer_cache) batches already scored are read back."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    questions = encode_slots(tokenizer, prompts, stems, candidates)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = sorted(range(len(questions)), key=lambda i: len(questions[i].context))
    results: list[list[list[float]]] = [[] for _ in questions]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), _progress() as progress:
            bar = progress.add_task(description, total=len(questions))
            for start in range(0, len(order), batch_size):
                members = order[start : start + batch_size]
                batch = [questions[i] for i in members]
                payload = {"kind": "slot", "questions": [dataclasses.asdict(q) for q in batch]}
                scored = store.get(payload) if store is not None else None
                if scored is None:
                    scored = _score_batch(model, batch, pad_id)
                    if store is not None:
                        store.put(payload, scored)
                for i, per_stem in zip(members, scored, strict=True):
                    results[i] = per_stem
                progress.advance(bar, len(members))
    finally:
        model.train(was_training)
    return results
