"""Load-back: the published folder, loaded the way a user would, must reproduce the evaluation.

Base model + `PeftModel.from_pretrained` on the folder re-answers whole eval batches greedily,
replayed with the eval's batch size so the model computes exactly what the eval computed (same
padding, same shapes); the answers must equal the eval stage's own greedy predictions. If the eval
sampled, the reference is a fresh greedy generation by models/adapter instead. Merged weights, when
written, are checked the same way.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

from letterwise.params import Params
from letterwise.presets import Preset
from letterwise.publishing.inputs import Inputs

MERGED_SUBDIR = "merged"  # merged 16-bit weights (publish.merge: true)
MISMATCHES_SHOWN = 5
# Share of load-back answers that must equal the reference for publish to go ahead. In float32
# (CPU) greedy decoding is deterministic: all of them. In 16-bit on a GPU two near-tied tokens
# can swap under another kernel or batch layout and the answer then differs from there on, so
# 95 % must agree (argmax agreement on whole answers); the mismatches are listed either way.
MIN_MATCH_RATE = {"float32": 1.0, "16-bit": 0.95}


def required_match_rate(device: str) -> float:
    """MIN_MATCH_RATE for the precision eval runs in on `device` (modeling.model_dtype)."""
    return MIN_MATCH_RATE["16-bit" if device == "cuda" else "float32"]


def load_back_passes(result: dict[str, Any], device: str) -> bool:
    """Whether a `compare` result reproduces the evaluation closely enough to publish."""
    needed = math.ceil(required_match_rate(device) * result["questions"] - 1e-9)
    return result["matches"] >= needed


def greedy(params: Params) -> Any:
    from letterwise.generation import Sampling

    return Sampling("greedy", None, None, None, None, n_samples=1, seed=params.eval.seed)


def replay_indices(rows: list[dict], tokenizer: Any, params: Params, at_least: int) -> list[int]:
    """Rows forming the eval's first whole batches, at least `at_least` rows, in file order.

    generation.generate batches prompts in `batch_order` (token budget, then prompt length,
    stably) in batches of eval.batch_size. A prefix of that order, passed back in file order
    with the same batch size, is cut into exactly the same batches again.
    """
    from letterwise.eval.answering import prompts_and_budgets
    from letterwise.generation import batch_order

    prompts, budgets = prompts_and_budgets(tokenizer, rows, params)
    lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    order = batch_order(budgets, lengths)
    batch = params.eval.batch_size
    take = math.ceil(min(at_least, len(rows)) / batch) * batch
    return sorted(order[:take])


def load_published(
    folder: Path, preset: Preset, provenance: dict, backend: str, max_seq_length: int = 2048
) -> tuple[Any, Any]:
    """The published adapter as a user loads it: the base model, then PeftModel on the folder.
    `max_seq_length`: the eval's (answering.eval_max_seq_length), not train.max_seq_length."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    from letterwise.modeling import QWEN3_TINY_SEED, import_unsloth, load_base_model

    base, _ = load_base_model(
        preset,
        backend=backend,
        seed=provenance.get("base_seed", QWEN3_TINY_SEED),
        load_in_4bit=provenance.get("load_in_4bit", True),
        max_seq_length=max_seq_length,
    )
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = PeftModel.from_pretrained(base, str(folder), is_trainable=False)
    if backend == "unsloth":
        import_unsloth().for_inference(model)
    model.eval()
    return model, tokenizer


def compare(
    stage_rows: dict[str, list[dict]],
    outputs: dict[str, list[str]],
    references: dict[str, list[str]],
) -> dict[str, Any]:
    """Exact string comparison of load-back answers with the reference, per eval stage."""
    by_stage, mismatches = {}, []
    for stage, rows in stage_rows.items():
        matches = 0
        for row, got, want in zip(rows, outputs[stage], references[stage], strict=True):
            if got == want:
                matches += 1
            else:
                mismatches.append(
                    {"stage": stage, "id": row.get("id"), "expected": want, "got": got}
                )
        by_stage[stage] = {"questions": len(rows), "matches": matches}
    questions = sum(s["questions"] for s in by_stage.values())
    matches = sum(s["matches"] for s in by_stage.values())
    return {
        "questions": questions,
        "matches": matches,
        "match_rate": matches / questions if questions else None,
        "by_stage": by_stage,
        "mismatches": mismatches[:MISMATCHES_SHOWN],
    }


def answer(
    model: Any, tokenizer: Any, rows: list[dict], params: Params, description: str
) -> list[str]:
    from letterwise.eval.answering import generate_answers

    samples = generate_answers(model, tokenizer, rows, params, greedy(params), description)
    return [s[0] for s in samples]


def load_back_check(
    folder: Path,
    params: Params,
    preset: Preset,
    inputs: Inputs,
    backend: str,
    adapter_dir: Path,
    console: Console,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Re-answer held-out questions from the published folder; compare with the reference."""
    from transformers import AutoTokenizer

    from letterwise.eval.answering import eval_max_seq_length
    from letterwise.eval.runner import release_memory

    rows = [row for stage_rows in inputs.predictions.values() for row in stage_rows]
    seq = eval_max_seq_length(AutoTokenizer.from_pretrained(str(folder)), rows, params, 2048)
    model, tokenizer = load_published(folder, preset, inputs.provenance, backend, seq)
    n = params.publish.load_back_questions
    stage_rows = {
        stage: [rows[i] for i in replay_indices(rows, tokenizer, params, n)]
        for stage, rows in inputs.predictions.items()
    }
    outputs = {
        stage: answer(model, tokenizer, rows, params, f"load-back {stage}")
        for stage, rows in stage_rows.items()
    }
    del model
    release_memory()

    if params.eval.decoding == "greedy":
        reference = "eval_predictions"
        references = {
            stage: [row["tuned"]["outputs"][0] for row in rows]
            for stage, rows in stage_rows.items()
        }
    else:  # sampled eval outputs are not reproducible answers: compare with the adapter, greedy
        from letterwise.modeling import load_tuned_model

        console.print(
            "eval used sampled decoding: the load-back compares with a fresh greedy generation "
            f"by {adapter_dir} instead of the eval's predictions"
        )
        reference = "fresh_greedy_adapter"
        tuned, tuned_tokenizer = load_tuned_model(adapter_dir, backend=backend, max_seq_length=seq)
        references = {
            stage: answer(tuned, tuned_tokenizer, rows, params, f"reference {stage}")
            for stage, rows in stage_rows.items()
        }
        del tuned
        release_memory()
    result = compare(stage_rows, outputs, references)
    result["reference"] = reference
    result["decoding"] = "greedy"
    result["batch_size"] = params.eval.batch_size
    return result, {"stage_rows": stage_rows, "references": references}


def write_merged(folder: Path, preset: Preset, provenance: dict) -> Path:
    """`merge_here` in a fresh Python process: the load-back before it may have imported
    Unsloth, which patches transformers' and peft's modules in place for the whole process;
    a merge through patched modules is not a plain transformers merge."""
    with tempfile.TemporaryDirectory() as tmp:
        provenance_file = Path(tmp) / "provenance.json"
        provenance_file.write_text(json.dumps(provenance))
        command = [sys.executable, "-m", "letterwise.publishing.load_back", "merge"]
        done = subprocess.run(
            [*command, str(folder), preset.name, str(provenance_file)],
            capture_output=True,
            text=True,
        )
    if done.returncode != 0:
        raise RuntimeError(
            f"merging the adapter in {folder} failed (exit {done.returncode}):\n"
            + (done.stderr or done.stdout)[-4000:]
        )
    return folder / MERGED_SUBDIR


def merge_here(folder: Path, preset: Preset, provenance: dict) -> Path:
    """The adapter merged into 16-bit base weights, saved as a plain transformers model.

    Always through transformers + peft: merging needs the unquantized base (a 4-bit Unsloth
    base cannot take the merge), and the adapter is a plain peft LoRA whichever backend
    trained it.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoTokenizer, GenerationConfig

    from letterwise.eval.runner import release_memory
    from letterwise.modeling import QWEN3_TINY_SEED, load_base_model

    base, _ = load_base_model(
        preset,
        backend="transformers",
        seed=provenance.get("base_seed", QWEN3_TINY_SEED),
        load_in_4bit=False,
        max_seq_length=provenance["train_params"].get("max_seq_length", 2048),
    )
    merged = PeftModel.from_pretrained(base, str(folder)).merge_and_unload()
    merged = merged.to(torch.bfloat16)
    merged.config.dtype = torch.bfloat16
    merged.generation_config = GenerationConfig.from_pretrained(str(folder))
    target = folder / MERGED_SUBDIR
    merged.save_pretrained(str(target))
    AutoTokenizer.from_pretrained(str(folder)).save_pretrained(str(target))
    del merged, base
    release_memory()
    return target


def merged_load_back(
    merged_dir: Path,
    params: Params,
    checked: dict[str, list[dict]],
    references: dict[str, list[str]],
) -> dict[str, Any]:
    """The merged weights re-answer the same questions (reported; 16-bit may flip near-ties)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from letterwise.eval.runner import release_memory
    from letterwise.modeling import default_device

    model = AutoModelForCausalLM.from_pretrained(str(merged_dir)).to(default_device()).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(merged_dir))
    outputs = {
        stage: answer(model, tokenizer, rows, params, f"merged {stage}")
        for stage, rows in checked.items()
    }
    del model
    release_memory()
    result = compare(checked, outputs, references)
    result["required_match_rate"] = required_match_rate(default_device())
    result["passed"] = load_back_passes(result, default_device())
    return result


def main(argv: list[str]) -> int:
    """`python -m letterwise.publishing.load_back merge FOLDER MODEL PROVENANCE_JSON`."""
    if len(argv) != 4 or argv[0] != "merge":
        print(main.__doc__, file=sys.stderr)
        return 2
    from letterwise.presets import resolve_preset

    folder, model, provenance_file = argv[1:]
    merge_here(Path(folder), resolve_preset(model), json.loads(Path(provenance_file).read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
