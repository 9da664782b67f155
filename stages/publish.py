"""Stage `publish`: a Hub-ready model repo in models/published/, pushed to the Hub on request.

    python -m stages.publish      # params.yaml, models/adapter, metrics/, data/ -> models/published

The folder is laid out as a Hugging Face model repo: the LoRA adapter, its tokenizer, a
`generation_config.json` carrying the evaluated mode's recommended sampling, the metrics it was
evaluated with, a model card built from those files (stages/model_card.py), and, with
`publish.merge: true`, the adapter merged into 16-bit base weights in `merged/`. The dataset
(its card and JSONL splits) goes to `dataset/`, laid out as a Hub dataset repo and left out of
the model upload.

Before the folder replaces the old one (atomically), it must pass two checks:
- its card parses offline (`ModelCard.load`) and its model-index holds exactly the metrics;
- load-back: the folder is loaded the way a user would (base model + `PeftModel.from_pretrained`
  on the folder) and re-answers held-out questions greedily; the answers must equal the eval
  stage's own greedy predictions. The questions are whole eval batches, replayed with the eval's
  batch size, so the model computes exactly what the eval computed (same padding, same shapes);
  a different batch could differ by floating-point noise alone. If the eval sampled, the
  reference is a fresh greedy generation by models/adapter instead.

Pushing: with `publish.repo_id` (and/or `publish.dataset_repo_id`) set and HF_TOKEN in the
environment, the folders are uploaded with `HfApi.create_repo` + `upload_folder`. Unchanged files
are not committed again, so a rerun with nothing changed makes no new commit. The token is read
from the environment only and handed to huggingface_hub, which sends it as the Authorization
header; it is never written or printed. A failed upload leaves the local folder as written and
exits non-zero with the Hub's message.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from stages.atomic import atomic_dir, write_json
from stages.params import Params, ParamsError, load_params
from stages.presets import Preset, resolve_preset

ADAPTER_DIR = Path("models/adapter")
DATASET_DIR = Path("data/dataset")
METRICS_DIR = Path("metrics")
PREDICTIONS_DIR = Path("data/predictions")
OUT_DIR = Path("models/published")
METRICS_FILE = METRICS_DIR / "publish.json"

EVAL_STAGES = ("eval_spelling", "eval_position")
DATASET_SUBDIR = "dataset"  # the dataset repo, inside the published folder
MERGED_SUBDIR = "merged"  # merged 16-bit weights (publish.merge: true)
METRICS_SUBDIR = "metrics"  # copies of the metrics the card was built from
ADAPTER_SKIP = {"README.md"}  # peft's placeholder card; ours replaces it
PROVENANCE_FILE = "letterwise.json"
DATASET_SPLITS = ("train", "validation", "test")
COMMIT_MESSAGE = "letterwise publish"
MISMATCHES_SHOWN = 5


class PublishError(RuntimeError):
    """An input is missing or inconsistent, a check failed, or the upload failed."""


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Paths:
    adapter: Path = ADAPTER_DIR
    dataset: Path = DATASET_DIR
    metrics: Path = METRICS_DIR
    predictions: Path = PREDICTIONS_DIR
    out: Path = OUT_DIR
    metrics_file: Path = METRICS_FILE


def required_inputs(paths: Paths) -> list[tuple[Path, str]]:
    """(file, the stage that makes it) for everything the stage reads."""
    needed = [
        (paths.adapter / "adapter_config.json", "train"),
        (paths.adapter / "adapter_model.safetensors", "train"),
        (paths.adapter / PROVENANCE_FILE, "train"),
        (paths.adapter / "tokenizer_config.json", "train"),
        (paths.metrics / "train.json", "train"),
        (paths.metrics / "filter_tokens.json", "filter_tokens"),
        (paths.metrics / "build_dataset.json", "build_dataset"),
        (paths.dataset / "README.md", "build_dataset"),
        *(
            (paths.dataset / "jsonl" / f"{split}.jsonl", "build_dataset")
            for split in DATASET_SPLITS
        ),
    ]
    for stage in EVAL_STAGES:
        needed.append((paths.metrics / f"{stage}.json", stage))
        needed.append((paths.predictions / f"{stage}.jsonl", stage))
    return needed


def check_inputs(paths: Paths) -> None:
    missing = [(path, stage) for path, stage in required_inputs(paths) if not path.is_file()]
    if missing:
        lines = [
            f"{path} (made by the {stage} stage: `dvc repro {stage}`)" for path, stage in missing
        ]
        raise PublishError("missing input(s):\n  " + "\n  ".join(lines))


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise PublishError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PublishError(f"{path} should hold a JSON object")
    return data


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise PublishError(f"{path} line {number} is not valid JSON: {exc}") from None
    return rows


@dataclass
class Inputs:
    provenance: dict[str, Any]
    eval_metrics: dict[str, dict[str, Any]]  # stage -> metrics/<stage>.json
    predictions: dict[str, list[dict[str, Any]]]  # stage -> rows of data/predictions/<stage>.jsonl
    train_metrics: dict[str, Any]
    data_metrics: dict[str, Any]
    token_metrics: dict[str, Any]


def read_inputs(paths: Paths) -> Inputs:
    return Inputs(
        provenance=read_json(paths.adapter / PROVENANCE_FILE),
        eval_metrics={s: read_json(paths.metrics / f"{s}.json") for s in EVAL_STAGES},
        predictions={s: read_jsonl(paths.predictions / f"{s}.jsonl") for s in EVAL_STAGES},
        train_metrics=read_json(paths.metrics / "train.json"),
        data_metrics=read_json(paths.metrics / "build_dataset.json"),
        token_metrics=read_json(paths.metrics / "filter_tokens.json"),
    )


def check_consistency(params: Params, preset: Preset, inputs: Inputs, paths: Paths) -> None:
    """Everything published must come from one run of params.yaml's model and eval settings."""
    rerun = "rerun the pipeline (`dvc repro`)"
    trained_on = inputs.provenance.get("model")
    if trained_on != params.model:
        raise PublishError(
            f"{paths.adapter} was trained on model {trained_on!r} but params.yaml has model "
            f"{params.model!r}; {rerun}"
        )
    if "train_params" not in inputs.provenance:
        raise PublishError(f"{paths.adapter / PROVENANCE_FILE} lacks train_params; retrain")
    if params.eval.mode == "thinking" and not preset.has_thinking_mode:
        raise PublishError(f"eval.mode: thinking needs a Qwen3-family model, not {params.model!r}")
    expected = {
        "model": params.model,
        "mode": params.eval.mode,
        "decoding": params.eval.decoding,
        "split": params.eval.split,
    }
    for stage, metrics in inputs.eval_metrics.items():
        for key, value in expected.items():
            if metrics.get(key) != value:
                raise PublishError(
                    f"{paths.metrics / f'{stage}.json'} has {key}={metrics.get(key)!r} but "
                    f"params.yaml says {value!r}; {rerun}"
                )
        rows = inputs.predictions[stage]
        if not rows:
            raise PublishError(f"{paths.predictions / f'{stage}.jsonl'} holds no predictions")
        bad = [r.get("id") for r in rows if not r.get("tuned", {}).get("outputs")]
        if bad:
            raise PublishError(
                f"{paths.predictions / f'{stage}.jsonl'}: rows without tuned outputs: {bad[:5]}"
            )


# --------------------------------------------------------------------------- Hub target


def hub_token() -> str | None:
    """HF_TOKEN from the environment (the only place a token is read from), or None."""
    token = os.environ.get("HF_TOKEN", "").strip()
    return token or None


def push_plan(params: Params, token: str | None) -> tuple[list[tuple[str, str]], str | None]:
    """([(repo type, repo id)] to push, or [] with the reason the folder stays local)."""
    targets = [
        (repo_type, repo_id)
        for repo_type, repo_id in (
            ("model", params.publish.repo_id),
            ("dataset", params.publish.dataset_repo_id),
        )
        if repo_id
    ]
    if not targets:
        return [], "not pushed: no publish.repo_id (local folder only)"
    if token is None:
        return [], "not pushed: HF_TOKEN not set (local folder only)"
    return targets, None


def hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def scrub(text: str, token: str | None) -> str:
    """Belt and braces: no message we print or store may carry the token."""
    return text.replace(token, "***") if token else text


# --------------------------------------------------------------------------- the folder


def copy_adapter(adapter_dir: Path, folder: Path, params: Params) -> None:
    """Adapter weights, config, tokenizer and provenance, made portable for a Hub repo."""
    from stages.model_card import base_model_id

    for path in sorted(adapter_dir.iterdir()):
        if path.is_file() and path.name not in ADAPTER_SKIP:
            shutil.copy2(path, folder / path.name)
    # A user loads the adapter on the real base: name its Hub id, not a local cache path.
    base_id = base_model_id(params)
    config_path = folder / "adapter_config.json"
    config = json.loads(config_path.read_text())
    if base_id and config.get("base_model_name_or_path") != base_id:
        config["base_model_name_or_path"] = base_id
        write_json(config_path, config)
    # Local paths in the provenance say nothing to a reader of the repo.
    provenance = json.loads((folder / PROVENANCE_FILE).read_text())
    if isinstance(provenance.get("base_weights"), dict):
        provenance["base_weights"].pop("local_path", None)
    write_json(folder / PROVENANCE_FILE, provenance)


def copy_metrics(paths: Paths, folder: Path) -> None:
    target = folder / METRICS_SUBDIR
    target.mkdir()
    for name in ("train", *EVAL_STAGES, "build_dataset", "filter_tokens"):
        shutil.copy2(paths.metrics / f"{name}.json", target / f"{name}.json")


def copy_dataset(dataset_dir: Path, folder: Path) -> None:
    """The dataset repo: its card and the JSONL splits the card's `configs` point at."""
    target = folder / DATASET_SUBDIR
    (target / "jsonl").mkdir(parents=True)
    shutil.copy2(dataset_dir / "README.md", target / "README.md")
    for split in DATASET_SPLITS:
        shutil.copy2(dataset_dir / "jsonl" / f"{split}.jsonl", target / "jsonl" / f"{split}.jsonl")


def recommended_sampling(params: Params) -> dict[str, float | int]:
    """The mode's sampling for generation_config.json: explicit eval params win over Qwen's.

    min_p 0 (Qwen's value) means "off", which is what leaving it out says, so it is left out,
    as in Qwen3's own generation_config.json.
    """
    from stages.generation import QWEN3_SAMPLING

    values = dict(QWEN3_SAMPLING[params.eval.mode])
    for name in values:
        explicit = getattr(params.eval, name)
        if explicit is not None:
            values[name] = explicit
    if not values.get("min_p"):
        values.pop("min_p", None)
    return values


def write_generation_config(folder: Path, tokenizer: Any, sampling: dict[str, Any]) -> None:
    from transformers import GenerationConfig

    from stages.modeling import end_of_turn_ids

    config = GenerationConfig(
        do_sample=True,
        eos_token_id=end_of_turn_ids(tokenizer),  # the chat turn's end, then the tokenizer's eos
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        **sampling,
    )
    config.save_pretrained(str(folder))


def folder_files(folder: Path) -> dict[str, int]:
    return {
        path.relative_to(folder).as_posix(): path.stat().st_size
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


# --------------------------------------------------------------------------- load-back


def greedy(params: Params) -> Any:
    from stages.generation import Sampling

    return Sampling("greedy", None, None, None, None, n_samples=1, seed=params.eval.seed)


def replay_indices(rows: list[dict], tokenizer: Any, params: Params, at_least: int) -> list[int]:
    """Rows forming the eval's first whole batches, at least `at_least` rows, in file order.

    generation.generate batches prompts in `batch_order` (token budget, then prompt length,
    stably) in batches of eval.batch_size. A prefix of that order, passed back in file order
    with the same batch size, is cut into exactly the same batches again.
    """
    from stages.evaluate import prompts_and_budgets
    from stages.generation import batch_order

    prompts, budgets = prompts_and_budgets(tokenizer, rows, params)
    lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    order = batch_order(budgets, lengths)
    batch = params.eval.batch_size
    take = math.ceil(min(at_least, len(rows)) / batch) * batch
    return sorted(order[:take])


def load_published(folder: Path, preset: Preset, provenance: dict, backend: str) -> tuple[Any, Any]:
    """The published adapter as a user loads it: the base model, then PeftModel on the folder."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    from stages.modeling import QWEN3_TINY_SEED, import_unsloth, load_base_model

    base, _ = load_base_model(
        preset,
        backend=backend,
        seed=provenance.get("base_seed", QWEN3_TINY_SEED),
        load_in_4bit=provenance.get("load_in_4bit", True),
        max_seq_length=provenance["train_params"].get("max_seq_length", 2048),
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
    from stages.evaluate import generate_answers

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
    from stages.evaluate import release_memory

    model, tokenizer = load_published(folder, preset, inputs.provenance, backend)
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
        from stages.modeling import load_tuned_model

        console.print(
            "eval used sampled decoding: the load-back compares with a fresh greedy generation "
            f"by {adapter_dir} instead of the eval's predictions"
        )
        reference = "fresh_greedy_adapter"
        tuned, tuned_tokenizer = load_tuned_model(adapter_dir, backend=backend)
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
    """The adapter merged into 16-bit base weights, saved as a plain transformers model.

    Always through transformers + peft: merging needs the unquantized base (a 4-bit Unsloth
    base cannot take the merge), and the adapter is a plain peft LoRA whichever backend
    trained it.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoTokenizer, GenerationConfig

    from stages.evaluate import release_memory
    from stages.modeling import QWEN3_TINY_SEED, load_base_model

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

    from stages.evaluate import release_memory
    from stages.modeling import default_device

    model = AutoModelForCausalLM.from_pretrained(str(merged_dir)).to(default_device()).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(merged_dir))
    outputs = {
        stage: answer(model, tokenizer, rows, params, f"merged {stage}")
        for stage, rows in checked.items()
    }
    del model
    release_memory()
    return compare(checked, outputs, references)


def build_folder(
    folder: Path,
    params: Params,
    preset: Preset,
    inputs: Inputs,
    backend: str,
    paths: Paths,
    console: Console,
) -> tuple[dict[str, Any], int]:
    """Fill `folder` (a temp dir) and check it: returns (load-back result, model-index size).

    Raises PublishError when the load-back does not reproduce the evaluation, CardError when
    the card does not round-trip; the caller then discards the folder.
    """
    from transformers import AutoTokenizer

    from stages import model_card

    copy_adapter(paths.adapter, folder, params)
    copy_metrics(paths, folder)
    copy_dataset(paths.dataset, folder)
    sampling = recommended_sampling(params)
    write_generation_config(folder, AutoTokenizer.from_pretrained(str(folder)), sampling)

    load_back, checked = load_back_check(
        folder, params, preset, inputs, backend, paths.adapter, console
    )
    if load_back["matches"] != load_back["questions"]:
        shown = "\n".join(
            f"  {m['stage']} {m['id']}: expected {m['expected']!r}, got {m['got']!r}"
            for m in load_back["mismatches"]
        )
        raise PublishError(
            f"load-back failed: {load_back['matches']} of {load_back['questions']} greedy answers "
            f"from the published folder equal the reference ({load_back['reference']}); the "
            f"folder does not reproduce the evaluated model:\n{shown}"
        )
    if params.publish.merge:
        merged_dir = write_merged(folder, preset, inputs.provenance)
        load_back["merged"] = merged_load_back(
            merged_dir, params, checked["stage_rows"], checked["references"]
        )

    card = model_card.model_card(
        params,
        provenance=inputs.provenance,
        eval_metrics=inputs.eval_metrics,
        train_metrics=inputs.train_metrics,
        data_metrics=inputs.data_metrics,
        token_metrics=inputs.token_metrics,
        generation=sampling,
        load_back=load_back,
        merged=params.publish.merge,
    )
    card.save(folder / "README.md")
    expected = model_card.eval_results(params, inputs.eval_metrics)
    model_card.check_card(
        folder / "README.md",
        expected,
        model_card.model_name(params),
        model_card.base_model_id(params),
    )
    return load_back, len(expected)


# --------------------------------------------------------------------------- pushing


def push_to_hub(
    folder: Path, targets: list[tuple[str, str]], *, private: bool, token: str
) -> dict[str, dict[str, Any]]:
    """create_repo + upload_folder per target; raises PublishError with the Hub's message."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    pushed: dict[str, dict[str, Any]] = {}
    for repo_type, repo_id in targets:
        path = folder / DATASET_SUBDIR if repo_type == "dataset" else folder
        ignore = None if repo_type == "dataset" else [f"{DATASET_SUBDIR}/*"]
        try:
            api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
            head = api.repo_info(repo_id, repo_type=repo_type).sha
            info = api.upload_folder(
                repo_id=repo_id,
                repo_type=repo_type,
                folder_path=str(path),
                ignore_patterns=ignore,
                commit_message=COMMIT_MESSAGE,
            )
        except Exception as exc:  # the Hub's answer, whatever its kind, is the message to show
            done = ", ".join(f"{t} {p['repo_id']}" for t, p in pushed.items()) or "nothing"
            raise PublishError(
                f"upload of {repo_type} repo {repo_id} failed ({type(exc).__name__}): "
                f"{scrub(str(exc), token)}\n(pushed before the failure: {done})"
            ) from None
        pushed[repo_type] = {
            "repo_id": repo_id,
            "commit": info.oid,
            "new_commit": info.oid != head,
            "url": scrub(str(info.commit_url), token),
        }
    return pushed


# --------------------------------------------------------------------------- the stage


def summary_table(out: Path, files: dict[str, int], load_back: dict, card_results: int) -> Table:
    table = Table(title="publish", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    dataset_prefix = f"{DATASET_SUBDIR}/"
    model_bytes = sum(size for name, size in files.items() if not name.startswith(dataset_prefix))
    dataset_bytes = sum(size for name, size in files.items() if name.startswith(dataset_prefix))
    table.add_row(
        "folder",
        f"{out} ({len(files)} files, model {model_bytes:,} B, dataset {dataset_bytes:,} B)",
    )
    table.add_row("model card", f"valid offline, {card_results} model-index values from metrics/")
    reference = (
        "the eval predictions"
        if load_back["reference"] == "eval_predictions"
        else "a fresh greedy run of the adapter"
    )
    table.add_row(
        "load-back",
        f"{load_back['matches']}/{load_back['questions']} greedy answers equal {reference}",
    )
    if load_back.get("merged"):
        merged = load_back["merged"]
        table.add_row(
            "merged 16-bit", f"{merged['matches']}/{merged['questions']} equal (reported only)"
        )
    return table


def push_lines(push: dict[str, Any]) -> list[str]:
    """Plain lines (no table, so nothing is wrapped away from a grep) saying where it went."""
    if not push["pushed"]:
        return [push["reason"]]
    return [
        f"pushed {repo_type} repo {info['repo_id']}: commit {info['commit']} "
        f"({'new commit' if info['new_commit'] else 'unchanged, no new commit'})"
        for repo_type, info in push["repos"].items()
    ]


def fail(console: Console, message: str, token: str | None) -> None:
    console.print(f"[bold red]publish:[/] {escape(scrub(message, token))}", soft_wrap=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m stages.publish",
        description="Assemble the Hub-ready model + dataset folder, check it, push it on request.",
    )
    parser.add_argument(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        help="params file to read (default: params.yaml)",
    )
    parser.add_argument(
        "--adapter-dir",
        type=Path,
        default=ADAPTER_DIR,
        help=f"trained adapter from the train stage (default: {ADAPTER_DIR})",
    )
    parser.add_argument(
        "--dataset-dir",
        type=Path,
        default=DATASET_DIR,
        help=f"dataset folder from build_dataset (default: {DATASET_DIR})",
    )
    parser.add_argument(
        "--metrics-dir",
        type=Path,
        default=METRICS_DIR,
        help=f"folder of the stages' metrics JSON (default: {METRICS_DIR})",
    )
    parser.add_argument(
        "--predictions-dir",
        type=Path,
        default=PREDICTIONS_DIR,
        help=f"eval stages' per-question predictions (default: {PREDICTIONS_DIR})",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=OUT_DIR,
        help=f"published folder to write, replaced whole (default: {OUT_DIR})",
    )
    parser.add_argument(
        "--metrics",
        type=Path,
        default=METRICS_FILE,
        help=f"this stage's metrics JSON (default: {METRICS_FILE})",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    paths = Paths(
        args.adapter_dir,
        args.dataset_dir,
        args.metrics_dir,
        args.predictions_dir,
        args.out,
        args.metrics,
    )
    token = hub_token()

    # Every check that needs no model runs first.
    try:
        params = load_params(args.params)
        preset = resolve_preset(params.model)
        check_inputs(paths)
        inputs = read_inputs(paths)
        check_consistency(params, preset, inputs, paths)
        targets, local_reason = push_plan(params, token)
        if targets and hub_offline():
            raise PublishError(
                "publish.repo_id/dataset_repo_id and HF_TOKEN are set, but HF_HUB_OFFLINE (or "
                "TRANSFORMERS_OFFLINE) forbids reaching the Hub: unset it to push, or unset "
                "HF_TOKEN to publish locally only"
            )
        from stages.modeling import resolve_backend

        backend = resolve_backend(preset, params.train.backend)
    except (ParamsError, PublishError, RuntimeError) as exc:
        fail(console, str(exc), token)
        return 1

    from stages.model_card import CardError

    try:
        with atomic_dir(paths.out) as folder:
            load_back, card_values = build_folder(
                folder, params, preset, inputs, backend, paths, console
            )
            files = folder_files(folder)
    except (PublishError, CardError) as exc:
        fail(console, str(exc), token)
        fail(console, f"{paths.out} was left as it was", token)
        return 1

    metrics: dict[str, Any] = {
        "model": params.model,
        "load_back": load_back,
        "card": {"valid": True, "model_index_values": card_values},
        "files": files,
        "sizes": {
            "files": len(files),
            "total_bytes": sum(files.values()),
            "dataset_bytes": sum(s for f, s in files.items() if f.startswith(f"{DATASET_SUBDIR}/")),
            "merged_bytes": sum(s for f, s in files.items() if f.startswith(f"{MERGED_SUBDIR}/")),
        },
    }
    push: dict[str, Any] = {"pushed": False, "reason": local_reason, "repos": {}}
    status = 0
    if targets:
        assert token is not None  # push_plan gives targets only with a token
        try:
            push["repos"] = push_to_hub(
                paths.out, targets, private=params.publish.private, token=token
            )
            push["pushed"], push["reason"] = True, None
        except PublishError as exc:
            push["reason"] = f"not pushed: {exc}"
            fail(console, str(exc), token)
            fail(console, f"the local folder {paths.out} is intact", token)
            status = 1
    metrics["pushed"] = push["pushed"]
    metrics["push"] = push
    write_json(paths.metrics_file, metrics)
    console.print(summary_table(paths.out, files, load_back, card_values))
    if status == 0:
        for line in push_lines(push):
            console.print(escape(line), soft_wrap=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
