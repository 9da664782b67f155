"""The published folder, laid out as a Hugging Face model repo, built in a temp dir and checked.

It holds the LoRA adapter and tokenizer, a `generation_config.json` carrying the evaluated mode's
recommended sampling, the metrics it was evaluated with, a model card built from those files
(letterwise.cards.model_card), merged 16-bit weights in `merged/` on request, and the dataset repo
(card + JSONL splits) in `dataset/`. Before it is kept it must pass the load-back check
(letterwise.publishing.load_back) and the card must round-trip.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from rich.console import Console

from letterwise.io import write_json
from letterwise.params import Params
from letterwise.presets import Preset
from letterwise.publishing.inputs import (
    DATASET_SPLITS,
    EVAL_STAGES,
    PROVENANCE_FILE,
    Inputs,
    Paths,
    PublishError,
)
from letterwise.publishing.load_back import (
    load_back_check,
    load_back_passes,
    merged_load_back,
    required_match_rate,
    write_merged,
)

DATASET_SUBDIR = "dataset"  # the dataset repo, inside the published folder
METRICS_SUBDIR = "metrics"  # copies of the metrics the card was built from
ADAPTER_SKIP = {"README.md"}  # peft's placeholder card; ours replaces it
# The cross-arm verdicts (python -m letterwise.eval.verdict) the card quotes, per model: the
# powered study's once its runs are complete, then the pilot's. Each file is a publish dep in
# dvc.yaml (tests/test_publish.py checks), so a verdict re-computed re-publishes the card.
VERDICTS: dict[str, tuple[tuple[str, Path], ...]] = {
    "smollm2-135m": (
        ("pre-registered study", Path("docs/results/study/smollm2-135m")),
        ("pilot, superseded by the study", Path("docs/results/controls")),
    ),
    "gemma3-270m": (
        ("pre-registered study", Path("docs/results/study/gemma3-270m")),
        # that pilot's negative control dropped all but one replay row (its train.json)
        (
            "pilot, superseded by the study; its negative control is not valid",
            Path("docs/results/controls-gemma3-270m"),
        ),
    ),
}


def card_verdicts(model: str, root: Path = Path(".")) -> list[tuple[str, dict]]:
    """(label, verdict) for each verdict the card of `model` quotes, where its file exists."""
    from letterwise.cards.model_card import verdict_of

    found = []
    for label, folder in VERDICTS.get(model, ()):
        verdict = verdict_of(root / folder)
        if verdict is not None:
            found.append((label, verdict))
    return found


def copy_adapter(adapter_dir: Path, folder: Path, params: Params) -> None:
    """Adapter weights, config, tokenizer and provenance, made portable for a Hub repo."""
    from letterwise.cards.model_card import base_model_id

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
        shutil.copy2(paths.details / f"{name}.json", target / f"{name}.json")


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
    from letterwise.generation import QWEN3_SAMPLING

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

    from letterwise.modeling import end_of_turn_ids

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

    from letterwise.cards import model_card

    copy_adapter(paths.adapter, folder, params)
    copy_metrics(paths, folder)
    copy_dataset(paths.dataset, folder)
    sampling = recommended_sampling(params)
    write_generation_config(folder, AutoTokenizer.from_pretrained(str(folder)), sampling)

    load_back, checked = load_back_check(
        folder, params, preset, inputs, backend, paths.adapter, console
    )
    from letterwise.modeling import default_device

    device = default_device()
    load_back["required_match_rate"] = required_match_rate(device)
    if not load_back_passes(load_back, device):
        shown = "\n".join(
            f"  {m['stage']} {m['id']}: expected {m['expected']!r}, got {m['got']!r}"
            for m in load_back["mismatches"]
        )
        raise PublishError(
            f"load-back failed: {load_back['matches']} of {load_back['questions']} greedy answers "
            f"from the published folder equal the reference ({load_back['reference']}), fewer "
            f"than the {load_back['required_match_rate']:.0%} required on {device}; the folder "
            f"does not reproduce the evaluated model:\n{shown}"
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
        verdicts=card_verdicts(params.model),
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
