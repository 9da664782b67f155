"""What the server reads from the published folder (models/published), without loading a model.

The folder is written by the `publish` stage (letterwise.publishing.folder): the LoRA adapter,
its tokenizer, `letterwise.json` (training provenance: which base model), the recommended
sampling in `generation_config.json`, and the eval metrics in `metrics/eval_*.json`. The model
itself is loaded by letterwise.publishing.load_back.load_published, as the load-back check does.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from letterwise.modeling import PROVENANCE_FILE

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
METRICS_SUBDIR = "metrics"
TASKS = ("spelling", "position", "count")
STRATEGIES = ("direct", "spell_first")
REVISION_CHARS = 12  # like a short git hash


class PublishedFolderError(ValueError):
    """The folder is not a usable published model; the message says what is missing."""


@dataclass(frozen=True)
class PublishedModel:
    folder: Path
    provenance: dict[str, Any]
    model: str  # the preset or Hub id the adapter was trained on
    adapter_revision: str  # content hash of the adapter files
    eval_mode: str | None  # the mode the published eval ran in
    # (task, strategy) -> {"lower": ci_low, "point": accuracy, "upper": ci_high}
    eval_accuracy: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    sampling: dict[str, float | int] = field(default_factory=dict)  # recommended, non-thinking


def adapter_revision(folder: Path) -> str:
    """A short sha256 over the adapter's config and weights: changes whenever the model does."""
    digest = hashlib.sha256()
    for name in ADAPTER_FILES:
        digest.update(name.encode())
        with open(folder / name, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:REVISION_CHARS]


def _tuned_summary(section: dict[str, Any], strategy: str) -> dict[str, Any] | None:
    """The fine-tuned model's summary for one instrument of one task's metrics.

    Tolerates both layouts: direct generation at metrics[task]["tuned"] (current) or at
    metrics[task]["direct"]["tuned"]; spell-first at metrics[task]["spell_first"]["tuned"].
    """
    nested = section.get(strategy)
    if isinstance(nested, dict) and isinstance(nested.get("tuned"), dict):
        return nested["tuned"]
    if strategy == "direct" and isinstance(section.get("tuned"), dict):
        return section["tuned"]
    return None


def eval_accuracy(metrics_files: list[Path]) -> dict[tuple[str, str], dict[str, float]]:
    """(task, strategy) -> lower/point/upper accuracy of the fine-tuned model, from eval_*.json.

    Entries without a numeric accuracy and CI are left out (an instrument that did not run).
    """
    found: dict[tuple[str, str], dict[str, float]] = {}
    for path in metrics_files:
        metrics = json.loads(path.read_text())
        for task in TASKS:
            section = metrics.get(task)
            if not isinstance(section, dict):
                continue
            for strategy in STRATEGIES:
                tuned = _tuned_summary(section, strategy)
                values = [
                    tuned.get(k) if tuned else None for k in ("ci_low", "accuracy", "ci_high")
                ]
                if all(isinstance(v, int | float) for v in values):
                    found[(task, strategy)] = dict(
                        zip(("lower", "point", "upper"), values, strict=True)
                    )
    return found


def eval_mode(metrics_files: list[Path]) -> str | None:
    modes = {json.loads(path.read_text()).get("mode") for path in metrics_files} - {None}
    if len(modes) > 1:
        raise PublishedFolderError(f"the eval metrics disagree on the mode: {sorted(modes)}")
    return modes.pop() if modes else None


def recommended_sampling(folder: Path) -> dict[str, float | int]:
    """Non-thinking sampling defaults: the folder's generation_config.json over Qwen3's values."""
    from letterwise.generation import QWEN3_SAMPLING

    values: dict[str, float | int] = dict(QWEN3_SAMPLING["non-thinking"])
    path = folder / "generation_config.json"
    if path.is_file():
        config = json.loads(path.read_text())
        for name in values:
            if isinstance(config.get(name), int | float):
                values[name] = config[name]
    return values


def read_published(folder: str | Path) -> PublishedModel:
    """Everything the server needs from the folder before a model loads; names what is missing."""
    folder = Path(folder)
    hint = "make it with `dvc repro publish` (or `dvc pull` it) or pass --model-dir"
    if not folder.is_dir():
        raise PublishedFolderError(f"model directory {folder} does not exist; {hint}")
    missing = [name for name in (*ADAPTER_FILES, PROVENANCE_FILE) if not (folder / name).is_file()]
    if missing:
        raise PublishedFolderError(
            f"{folder} is not a published letterwise model: it lacks {', '.join(missing)}; {hint}"
        )
    provenance = json.loads((folder / PROVENANCE_FILE).read_text())
    if not provenance.get("model"):
        raise PublishedFolderError(f"{folder / PROVENANCE_FILE} does not name the base model")
    metrics_files = sorted((folder / METRICS_SUBDIR).glob("eval_*.json"))
    return PublishedModel(
        folder=folder,
        provenance=provenance,
        model=str(provenance["model"]),
        adapter_revision=adapter_revision(folder),
        eval_mode=eval_mode(metrics_files),
        eval_accuracy=eval_accuracy(metrics_files),
        sampling=recommended_sampling(folder),
    )
