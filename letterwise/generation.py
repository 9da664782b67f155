"""Batched generation for evaluation: one engine for eval_spelling, eval_position and publish.

Throughput comes from batching. A one-prompt decode step is dominated by reading the weights
and per-call overhead, so a step over 64 prompts costs a few times one prompt's step, not 64
times (SmolLM2-135M on one CPU thread: ~0.08 s vs ~0.44 s). Prompts are sorted by token count
before batching so rows need little padding, and results are put back in input order. Left
padding keeps every prompt's last token at the end of its row, where decoding continues.

On CPU, where every row of a step costs compute, two more savings apply (`reuses_cache`): a
batch's shared prompt prefix (chat header, system prompt) is computed once, and rows that have
finished leave the batch every ROUND_TOKENS steps. `scripts/bench_generation.py` measures the
result against one-at-a-time `model.generate` and checks the outputs are the same.

The callers render prompts with `letterwise.chat.prompt_text`, so the chat template has already
added any special tokens: we tokenize with `add_special_tokens=False`. Completions come back as
raw text (a thinking block included); the tasks' parsers strip it.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

from letterwise.params import EvalParams

# Qwen3 model card, "Best Practices": the recommended sampling per mode. Used for every model
# (non-Qwen3 presets only run non-thinking) whenever params leave a value null.
QWEN3_SAMPLING: dict[str, dict[str, float | int]] = {
    "thinking": {"temperature": 0.6, "top_p": 0.95, "top_k": 20, "min_p": 0.0},
    "non-thinking": {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "min_p": 0.0},
}

TASKS = ("spelling", "position", "count")
# Room for wrapper text around the answer ("The spelling of 'cat' is: ..."), so a chatty base
# model's answer is not cut off before the parser can find it.
ANSWER_SLACK_TOKENS = 16
END_OF_TURN = "<|im_end|>"  # ChatML end of turn (Qwen3, SmolLM2); often not the tokenizer's eos
# On CPU, finished rows leave the batch every this many decoding steps (see _decode_batch).
ROUND_TOKENS = 8


@dataclass(frozen=True)
class Sampling:
    decoding: str  # "greedy" | "sampled"
    temperature: float | None
    top_p: float | None
    top_k: int | None
    min_p: float | None
    n_samples: int
    seed: int

    def __post_init__(self) -> None:
        if self.decoding not in ("greedy", "sampled"):
            raise ValueError(f"decoding must be 'greedy' or 'sampled', got {self.decoding!r}")
        if self.n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {self.n_samples}")
        if self.decoding == "greedy" and self.n_samples != 1:
            raise ValueError("greedy decoding gives one answer per prompt; n_samples must be 1")
        if self.decoding == "sampled":
            missing = [
                name
                for name in ("temperature", "top_p", "top_k", "min_p")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"sampled decoding needs explicit values for {missing}")


def sampling_for(eval_params: EvalParams) -> Sampling:
    """The decoding settings for an eval run: explicit params win, null means the mode's default."""
    if eval_params.decoding == "greedy":
        # Greedy is argmax: sampling knobs have no effect, so carry none (nothing to warn about).
        return Sampling("greedy", None, None, None, None, n_samples=1, seed=eval_params.seed)
    recommended = QWEN3_SAMPLING[eval_params.mode]

    def pick(name: str) -> Any:
        value = getattr(eval_params, name)
        return recommended[name] if value is None else value

    return Sampling(
        decoding="sampled",
        temperature=float(pick("temperature")),
        top_p=float(pick("top_p")),
        top_k=int(pick("top_k")),
        min_p=float(pick("min_p")),
        n_samples=eval_params.n_samples,
        seed=eval_params.seed,
    )


def max_new_tokens_for(task: str, word_length: int, *, thinking: bool, thinking_budget: int) -> int:
    """A generation budget that fits the expected answer for this task and word, plus slack.

    Spelling writes every letter with a separator (up to ~2 tokens a letter); position and count
    answer with a letter or a number, but models often restate the word around it. Thinking mode
    adds the thinking budget in front of the answer.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if word_length < 1:
        raise ValueError(f"word_length must be >= 1, got {word_length}")
    if thinking and thinking_budget < 1:
        raise ValueError(f"thinking_budget must be >= 1, got {thinking_budget}")
    if task == "spelling":
        answer = 2 * word_length + ANSWER_SLACK_TOKENS
    else:
        answer = word_length + ANSWER_SLACK_TOKENS
    return answer + (thinking_budget if thinking else 0)


def majority_vote(answers: list[str | None]) -> str | None:
    """The most common parsed answer (None = unparseable, never a vote); ties go to the earliest."""
    counts = Counter(answer for answer in answers if answer is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(answer for answer in answers if answer is not None and counts[answer] == best)


def stop_token_ids(tokenizer: Any, model: Any = None) -> list[int]:
    """Every id that ends a turn: the chat end-of-turn marker, the tokenizer's eos, and the
    model's own generation_config eos ids (Qwen3 lists <|endoftext|> there too)."""
    ids: list[int] = []
    model_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for eos in (tokenizer.eos_token_id, model_eos):
        if eos is not None:
            ids.extend(eos if isinstance(eos, list) else [eos])
    end_of_turn = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    if isinstance(end_of_turn, int) and end_of_turn != tokenizer.unk_token_id:
        ids.append(end_of_turn)
    if not ids:
        raise ValueError("the tokenizer has neither an eos token nor <|im_end|>; cannot stop")
    return sorted(set(ids))


class _PerRowBudget(StoppingCriteria):
    """Stops each row at its own max_new_tokens, so a batch can mix budgets.

    A row that stops early is padded by generate() and ignored; generate() returns once every
    row has hit its budget or an end token.
    """

    def __init__(self, prompt_length: int, budgets: torch.Tensor):
        self.prompt_length = prompt_length
        self.budgets = budgets

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        generated = input_ids.shape[1] - self.prompt_length
        return generated >= self.budgets


def _generation_config(
    sampling: Sampling, max_new_tokens: int, eos_ids: list[int], pad_id: int, copies: int
) -> GenerationConfig:
    """A complete config per call, never the model defaults (Qwen3 ships the thinking ones)."""
    common: dict[str, Any] = dict(
        max_new_tokens=max_new_tokens,
        eos_token_id=eos_ids,
        pad_token_id=pad_id,
        use_cache=True,
        num_beams=1,
        num_return_sequences=copies,
        repetition_penalty=1.0,
        return_dict_in_generate=True,  # hands back the KV cache, to continue from it
    )
    if sampling.decoding == "greedy":
        # Neutral values set explicitly, so model-default sampling knobs raise no greedy warning.
        return GenerationConfig(do_sample=False, temperature=1.0, top_p=1.0, top_k=50, **common)
    return GenerationConfig(
        do_sample=True,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        top_k=sampling.top_k,  # 0 disables top-k
        min_p=sampling.min_p or None,  # 0 disables min-p; None skips the no-op processor
        **common,
    )


def _batch_seed(seed: int, batch_index: int) -> int:
    """A deterministic, well-spread seed per batch, so batches do not share a random stream."""
    return (seed * 1_000_003 + batch_index * 7_919 + 1) % (2**63 - 1)


def padded(
    rows: list[list[int]], pad_id: int, *, left: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) for token rows of different lengths, padded on the left
    (generation: every row ends where its next token goes) or on the right."""
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        place = slice(width - len(row), width) if left else slice(0, len(row))
        input_ids[i, place] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, place] = 1
    return input_ids, attention_mask


def shared_prefix_length(rows: list[list[int]]) -> int:
    """Tokens every row starts with, leaving each row at least one token of its own."""
    limit = min(len(row) for row in rows) - 1
    length = 0
    while length < limit and all(row[length] == rows[0][length] for row in rows):
        length += 1
    return length


def select_cache_rows(cache: Any, index: torch.Tensor) -> Any:
    """The KV cache's rows `index` (a row may repeat), as the cache to pass on.

    A transformers Cache is changed in place and returned. Unsloth's fast forward returns a
    legacy cache instead, a tuple per layer of (key, value, ...) tensors with the batch first,
    which has no batch methods: a new tuple of the selected rows is returned, in the format the
    model produced (and so accepts back).
    """
    if hasattr(cache, "batch_select_indices"):
        cache.batch_select_indices(index)
        return cache
    return tuple(
        tuple(t.index_select(0, index.to(t.device)) if torch.is_tensor(t) else t for t in layer)
        for layer in cache
    )


def repeat_cache_rows(cache: Any, times: int) -> Any:
    """Every row of the KV cache repeated `times` times in place (row i -> rows i*times ..),
    for a transformers Cache or a legacy tuple cache (see `select_cache_rows`)."""
    if hasattr(cache, "batch_repeat_interleave"):
        cache.batch_repeat_interleave(times)
        return cache
    return tuple(
        tuple(t.repeat_interleave(times, dim=0) if torch.is_tensor(t) else t for t in layer)
        for layer in cache
    )


def kv_bytes_per_token(config: Any, dtype_bytes: int = 2) -> int:
    """KV-cache bytes one token takes in every layer: key + value, per KV head (Qwen3-4B:
    2 x 36 layers x 8 heads x 128 x 2 bytes = 147,456)."""
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 2 * config.num_hidden_layers * heads * head_dim * dtype_bytes


def thinking_batch_size(
    *,
    free_bytes: int,
    kv_bytes_per_token: int,
    prompt_tokens: int,
    budget: int,
    n_samples: int,
    max_batch: int,
    vocab_size: int = 0,
    headroom: float = 0.8,
) -> int:
    """Questions per generate() batch whose rows fit in `free_bytes` of GPU memory.

    Each row (a question's sample) holds a KV cache for its whole length, prompt + budget
    (Unsloth preallocates it), and two float32 rows of vocabulary logits; a batch of q
    questions has q x n_samples rows. Only `headroom` of the free memory is planned for
    (activations and the allocator's fragments take the rest). At least 1, at most max_batch.
    """
    per_row = kv_bytes_per_token * (prompt_tokens + budget) + 2 * 4 * vocab_size
    rows = int(free_bytes * headroom) // per_row
    return max(1, min(max_batch, rows // n_samples))


def memory_batch_size(
    model: Any, prompt_tokens: int, budget: int, n_samples: int, max_batch: int
) -> int:
    """`thinking_batch_size` for this model on its CUDA device's free memory now; on any other
    device `max_batch` (a CPU's memory is not preallocated per row)."""
    device = getattr(model, "device", None)
    if not isinstance(device, torch.device) or device.type != "cuda":
        return max_batch
    free, _ = torch.cuda.mem_get_info(device)
    dtype = getattr(model, "dtype", torch.bfloat16)
    config = model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return thinking_batch_size(
        free_bytes=free,
        kv_bytes_per_token=kv_bytes_per_token(config, torch.tensor([], dtype=dtype).element_size()),
        prompt_tokens=prompt_tokens,
        budget=budget,
        n_samples=n_samples,
        max_batch=max_batch,
        vocab_size=getattr(text, "vocab_size", 0) or 0,
    )


def reuses_cache(model: Any) -> bool:
    """Whether to use the CPU savings below (shared prefix, dropping finished rows): on CPU.

    A CPU decode step costs in proportion to the rows in it, so rows that need no computing
    are worth removing. On CUDA a step costs about the same for 1 or 64 rows, and Unsloth's
    patched generate() manages its own cache, so there one plain generate() call per batch.
    """
    return model.device.type == "cpu"


def _batch_inputs(
    model: Any, rows: list[list[int]], pad_id: int, copies: int, share_prefix: bool
) -> dict[str, Any]:
    """generate() inputs for one batch: left-padded ids and mask, maybe a shared-prefix KV cache.

    Chat-rendered prompts share their opening (the template header and any system prompt: 24
    of SmolLM2's ~50 prompt tokens). With `share_prefix` that prefix runs through the model
    once, its KV cache is repeated for every row, and rows are laid out as
    [prefix | left padding | own tokens]. Position ids come from the attention mask, so every
    token keeps the position it has in its unpadded prompt.
    """
    prefix = shared_prefix_length(rows) if share_prefix and len(rows) > 1 else 0
    suffix_ids, suffix_mask = padded([row[prefix:] for row in rows], pad_id)
    if prefix == 0:
        return {"input_ids": suffix_ids, "attention_mask": suffix_mask, "past_key_values": None}
    prefix_ids = torch.tensor([rows[0][:prefix]], dtype=torch.long)
    cache = model(input_ids=prefix_ids.to(model.device), use_cache=True).past_key_values
    cache = repeat_cache_rows(cache, len(rows) * copies)  # generate() repeats rows, not the cache
    prefix_mask = torch.ones((len(rows), prefix), dtype=torch.long)
    return {
        "input_ids": torch.cat([prefix_ids.expand(len(rows), -1), suffix_ids], dim=1),
        "attention_mask": torch.cat([prefix_mask, suffix_mask], dim=1),
        "past_key_values": cache,
    }


def _completion_ids(generated: list[int], budget: int, eos_ids: set[int]) -> list[int]:
    """Cut a generated row at its own budget and at its first end token (padding follows it)."""
    generated = generated[:budget]
    for i, token in enumerate(generated):
        if token in eos_ids:
            return generated[:i]
    return generated


def _decode_batch(
    model: Any,
    inputs: dict[str, Any],
    budgets: list[int],
    sampling: Sampling,
    eos_ids: list[int],
    pad_id: int,
    round_tokens: int | None,
) -> list[list[int]]:
    """New token ids for every row of a batch (each prompt's samples next to each other).

    With `round_tokens`, generate() runs that many steps at a time; rows that finished (an end
    token, or their budget) leave the batch between rounds, and the rest continue from the
    same KV cache. A base model's answers vary from 3 to 30+ tokens, so a single call would
    keep computing finished rows until the longest one ends. Each live row computes exactly
    what it would in one call; only the batch shape changes (floating-point noise at most).
    """
    device = model.device
    n = sampling.n_samples
    width = inputs["input_ids"].shape[1]  # generated tokens are counted from here
    row_budgets = torch.tensor(budgets).repeat_interleave(n)  # rows i*n .. i*n+n-1 = prompt i
    eos_set = set(eos_ids)
    finished: dict[int, list[int]] = {}
    live = torch.arange(len(row_budgets))  # rows still generating, by their index in the batch
    input_ids, attention_mask = inputs["input_ids"], inputs["attention_mask"]
    cache, copies = inputs["past_key_values"], n  # the first call repeats each prompt n times
    while len(live):
        done = input_ids.shape[1] - width
        remaining = int(row_budgets[live].max()) - done
        step = remaining if round_tokens is None else min(round_tokens, remaining)
        stopping = StoppingCriteriaList([_PerRowBudget(width, row_budgets[live].to(device))])
        # No cache argument at all unless there is one: Unsloth's patched generate() builds its own.
        continuing = {} if cache is None else {"past_key_values": cache}
        output = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            generation_config=_generation_config(sampling, step, eos_ids, pad_id, copies),
            stopping_criteria=stopping,
            **continuing,
        )
        sequences = output.sequences.cpu()
        keep = []
        for j, row in enumerate(live.tolist()):
            new = sequences[j, width:].tolist()
            budget = int(row_budgets[row])
            if len(new) >= budget or eos_set.intersection(new):
                finished[row] = _completion_ids(new, budget, eos_set)
            else:
                keep.append(j)
        if not keep:
            break
        # Continue the unfinished rows: their full sequences, mask and cache rows.
        index = torch.tensor(keep)
        attention_mask = attention_mask.repeat_interleave(copies, dim=0)
        grown = sequences.shape[1] - attention_mask.shape[1]
        attention_mask = torch.cat([attention_mask, torch.ones(len(sequences), grown).long()], 1)
        attention_mask, input_ids, live = attention_mask[index], sequences[index], live[index]
        cache = select_cache_rows(output.past_key_values, index.to(device))
        copies = 1
    return [finished[row] for row in range(len(row_budgets))]


def batch_order(budgets: list[int], prompt_lengths: list[int]) -> list[int]:
    """Prompt indices in the order `generate` cuts them into batches.

    Sorted by (budget, length): rows of one batch share a length (little padding) and a budget
    (no row waits on a much longer one). Python's sort is stable, so ties keep input order.
    """
    if len(budgets) != len(prompt_lengths):
        raise ValueError(f"got {len(budgets)} budgets for {len(prompt_lengths)} prompt lengths")
    return sorted(range(len(budgets)), key=lambda i: (budgets[i], prompt_lengths[i]))


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("questions"),
        TimeElapsedColumn(),
    )


def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    *,
    max_new_tokens: int | list[int],
    sampling: Sampling,
    batch_size: int,
    description: str = "generating",
    reuse_cache: bool | None = None,
    store: Any | None = None,
) -> list[list[str]]:
    """`sampling.n_samples` completions for every prompt, in the prompts' original order.

    Prompts must already be chat-rendered. `max_new_tokens` is one budget for all prompts or one
    per prompt. Completions are decoded with special tokens removed, otherwise raw.
    `reuse_cache`: compute each batch's shared prompt prefix once and drop finished rows every
    ROUND_TOKENS steps (None = on CPU only, see `reuses_cache`).
    `store` (letterwise.eval.answer_cache.AnswerStore): batches already answered by this model
    are read back instead of generated, and each new batch is saved as it completes, so a
    killed run resumes where it stopped. Batches and their seeds do not depend on which
    batches were cached, so a resumed run answers exactly as an uninterrupted one.
    """
    if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
        raise TypeError("prompts must be a list of strings (already chat-rendered)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(max_new_tokens, int):
        budgets = [max_new_tokens] * len(prompts)
    else:
        budgets = list(max_new_tokens)
    if len(budgets) != len(prompts):
        raise ValueError(f"got {len(budgets)} max_new_tokens values for {len(prompts)} prompts")
    if any(not isinstance(b, int) or b < 1 for b in budgets):
        raise ValueError(f"every max_new_tokens must be an int >= 1, got {sorted(set(budgets))}")
    if not prompts:
        return []

    eos_ids = stop_token_ids(tokenizer, model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
    token_rows = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    if any(len(row) == 0 for row in token_rows):
        raise ValueError("an empty prompt cannot be continued: every prompt needs a token")

    order = batch_order(budgets, [len(row) for row in token_rows])
    n = sampling.n_samples
    results: list[list[str]] = [[] for _ in prompts]
    reuse = reuses_cache(model) if reuse_cache is None else reuse_cache

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), _progress() as progress:
            bar = progress.add_task(description, total=len(prompts))
            for batch_index, start in enumerate(range(0, len(order), batch_size)):
                members = order[start : start + batch_size]
                payload = {
                    "kind": "generate",
                    "prompts": [prompts[i] for i in members],
                    "budgets": [budgets[i] for i in members],
                    "sampling": dataclasses.asdict(sampling),
                    "batch_index": batch_index,
                    "reuse_cache": reuse,
                }
                cached = store.get(payload) if store is not None else None
                if cached is not None:
                    for prompt_index, samples in zip(members, cached, strict=True):
                        results[prompt_index] = samples
                    progress.advance(bar, len(members))
                    continue
                with torch.random.fork_rng(devices=_rng_devices(model.device)):
                    # Seeded per batch: reproducible for a fixed seed and batch composition,
                    # and the caller's global random state is left as it was.
                    torch.manual_seed(_batch_seed(sampling.seed, batch_index))
                    inputs = _batch_inputs(
                        model, [token_rows[i] for i in members], pad_id, n, reuse
                    )
                    new_tokens = _decode_batch(
                        model,
                        inputs,
                        [budgets[i] for i in members],
                        sampling,
                        eos_ids,
                        pad_id,
                        ROUND_TOKENS if reuse else None,
                    )
                for j, prompt_index in enumerate(members):
                    results[prompt_index] = [
                        tokenizer.decode(row, skip_special_tokens=True)
                        for row in new_tokens[j * n : (j + 1) * n]
                    ]
                if store is not None:
                    store.put(payload, [results[i] for i in members])
                progress.advance(bar, len(members))
    finally:
        model.train(was_training)
    return results


def _rng_devices(device: torch.device) -> list[Any]:
    """Devices whose RNG fork_rng must save/restore: the CUDA device when there is one."""
    return [device] if device.type == "cuda" else []
