"""The `train` stage: LoRA fine-tune on the spelling set, with the loss on the answer only.

    python -m stages.train            # reads params.yaml, data/dataset/hf -> models/adapter/

Order of work: validate params, decide the backend (fail fast when it needs a GPU that is not
here), check the dataset, and only then load the model. Each training row is rendered with the
model's chat template (letterwise.chat.training_pair) into a prompt and a completion; TRL's
SFTTrainer masks the prompt (for Qwen3 that includes the empty think block) out of the loss.

Checkpoints go to models/checkpoints every `train.save_steps` steps with a key of the params and
data they belong to; a rerun with the same key resumes from the newest complete checkpoint (a
killed run reaches the same final step), a changed key starts fresh. Loss and learning-rate
curves go to dvclive/train, the adapter (+ tokenizer + letterwise.json provenance) to
models/adapter atomically, and the headline numbers to metrics/train.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from letterwise.io import hub_offline_by_default
from letterwise.modeling import (
    import_unsloth,
    resolve_backend,
)
from letterwise.params import ParamsError, load_params
from letterwise.presets import resolve_preset
from letterwise.training.data import TrainInputError, load_train_split
from letterwise.training.trainer import run_training

if TYPE_CHECKING:
    pass


DATASET_DIR = Path("data/dataset/hf")
ADAPTER_DIR = Path("models/adapter")
CHECKPOINT_DIR = Path("models/checkpoints")
LIVE_DIR = Path("dvclive/train")
METRICS_FILE = Path("metrics/train.json")


def summary_table(provenance: dict[str, Any], adapter_dir: Path) -> Table:
    table = Table(title="train", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    train = provenance["train_params"]
    loss = provenance["final_loss"]
    rows = [
        ("model", f"{provenance['preset']} ({provenance['backend']}, {provenance['device']})"),
        (
            "examples",
            f"{provenance['dataset']['examples']:,} (longest {provenance['max_tokens']} tokens)",
        ),
        (
            "steps",
            f"{provenance['final_step']}"
            + (
                f" (resumed at {provenance['resumed_from_step']})"
                if provenance["resumed_from_step"]
                else ""
            ),
        ),
        ("final loss", "-" if loss is None else f"{loss:.4f}"),
        (
            "LoRA",
            f"r={train['lora']['r']} alpha={train['lora']['alpha']}, "
            f"{provenance['trainable_params']:,} of {provenance['total_params']:,} trainable",
        ),
        (
            "optimizer",
            f"lr {train['learning_rate']} {train['lr_scheduler']}, batch "
            f"{train['batch_size']}x{train['grad_accum']}",
        ),
        (
            "time",
            f"{provenance['train_seconds']:.1f} s ({provenance['seconds_per_step']:.3f} s/step)",
        ),
        ("adapter", str(adapter_dir)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m stages.train",
        description="LoRA fine-tune the selected model on the spelling training set.",
    )
    parser.add_argument(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        help="params file to read (default: params.yaml)",
    )
    parser.add_argument(
        "--dataset",
        type=Path,
        default=DATASET_DIR,
        help=f"HF dataset saved by build_dataset, with a train split (default: {DATASET_DIR})",
    )
    parser.add_argument(
        "--adapter-dir",
        type=Path,
        default=ADAPTER_DIR,
        help=f"where the trained adapter goes (default: {ADAPTER_DIR})",
    )
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=CHECKPOINT_DIR,
        help=f"resumable checkpoints (default: {CHECKPOINT_DIR})",
    )
    parser.add_argument(
        "--live-dir",
        type=Path,
        default=LIVE_DIR,
        help=f"dvclive directory for the training curves (default: {LIVE_DIR})",
    )
    parser.add_argument(
        "--metrics",
        type=Path,
        default=METRICS_FILE,
        help=f"metrics JSON to write (default: {METRICS_FILE})",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    hub_offline_by_default()
    args = parse_args(argv)
    console = Console(soft_wrap=True)  # log lines stay whole in captured output
    try:
        params = load_params(args.params)
        preset = resolve_preset(params.model)
        backend = resolve_backend(preset, params.train.backend)
        if backend == "unsloth":
            import_unsloth()  # first, so its patches reach transformers, peft and trl
        rows = load_train_split(args.dataset)
    except (ParamsError, TrainInputError, RuntimeError) as exc:
        console.print(f"[bold red]train:[/] {exc}")
        return 1
    provenance = run_training(
        params,
        preset,
        backend,
        rows,
        dataset_dir=args.dataset,
        adapter_dir=args.adapter_dir,
        checkpoint_dir=args.checkpoint_dir,
        live_dir=args.live_dir,
        metrics_file=args.metrics,
        console=console,
    )
    console.print(summary_table(provenance, args.adapter_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
