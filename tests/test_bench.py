"""letterwise.bench: FLOP counts on a tiny config worked out by hand, and the whole bench on
qwen3-tiny (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from letterwise.bench import ModelShape, forward_call_flops, shape_of, train_step_flops

REPO = Path(__file__).resolve().parents[1]

# 1 layer, hidden 4, MLP 8, 2 query heads and 1 KV head of dim 2, vocabulary 10, LoRA r=1 on q, v.
TINY = ModelShape(
    layers=1, hidden=4, intermediate=8, heads=2, kv_heads=1, head_dim=2, vocab=10,
    lora_r=1, lora_targets=("q_proj", "v_proj"),
)


def test_tiny_shape_counts_by_hand() -> None:
    # q 4x4=16, k 4x2=8, v 4x2=8, o 4x4=16, gate 4x8=32, up 4x8=32, down 8x4=32
    assert TINY.layer_params == 144
    # LoRA r=1: q 1*(4+4)=8, v 1*(4+2)=6
    assert TINY.lora_params == 14
    config = SimpleNamespace(
        num_hidden_layers=1, hidden_size=4, intermediate_size=8, num_attention_heads=2,
        num_key_value_heads=1, head_dim=None, vocab_size=10,
    )
    assert shape_of(config, 1, ["q_proj", "v_proj"]) == TINY


def test_train_step_flops_by_hand() -> None:
    # one row: 3 prompt + 2 answer tokens (T=5, A=2, n=5)
    # forward: linear 2*(144+14)*5 = 1580, head 2*4*10*2 = 160,
    #          attention 2*qd(4)*n(n+1) = 2*4*30 = 240          -> 1980
    # backward: 2*144*5 = 1440, LoRA 4*14*5 = 280, head 160, attention 2*240 = 480 -> 2360
    flops = train_step_flops(TINY, [(3, 2)])
    assert flops["forward"] == 1980
    assert flops["backward"] == 2360
    assert flops["total"] == 4340
    assert (flops["tokens"], flops["prompt_tokens"], flops["answer_tokens"]) == (5, 3, 2)
    # two rows (3+2, 1+1): T=7, A=3, n = 5 and 2, sum n(n+1) = 30 + 6 = 36
    # forward 2*158*7 + 2*40*3 + 8*36 = 2212 + 240 + 288 = 2740
    # backward 2*144*7 + 4*14*7 + 240 + 576 = 2016 + 392 + 240 + 576 = 3224
    flops = train_step_flops(TINY, [(3, 2), (1, 1)])
    assert (flops["forward"], flops["backward"], flops["total"]) == (2740, 3224, 5964)


def test_forward_call_flops_by_hand() -> None:
    base = ModelShape(**{**TINY.__dict__, "lora_r": 0, "lora_targets": ()})
    # a decode step: 1 new token seeing 5 keys; linear 2*144 = 288,
    # attention QK 2*4*5 + AV 2*4*5 = 80, one logit position 2*4*10 = 80
    assert forward_call_flops(base, [1], [5], 1) == 288 + 80 + 80
    # a 5-token prefill: 15 causal query-key pairs x 16 = 240, logits at all 5 positions = 400
    assert forward_call_flops(base, [5], [5], 5) == 2 * 144 * 5 + 240 + 400


@pytest.mark.slow
def test_bench_runs_end_to_end_on_qwen3_tiny(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    subprocess.run(
        [
            sys.executable, "-m", "letterwise.bench", "--model", "qwen3-tiny",
            "--train-steps", "2", "--warmup", "1", "--questions", "2", "--repeats", "1",
            "--matmul-seconds", "0.02", "--out", str(out),
        ],
        cwd=REPO, env=env, check=True, timeout=600,
    )
    result = json.loads(out.read_text())
    assert result["model"] == "qwen3-tiny"
    assert len(result["load_average_start"]) == 3 and len(result["load_average_end"]) == 3
    assert result["cpu"]["model"] and "avx2" in result["cpu"]
    assert result["threads"] >= 1 and result["torch"]
    train = result["train"]
    assert train["steps_timed"] == 2 and train["answer_tokens_per_step"] > 0
    assert train["prompt_tokens_per_step"] > train["answer_tokens_per_step"]
    for name in ("train", "direct", "choice", "cloze"):
        assert 0 < result["shares"][name] < 5, name
    for name in ("direct", "choice", "cloze"):
        assert result["eval"][name]["questions_per_second"] > 0
