"""The rehearsed one-call device check (issue 35): everything the CUDA path needs, offline.

    python -m letterwise.gpu_check --out DIR [--dry-run]

Builds a tiny Qwen3 (the bundled Qwen3 tokenizer, random weights) and, on a GPU, a
random-weight model of Qwen3-4B's shapes, then runs the checks below; each writes
DIR/<check>.json and DIR/results.json holds them all, with the device. A check is "passed",
"failed" (with the error) or "skipped" (with why): a skipped check is never counted as passed.
`--dry-run` (or no CUDA) runs on the CPU and skips every part that needs CUDA or Unsloth.

Checks: environment; lora_steps (a few LoRA steps, the loss on completion tokens only);
fp16_as_on_t4 (fp16 autocast + GradScaler steps, as a T4 trains); choice_vs_no_cache and
legacy_cache (choice scoring vs one full forward per candidate, and through tuple caches);
padded_vs_single (batched greedy generation equals one prompt at a time); thinking_budget
(the budget cuts traces, unclosed share counted); thinking_comparison (letterwise.eval.thinking's
model path, both modes at their own sampling); merge_load_back (merged weights vs the adapter,
argmax agreement); unsloth_lora (Unsloth's LoRA steps on the tiny model);
qwen3_4b_step (peft vs Unsloth s/step and peak memory at Qwen3-4B's shapes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

QWEN3_4B_SHAPES = dict(
    hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
    num_key_value_heads=8, head_dim=128, vocab_size=151_936, max_position_embeddings=40_960,
    rope_theta=1_000_000.0, tie_word_embeddings=True,
)  # fmt: skip
TINY_SHAPES = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, head_dim=16, max_position_embeddings=2048, tie_word_embeddings=False,
)  # fmt: skip


class Skip(Exception):
    """A check that cannot run here: recorded as skipped, with the reason."""


class Context:
    def __init__(self, dry_run: bool):
        import torch

        self.cuda = torch.cuda.is_available() and not dry_run
        self.device = torch.device("cuda" if self.cuda else "cpu")
        self.dry_run = dry_run
        self._tokenizer = None

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            from letterwise.modeling import prepare_tokenizer
            from letterwise.presets import qwen3_tokenizer_dir

            self._tokenizer = prepare_tokenizer(
                AutoTokenizer.from_pretrained(str(qwen3_tokenizer_dir()))
            )
        return self._tokenizer

    def tiny(self, seed: int = 0, dtype: Any = None) -> Any:
        import torch
        from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

        torch.manual_seed(seed)
        config = Qwen3Config(vocab_size=len(self.tokenizer), **TINY_SHAPES)
        model = Qwen3ForCausalLM(config).to(self.device, dtype or torch.float32).eval()
        model.generation_config = GenerationConfig(eos_token_id=151645)
        return model

    def needs_cuda(self, what: str) -> None:
        if not self.cuda:
            raise Skip(f"{what} needs CUDA ({'--dry-run' if self.dry_run else 'no GPU here'})")

    def needs_unsloth(self) -> Any:
        self.needs_cuda("Unsloth")
        import unsloth  # noqa: F401  (before transformers' models are used, so it patches)

        return unsloth


def _pairs(tokenizer: Any) -> list[tuple[str, str]]:
    from letterwise.chat import prompt_text

    words = ["straw", "berry", "kitchen", "mountain"]
    return [
        (prompt_text(tokenizer, f"How do you spell '{w}'?"), " ".join(w) + "<|im_end|>")
        for w in words
    ]


def _masked_batch(tokenizer: Any, device: Any) -> tuple[Any, Any, Any, int]:
    """input_ids, attention_mask, labels (-100 on prompt and padding), completion tokens."""
    import torch

    rows, labels = [], []
    for prompt, completion in _pairs(tokenizer):
        p = tokenizer(prompt, add_special_tokens=False).input_ids
        c = tokenizer(completion, add_special_tokens=False).input_ids
        rows.append(p + c)
        labels.append([-100] * len(p) + c)
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=device)
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
    lab = torch.tensor([x + [-100] * (width - len(x)) for x in labels], device=device)
    return ids, mask, lab, int((lab != -100).sum())


def _lora(model: Any, r: int = 8) -> Any:
    from peft import LoraConfig, get_peft_model

    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    return get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=targets))


def _steps(model: Any, batch: tuple, steps: int, fp16: bool = False) -> dict[str, Any]:
    import torch

    ids, mask, labels, _ = batch
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    scaler = torch.amp.GradScaler("cuda") if fp16 else None
    losses = []
    model.train()
    for _ in range(steps):
        with torch.autocast("cuda", dtype=torch.float16, enabled=fp16):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        if scaler:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss))
    model.eval()
    return {"losses": [round(x, 5) for x in losses]}


# ----------------------------------------------------------------------------- the checks


def check_environment(ctx: Context) -> dict[str, Any]:
    import torch
    import transformers

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "device": "cpu",
    }
    if ctx.cuda:
        props = torch.cuda.get_device_properties(0)
        info |= {
            "device": props.name,
            "memory_gib": round(props.total_memory / 2**30, 1),
            "capability": list(torch.cuda.get_device_capability(0)),
        }
        from letterwise.training.trainer import native_bf16

        info["native_bf16"] = native_bf16()
    return info


def check_lora_steps(ctx: Context) -> dict[str, Any]:
    """Loss on completion tokens only: it equals the mean NLL of the completion tokens."""
    import torch

    model = _lora(ctx.tiny())
    batch = _masked_batch(ctx.tokenizer, ctx.device)
    ids, mask, labels, n = batch
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
    shifted, targets = logits[:, :-1], labels[:, 1:]
    keep = targets != -100
    nll = torch.nn.functional.cross_entropy(shifted[keep], targets[keep])
    with torch.no_grad():
        loss = float(model(input_ids=ids, attention_mask=mask, labels=labels).loss)
    if abs(loss - float(nll)) > 1e-3:
        raise AssertionError(f"loss {loss} is not the completion tokens' NLL {float(nll)}")
    result = _steps(model, batch, steps=5)
    if not result["losses"][-1] < result["losses"][0]:
        raise AssertionError(f"5 LoRA steps did not lower the loss: {result['losses']}")
    return result | {"completion_tokens": n, "completion_only_loss": True}


def check_fp16_as_on_t4(ctx: Context) -> dict[str, Any]:
    ctx.needs_cuda("fp16 autocast")
    import torch

    model = _lora(ctx.tiny())
    result = _steps(model, _masked_batch(ctx.tokenizer, ctx.device), steps=5, fp16=True)
    if not all(torch.isfinite(torch.tensor(result["losses"]))):
        raise AssertionError(f"non-finite fp16 losses {result['losses']}")
    return result


def _choice_inputs(tokenizer: Any) -> tuple[list[str], list[list[str]]]:
    from letterwise.chat import prompt_text

    end = "<|im_end|>"
    prompts = [prompt_text(tokenizer, q) for q in ["Spell 'straw'.", "2nd letter of 'berry'?"]]
    return prompts, [["s t r a w" + end, "s t r" + end], ["e" + end, " e" + end, "r" + end]]


def check_choice_vs_no_cache(ctx: Context) -> dict[str, Any]:
    import torch

    from letterwise.eval.choice import score_candidates

    model, tokenizer = ctx.tiny(), ctx.tokenizer
    prompts, candidates = _choice_inputs(tokenizer)
    scores = score_candidates(model, tokenizer, prompts, candidates, batch_size=8)
    worst = 0.0
    for prompt, cands, row in zip(prompts, candidates, scores, strict=True):
        p = tokenizer(prompt, add_special_tokens=False).input_ids
        for cand, score in zip(cands, row, strict=True):
            ids = tokenizer(prompt + cand, add_special_tokens=False).input_ids
            with torch.no_grad():
                lp = model(torch.tensor([ids], device=ctx.device)).logits[0].float()
            lp = lp.log_softmax(-1)
            own = sum(float(lp[k - 1, ids[k]]) for k in range(len(p), len(ids)))
            worst = max(worst, abs(own - score.logprob))
    if worst > 1e-3:
        raise AssertionError(f"cached scores differ from the no-cache reference by {worst}")
    return {"max_abs_diff": worst}


def check_legacy_cache(ctx: Context) -> dict[str, Any]:
    """Scores through a model that returns tuple caches (Unsloth's fast forward) equal the
    Cache-object path; on CUDA with Unsloth, Unsloth's own model is scored as well."""
    import torch
    from transformers import DynamicCache

    from letterwise.eval.choice import score_candidates

    class Legacy(torch.nn.Module):
        def __init__(self, inner: Any):
            super().__init__()
            self.inner, self.config = inner, inner.config
            self.generation_config = inner.generation_config

        @property
        def device(self) -> Any:
            return self.inner.device

        def forward(self, **kw: Any) -> Any:
            past = kw.get("past_key_values")
            kw["past_key_values"] = DynamicCache(ddp_cache_data=past) if past else None
            out = self.inner(**kw)
            out["past_key_values"] = tuple((x.keys, x.values) for x in out.past_key_values.layers)
            return out

    model, tokenizer = ctx.tiny(), ctx.tokenizer
    prompts, candidates = _choice_inputs(tokenizer)
    plain = score_candidates(model, tokenizer, prompts, candidates, batch_size=8)
    legacy = score_candidates(Legacy(model).eval(), tokenizer, prompts, candidates, batch_size=8)
    diff = max(
        abs(a.logprob - b.logprob)
        for ra, rb in zip(plain, legacy, strict=True)
        for a, b in zip(ra, rb, strict=True)
    )
    if diff > 1e-4:
        raise AssertionError(f"tuple-cache scores differ by {diff}")
    return {"max_abs_diff": diff}


def check_padded_vs_single(ctx: Context) -> dict[str, Any]:
    from letterwise.chat import prompt_text
    from letterwise.generation import Sampling, generate

    model, tokenizer = ctx.tiny(), ctx.tokenizer
    prompts = [prompt_text(tokenizer, q) for q in ["Spell 'cat'.", "Spell 'strawberry' please."]]
    greedy = Sampling("greedy", None, None, None, None, n_samples=1, seed=0)
    batched = generate(model, tokenizer, prompts, max_new_tokens=16, sampling=greedy, batch_size=2)
    single = [
        generate(model, tokenizer, [p], max_new_tokens=16, sampling=greedy, batch_size=1)[0]
        for p in prompts
    ]
    if batched != single:
        raise AssertionError(f"padded batch {batched} != one at a time {single}")
    return {"rows": len(prompts)}


def check_thinking_budget(ctx: Context) -> dict[str, Any]:
    from letterwise.chat import prompt_text
    from letterwise.generation import Sampling, generate, memory_batch_size
    from letterwise.tasks.common import unclosed_share

    model, tokenizer = ctx.tiny(), ctx.tokenizer
    prompts = [prompt_text(tokenizer, "Spell 'cat'.", thinking=True)] * 2
    sampled = Sampling("sampled", 0.6, 0.95, 20, 0.0, n_samples=2, seed=0)
    budget = 24
    batch = memory_batch_size(model, 64, budget, 2, 64)
    out = generate(model, tokenizer, prompts, max_new_tokens=budget, sampling=sampled,
                   batch_size=batch)  # fmt: skip
    lengths = [len(tokenizer(s, add_special_tokens=False).input_ids) for r in out for s in r]
    if max(lengths) > budget + 2:  # decode/re-encode may merge or split a token
        raise AssertionError(f"a sample ran past its budget {budget}: {lengths}")
    traced = ["<think>" + s for r in out for s in r]  # a random model rarely opens the block
    return {
        "batch_size": batch,
        "sample_tokens": lengths,
        "unclosed_share": unclosed_share(traced),
    }


def check_thinking_comparison(ctx: Context) -> dict[str, Any]:
    """letterwise.eval.thinking's model path on the tiny Qwen3: both modes, their own sampling,
    thinking batches sized from free memory (the numbers mean nothing: random weights)."""
    from letterwise.eval import thinking
    from letterwise.generation import QWEN3_SAMPLING
    from letterwise.params import Params

    model, tokenizer = ctx.tiny(), ctx.tokenizer
    rows = {
        "position": [{"id": "p0", "task": "position", "word": "cat", "word_length": 3,
                      "expected": "a", "question": "In 'cat', what is the 2nd letter?"}],
        "count": [{"id": "c0", "task": "count", "word": "tattoo", "word_length": 6,
                   "expected": "3", "question": "How many t's are in 'tattoo'?"}],
    }  # fmt: skip
    by_mode = {m: thinking.mode_params(Params(), m, n_samples=2, thinking_budget=24)
               for m in thinking.MODES}  # fmt: skip
    answer = thinking.model_answerer(model, tokenizer)
    result = thinking.evaluate(rows, by_mode, answer, thinking.token_counter(tokenizer), seed=0)
    for mode, want in QWEN3_SAMPLING.items():
        got = result["modes"][mode]["sampling"]
        if {k: got[k] for k in want} != want:
            raise AssertionError(f"{mode} sampled with {got}, not {want}")
    return {
        mode: {key: section[key] for key in ("batch_size", "seconds")}
        | {"unclosed_share": section["tasks"]["count"]["unclosed_share"]}
        for mode, section in result["modes"].items()
    }


def check_merge_load_back(ctx: Context) -> dict[str, Any]:
    import torch

    model = _lora(ctx.tiny(seed=3))
    _steps(model, _masked_batch(ctx.tokenizer, ctx.device), steps=3)
    ids, mask, _, _ = _masked_batch(ctx.tokenizer, ctx.device)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        with torch.no_grad():
            adapter_top = model(input_ids=ids, attention_mask=mask).logits.argmax(-1)
        merged = model.merge_and_unload().to(torch.bfloat16)
        merged.save_pretrained(Path(tmp) / "merged")
        from transformers import AutoModelForCausalLM

        loaded = AutoModelForCausalLM.from_pretrained(str(Path(tmp) / "merged")).to(ctx.device)
        with torch.no_grad():
            merged_top = loaded(input_ids=ids, attention_mask=mask).logits.argmax(-1)
    agree = float((adapter_top == merged_top)[mask.bool()].float().mean())
    from letterwise.publishing.load_back import MIN_MATCH_RATE

    if agree < MIN_MATCH_RATE["16-bit"]:
        raise AssertionError(f"merged bf16 argmax agrees on {agree:.1%} of positions")
    return {"argmax_agreement": agree, "threshold": MIN_MATCH_RATE["16-bit"]}


def check_unsloth_lora(ctx: Context) -> dict[str, Any]:
    ctx.needs_unsloth()
    from unsloth import FastLanguageModel

    with tempfile.TemporaryDirectory() as tmp:
        ctx.tiny().save_pretrained(tmp)
        ctx.tokenizer.save_pretrained(tmp)
        model, _ = FastLanguageModel.from_pretrained(
            model_name=tmp, max_seq_length=512, dtype=None, load_in_4bit=False,
            use_exact_model_name=True,
        )  # fmt: skip
        model = FastLanguageModel.get_peft_model(
            model, r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
            use_gradient_checkpointing="unsloth",
        )  # fmt: skip
        return _steps(model, _masked_batch(ctx.tokenizer, ctx.device), steps=5)


def _step_time(model: Any, ctx: Context, steps: int = 4) -> dict[str, Any]:
    import torch

    torch.cuda.reset_peak_memory_stats()
    batch = _masked_batch(ctx.tokenizer, ctx.device)
    _steps(model, batch, steps=1)  # warm-up
    torch.cuda.synchronize()
    start = time.perf_counter()
    _steps(model, batch, steps=steps)
    torch.cuda.synchronize()
    return {
        "seconds_per_step": round((time.perf_counter() - start) / steps, 4),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
    }


def check_qwen3_4b_step(ctx: Context) -> dict[str, Any]:
    ctx.needs_cuda("a model of Qwen3-4B's shapes (8 GB in bf16)")
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(**QWEN3_4B_SHAPES)
    with torch.device("cuda"):
        model = Qwen3ForCausalLM(config).to(torch.bfloat16)
    result: dict[str, Any] = {"parameters": sum(p.numel() for p in model.parameters())}
    with tempfile.TemporaryDirectory(dir=os.environ.get("GPU_CHECK_TMP")) as tmp:
        model.save_pretrained(tmp)
        ctx.tokenizer.save_pretrained(tmp)
        result["peft_bf16"] = _step_time(_lora(model, r=16), ctx)
        del model
        torch.cuda.empty_cache()
        try:
            ctx.needs_unsloth()
            from unsloth import FastLanguageModel

            umodel, _ = FastLanguageModel.from_pretrained(
                model_name=tmp, max_seq_length=512, dtype=None, load_in_4bit=True,
                use_exact_model_name=True,
            )  # fmt: skip
            umodel = FastLanguageModel.get_peft_model(
                umodel, r=16, lora_alpha=32, use_gradient_checkpointing="unsloth",
                target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                "up_proj", "down_proj"],
            )  # fmt: skip
            result["unsloth_4bit"] = _step_time(umodel, ctx)
        except Skip as why:
            result["unsloth_4bit"] = {"status": "skipped", "reason": str(why)}
        except Exception as exc:  # keep the peft numbers; the check as a whole failed
            result["unsloth_4bit"] = {"status": "failed", "error": repr(exc)}
            result["status"] = "failed"
    return result


CHECKS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "environment": check_environment,
    "lora_steps": check_lora_steps,
    "fp16_as_on_t4": check_fp16_as_on_t4,
    "choice_vs_no_cache": check_choice_vs_no_cache,
    "legacy_cache": check_legacy_cache,
    "padded_vs_single": check_padded_vs_single,
    "thinking_budget": check_thinking_budget,
    "thinking_comparison": check_thinking_comparison,
    "merge_load_back": check_merge_load_back,
    "unsloth_lora": check_unsloth_lora,
    "qwen3_4b_step": check_qwen3_4b_step,
}


def run(out: Path, dry_run: bool, only: list[str] | None = None) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(dry_run)
    results: dict[str, Any] = {}
    for name, check in CHECKS.items():
        if only and name not in only:
            continue
        start = time.perf_counter()
        try:
            record = {"status": "passed", **check(ctx)}
        except Skip as why:
            record = {"status": "skipped", "reason": str(why)}
        except Exception as exc:  # a failed check is a result, the next one still runs
            record = {"status": "failed", "error": repr(exc), "trace": traceback.format_exc()}
        record["seconds"] = round(time.perf_counter() - start, 2)
        results[name] = record
        (out / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
        print(f"{name}: {record['status']} ({record['seconds']} s)", flush=True)
    summary = {
        "device": results.get("environment", {}).get("device", str(ctx.device)),
        "dry_run": dry_run,
        "counts": {
            s: sum(r["status"] == s for r in results.values())
            for s in ("passed", "failed", "skipped")
        },
        "checks": results,
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check_results"))
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny model, no Unsloth")
    parser.add_argument("--only", nargs="*", help="run these checks only")
    args = parser.parse_args(argv)
    summary = run(args.out, args.dry_run, args.only)
    print(json.dumps({"device": summary["device"], **summary["counts"]}))
    return 1 if summary["counts"]["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
