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
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from letterwise.io import atomic_dir, hub_offline_by_default, write_metrics
from letterwise.params import ParamsError, load_params
from letterwise.presets import resolve_preset
from letterwise.publishing.folder import DATASET_SUBDIR, build_folder, folder_files
from letterwise.publishing.hub import hub_offline, hub_token, push_plan, push_to_hub, scrub
from letterwise.publishing.inputs import (
    Paths,
    PublishError,
    check_consistency,
    check_inputs,
    read_inputs,
)
from letterwise.publishing.load_back import MERGED_SUBDIR

ADAPTER_DIR = Path("models/adapter")
DATASET_DIR = Path("data/dataset")
METRICS_DIR = Path("metrics")
PREDICTIONS_DIR = Path("data/predictions")
OUT_DIR = Path("models/published")
METRICS_FILE = METRICS_DIR / "publish.json"


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
        targets, local_reason = push_plan(params, token)
        if not targets:  # nothing to push: like every other stage, this run stays off the Hub
            hub_offline_by_default()
        preset = resolve_preset(params.model)
        check_inputs(paths)
        inputs = read_inputs(paths)
        check_consistency(params, preset, inputs, paths)
        if targets and hub_offline():
            raise PublishError(
                "publish.repo_id/dataset_repo_id and HF_TOKEN are set, but HF_HUB_OFFLINE (or "
                "TRANSFORMERS_OFFLINE) forbids reaching the Hub: unset it to push, or unset "
                "HF_TOKEN to publish locally only"
            )
        from letterwise.modeling import resolve_backend

        backend = resolve_backend(preset, params.train.backend)
    except (ParamsError, PublishError, RuntimeError) as exc:
        fail(console, str(exc), token)
        return 1

    from letterwise.cards.model_card import CardError

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
    headline = {"load_back_match_rate": load_back["match_rate"], "pushed": push["pushed"]}
    write_metrics(paths.metrics_file, metrics, headline)
    console.print(summary_table(paths.out, files, load_back, card_values))
    if status == 0:
        for line in push_lines(push):
            console.print(escape(line), soft_wrap=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
