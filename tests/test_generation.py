"""The batched generation engine, on tiny Qwen3 models with the real bundled Qwen3 tokenizer.

Two kinds of tiny model: a seeded random one (varied, prompt-dependent greedy outputs, for
batched-vs-sequential equality and seeding), and a "scripted" one whose next token is a fixed
function of the current token, so stopping and token budgets can be checked exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from transformers import AutoTokenizer, GenerationConfig, Qwen3Config, Qwen3ForCausalLM
from transformers.utils import logging as hf_logging

from letterwise.chat import prompt_text
from letterwise.generation import (
    QWEN3_SAMPLING,
    Sampling,
    batch_order,
    generate,
    majority_vote,
    max_new_tokens_for,
    sampling_for,
    shared_prefix_length,
    stop_token_ids,
)
from letterwise.params import EvalParams
from letterwise.presets import qwen3_tokenizer_dir

GREEDY = Sampling("greedy", None, None, None, None, n_samples=1, seed=0)
NUMBERS = " one two three four five six seven eight nine ten"


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(str(qwen3_tokenizer_dir()))


def tiny_qwen3(tokenizer, seed: int = 0) -> Qwen3ForCausalLM:
    torch.manual_seed(seed)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=1024,
        # Untied: with tied embeddings a random model just repeats its last input token.
        tie_word_embeddings=False,
    )
    model = Qwen3ForCausalLM(config).eval()
    # Qwen3's shipped defaults are the thinking sampling values; the engine must not use them.
    model.generation_config = GenerationConfig(
        do_sample=True, temperature=0.6, top_p=0.95, top_k=20, eos_token_id=151645
    )
    return model


@pytest.fixture(scope="module")
def random_model(tokenizer):
    return tiny_qwen3(tokenizer)


@pytest.fixture(scope="module")
def scripted_model(tokenizer):
    """Greedy next token = a fixed successor of the current token: one -> two -> ... -> ten.

    Every layer's output projection is zeroed, so the hidden state is the (normed) embedding of
    the current token; lm_head row successor(t) is that vector, so it wins the argmax. "four" is
    followed by <|im_end|> (then "five" if generation failed to stop); "ten" loops back to "five".
    """
    model = tiny_qwen3(tokenizer, seed=1)
    ids = tokenizer(NUMBERS, add_special_tokens=False).input_ids
    assert len(ids) == 10, "each number word must be one Qwen3 token"
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    successor = dict(zip(ids, ids[1:], strict=False))
    successor[ids[3]] = end  # four -> <|im_end|>
    successor[end] = ids[4]  # <|im_end|> -> five: only seen if the engine does not stop
    successor[ids[9]] = ids[4]  # ten -> five: five .. ten cycles forever, never ending a turn
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.lm_head.weight.zero_()
        for current, following in successor.items():
            embedding = model.model.embed_tokens.weight[current : current + 1]
            hidden = model.model.norm(embedding)[0]
            # Summed: "five" follows both <|im_end|> and "ten".
            model.lm_head.weight[following] += 10 * hidden / hidden.norm()
    return model


@contextmanager
def counting_forward_calls(model) -> Iterator[list[int]]:
    calls = [0]

    def hook(*_):
        calls[0] += 1

    handle = model.register_forward_hook(hook)
    try:
        yield calls
    finally:
        handle.remove()


# ------------------------------------------------------------------ prompts and settings


def test_non_thinking_prompt_ends_with_empty_think_block(tokenizer):
    prompt = prompt_text(tokenizer, "Spell 'berry'", thinking=False)
    assert prompt.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_thinking_prompt_leaves_the_think_block_to_the_model(tokenizer):
    prompt = prompt_text(tokenizer, "Spell 'berry'", thinking=True)
    assert prompt.endswith("<|im_start|>assistant\n")
    assert "<think>" not in prompt


@pytest.mark.parametrize("mode", ["thinking", "non-thinking"])
def test_sampled_decoding_uses_the_modes_recommended_values(mode):
    sampling = sampling_for(EvalParams(mode=mode, decoding="sampled", n_samples=4, seed=7))
    expected = QWEN3_SAMPLING[mode]
    assert (sampling.temperature, sampling.top_p, sampling.top_k, sampling.min_p) == (
        expected["temperature"],
        expected["top_p"],
        expected["top_k"],
        expected["min_p"],
    )
    assert (sampling.decoding, sampling.n_samples, sampling.seed) == ("sampled", 4, 7)


def test_the_two_modes_have_qwens_published_values():
    assert QWEN3_SAMPLING["thinking"] == {
        "temperature": 0.6,
        "top_p": 0.95,
        "top_k": 20,
        "min_p": 0,
    }
    assert QWEN3_SAMPLING["non-thinking"] == {
        "temperature": 0.7,
        "top_p": 0.8,
        "top_k": 20,
        "min_p": 0,
    }


def test_explicit_sampling_values_win_over_the_mode_defaults():
    params = EvalParams(mode="thinking", decoding="sampled", temperature=1.3, top_k=5)
    sampling = sampling_for(params)
    assert sampling.temperature == 1.3 and sampling.top_k == 5
    assert sampling.top_p == 0.95 and sampling.min_p == 0.0  # the unset ones: thinking defaults


def test_greedy_ignores_sampling_values():
    params = EvalParams(mode="non-thinking", decoding="greedy", temperature=1.3, top_p=0.5, seed=3)
    sampling = sampling_for(params)
    assert sampling.decoding == "greedy" and sampling.n_samples == 1
    assert (sampling.temperature, sampling.top_p, sampling.top_k, sampling.min_p) == (None,) * 4


def test_sampling_rejects_incoherent_settings():
    with pytest.raises(ValueError, match="n_samples must be 1"):
        Sampling("greedy", None, None, None, None, n_samples=3, seed=0)
    with pytest.raises(ValueError, match="decoding must be"):
        Sampling("beam", None, None, None, None, n_samples=1, seed=0)
    with pytest.raises(ValueError, match="temperature"):
        Sampling("sampled", None, 0.9, 20, 0.0, n_samples=1, seed=0)


def test_max_new_tokens_grows_with_word_length_and_thinking():
    for task in ("spelling", "position", "count"):
        short = max_new_tokens_for(task, 4, thinking=False, thinking_budget=512)
        long = max_new_tokens_for(task, 14, thinking=False, thinking_budget=512)
        thinking = max_new_tokens_for(task, 4, thinking=True, thinking_budget=512)
        assert long > short
        assert thinking == short + 512
    # Spelling writes out every letter: it needs room for at least one token per letter...
    assert max_new_tokens_for("spelling", 14, thinking=False, thinking_budget=0) >= 2 * 14
    # ...while a letter or a number answer needs far less.
    assert max_new_tokens_for("count", 14, thinking=False, thinking_budget=0) < max_new_tokens_for(
        "spelling", 14, thinking=False, thinking_budget=0
    )


def test_max_new_tokens_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown task 'rhyme'"):
        max_new_tokens_for("rhyme", 5, thinking=False, thinking_budget=0)
    with pytest.raises(ValueError, match="word_length"):
        max_new_tokens_for("spelling", 0, thinking=False, thinking_budget=0)


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        (["3", "2", "3"], "3"),
        (["2", "3", "3", "2"], "2"),  # tie: the answer seen first
        ([None, None, "r"], "r"),  # unparseable answers never win
        ([None, "a", None, "b", "b"], "b"),
        ([None, None], None),
        ([], None),
    ],
)
def test_majority_vote(answers, expected):
    assert majority_vote(answers) == expected


def test_stop_tokens_include_the_chat_end_of_turn(tokenizer):
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in stop_token_ids(tokenizer)
    assert tokenizer.eos_token_id in stop_token_ids(tokenizer)


# ------------------------------------------------------------------ batching


def mixed_prompts(tokenizer) -> list[str]:
    """Questions of clearly different token lengths, deliberately not in length order."""
    questions = [
        "How many times does the letter 'r' appear in the word 'strawberry'? Answer with a number.",
        "Spell 'cat'",
        "What is the 3rd letter of 'unbelievable'?",
        "Spell 'photosynthesis' letter by letter, separated by spaces.",
        "Spell 'go'",
        "What is the last letter of 'mississippi'?",
        "How many 's's are in 'glass'?",
    ]
    return [prompt_text(tokenizer, q, thinking=False) for q in questions]


@pytest.mark.slow
def test_batched_greedy_equals_one_at_a_time_in_input_order(tokenizer, random_model):
    prompts = mixed_prompts(tokenizer)
    lengths = [len(tokenizer(p, add_special_tokens=False).input_ids) for p in prompts]
    assert lengths != sorted(lengths), "the prompts must need reordering for this test to bite"
    budgets = [12, 9, 12, 15, 9, 12, 12]

    batched = generate(
        random_model, tokenizer, prompts, max_new_tokens=budgets, sampling=GREEDY, batch_size=3
    )
    alone = [
        generate(random_model, tokenizer, [p], max_new_tokens=b, sampling=GREEDY, batch_size=1)
        for p, b in zip(prompts, budgets, strict=True)
    ]
    assert batched == [result[0] for result in alone]
    assert all(len(samples) == 1 for samples in batched)
    # The random model answers each prompt differently, so a reordering would be caught.
    assert len({samples[0] for samples in batched}) == len(prompts)


@pytest.mark.slow
def test_a_lora_wrapped_model_batches_like_one_at_a_time(tokenizer):
    # The eval stages generate through a peft model (base + adapter).
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = get_peft_model(tiny_qwen3(tokenizer, seed=3), lora).eval()
    prompts = mixed_prompts(tokenizer)
    batched = generate(model, tokenizer, prompts, max_new_tokens=10, sampling=GREEDY, batch_size=4)
    alone = [
        generate(model, tokenizer, [p], max_new_tokens=10, sampling=GREEDY, batch_size=1)[0]
        for p in prompts
    ]
    assert batched == alone


@contextmanager
def transformers_warnings() -> Iterator[list[str]]:
    """Messages the transformers logger emits (it does not propagate to pytest's caplog)."""
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    hf_logging.warning_once.cache_clear()  # a warning seen earlier in the session must show again
    handler = Collect(level=logging.WARNING)
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def test_batch_order_groups_by_budget_then_length_stably():
    budgets = [30, 20, 30, 20, 20]
    lengths = [5, 9, 3, 9, 4]
    assert batch_order(budgets, lengths) == [4, 1, 3, 2, 0]


def test_shared_prefix_length():
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]]) == 2
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2  # each row keeps a token of its own
    assert shared_prefix_length([[7, 1], [8, 1]]) == 0


@pytest.mark.parametrize("case", ["chat prompts", "long common prefix"])
@pytest.mark.slow
def test_sharing_the_prompt_prefix_does_not_change_greedy_outputs(tokenizer, random_model, case):
    if case == "chat prompts":  # they share only the template's opening
        prompts = mixed_prompts(tokenizer) + ["<|im_start|>user\nhi", "<|im_start|>user\nSpell"]
    else:  # the prefix is longer than every prompt's own tokens
        opening = prompt_text(tokenizer, "Spell each word letter by letter, separated by spaces.")
        prompts = [opening + word for word in ("cat", "a", "strawberry", "go")]
    common = dict(max_new_tokens=10, sampling=GREEDY, batch_size=4)
    shared = generate(random_model, tokenizer, prompts, reuse_cache=True, **common)
    unshared = generate(random_model, tokenizer, prompts, reuse_cache=False, **common)
    assert shared == unshared


def test_greedy_raises_no_sampling_warnings(tokenizer, random_model):
    # The model's defaults are Qwen3's thinking sampling values (see tiny_qwen3).
    assert random_model.generation_config.temperature == 0.6
    prompts = mixed_prompts(tokenizer)[:2]
    with transformers_warnings() as messages:
        generate(random_model, tokenizer, prompts, max_new_tokens=4, sampling=GREEDY, batch_size=2)
    assert not [m for m in messages if "generation flags" in m], messages
    with transformers_warnings() as messages:  # control: the capture does see such a warning
        GenerationConfig(do_sample=False, temperature=0.6)
    assert [m for m in messages if "generation flags" in m]


def test_generation_stops_at_the_end_of_turn_token(tokenizer, scripted_model):
    # "... one" continues two, three, four, <|im_end|>; "... three" continues four, <|im_end|>.
    with counting_forward_calls(scripted_model) as calls:
        outputs = generate(
            scripted_model,
            tokenizer,
            ["count: one", "count: three"],
            max_new_tokens=40,
            sampling=GREEDY,
            batch_size=2,
        )
    assert outputs == [[" two three four"], [" four"]]
    assert calls[0] <= 5, f"{calls[0]} decoding steps: generation ran past <|im_end|>"


def test_each_prompt_keeps_its_own_token_budget(tokenizer, scripted_model):
    prompts = ["count: five", "count: five", "count: one"]
    outputs = generate(
        scripted_model, tokenizer, prompts, max_new_tokens=[2, 4, 10], sampling=GREEDY, batch_size=3
    )
    assert outputs == [[" six seven"], [" six seven eight nine"], [" two three four"]]


CYCLE = " six seven eight nine ten five"


@pytest.mark.parametrize("reuse_cache", [True, False])
@pytest.mark.slow
def test_long_and_short_rows_in_one_batch(tokenizer, scripted_model, reuse_cache):
    # Budgets past several rounds of ROUND_TOKENS; the short rows leave the batch early.
    prompts = ["count: five", "count: one", "count: nine"]
    outputs = generate(scripted_model, tokenizer, prompts, max_new_tokens=[20, 20, 3],
                       sampling=GREEDY, batch_size=3, reuse_cache=reuse_cache)  # fmt: skip
    cycle_of_20 = " " + " ".join((CYCLE * 4).split()[:20])
    assert outputs == [[cycle_of_20], [" two three four"], [" ten five six"]]


@pytest.mark.slow
def test_every_sample_continues_its_own_row(tokenizer, scripted_model):
    # The scripted model's successor logit dwarfs the rest, so even sampling is deterministic:
    # each of the n samples must continue its own prompt across rounds.
    prompts = ["count: five", "count: one"]
    outputs = generate(scripted_model, tokenizer, prompts, max_new_tokens=12,
                       sampling=sampled(3, n=3), batch_size=2)  # fmt: skip
    assert outputs == [[" " + " ".join((CYCLE * 2).split()[:12])] * 3, [" two three four"] * 3]


def test_generate_checks_its_arguments(tokenizer, random_model):
    with pytest.raises(ValueError, match="2 max_new_tokens values for 3 prompts"):
        generate(random_model, tokenizer, ["a", "b", "c"], max_new_tokens=[4, 4], sampling=GREEDY,
                 batch_size=2)  # fmt: skip
    with pytest.raises(ValueError, match="batch_size"):
        generate(random_model, tokenizer, ["a"], max_new_tokens=4, sampling=GREEDY, batch_size=0)
    with pytest.raises(TypeError, match="list of strings"):
        generate(random_model, tokenizer, "a", max_new_tokens=4, sampling=GREEDY, batch_size=1)
    assert (
        generate(random_model, tokenizer, [], max_new_tokens=4, sampling=GREEDY, batch_size=1) == []
    )


# ------------------------------------------------------------------ sampling


def sampled(seed: int, n: int = 1) -> Sampling:
    values = QWEN3_SAMPLING["non-thinking"]
    return Sampling("sampled", **values, n_samples=n, seed=seed)


@pytest.mark.slow
def test_sampled_generation_is_reproducible_for_a_seed(tokenizer, random_model):
    prompts = mixed_prompts(tokenizer)
    torch.manual_seed(123)  # the caller's random state must not matter...
    first = generate(random_model, tokenizer, prompts, max_new_tokens=10, sampling=sampled(5),
                     batch_size=3)  # fmt: skip
    torch.manual_seed(999)
    state = torch.get_rng_state()
    second = generate(random_model, tokenizer, prompts, max_new_tokens=10, sampling=sampled(5),
                      batch_size=3)  # fmt: skip
    assert first == second
    assert torch.equal(torch.get_rng_state(), state)  # ...and is left as it was


@pytest.mark.slow
def test_a_different_seed_gives_different_samples(tokenizer, random_model):
    prompts = mixed_prompts(tokenizer)
    first = generate(random_model, tokenizer, prompts, max_new_tokens=10, sampling=sampled(5),
                     batch_size=3)  # fmt: skip
    other = generate(random_model, tokenizer, prompts, max_new_tokens=10, sampling=sampled(6),
                     batch_size=3)  # fmt: skip
    assert first != other


@pytest.mark.slow
def test_n_samples_per_prompt(tokenizer, random_model):
    prompts = mixed_prompts(tokenizer)[:3]
    outputs = generate(random_model, tokenizer, prompts, max_new_tokens=8, sampling=sampled(1, n=4),
                       batch_size=2)  # fmt: skip
    assert [len(samples) for samples in outputs] == [4, 4, 4]
    # Samples of one prompt are independent draws, not copies.
    assert all(len(set(samples)) > 1 for samples in outputs)
