"""Resumable checkpoints: which run a checkpoint directory belongs to, and which checkpoints
are whole.

A checkpoint directory carries a key of the params and data it belongs to; a rerun with the same
key resumes from the newest complete checkpoint (one whose elapsed-time file, written last, exists),
a changed key starts fresh.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from letterwise.io import write_json
from letterwise.params import Params

if TYPE_CHECKING:
    pass


RUN_KEY_FILE = "letterwise_run.json"  # in the checkpoint dir: which params/data it belongs to
ELAPSED_FILE = "letterwise_elapsed.json"  # in a checkpoint, written last: it is complete


# Params that change how a run is carried out but not what it computes.
NOT_IN_RUN_KEY = {"threads", "save_steps"}


def run_key(params: Params, fingerprint: str, backend: str) -> str:
    """Identity of a training run: the checkpoints of a different run must not be resumed."""
    train = params.train.model_dump(exclude=NOT_IN_RUN_KEY)
    blob = json.dumps(
        {
            "model": params.model,
            "seed": params.training_seed,
            "train": train,
            "dataset": fingerprint,
            "backend": backend,  # what `auto` resolved to: checkpoints differ between backends
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def step_of(checkpoint: Path) -> int:
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
    return sorted(found, key=step_of)


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
        console.print(f"resuming from {resume} (step {step_of(resume)})")
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


def elapsed_at(checkpoint: Path | None) -> float:
    if checkpoint is None:
        return 0.0
    return float(json.loads((checkpoint / ELAPSED_FILE).read_text())["train_seconds"])


def checkpoint_is_final(checkpoint: Path) -> bool:
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return state["global_step"] >= state["max_steps"]
