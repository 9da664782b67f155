"""The LoRA fine-tune: peft adapters (Unsloth's on CUDA), TRL's SFTTrainer, dvclive curves,
provenance.

`run_training` is the whole job the train stage asks for: load the base model, have it answer
the replay questions if the data has any (letterwise.training.replay), add LoRA, train (resuming
from a checkpoint when one matches), then write the adapter + tokenizer + provenance atomically
and the headline numbers to a metrics file.
"""

from __future__ import annotations

import functools
import importlib.metadata
import math
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from letterwise.io import atomic_dir, write_json, write_metrics
from letterwise.modeling import (
    PROVENANCE_FILE,
    QWEN3_TINY_SEED,
    default_device,
    describe_base_weights,
    hub_id_of,
    import_unsloth,
    load_base_model,
)
from letterwise.params import Params
from letterwise.presets import Preset
from letterwise.training.checkpoints import (
    ELAPSED_FILE,
    checkpoint_is_final,
    elapsed_at,
    prepare_checkpoints,
    run_key,
    step_of,
)
from letterwise.training.completion_loss import completion_logits_sft_trainer
from letterwise.training.data import (
    dataset_fingerprint,
    sft_dataset,
    split_replay,
    token_lengths,
)
from letterwise.training.replay import answer_end_for, replay_targets

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase, Trainer


CURVE_KEYS = ("loss", "learning_rate", "grad_norm", "mean_token_accuracy")


def native_bf16(cuda: Any = None) -> bool:
    """Whether the CUDA GPU computes bf16 natively: compute capability 8.0 (Ampere) or newer.

    Not `torch.cuda.is_bf16_supported()`: that is True on a T4 (7.5) through emulation, where
    Unsloth loads the model in fp16, and a bf16 trainer then stops at the first step.
    """
    if cuda is None:
        import torch

        cuda = torch.cuda
    return bool(cuda.is_available()) and tuple(cuda.get_device_capability(0)) >= (8, 0)


def parameter_count(parameters: Any) -> int:
    """Number of weights. bitsandbytes' Params4bit packs two 4-bit weights into each uint8
    element, so its numel() is half the weights it holds."""
    return sum(p.numel() * 2 if type(p).__name__ == "Params4bit" else p.numel() for p in parameters)


def save_tokenizer_for_generation(tokenizer: Any, directory: Any) -> None:
    """Save the tokenizer with left padding, as generation pads (the trainer pads right).

    transformers writes padding_side to tokenizer_config.json only from init_kwargs; without it
    a user's AutoTokenizer.from_pretrained gets the class default, "right".
    """
    side, init_side = tokenizer.padding_side, tokenizer.init_kwargs.get("padding_side")
    tokenizer.padding_side = "left"
    tokenizer.init_kwargs["padding_side"] = "left"
    try:
        tokenizer.save_pretrained(directory)
    finally:
        tokenizer.padding_side = side
        if init_side is None:
            tokenizer.init_kwargs.pop("padding_side", None)
        else:
            tokenizer.init_kwargs["padding_side"] = init_side


def planned_steps(examples: int, params: Params) -> int:
    """Optimizer steps the run will take (max_steps, or epochs over the data)."""
    train = params.train
    if train.max_steps > 0:
        return train.max_steps
    batches = math.ceil(examples / train.batch_size)
    return max(1, math.ceil(train.epochs * math.ceil(batches / train.grad_accum)))


def embeddings_trained(model: Any) -> bool:
    """Whether the adapter trains an embedding layer (the input embeddings or the LM head).

    peft's save_pretrained(save_embedding_layers="auto") settles this, for an adapter that does
    not target an embedding layer, by fetching the base model's config.json from the Hub to see
    whether the vocabulary was resized: one request, or one warning offline, per checkpoint. Our
    vocabularies are never resized (load_base_model refuses a tokenizer larger than the embedding
    matrix), so the embeddings belong in the adapter exactly when training changes them.
    """
    from peft.utils.constants import EMBEDDING_LAYER_NAMES

    return any(
        param.requires_grad and not set(name.split(".")).isdisjoint(EMBEDDING_LAYER_NAMES)
        for name, param in model.named_parameters()
    )


def pin_embedding_saving(model: Any) -> Any:
    """Make every save_pretrained of this peft model, the Trainer's checkpoint saves included,
    pass an explicit save_embedding_layers (see embeddings_trained), so none asks the Hub."""
    save = model.save_pretrained
    embeddings = embeddings_trained(model)

    @functools.wraps(save)
    def save_pretrained(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("save_embedding_layers", embeddings)
        return save(*args, **kwargs)

    model.save_pretrained = save_pretrained
    return model


def add_lora(model: Any, params: Params, backend: str) -> Any:
    """Wrap the base model with LoRA adapters from params.train.lora (seeded init); its saves
    never look anything up on the Hub (pin_embedding_saving)."""
    from transformers import set_seed

    lora = params.train.lora
    set_seed(params.training_seed)  # the LoRA A matrices are randomly initialised
    if backend == "unsloth":
        fast_language_model = import_unsloth()
        peft_model = fast_language_model.get_peft_model(
            model,
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=list(lora.target_modules),
            bias="none",
            use_gradient_checkpointing="unsloth",  # Unsloth's offloaded checkpointing
            random_state=params.training_seed,
        )
        return pin_embedding_saving(peft_model)
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        task_type="CAUSAL_LM",
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        bias="none",
    )
    return pin_embedding_saving(get_peft_model(model, config))


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
    bf16 = on_cuda and native_bf16(torch.cuda)
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
        seed=params.training_seed,
        data_seed=params.training_seed,
        report_to="none",
        disable_tqdm=True,  # rich shows progress instead
        max_length=train.max_seq_length,
        packing=False,
        completion_only_loss=True,
        dataloader_pin_memory=on_cuda,
    )
    from transformers import PrinterCallback

    # On a CPU: logits only where the completion-only loss reads them (training.completion_loss)
    trainer_class = SFTTrainer if on_cuda else completion_logits_sft_trainer()
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
    dataset_dir: Path,
    adapter_dir: Path,
    checkpoint_dir: Path,
    live_dir: Path,
    metrics_file: Path,
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
    # The run key covers the data as build_dataset wrote it (replay answers empty): the replay
    # answers are cached in the checkpoint directory, so a resumed run reuses the very targets
    # its checkpoints were trained on.
    input_fingerprint = dataset_fingerprint(list(rows["question"]), list(rows["answer"]))
    resume = prepare_checkpoints(
        checkpoint_dir, run_key(params, input_fingerprint, backend), console
    )
    answered, replay_rows = split_replay(rows)
    replay = None
    if replay_rows:  # before LoRA: the targets are the base model's own answers
        identity = {
            "model": params.model,
            "base_weights": describe_base_weights(preset, QWEN3_TINY_SEED),
            "backend": backend,
            "load_in_4bit": backend == "unsloth" and train.load_in_4bit,
            "device": default_device(),
        }
        replay_answers, replay = replay_targets(
            model,
            tokenizer,
            replay_rows,
            cache_dir=checkpoint_dir,
            model_identity=identity,
            backend=backend,
            console=console,
            answer_end=answer_end_for(tokenizer, train.replay_answer_end),
        )
        answered = answered + replay_answers
    pairs = sft_dataset(tokenizer, answered)
    lengths = token_lengths(tokenizer, pairs)
    too_long = sum(length > train.max_seq_length for length in lengths)
    if too_long:
        console.print(
            f"[yellow]{too_long} of {len(lengths)} examples exceed train.max_seq_length="
            f"{train.max_seq_length} tokens (longest {max(lengths)}) and will be truncated"
        )
    # what the model trains on (with replay: the base model's answers filled in)
    fingerprint = dataset_fingerprint(
        [row["question"] for row in answered], [row["answer"] for row in answered]
    )

    model = add_lora(model, params, backend)
    if hub_id_of(preset):  # a portable pointer in adapter_config.json, not a local cache path
        model.peft_config["default"].base_model_name_or_path = hub_id_of(preset)
    trainable = parameter_count(p for p in model.parameters() if p.requires_grad)
    total = parameter_count(model.parameters())

    elapsed_before = elapsed_at(resume)
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
        "seed": params.training_seed,
        "train_params": train.model_dump(),
        "dataset": {"path": str(dataset_dir), "fingerprint": fingerprint, "examples": len(pairs)},
        # replay turns: questions, rows kept, dropped (by reason), targets_sha256, from_cache
        "replay": replay,
        "final_step": state.global_step,
        "final_loss": losses[-1] if losses else None,
        "resumed_from_step": step_of(resume) if resume else None,
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
        save_tokenizer_for_generation(tokenizer, tmp)
        write_json(Path(tmp) / PROVENANCE_FILE, provenance)
    details = {
        "final_loss": provenance["final_loss"],
        "steps": state.global_step,
        "train_seconds": provenance["train_seconds"],
        "seconds_per_step": provenance["seconds_per_step"],
        "trainable_params": trainable,
        "examples": len(pairs),
        "replay_rows": replay["rows"] if replay else 0,
        "replay_dropped": replay["dropped"] if replay else 0,
    }
    headline = ("final_loss", "steps", "train_seconds", "examples")
    write_metrics(metrics_file, details, {key: details[key] for key in headline})
    return provenance
