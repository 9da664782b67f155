"""CPU reproductions of the CUDA-path failures of issue 35 that need no model run."""

from __future__ import annotations

import json
import os
import subprocess
from types import SimpleNamespace

import pytest
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


# ----------------------------------------------------------------- thinking re-evaluation (4, 5)

QWEN3_4B_KV = 2 * 36 * 8 * 128 * 2  # key + value x layers x KV heads x head_dim x bf16 bytes
QWEN3_VOCAB = 151_936


def test_kv_bytes_per_token_at_qwen3_4b_shapes():
    from transformers import Qwen3Config

    from letterwise.generation import kv_bytes_per_token

    config = Qwen3Config(
        hidden_size=2560, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
        head_dim=128, intermediate_size=9728, vocab_size=QWEN3_VOCAB,
    )  # fmt: skip
    assert kv_bytes_per_token(config) == QWEN3_4B_KV == 147_456


def test_thinking_batches_are_sized_from_free_memory_and_the_budget():
    from letterwise.generation import thinking_batch_size

    free = 14 * 2**30  # 15,032,385,536 bytes free on an L4 after the 4-bit weights
    common = dict(kv_bytes_per_token=QWEN3_4B_KV, prompt_tokens=64, n_samples=4, max_batch=64,
                  vocab_size=QWEN3_VOCAB)  # fmt: skip
    # per row: 147,456 x (64 + 4,096) + 8 x 151,936 = 614,632,448 bytes; 0.8 x free =
    # 12,025,908,428 -> 19 rows (20 would take 12,292,648,960) -> 4 questions of 4 samples
    assert thinking_batch_size(free_bytes=free, budget=4096, **common) == 4
    # budget 512: 86,150,144 bytes a row -> 139 rows -> 34 questions
    assert thinking_batch_size(free_bytes=free, budget=512, **common) == 34
    # the old fixed batch: 64 questions x 4 samples = 256 rows = 157 GB of cache at 4,096
    assert 256 * 614_632_448 > 150e9
    assert thinking_batch_size(free_bytes=free, budget=512, **{**common, "max_batch": 16}) == 16
    assert thinking_batch_size(free_bytes=10**6, budget=4096, **common) == 1  # never 0


def test_memory_batch_size_leaves_a_cpu_batch_alone():
    from letterwise.generation import memory_batch_size

    model = SimpleNamespace(device=torch.device("cpu"))
    assert memory_batch_size(model, 100, 4096, 4, 64) == 64


@pytest.mark.parametrize(
    ("text", "unclosed"),
    [
        ("<think>\nthe word is s-t-r-a-w, so", True),  # the budget ran out mid-trace
        ("<think>s t r a w</think>\nThe answer is w.", False),
        ("<think></think>w", False),
        ("w", False),
        ("</think>w", False),  # a template that opens the block in the prompt
        ("<think>a</think> <think>b", True),
    ],
)
def test_unclosed_thinking(text, unclosed):
    from letterwise.tasks.common import strip_thinking, unclosed_thinking

    assert unclosed_thinking(text) is unclosed
    if unclosed:
        assert strip_thinking(text) == ""  # what makes it count as wrong


def test_the_unclosed_share_is_reported_beside_accuracy():
    from letterwise.eval.scoring import score_question, summarize

    outputs = [["<think>w</think>\nw"], ["<think>counting r, r, r and"], ["w"], ["<think>hmm"]]
    scored = [score_question("position", "w", o) for o in outputs]
    summary = summarize("position", scored, n_samples=1, seed=0)
    assert summary["accuracy"] == 0.5
    assert summary["unclosed_think_rate"] == 0.5


def test_the_thinking_budget_default_is_4096():
    import yaml

    from letterwise.params import EvalParams

    assert EvalParams().thinking_budget == 4096
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    assert params["eval"]["thinking_budget"] == 4096


# ----------------------------------------------------------------- eval's sequence length (8)


def test_the_tuned_model_loads_for_eval_length_not_train_max_seq_length(tmp_path, monkeypatch):
    from letterwise import modeling

    (tmp_path / modeling.PROVENANCE_FILE).write_text(
        json.dumps({"model": "qwen3-tiny", "train_params": {"max_seq_length": 128}})
    )
    asked = []

    class Loaded(Exception):
        pass

    def load_base_model(preset, **options):
        asked.append(options["max_seq_length"])
        raise Loaded

    monkeypatch.setattr(modeling, "load_base_model", load_base_model)
    for length in (None, 5000):
        with pytest.raises(Loaded):
            modeling.load_tuned_model(tmp_path, backend="transformers", max_seq_length=length)
    assert asked == [2048, 5000]


def test_eval_max_seq_length_covers_the_longest_prompt_and_budget():
    from letterwise.chat import prompt_text
    from letterwise.eval.answering import eval_max_seq_length
    from letterwise.params import parse_params

    tokenizer = AutoTokenizer.from_pretrained(str(qwen3_tokenizer_dir()))
    params = parse_params({"eval": {"mode": "thinking", "thinking_budget": 4096}})
    rows = [
        {"task": "position", "word_length": 14, "question": "What is the 14th letter of "
         "'extraordinarily' (count from the start)?", "word": "extraordinarily", "position": 14},
        {"task": "spelling", "word_length": 3, "question": "Spell 'cat'.", "word": "cat"},
    ]  # fmt: skip
    need = eval_max_seq_length(tokenizer, rows, params)
    prompt = len(tokenizer(prompt_text(tokenizer, rows[0]["question"], thinking=True)).input_ids)
    assert need > prompt + 4096 > params.train.max_seq_length
    assert eval_max_seq_length(tokenizer, rows, params, floor=10**5) == 10**5


# ----------------------------------------------------------------- publish: merge, load-back (6, 7)


@pytest.mark.slow  # ~20 s: a merge in a child process that imports torch and transformers
def test_the_merge_runs_in_a_fresh_process(tmp_path, monkeypatch):
    """Unsloth patches transformers/peft in place for its whole process: the merge must not
    run through this process's modules. Here they are made to fail; the merge still works."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    from letterwise.modeling import QWEN3_TINY_SEED, load_base_model
    from letterwise.presets import PRESETS
    from letterwise.publishing import load_back

    preset = PRESETS["qwen3-tiny"]
    base, tokenizer = load_base_model(preset, backend="transformers")
    torch.manual_seed(0)
    config = LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    tuned = get_peft_model(base, config)
    tuned.save_pretrained(str(tmp_path))
    tokenizer.save_pretrained(str(tmp_path))
    base.generation_config.save_pretrained(str(tmp_path))
    lora_model = type(tuned.base_model)  # where peft's merge_and_unload is reached
    reference = {k: v.to(torch.bfloat16) for k, v in tuned.merge_and_unload().state_dict().items()}

    def patched(*args, **kwargs):
        raise AssertionError("merged through this process's (patched) peft")

    monkeypatch.setattr(lora_model, "merge_and_unload", patched)
    monkeypatch.setattr(PeftModel, "from_pretrained", patched)
    provenance = {"base_seed": QWEN3_TINY_SEED, "load_in_4bit": False, "train_params": {}}
    merged_dir = load_back.write_merged(tmp_path, preset, provenance)
    merged = AutoModelForCausalLM.from_pretrained(str(merged_dir)).state_dict()
    assert set(merged) == set(reference)
    assert all(torch.equal(merged[k], reference[k]) for k in reference)


def test_load_back_tolerates_16bit_near_ties_with_a_stated_threshold():
    from letterwise.publishing.load_back import MIN_MATCH_RATE, load_back_passes

    assert MIN_MATCH_RATE == {"float32": 1.0, "16-bit": 0.95}

    def result(matches, questions):
        return {"matches": matches, "questions": questions}

    assert load_back_passes(result(97, 100), "cuda")  # 3 bf16 near-ties flipped: publishable
    assert not load_back_passes(result(97, 100), "cpu")  # float32 is deterministic: exact
    assert load_back_passes(result(100, 100), "cpu")
    assert not load_back_passes(result(94, 100), "cuda")
    assert load_back_passes(result(19, 20), "cuda")  # ceil(0.95 x 20) = 19
    assert not load_back_passes(result(18, 20), "cuda")


# ----------------------------------------------------------------- the device check, dry


@pytest.mark.slow  # ~15 s: the tiny Qwen3 through every check that runs without CUDA
def test_gpu_check_dry_run_end_to_end(tmp_path):
    out = tmp_path / "results"
    done = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts/gpu_check.sh"), "--dry-run", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "WHEELS": str(tmp_path / "none")},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "results.json").read_text())
    checks = summary["checks"]
    assert summary["dry_run"] is True and summary["device"] == "cpu"
    for name in ("fp16_as_on_t4", "unsloth_lora", "qwen3_4b_step"):  # skipped, not passed
        assert checks[name]["status"] == "skipped", name
        assert "CUDA" in checks[name]["reason"]
    for name in ("environment", "lora_steps", "choice_vs_no_cache", "legacy_cache",
                 "padded_vs_single", "thinking_budget", "thinking_comparison",
                 "merge_load_back"):  # fmt: skip
        assert checks[name]["status"] == "passed", (name, checks[name])
        assert json.loads((out / f"{name}.json").read_text())["status"] == "passed"
    assert summary["counts"] == {"passed": 8, "failed": 0, "skipped": 3}
