"""Answers already computed, kept on disk: the base model's answers are reused across
experiments that only change training, and a killed evaluation resumes from its completed
batches (no question is answered twice).

One key scheme at two levels. A key is the SHA-256 of
  - the model: the base weights' identity (the bundled GGUF's SHA-256, the random weights'
    seed and config, an HF snapshot's commit, or a local folder's file names, sizes and
    modification times), how they were loaded, and for the fine-tuned model every adapter
    file's SHA-256;
  - the code that turns a question into an answer (the SHA-256 of its source files) and the
    environment that can move a number (torch/transformers/peft versions, device, backend);
  - the payload: for a whole evaluation, every question row and the eval params that shape
    answers; for one batch, its prompts (or scored continuations), budgets, sampling and index.
Anything that could change an answer changes the key, so an entry that no longer applies is
never found: it only stays unused (delete the folder to reclaim the space).

Where: $LETTERWISE_CACHE/answers (default ~/.cache/letterwise/answers), outside the repo so
queued `dvc exp run` copies share it. LETTERWISE_ANSWER_CACHE=off turns it off.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from pathlib import Path
from typing import Any

from letterwise.io import write_text
from letterwise.modeling import (
    QWEN3_TINY_SEED,
    base_weights_ref,
    cache_root,
    describe_base_weights,
    file_sha256,
)
from letterwise.presets import Preset

PACKAGE_DIR = Path(__file__).resolve().parents[1]
# The source that decides an answer: prompts, chat rendering, budgets, decoding, scoring passes.
ANSWER_CODE = (
    "chat.py",
    "generation.py",
    "modeling.py",
    "eval/answering.py",
    "eval/choice.py",
    "eval/choice_metrics.py",
    "eval/cloze.py",
    "eval/instruments.py",
    "eval/runner.py",
    "tasks/__init__.py",
    "tasks/common.py",
    "tasks/count.py",
    "tasks/position.py",
    "tasks/spell_first.py",
    "tasks/spelling.py",
)
SWITCH_ENV = "LETTERWISE_ANSWER_CACHE"


def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def code_fingerprint(package_dir: Path = PACKAGE_DIR) -> dict[str, str]:
    return {name: file_sha256(package_dir / name) for name in ANSWER_CODE}


def environment_fingerprint(backend: str, device: str) -> dict[str, str]:
    versions = {}
    for name in ("torch", "transformers", "peft", "unsloth"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return {"backend": backend, "device": device, **versions}


def folder_listing(folder: Path) -> list[tuple[str, int, int]]:
    """File names, sizes and modification times: cheap identity for multi-GB weight folders."""
    return [
        (p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    ]


def folder_digest(folder: Path) -> dict[str, str]:
    """Every file's SHA-256 (adapters are small; they change with every training run)."""
    return {
        p.relative_to(folder).as_posix(): file_sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def base_identity(preset: Preset, load_options: dict[str, Any]) -> dict[str, Any]:
    """What makes the base model the same model: where its weights come from, their content
    identity, and how they are loaded (`load_base_model`'s options from the adapter's record)."""
    identity: dict[str, Any] = {
        "preset": preset.name,
        "weights": describe_base_weights(preset, load_options.get("seed", QWEN3_TINY_SEED)),
        "load": load_options,
    }
    ref = Path(base_weights_ref(preset, load_options.get("seed", QWEN3_TINY_SEED)))
    if ref.is_dir() and "/snapshots/" not in str(ref):
        identity["files"] = folder_listing(ref)  # a local folder has no commit: list its files
    return identity


def tuned_identity(base: dict[str, Any], adapter_dir: Path) -> dict[str, Any]:
    return {"base": base, "adapter": folder_digest(adapter_dir)}


class AnswerStore:
    """get/put JSON values by payload, under one model-and-code context."""

    def __init__(self, root: Path, context: dict[str, Any]):
        self.root = root
        self.context_key = _digest(context)
        self.hits = 0
        self.misses = 0

    def _path(self, payload: Any) -> Path:
        key = _digest({"context": self.context_key, "payload": payload})
        return self.root / key[:2] / f"{key}.json"

    def get(self, payload: Any) -> Any | None:
        path = self._path(payload)
        try:
            value = json.loads(path.read_text(encoding="utf-8"))["value"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            self.misses += 1
            return None
        self.hits += 1
        return value

    def put(self, payload: Any, value: Any) -> None:
        # atomic: a kill mid-write leaves no entry, never a truncated one
        write_text(self._path(payload), json.dumps({"value": value}, ensure_ascii=False))


def cache_dir() -> Path | None:
    """The answer cache folder, or None when LETTERWISE_ANSWER_CACHE=off."""
    if os.environ.get(SWITCH_ENV, "").strip().lower() in ("off", "0", "false", "no"):
        return None
    return cache_root() / "answers"


def eval_stores(
    preset: Preset, load_options: dict[str, Any], adapter_dir: Path, backend: str
) -> dict[str, AnswerStore | None]:
    """The answer stores of the base and the fine-tuned model as an eval stage loads them
    (both None when the cache is off)."""
    root = cache_dir()
    if root is None:
        return {"base": None, "tuned": None}
    from letterwise.modeling import default_device

    shared = {
        "code": code_fingerprint(),
        "environment": environment_fingerprint(backend, default_device()),
    }
    base = base_identity(preset, load_options)
    tuned = tuned_identity(base, adapter_dir)
    return {
        "base": AnswerStore(root, {"model": base, **shared}),
        "tuned": AnswerStore(root, {"model": tuned, **shared}),
    }
