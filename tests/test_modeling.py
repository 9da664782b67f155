"""Model/tokenizer loading: offline presets, the conversion cache, and backend decisions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from letterwise import modeling
from letterwise.chat import prompt_text
from letterwise.presets import PRESETS, resolve_preset


@pytest.fixture(scope="session")
def letterwise_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One converted-weights cache per test session, shared by the modeling and train tests."""
    cache = tmp_path_factory.getbasetemp() / "letterwise-cache"
    cache.mkdir(exist_ok=True)
    return cache


@pytest.fixture(autouse=True)
def offline_cache(monkeypatch: pytest.MonkeyPatch, letterwise_cache: Path) -> Path:
    monkeypatch.setenv("LETTERWISE_CACHE", str(letterwise_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return letterwise_cache


def _logits(model, tokenizer, text: str) -> torch.Tensor:
    batch = tokenizer([text], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        return model(**batch).logits


@pytest.mark.slow
def test_qwen3_tiny_loads_offline_and_is_reproducible() -> None:
    preset = PRESETS["qwen3-tiny"]
    model, tokenizer = modeling.load_base_model(preset)
    again, _ = modeling.load_base_model(preset)  # second load comes from the cache
    text = prompt_text(tokenizer, "Spell 'berry'.")
    assert torch.equal(_logits(model, tokenizer, text), _logits(again, tokenizer, text))
    assert not model.training
    assert model.dtype == torch.float32

    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.padding_side == "left"
    assert im_end in model.generation_config.eos_token_id
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    assert model.get_input_embeddings().weight.shape[0] >= len(tokenizer)


def test_qwen3_tiny_weights_depend_only_on_the_seed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    first = modeling.qwen3_tiny_cache_dir(seed=0)
    monkeypatch.setenv("LETTERWISE_CACHE", str(tmp_path))  # a fresh cache: weights remade
    remade = modeling.qwen3_tiny_cache_dir(seed=0)
    other = modeling.qwen3_tiny_cache_dir(seed=1)
    assert remade != first
    from safetensors.torch import load_file

    a, b, c = (load_file(d / "model.safetensors") for d in (first, remade, other))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_qwen3_tiny_generates() -> None:
    model, tokenizer = modeling.load_base_model(PRESETS["qwen3-tiny"])
    prompts = [prompt_text(tokenizer, q) for q in ("Spell 'cat'.", "Spell 'strawberry' please.")]
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    assert (batch["input_ids"][0, 0] == tokenizer.pad_token_id).item()  # left padding
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=5, do_sample=False)
    assert out.shape[0] == 2
    assert 1 <= out.shape[1] - batch["input_ids"].shape[1] <= 5
    assert isinstance(tokenizer.decode(out[0, batch["input_ids"].shape[1] :]), str)


def _refuse_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("weights or tokenizer were loaded before the backend check")

    monkeypatch.setattr(modeling, "load_tokenizer", refuse)
    monkeypatch.setattr(modeling, "base_weights_ref", refuse)


def test_backend_errors_without_cuda_come_before_any_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _refuse_loading(monkeypatch)
    for backend in ("auto", "transformers", "unsloth"):
        with pytest.raises(RuntimeError, match="CUDA") as info:
            modeling.load_base_model(PRESETS["qwen3-4b"], backend=backend)
        assert "smollm2-135m" in str(info.value)  # says what to do instead
    with pytest.raises(RuntimeError, match="unsloth needs a CUDA GPU"):
        modeling.load_base_model(PRESETS["qwen3-tiny"], backend="unsloth")
    assert modeling.resolve_backend(PRESETS["qwen3-tiny"], "auto") == "transformers"
    assert modeling.resolve_backend(PRESETS["smollm2-135m"], "transformers") == "transformers"
    with pytest.raises(ValueError, match="unknown backend"):
        modeling.resolve_backend(PRESETS["qwen3-tiny"], "vllm")


def test_backend_auto_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(modeling, "unsloth_installed", lambda: True)
    assert modeling.resolve_backend(PRESETS["qwen3-4b"], "auto") == "unsloth"
    assert modeling.resolve_backend(PRESETS["qwen3-4b"], "transformers") == "transformers"
    assert modeling.resolve_backend(PRESETS["smollm2-135m"], "auto") == "transformers"
    monkeypatch.setattr(modeling, "unsloth_installed", lambda: False)
    assert modeling.resolve_backend(PRESETS["qwen3-4b"], "auto") == "transformers"
    with pytest.raises(RuntimeError, match="not installed"):
        modeling.resolve_backend(PRESETS["qwen3-4b"], "unsloth")


# Published configs (their config.json on the Hub), written out by hand.
QWEN3_4B_CONFIG = dict(
    model_type="qwen3", hidden_size=2560, num_hidden_layers=36, intermediate_size=9728,
    num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=151936,
    tie_word_embeddings=True,
)
QWEN3_0_6B_CONFIG = dict(
    QWEN3_4B_CONFIG, hidden_size=1024, num_hidden_layers=28, intermediate_size=3072,
    num_attention_heads=16,
)


def test_a_local_qwen3_4b_gets_the_research_setup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder named anything, holding Qwen3-4B: Qwen3 family, and Unsloth 4-bit on CUDA."""
    local = tmp_path / "weights"
    local.mkdir()
    (local / "config.json").write_text(json.dumps(QWEN3_4B_CONFIG))
    preset = resolve_preset(str(local))
    assert preset.family == "qwen3" and preset.has_thinking_mode and preset.needs_cuda
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):  # this machine has none
        modeling.resolve_backend(preset, "auto")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(modeling, "unsloth_installed", lambda: True)
    assert modeling.resolve_backend(preset, "auto") == "unsloth"  # load_in_4bit: train param

    small = tmp_path / "small"
    small.mkdir()
    (small / "config.json").write_text(json.dumps(QWEN3_0_6B_CONFIG))
    preset = resolve_preset(str(small))
    assert preset.family == "qwen3" and not preset.needs_cuda  # ~0.6 B parameters: CPU is fine
    other = tmp_path / "llama"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({**QWEN3_4B_CONFIG, "model_type": "llama"}))
    assert resolve_preset(str(other)).family == "generic"
    (other / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json is not readable JSON"):
        resolve_preset(str(other))


def test_uncached_hub_id_fails_fast_offline() -> None:
    preset = resolve_preset("nobody-here/no-such-model")
    with pytest.raises(RuntimeError) as info:
        modeling.load_base_model(preset)
    message = str(info.value)
    assert "nobody-here/no-such-model" in message
    assert "python -m letterwise.models fetch nobody-here/no-such-model" in message
    assert "HF_HUB_OFFLINE" in message


@pytest.mark.slow
def test_local_directory_model(tmp_path: Path) -> None:
    """A custom model given as a local directory loads through the transformers path."""
    local = tmp_path / "my-model"
    shutil.copytree(modeling.qwen3_tiny_cache_dir(), local)
    modeling.load_tokenizer(PRESETS["qwen3-tiny"]).save_pretrained(local)
    preset = resolve_preset(str(local))
    # its config.json says qwen3: the Qwen3 family, and small enough for the CPU path
    assert preset.family == "qwen3" and preset.has_thinking_mode and not preset.needs_cuda
    model, tokenizer = modeling.load_base_model(preset)
    reference, _ = modeling.load_base_model(PRESETS["qwen3-tiny"])
    text = prompt_text(tokenizer, "Spell 'dog'.")
    assert torch.equal(_logits(model, tokenizer, text), _logits(reference, tokenizer, text))
    assert tokenizer.pad_token != tokenizer.eos_token


def test_tuned_model_needs_provenance(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="letterwise.json"):
        modeling.load_tuned_model(tmp_path)


def test_cache_marker_must_match_source(tmp_path: Path) -> None:
    source = {"format": 1, "gguf_sha256": "abc", "gguf_size": 3}
    assert not modeling._cache_is_current(tmp_path, source)  # nothing there yet
    (tmp_path / modeling.CACHE_MARKER).write_text(json.dumps(source))
    assert modeling._cache_is_current(tmp_path, source)
    assert not modeling._cache_is_current(tmp_path, {**source, "gguf_sha256": "changed"})


@pytest.mark.slow
def test_smollm2_conversion_is_cached() -> None:
    preset = PRESETS["smollm2-135m"]
    model, tokenizer = modeling.load_base_model(preset)
    cache = modeling.smollm2_cache_dir()
    marker, weights = cache / modeling.CACHE_MARKER, cache / "model.safetensors"
    before = (marker.stat().st_mtime_ns, weights.stat().st_ino, weights.stat().st_mtime_ns)
    source = json.loads(marker.read_text())
    assert source["gguf_sha256"] == modeling.file_sha256(modeling.smollm2_gguf_path())

    again, _ = modeling.load_base_model(preset)  # from the cache: nothing rewritten
    after = (marker.stat().st_mtime_ns, weights.stat().st_ino, weights.stat().st_mtime_ns)
    assert after == before
    text = prompt_text(tokenizer, "Spell 'berry'.")
    assert torch.equal(_logits(model, tokenizer, text), _logits(again, tokenizer, text))

    # the GGUF's chat template and special tokens survive the conversion
    assert text.startswith("<|im_start|>") and text.endswith("<|im_start|>assistant\n")
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>" != tokenizer.eos_token
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in model.generation_config.eos_token_id
    batch = tokenizer([text], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=8, do_sample=False)
    answer = tokenizer.decode(out[0, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    assert answer.strip()  # a pretrained chat model says something
