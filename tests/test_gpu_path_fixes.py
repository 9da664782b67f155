"""CPU reproductions of the CUDA-path failures of issue 35 that need no model run."""

from __future__ import annotations

import json
import subprocess
from types import SimpleNamespace

import torch
from transformers import AutoTokenizer

from letterwise.presets import qwen3_tokenizer_dir
from letterwise.training import trainer as training
from tests.conftest import REPO_ROOT


def fake_cuda(capability: tuple[int, int]) -> SimpleNamespace:
    """torch.cuda as a T4 (7.5) reports it: bf16 'supported' (emulated) at any capability."""
    return SimpleNamespace(
        is_available=lambda: True,
        is_bf16_supported=lambda *a, **k: True,
        get_device_capability=lambda *a: capability,
    )


def test_emulated_bf16_on_a_t4_trains_in_fp16(monkeypatch):
    t4 = fake_cuda((7, 5))
    assert t4.is_bf16_supported()  # what the old test read: bf16 on a T4
    assert training.native_bf16(t4) is False
    assert training.native_bf16(fake_cuda((8, 0))) is True
    assert training.native_bf16(fake_cuda((9, 0))) is True
    # the default reads torch.cuda itself
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (7, 5))
    assert training.native_bf16() is False


def test_setup_studio_reads_the_compute_capability_not_is_bf16_supported():
    script = (REPO_ROOT / "scripts/setup_studio.sh").read_text()
    assert "is_bf16_supported" not in script
    assert "get_device_capability" in script


class Params4bit(torch.nn.Parameter):
    """Stand-in for bitsandbytes.nn.Params4bit: uint8 storage, two weights per element."""


def test_four_bit_parameters_count_two_weights_per_element():
    packed = Params4bit(torch.zeros(32, 1, dtype=torch.uint8), requires_grad=False)  # 64 weights
    plain = torch.nn.Parameter(torch.zeros(4, 4))
    assert training.parameter_count([packed, plain]) == 64 + 16
    assert training.parameter_count([plain]) == 16


def test_the_saved_tokenizer_pads_left_for_generation(tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(str(qwen3_tokenizer_dir()))
    tokenizer.padding_side = "right"  # as TRL/Unsloth leave it after training
    training.save_tokenizer_for_generation(tokenizer, tmp_path)
    saved = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert saved["padding_side"] == "left"
    assert AutoTokenizer.from_pretrained(str(tmp_path)).padding_side == "left"
    assert tokenizer.padding_side == "right"  # the trainer's own tokenizer is left as it was


def test_unsloth_compiled_cache_is_ignored():
    done = subprocess.run(
        ["git", "check-ignore", "-q", "unsloth_compiled_cache/x.py"], cwd=REPO_ROOT
    )
    assert done.returncode == 0
