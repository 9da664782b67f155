"""Legacy tuple KV caches (issue 35, failure 1).

Unsloth's fast forward hands back `past_key_values` as a tuple per layer of (key, value)
tensors, which has neither `batch_select_indices` nor `batch_repeat_interleave`. A wrapper that
turns a real tiny Qwen3's cache into that format (and takes it back) must give the same choice
and cloze scores and the same generations as the plain model.
"""

from __future__ import annotations

import pytest
import torch
from transformers import (
    AutoTokenizer,
    DynamicCache,
    GenerationConfig,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from letterwise.chat import prompt_text
from letterwise.eval.choice import score_candidates
from letterwise.generation import Sampling, generate, repeat_cache_rows, select_cache_rows
from letterwise.presets import qwen3_tokenizer_dir

EOT = "<|im_end|>"


def to_legacy(cache):
    return tuple((layer.keys, layer.values) for layer in cache.layers)


def from_legacy(past):
    return DynamicCache(ddp_cache_data=past) if isinstance(past, tuple) else past


class LegacyCacheModel(torch.nn.Module):
    """A model that, like Unsloth's fast forward, returns (and accepts) tuple-of-tuples caches."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.config = inner.config
        self.generation_config = inner.generation_config

    @property
    def device(self):
        return self.inner.device

    def forward(self, **kwargs):
        assert not hasattr(kwargs.get("past_key_values"), "batch_select_indices")
        kwargs["past_key_values"] = from_legacy(kwargs.get("past_key_values"))
        out = self.inner(**kwargs)
        if out.past_key_values is not None:
            out["past_key_values"] = to_legacy(out.past_key_values)
        return out

    def generate(self, **kwargs):
        if "past_key_values" in kwargs:
            assert isinstance(kwargs["past_key_values"], tuple)
            kwargs["past_key_values"] = from_legacy(kwargs["past_key_values"])
        out = self.inner.generate(**kwargs)
        out["past_key_values"] = to_legacy(out.past_key_values)
        return out


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(str(qwen3_tokenizer_dir()))


@pytest.fixture(scope="module")
def models(tokenizer):
    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
    )
    plain = Qwen3ForCausalLM(config).eval()
    plain.generation_config = GenerationConfig(eos_token_id=151645)
    return plain, LegacyCacheModel(plain).eval()


def test_cache_row_helpers_on_tuples():
    k = torch.arange(3.0).view(3, 1, 1, 1)
    past = ((k, k + 10),)
    picked = select_cache_rows(past, torch.tensor([2, 0, 0]))
    assert picked[0][0].flatten().tolist() == [2.0, 0.0, 0.0]
    assert picked[0][1].flatten().tolist() == [12.0, 10.0, 10.0]
    assert repeat_cache_rows(past, 2)[0][0].flatten().tolist() == [0, 0, 1, 1, 2, 2]


def test_choice_scores_through_a_legacy_cache_equal_the_cache_object_path(tokenizer, models):
    plain, legacy = models
    questions = ["How do you spell 'straw'?", "What is the 2nd letter of 'berry'?", "Count r"]
    prompts = [prompt_text(tokenizer, q) for q in questions]
    candidates = [["s t r a w" + EOT, "s t r" + EOT], ["e" + EOT, " e" + EOT, "r" + EOT],
                  ["3" + EOT, "10" + EOT]]  # fmt: skip
    want = score_candidates(plain, tokenizer, prompts, candidates, batch_size=3)
    got = score_candidates(legacy, tokenizer, prompts, candidates, batch_size=3)
    for want_row, got_row in zip(want, got, strict=True):
        for w, g in zip(want_row, got_row, strict=True):
            assert g.n_tokens == w.n_tokens
            assert g.logprob == pytest.approx(w.logprob, abs=1e-5)


def test_generation_with_a_shared_prefix_through_a_legacy_cache(tokenizer, models):
    plain, legacy = models
    prompts = [prompt_text(tokenizer, q) for q in ["Spell 'cat'.", "Spell 'strawberry' now."]]
    greedy = Sampling("greedy", None, None, None, None, n_samples=1, seed=0)
    kwargs = dict(max_new_tokens=[12, 20], sampling=greedy, batch_size=2, reuse_cache=True)
    assert generate(legacy, tokenizer, prompts, **kwargs) == generate(
        plain, tokenizer, prompts, **kwargs
    )
