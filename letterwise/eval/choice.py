"""Choice scoring: the log-likelihood a model gives each answer candidate after the question,
format-free, as lm-evaluation-harness scores multiple choice.

A fine-tuned model can know a letter yet answer in the wrong format (spell the word instead of
naming the letter); generation then scores it wrong. Here nothing is generated: each candidate
answer is scored as a continuation of the same chat prompt, and the best-scored one is the
model's choice. Candidates, the teacher-forced letter judgement, records and summaries are
in letterwise.eval.choice_metrics.

Continuation tokens. A candidate is tokenized *joined to its prompt* (prompt + candidate as one
string) and its tokens are those after the longest prefix the joined tokens share with the
prompt's own tokens, so a letter gets the token it would get in that place ("e" after the chat
template's newline, not " e"). If the join changes the prompt's last token(s) (BPE merging
across the boundary: "...straw" + "berry" -> "strawberry"), the changed tokens count as the
candidate's: they are the only tokens whose text includes the candidate's start.

End of turn. Every candidate ends with the chat template's end-of-turn marker (`<|im_end|>`),
so it is scored as the *whole* answer. Without it, candidates that are prefixes of others could
never lose: P("1") >= P("10") for any model, a deletion near-miss "s t r a" would always beat
"s t r a w", and a model that spells "s t r a w ..." would pick the first letter for every
position question. The marker's probability is part of the logprob and of n_tokens.

Thinking mode. Scoring leaves no room to reason: the answer is scored as the first thing the
assistant says, i.e. after an empty thinking block, which is exactly Qwen3's non-thinking prompt.
So prompts are always rendered non-thinking; `thinking` is accepted so a runner can pass its mode.

Efficiency. Each question's prompt runs through the model once (questions batched, left padded);
its KV cache is then repeated for every candidate of the question and all candidates of the batch
are scored in one batched forward pass. Batches are capped in questions (`batch_size`), in cached
tokens and in logit positions so memory stays bounded (one 26-candidate position question needs
26 copies of its prompt's cache).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from letterwise.chat import prompt_text, training_pair
from letterwise.eval.choice_metrics import (
    CandidateScore,
    TeacherForced,
    candidate_keys,
    choice_delta,
    choice_records,
    completion_text,
    judge_letters,
    near_misses,
    summarize_choice,
)
from letterwise.generation import padded, select_cache_rows
from letterwise.tasks.spelling import SPELLING_FORMATS

__all__ = [
    "CandidateScore",
    "TeacherForced",
    "answer_suffix",
    "choice_delta",
    "choice_records",
    "near_misses",
    "run_choice",
    "score_candidates",
    "summarize_choice",
    "teacher_forced",
]

# Per batch: cached tokens across candidate rows (rows x (prompt + candidate width)), and logit
# positions (rows x candidate width; each holds a vocabulary of float32). About 0.75 GB of KV
# cache and 0.4 GB of logits for SmolLM2-135M; a single question always fits on its own.
MAX_CACHE_TOKENS = 16384
MAX_LOGIT_TOKENS = 2048


@dataclass(frozen=True)
class _Question:
    context: list[int]  # prompt tokens every candidate shares (the whole prompt, but for merges)
    continuations: list[list[int]]  # per candidate: its joined tokens after the context
    first_scored: list[int]  # per candidate: index in its continuation of its first own token


@dataclass(frozen=True)
class _Scored:
    token_ids: list[int]  # the candidate's own tokens
    logprobs: list[float]  # log P(token | everything before it)
    top1: list[int]  # the model's most likely token at each of those places


def _shared_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _encode(tokenizer: Any, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> list:
    if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
        raise TypeError("prompts must be a list of strings (already chat-rendered)")
    if len(prompts) != len(candidates):
        raise ValueError(f"got {len(candidates)} candidate lists for {len(prompts)} prompts")
    if not prompts:
        return []
    prompt_ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    joined = [p + c for p, cs in zip(prompts, candidates, strict=True) for c in cs]
    joined_ids = tokenizer(joined, add_special_tokens=False)["input_ids"] if joined else []
    questions, start = [], 0
    for i, (ids, cands) in enumerate(zip(prompt_ids, candidates, strict=True)):
        if isinstance(cands, str) or not cands:
            raise ValueError(f"question {i} needs a non-empty list of candidate strings")
        full = joined_ids[start : start + len(cands)]
        start += len(cands)
        shared = [_shared_prefix(ids, f) for f in full]
        for cand, f, n in zip(cands, full, shared, strict=True):
            if n == len(f):
                raise ValueError(f"candidate {cand!r} of question {i} adds no tokens to its prompt")
        context = min(shared)
        if context == 0:
            raise ValueError(f"question {i}: a candidate changes the prompt's first token")
        questions.append(
            _Question(ids[:context], [f[context:] for f in full], [n - context for n in shared])
        )
    return questions


def _fits(questions: list[_Question], batch_size: int) -> bool:
    rows = sum(len(q.continuations) for q in questions)
    width = max(len(c) for q in questions for c in q.continuations)
    context = max(len(q.context) for q in questions)
    return (
        len(questions) <= batch_size
        and rows * (context + width) <= MAX_CACHE_TOKENS
        and rows * width <= MAX_LOGIT_TOKENS
    )


def _plan_batches(questions: list[_Question], batch_size: int) -> list[list[int]]:
    """Question indices per batch: sorted by prompt length (little padding), filled greedily."""
    order = sorted(range(len(questions)), key=lambda i: len(questions[i].context))
    batches: list[list[int]] = []
    for i in order:
        if batches and _fits([questions[j] for j in batches[-1] + [i]], batch_size):
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def _model_device(model: Any) -> torch.device:
    device = getattr(model, "device", None)
    return device if isinstance(device, torch.device) else next(model.parameters()).device


def _shared_start(rows: list[list[int]]) -> int:
    """Tokens every row starts with, leaving each row at least one token of its own."""
    limit = min(len(row) for row in rows) - 1
    length = 0
    while length < limit and all(row[length] == rows[0][length] for row in rows):
        length += 1
    return length


def _run_contexts(model: Any, contexts: list[list[int]], pad_id: int) -> tuple[Any, Any, Any]:
    """(last-position logits, KV cache, attention mask) for a batch of contexts.

    Chat prompts share their opening (SmolLM2's system prompt: 24 of ~50 tokens), so that part
    runs once and its cache is repeated for every row; rows are laid out as
    [shared start | left padding | own tokens], each token at its unpadded position.
    """
    device = _model_device(model)
    start = _shared_start(contexts) if len(contexts) > 1 else 0
    own_ids, own_mask = padded([c[start:] for c in contexts], pad_id, left=True)
    cache = None
    if start:
        cache = model(
            input_ids=torch.tensor([contexts[0][:start]], device=device),
            attention_mask=torch.ones((1, start), dtype=torch.long, device=device),
            position_ids=torch.arange(start, device=device)[None],
            use_cache=True,
            logits_to_keep=1,
        ).past_key_values
        cache = select_cache_rows(
            cache, torch.zeros(len(contexts), dtype=torch.long, device=device)
        )
    mask = torch.cat([torch.ones((len(contexts), start), dtype=torch.long), own_mask], 1)
    positions = start + (own_mask.cumsum(1) - 1).clamp(min=0)
    out = model(
        input_ids=own_ids.to(device),
        attention_mask=mask.to(device),
        position_ids=positions.to(device),
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    return out.logits[:, -1, :].float(), out.past_key_values, mask


def _score_batch(model: Any, questions: list[_Question], pad_id: int) -> list[list[_Scored]]:
    """Prompts forward once (keeping the KV cache and the last position's logits), then every
    candidate of every question in one forward pass over the cache repeated per candidate."""
    device = _model_device(model)
    # `last` predicts every continuation's first token
    last, cache, context_mask = _run_contexts(model, [q.context for q in questions], pad_id)
    owner = torch.tensor([qi for qi, q in enumerate(questions) for _ in q.continuations])
    conts = [c for q in questions for c in q.continuations]
    cand_ids, cand_mask = padded(conts, pad_id, left=False)
    targets, owner_at = cand_ids.to(device), owner.to(device)
    first_lp = last[owner_at].gather(1, targets[:, :1]) - torch.logsumexp(last, -1)[owner_at, None]
    first_top = last.argmax(-1)[owner_at, None]
    if cand_ids.shape[1] > 1:
        # A continuation's last token is only ever a target, so the last column is not fed.
        width = cand_ids.shape[1] - 1
        cache = select_cache_rows(cache, owner_at)  # each question's cache once per candidate
        mask = torch.cat([context_mask[owner], cand_mask[:, :width]], 1)
        cand_positions = context_mask.sum(1)[owner][:, None] + torch.arange(width)
        logits = model(
            input_ids=targets[:, :width],
            attention_mask=mask.to(device),
            position_ids=cand_positions.to(device),
            past_key_values=cache,
            use_cache=True,
        ).logits.float()
        rest_lp = logits.gather(2, targets[:, 1:, None])[..., 0] - torch.logsumexp(logits, -1)
        logprobs = torch.cat([first_lp, rest_lp], 1).cpu()
        top1 = torch.cat([first_top, logits.argmax(-1)], 1).cpu()
    else:
        logprobs, top1 = first_lp.cpu(), first_top.cpu()
    results: list[list[_Scored]] = []
    row = 0
    for q in questions:
        scored = []
        for cont, first in zip(q.continuations, q.first_scored, strict=True):
            own = slice(first, len(cont))
            scored.append(_Scored(cont[own], logprobs[row, own].tolist(), top1[row, own].tolist()))
            row += 1
        results.append(scored)
    return results


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("questions"),
        TimeElapsedColumn(),
    )


def _score(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    candidates: Sequence[Sequence[str]],
    batch_size: int,
    description: str = "choice scoring",
    store: Any | None = None,
) -> list[list[_Scored]]:
    """Every candidate's scored tokens per question; with a `store`, batches already scored by
    this model are read back and new ones saved as they complete (see generation.generate)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    questions = _encode(tokenizer, prompts, candidates)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    results: list[list[_Scored]] = [[] for _ in questions]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), _progress() as progress:
            bar = progress.add_task(description, total=len(questions))
            for members in _plan_batches(questions, batch_size):
                batch_questions = [questions[i] for i in members]
                payload = {
                    "kind": "choice",
                    "questions": [dataclasses.asdict(q) for q in batch_questions],
                }
                cached = store.get(payload) if store is not None else None
                if cached is not None:
                    batch = [[_Scored(**s) for s in question] for question in cached]
                else:
                    batch = _score_batch(model, batch_questions, pad_id)
                    if store is not None:
                        store.put(payload, [[dataclasses.asdict(s) for s in q] for q in batch])
                for i, scored in zip(members, batch, strict=True):
                    results[i] = scored
                progress.advance(bar, len(members))
    finally:
        model.train(was_training)
    return results


def score_candidates(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    candidates: list[list[str]],
    *,
    batch_size: int,
    store: Any | None = None,
    description: str = "choice scoring",
) -> list[list[CandidateScore]]:
    """Log-likelihood of every candidate continuation of every (chat-rendered) prompt.

    Per question and candidate: the summed log-probability of the candidate's own tokens (see
    the module docstring for what they are) and their number. `batch_size` caps the questions
    per forward pass; each prompt is computed once and shared by its candidates. `store`: an
    answer cache that keeps every scored batch (a killed run resumes).
    """
    scored = _score(model, tokenizer, prompts, candidates, batch_size, description, store)
    return [
        [CandidateScore(sum(s.logprobs), len(s.token_ids)) for s in question] for question in scored
    ]


# ----------------------------------------------------------------------------- teacher forcing


def teacher_forced(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    words: list[str],
    *,
    answer_format: str = "space",
    batch_size: int,
) -> list[TeacherForced]:
    """Teacher-forced letter accuracy of spelling `words` after their chat-rendered prompts,
    the answers spelled in `answer_format` (letterwise.tasks.spelling.SPELLING_FORMATS)."""
    if len(words) != len(prompts):
        raise ValueError(f"got {len(words)} words for {len(prompts)} prompts")
    fmt, suffix = SPELLING_FORMATS[answer_format], answer_suffix(tokenizer)
    spelled = [fmt.spell(word) for word in words]
    scored = _score(model, tokenizer, prompts, [[s + suffix] for s in spelled], batch_size)
    return [
        judge_letters(tokenizer, p, s + suffix, s, w, q[0].token_ids, q[0].top1)
        for p, s, w, q in zip(prompts, spelled, words, scored, strict=True)
    ]


# ----------------------------------------------------------------------------- the runner's entry


def answer_suffix(tokenizer: Any) -> str:
    """What the chat template writes right after an assistant answer, up to and including its
    end-of-turn marker (ChatML: "<|im_end|>"); the newline after the marker is left out."""
    sentinel = "ANSWERSENTINEL"
    _, completion = training_pair(tokenizer, "question", sentinel)
    after = completion[completion.index(sentinel) + len(sentinel) :]
    for marker in ("<|im_end|>", tokenizer.eos_token):
        if marker and marker in after:
            return after[: after.index(marker) + len(marker)]
    raise ValueError(f"the chat template ends an answer with {after!r}: no end-of-turn marker")


def run_choice(
    model: Any,
    tokenizer: Any,
    rows: list[dict],
    *,
    batch_size: int,
    thinking: bool = False,
    seed: int = 0,
    store: Any | None = None,
) -> list[dict]:
    """Choice-scoring records for dataset rows of any task mix, in the rows' order.

    Position and count rows score their candidate answers; spelling rows score the true spelling
    against 4 near-misses (seeded by `seed`) and add teacher-forced letter accuracy, read off the
    true spelling's own scoring pass. `thinking` does not change the prompt (module docstring).
    """
    del thinking  # the answer is always scored right after an (empty) thinking block
    suffix = answer_suffix(tokenizer)
    keys = [candidate_keys(row["task"], row, seed) for row in rows]
    texts = [
        [completion_text(row["task"], row, key) + suffix for key in row_keys]
        for row, row_keys in zip(rows, keys, strict=True)
    ]
    prompts = [prompt_text(tokenizer, row["question"], thinking=False) for row in rows]
    scored = _score(model, tokenizer, prompts, texts, batch_size, store=store)
    records: list[dict | None] = [None] * len(rows)
    for task in ("spelling", "position", "count"):
        index = [i for i, row in enumerate(rows) if row["task"] == task]
        if not index:
            continue
        forced = None
        if task == "spelling":  # the true spelling is candidate 0 (candidate_keys)
            forced = [
                judge_letters(
                    tokenizer,
                    prompts[i],
                    texts[i][0],
                    completion_text(task, rows[i], rows[i]["word"]),
                    rows[i]["word"],
                    scored[i][0].token_ids,
                    scored[i][0].top1,
                )
                for i in index
            ]
        task_scores = [
            [CandidateScore(sum(s.logprobs), len(s.token_ids)) for s in scored[i]] for i in index
        ]
        task_rows = [rows[i] for i in index]
        made = choice_records(task, task_rows, task_scores, seed=seed, teacher_forced=forced)
        for i, record in zip(index, made, strict=True):
            records[i] = record
    return records  # type: ignore[return-value]
