"""What publish reads, checked before any model loads: the adapter, the dataset, metrics,
predictions.

Every input must exist, parse, and belong to the same run (the adapter trained on params.model,
the eval metrics of the same eval settings); otherwise PublishError names what is off.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from letterwise.params import Params
from letterwise.presets import Preset

EVAL_STAGES = ("eval_spelling", "eval_position")
PROVENANCE_FILE = "letterwise.json"
DATASET_SPLITS = ("train", "validation", "test")


class PublishError(RuntimeError):
    """An input is missing or inconsistent, a check failed, or the upload failed."""


@dataclass(frozen=True)
class Paths:
    """Where the stage reads and writes (the stage gives its defaults)."""

    adapter: Path
    dataset: Path
    metrics: Path
    predictions: Path
    out: Path
    metrics_file: Path

    @property
    def details(self) -> Path:
        """The stages' full results (metrics/details/), which the card is built from; the
        metrics files beside it hold only the headline numbers."""
        return self.metrics / "details"


def required_inputs(paths: Paths) -> list[tuple[Path, str]]:
    """(file, the stage that makes it) for everything the stage reads."""
    needed = [
        (paths.adapter / "adapter_config.json", "train"),
        (paths.adapter / "adapter_model.safetensors", "train"),
        (paths.adapter / PROVENANCE_FILE, "train"),
        (paths.adapter / "tokenizer_config.json", "train"),
        (paths.details / "train.json", "train"),
        (paths.details / "filter_tokens.json", "filter_tokens"),
        (paths.details / "build_dataset.json", "build_dataset"),
        (paths.dataset / "README.md", "build_dataset"),
        *(
            (paths.dataset / "jsonl" / f"{split}.jsonl", "build_dataset")
            for split in DATASET_SPLITS
        ),
    ]
    for stage in EVAL_STAGES:
        needed.append((paths.details / f"{stage}.json", stage))
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
        eval_metrics={s: read_json(paths.details / f"{s}.json") for s in EVAL_STAGES},
        predictions={s: read_jsonl(paths.predictions / f"{s}.jsonl") for s in EVAL_STAGES},
        train_metrics=read_json(paths.details / "train.json"),
        data_metrics=read_json(paths.details / "build_dataset.json"),
        token_metrics=read_json(paths.details / "filter_tokens.json"),
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
                    f"{paths.details / f'{stage}.json'} has {key}={metrics.get(key)!r} but "
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
