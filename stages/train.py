"""The `train` stage: LoRA fine-tune on the spelling set, with the loss on the answer only.

    python -m stages.train            # reads params.yaml, data/dataset/hf -> models/adapter/

Order of work: validate params, decide the backend (fail fast when it needs a GPU that is not
here), check the dataset, and only then load the model. Each training row is rendered with the
model's chat template (stages.chat.training_pair) into a prompt and a completion; TRL's
SFTTrainer masks the prompt (for Qwen3 that includes the empty think block) out of the loss.

Checkpoints go to models/checkpoints every `train.save_steps` steps with a key of the params and
data they belong to; a rerun with the same key resumes from the newest complete checkpoint (a
killed run reaches the same final step), a changed key starts fresh. Loss and learning-rate
curves go to dvclive/train, the adapter (+ tokenizer + letterwise.json provenance) to
models/adapter atomically, and the headline numbers to metrics/train.json.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import math
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from stages.atomic import atomic_dir, write_json
from stages.chat import training_pair
from stages.modeling import (
    PROVENANCE_FILE,
    QWEN3_TINY_SEED,
    default_device,
    describe_base_weights,
    hub_id_of,
    import_unsloth,
    load_base_model,
    resolve_backend,
)
from stages.params import Params, ParamsError, load_params
from stages.presets import Preset, resolve_preset

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase, Trainer

DATASET_DIR = Path("data/dataset/hf")
ADAPTER_DIR = Path("models/adapter")
CHECKPOINT_DIR = Path("models/checkpoints")
LIVE_DIR = Path("dvclive/train")
METRICS_FILE = Path("metrics/train.json")

RUN_KEY_FILE = "letterwise_run.json"  # in the checkpoint dir: which params/data it belongs to
ELAPSED_FILE = "letterwise_elapsed.json"  # in a checkpoint, written last: it is complete
CURVE_KEYS = ("loss", "learning_rate", "grad_norm", "mean_token_accuracy")
# Params that change how a run is carried out but not what it computes.
NOT_IN_RUN_KEY = {"threads", "save_steps"}


class TrainInputError(ValueError):
    """The training data is missing or not shaped as the train stage needs."""


# --------------------------------------------------------------------------- data


def load_train_split(dataset_dir: Path) -> Dataset:
    """The `train` split of the HF dataset build_dataset wrote, checked for question/answer."""
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise TrainInputError(
            f"{dataset_dir} not found: build the training data first (`dvc repro build_dataset`)"
        )
    from datasets import DatasetDict, load_from_disk

    try:
        loaded = load_from_disk(str(dataset_dir))
    except FileNotFoundError as exc:
        raise TrainInputError(f"{dataset_dir} is not a saved HF dataset: {exc}") from None
    if not isinstance(loaded, DatasetDict) or "train" not in loaded:
        splits = list(loaded) if isinstance(loaded, DatasetDict) else "none (a single Dataset)"
        raise TrainInputError(f"{dataset_dir} has no `train` split; splits found: {splits}")
    rows = loaded["train"]
    missing = {"question", "answer"} - set(rows.column_names)
    if missing:
        raise TrainInputError(
            f"{dataset_dir} train split lacks column(s) {sorted(missing)}; "
            f"it has {rows.column_names}"
        )
    if len(rows) == 0:
        raise TrainInputError(f"{dataset_dir} train split is empty")
    return rows


def dataset_fingerprint(questions: list[str], answers: list[str]) -> str:
    """sha256 over the (question, answer) rows in order: what the model is trained on."""
    digest = hashlib.sha256()
    for question, answer in zip(questions, answers, strict=True):
        digest.update(question.encode())
        digest.update(b"\x1f")
        digest.update(answer.encode())
        digest.update(b"\x1e")
    return digest.hexdigest()


def render_pair(tokenizer: PreTrainedTokenizerBase, question: str, answer: str) -> tuple[str, str]:
    """(prompt, completion) for one row, the completion ending at the end-of-turn token.

    Templates add a newline after the end-of-turn token. Generation stops at that token, so the
    newline is never produced; cutting it also keeps TRL from appending a second end token.
    """
    prompt, completion = training_pair(tokenizer, question, answer)
    eos = tokenizer.eos_token
    if eos and eos in completion:
        completion = completion[: completion.rindex(eos) + len(eos)]
    return prompt, completion


def sft_dataset(tokenizer: PreTrainedTokenizerBase, rows: Dataset) -> Dataset:
    """A prompt/completion dataset (TRL's format for completion-only loss)."""
    from datasets import Dataset

    pairs = [
        render_pair(tokenizer, q, a) for q, a in zip(rows["question"], rows["answer"], strict=True)
    ]
    return Dataset.from_dict({"prompt": [p for p, _ in pairs], "completion": [c for _, c in pairs]})


def token_lengths(tokenizer: PreTrainedTokenizerBase, pairs: Dataset) -> list[int]:
    texts = [p + c for p, c in zip(pairs["prompt"], pairs["completion"], strict=True)]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


# --------------------------------------------------------------------------- checkpoints


def run_key(params: Params, fingerprint: str, backend: str) -> str:
    """Identity of a training run: the checkpoints of a different run must not be resumed."""
    train = params.train.model_dump(exclude=NOT_IN_RUN_KEY)
    blob = json.dumps(
        {
            "model": params.model,
            "seed": params.seed,
            "train": train,
            "dataset": fingerprint,
            "backend": backend,  # what `auto` resolved to: checkpoints differ between backends
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _step_of(checkpoint: Path) -> int:
    return int(checkpoint.name.rsplit("-", 1)[1])


def complete_checkpoints(checkpoint_dir: Path) -> list[Path]:
    """checkpoint-N folders whose save finished (our marker is written last), oldest first."""
    if not checkpoint_dir.is_dir():
        return []
    found = [
        path
        for path in checkpoint_dir.glob("checkpoint-*")
        if path.is_dir()
        and path.name.rsplit("-", 1)[1].isdigit()
        and (path / ELAPSED_FILE).is_file()
    ]
    return sorted(found, key=_step_of)


def prepare_checkpoints(checkpoint_dir: Path, key: str, console: Console) -> Path | None:
    """The checkpoint to resume from, or None after clearing checkpoints of another run."""
    checkpoint_dir = Path(checkpoint_dir)
    key_file = checkpoint_dir / RUN_KEY_FILE
    stored = None
    if key_file.is_file():
        try:
            stored = json.loads(key_file.read_text()).get("run_key")
        except json.JSONDecodeError:
            stored = None
    complete = complete_checkpoints(checkpoint_dir)
    if complete and stored == key:
        resume = complete[-1]
        # A half-written newer checkpoint (killed while saving) would confuse the rotation.
        for path in checkpoint_dir.glob("checkpoint-*"):
            if path.is_dir() and path not in complete:
                shutil.rmtree(path)
        console.print(f"resuming from {resume} (step {_step_of(resume)})")
        return resume
    if any(checkpoint_dir.glob("checkpoint-*")):
        why = "params or data changed since they were written" if complete else "none is complete"
        console.print(
            f"[yellow]ignoring the checkpoints in {checkpoint_dir} ({why}); starting fresh"
        )
    if checkpoint_dir.exists():
        shutil.rmtree(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True)
    write_json(key_file, {"run_key": key})
    return None


def _elapsed_at(checkpoint: Path | None) -> float:
    if checkpoint is None:
        return 0.0
    return float(json.loads((checkpoint / ELAPSED_FILE).read_text())["train_seconds"])


# --------------------------------------------------------------------------- trainer


def planned_steps(examples: int, params: Params) -> int:
    """Optimizer steps the run will take (max_steps, or epochs over the data)."""
    train = params.train
    if train.max_steps > 0:
        return train.max_steps
    batches = math.ceil(examples / train.batch_size)
    return max(1, math.ceil(train.epochs * math.ceil(batches / train.grad_accum)))


def add_lora(model: Any, params: Params, backend: str) -> Any:
    """Wrap the base model with LoRA adapters from params.train.lora (seeded init)."""
    from transformers import set_seed

    lora = params.train.lora
    set_seed(params.seed)  # the LoRA A matrices are randomly initialised
    if backend == "unsloth":
        fast_language_model = import_unsloth()
        return fast_language_model.get_peft_model(
            model,
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=list(lora.target_modules),
            bias="none",
            use_gradient_checkpointing="unsloth",  # Unsloth's offloaded checkpointing
            random_state=params.seed,
        )
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        task_type="CAUSAL_LM",
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        bias="none",
    )
    return get_peft_model(model, config)


def build_trainer(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Dataset,
    params: Params,
    *,
    backend: str,
    checkpoint_dir: Path,
    callbacks: list[Any] | None = None,
) -> Trainer:
    """TRL SFTTrainer on prompt/completion pairs with completion-only loss."""
    import torch
    from trl import SFTConfig, SFTTrainer

    train = params.train
    steps = planned_steps(len(pairs), params)
    on_cuda = default_device() == "cuda"
    bf16 = on_cuda and torch.cuda.is_bf16_supported()
    # An int: transformers 5 would read a float below 1 as a ratio, transformers 4 would not.
    warmup = math.ceil(steps * train.warmup_ratio)
    config = SFTConfig(
        output_dir=str(checkpoint_dir),
        max_steps=train.max_steps,
        num_train_epochs=train.epochs,
        per_device_train_batch_size=train.batch_size,
        gradient_accumulation_steps=train.grad_accum,
        learning_rate=train.learning_rate,
        lr_scheduler_type=train.lr_scheduler,
        warmup_steps=warmup,
        weight_decay=train.weight_decay,
        optim="adamw_8bit" if backend == "unsloth" else "adamw_torch",
        bf16=bf16,
        fp16=on_cuda and not bf16,
        # TRL turns it on by default; these models are small next to the memory they run in,
        # and Unsloth applies its own (use_gradient_checkpointing="unsloth" in add_lora).
        gradient_checkpointing=False,
        # about 200 points per curve, every step for short runs
        logging_steps=max(1, steps // 200),
        save_strategy="steps",
        save_steps=train.save_steps,
        save_total_limit=2,
        seed=params.seed,
        data_seed=params.seed,
        report_to="none",
        disable_tqdm=True,  # rich shows progress instead
        max_length=train.max_seq_length,
        packing=False,
        completion_only_loss=True,
        dataloader_pin_memory=on_cuda,
    )
    from transformers import PrinterCallback

    trainer_class = SFTTrainer if on_cuda else full_logits_sft_trainer()
    trainer = trainer_class(
        model=model,
        args=config,
        train_dataset=pairs,
        processing_class=tokenizer,
        callbacks=callbacks or [],
    )
    trainer.remove_callback(PrinterCallback)  # it prints raw log dicts; rich reports progress
    return trainer


def full_logits_sft_trainer() -> type:
    """SFTTrainer with the loss from the model's own forward pass (full logits).

    TRL's default fused LM head saves GPU memory by scoring the vocabulary in tiles; on a CPU
    those tiles are slower than one matmul (measured: ~20% per step for SmolLM2, ~3x for the
    151k-vocabulary tiny Qwen3). The labels, and so the completion-only mask, are the same.
    TRL's extra metrics (entropy, token accuracy) come from the fused head and are not logged.
    """
    from transformers import Trainer
    from trl import SFTTrainer

    class FullLogitsSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            return Trainer.compute_loss(
                self,
                model,
                inputs,
                return_outputs=return_outputs,
                num_items_in_batch=num_items_in_batch,
            )

    return FullLogitsSFTTrainer


def log_curve_point(live: Any, entry: dict[str, Any]) -> None:
    """One logged training step (a Trainer log entry) as a point on the dvclive curves."""
    if "loss" not in entry:  # the end-of-run summary entry is not a curve point
        return
    live.step = int(entry["step"])
    for key in CURVE_KEYS:
        if key in entry:
            live.log_metric(key, float(entry[key]))
    live.make_summary()


def reuse_final_checkpoint(trainer: Trainer, checkpoint: Path, live_dir: Path) -> None:
    """Take the finished run's weights and state from its last checkpoint instead of training.

    (Trainer, resumed at its final step, would still take one more step.)
    """
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import TrainerState

    from dvclive import Live

    set_peft_model_state_dict(trainer.model, load_file(checkpoint / "adapter_model.safetensors"))
    trainer.state = TrainerState.load_from_json(str(checkpoint / "trainer_state.json"))
    with Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=None) as live:
        for entry in trainer.state.log_history:
            log_curve_point(live, entry)


def checkpoint_is_final(checkpoint: Path) -> bool:
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return state["global_step"] >= state["max_steps"]


def training_callbacks(live_dir: Path, console: Console, elapsed_before: float) -> list[Any]:
    """dvclive curves, a rich progress bar and the checkpoint-complete marker.

    Defined here rather than at module level because transformers must not be imported before
    Unsloth on the GPU path.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from transformers import TrainerCallback

    from dvclive import Live

    class LiveCurves(TrainerCallback):
        """Training curves into dvclive, one point per logging step, x = optimizer step."""

        def __init__(self) -> None:
            self.live: Live | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.live = Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=None)
            for entry in state.log_history:  # a resumed run replays its curve up to the checkpoint
                log_curve_point(self.live, entry)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.live is not None:
                log_curve_point(self.live, {**(logs or {}), "step": state.global_step})

        def on_train_end(self, args, state, control, **kwargs):
            if self.live is not None:
                self.live.end()

    class RichSteps(TrainerCallback):
        def __init__(self) -> None:
            self.progress = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console,
            )
            self.task = None
            self.every = 1

        def on_train_begin(self, args, state, control, **kwargs):
            self.task = self.progress.add_task(
                "train", total=state.max_steps, completed=state.global_step, loss="-"
            )
            self.every = max(1, state.max_steps // 20)
            self.progress.start()

        def on_step_end(self, args, state, control, **kwargs):
            self.progress.update(self.task, completed=state.global_step)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.progress.update(self.task, loss=f"{logs['loss']:.4f}")
                # Without a terminal the bar is not redrawn: leave a line in the log instead.
                if not console.is_terminal and state.global_step % self.every == 0:
                    console.print(
                        f"step {state.global_step}/{state.max_steps} loss {logs['loss']:.4f} "
                        f"lr {logs.get('learning_rate', 0):.3g}"
                    )

        def on_train_end(self, args, state, control, **kwargs):
            self.progress.stop()

    class CheckpointDone(TrainerCallback):
        """Mark a checkpoint complete (and record the training time so far) once it is saved."""

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.monotonic()

        def on_save(self, args, state, control, **kwargs):
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            seconds = elapsed_before + time.monotonic() - self.start
            write_json(folder / ELAPSED_FILE, {"train_seconds": round(seconds, 3)})

    return [LiveCurves(), RichSteps(), CheckpointDone()]


# --------------------------------------------------------------------------- the stage


def _versions(backend: str) -> dict[str, str]:
    names = ["torch", "transformers", "peft", "trl", "datasets"]
    if backend == "unsloth":
        names.append("unsloth")
    return {name: importlib.metadata.version(name) for name in names}


def run_training(
    params: Params,
    preset: Preset,
    backend: str,
    rows: Dataset,
    *,
    dataset_dir: Path = DATASET_DIR,
    adapter_dir: Path = ADAPTER_DIR,
    checkpoint_dir: Path = CHECKPOINT_DIR,
    live_dir: Path = LIVE_DIR,
    metrics_file: Path = METRICS_FILE,
    console: Console | None = None,
) -> dict[str, Any]:
    """Train, write the adapter + provenance + metrics, and return the provenance record."""
    console = console or Console()
    train = params.train
    import torch
    from datasets.utils.logging import disable_progress_bar
    from transformers.utils import logging as hf_logging

    disable_progress_bar()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    # TRL/peft still use the old `gradient_checkpointing` names; nothing for us to act on
    warnings.filterwarnings(
        "ignore", message=r".*checkpointing.* is deprecated", category=FutureWarning
    )
    if train.threads:
        torch.set_num_threads(train.threads)

    if preset.needs_cuda and backend == "transformers":
        console.print(
            f"[yellow]{preset.name} without Unsloth: training 16-bit weights with transformers"
            " + peft (install unsloth for 4-bit QLoRA)"
        )
    model, tokenizer = load_base_model(
        preset,
        backend=backend,
        for_training=True,
        load_in_4bit=train.load_in_4bit,
        seed=QWEN3_TINY_SEED,
        max_seq_length=train.max_seq_length,
    )
    pairs = sft_dataset(tokenizer, rows)
    lengths = token_lengths(tokenizer, pairs)
    too_long = sum(length > train.max_seq_length for length in lengths)
    if too_long:
        console.print(
            f"[yellow]{too_long} of {len(lengths)} examples exceed train.max_seq_length="
            f"{train.max_seq_length} tokens (longest {max(lengths)}) and will be truncated"
        )
    fingerprint = dataset_fingerprint(list(rows["question"]), list(rows["answer"]))

    model = add_lora(model, params, backend)
    if hub_id_of(preset):  # a portable pointer in adapter_config.json, not a local cache path
        model.peft_config["default"].base_model_name_or_path = hub_id_of(preset)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())

    resume = prepare_checkpoints(checkpoint_dir, run_key(params, fingerprint, backend), console)
    elapsed_before = _elapsed_at(resume)
    callbacks = training_callbacks(live_dir, console, elapsed_before)
    trainer = build_trainer(
        model,
        tokenizer,
        pairs,
        params,
        backend=backend,
        checkpoint_dir=checkpoint_dir,
        callbacks=callbacks,
    )
    console.print(
        f"training {preset.name} ({backend}, {default_device()}): {len(pairs)} examples, "
        f"{planned_steps(len(pairs), params)} steps, {trainable:,} trainable parameters"
    )
    start = time.monotonic()
    if resume is not None and checkpoint_is_final(resume):
        console.print(f"{resume} already holds the final step; reusing it")
        reuse_final_checkpoint(trainer, resume, live_dir)
    else:
        try:
            trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        finally:  # leave the terminal clean if training dies
            for callback in callbacks:
                if hasattr(callback, "progress"):
                    callback.progress.stop()
    train_seconds = elapsed_before + time.monotonic() - start
    state = trainer.state
    losses = [entry["loss"] for entry in state.log_history if "loss" in entry]

    provenance = {
        "format": 1,
        "model": params.model,
        "preset": preset.name,
        "family": preset.family,
        "base_weights": describe_base_weights(preset, QWEN3_TINY_SEED),
        "base_seed": QWEN3_TINY_SEED,
        "backend": backend,
        "device": default_device(),
        "load_in_4bit": backend == "unsloth" and train.load_in_4bit,
        "seed": params.seed,
        "train_params": train.model_dump(),
        "dataset": {"path": str(dataset_dir), "fingerprint": fingerprint, "examples": len(rows)},
        "final_step": state.global_step,
        "final_loss": losses[-1] if losses else None,
        "resumed_from_step": _step_of(resume) if resume else None,
        # time of the steps that count (work lost past a kill's last checkpoint is not included)
        "train_seconds": round(train_seconds, 3),
        "seconds_per_step": round(train_seconds / max(state.global_step, 1), 4),
        "trainable_params": trainable,
        "total_params": total,
        "max_tokens": max(lengths),
        "truncated_examples": too_long,
        "versions": _versions(backend),
    }
    with atomic_dir(adapter_dir) as tmp:
        trainer.model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(Path(tmp) / PROVENANCE_FILE, provenance)
    write_json(
        metrics_file,
        {
            "final_loss": provenance["final_loss"],
            "steps": state.global_step,
            "train_seconds": provenance["train_seconds"],
            "seconds_per_step": provenance["seconds_per_step"],
            "trainable_params": trainable,
            "examples": len(rows),
        },
    )
    return provenance


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
