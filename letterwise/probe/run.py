"""One model end to end: items, hidden states, every probe at every chosen layer, the logit lens,
into one JSON-ready dict (the CLI's --out file; the stage's per-model section).

The JSON (format 1):
  settings                    the probe params used, the layers
  items                       sizes, the words tested (in order), share of one-token strings
  leakage                     held-out words checked against the training strings (0 found)
  probes/<task>               per layer: probe, control, selectivity [CI], majority, val_*, C;
                              best: the layer of highest selectivity
  records/<task>              per-word predictions (probe and control) per layer, packed one
                              string per word, space-joined: what `compare` resamples
  lens/<task>                 per layer: mean p [CI], ranks, top-1; peak, final, late_drop
  seconds                     wall time per part
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from letterwise.params import ProbeParams
from letterwise.probe import items as it
from letterwise.probe.extract import PREFIX, encode, last_token_states, n_layers, progress
from letterwise.probe.probes import (
    best_layer,
    bootstrap_weights,
    control_labels,
    fit_layer,
    layer_summary,
)

FORMAT = 1


def chosen_layers(total: int, step: int) -> list[int]:
    """Every `step`-th hidden state, always with the embeddings (0) and the last one."""
    return sorted(set(range(0, total, step)) | {total - 1})


def lens_rows(split: str, n: int, dataset_dir: Path = it.DATASET_JSONL) -> list[dict]:
    """The first `n` position and the first `n` count questions of a held-out split."""
    import json

    path = dataset_dir / f"{split}.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line]
    return [r for task in ("position", "count") for r in [x for x in rows if x["task"] == task][:n]]


def prepare_items(
    settings: ProbeParams,
    *,
    seed: int,
    dataset_dir: Path = it.DATASET_JSONL,
    tokens_file: Path = it.TOKENS_FILE,
) -> dict[str, Any]:
    """Training strings (seeded, held-out words excluded, checked) and the tested words."""
    heldout = it.heldout_words(dataset_dir)
    train = it.sample_training(
        it.training_strings(tokens_file), heldout, settings.train_strings, seed=seed
    )
    it.check_no_leak(train, heldout)
    words = it.split_words(settings.split, dataset_dir)[: settings.words]
    it.check_no_leak(train, words)
    fit, val = it.fit_val_split(len(train), settings.val_share, seed=seed)
    return {"train": train, "words": words, "fit": fit, "val": val, "heldout_checked": len(heldout)}


def probe_states(
    task: str,
    states: np.ndarray,
    layers: Sequence[int],
    prepared: dict[str, Any],
    types: Sequence[int],
    settings: ProbeParams,
    *,
    seed: int,
    bar: Any = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One task at every layer: (summary with `layers` and `best`, per-word records).

    `states`: (len(layers), n_train + n_words, hidden), the training strings first."""
    train, words, fit, val = (prepared[k] for k in ("train", "words", "fit", "val"))
    n_train = len(train)
    real_train = it.task_labels(train, task, settings.count_letters)
    real_test = it.task_labels(words, task, settings.count_letters)
    control_train, control_test = control_labels(
        list(types[:n_train]),
        list(types[n_train:]),
        real_train.labels,
        real_test.labels,
        seed=seed + it.TASKS.index(task),
    )
    labels = {
        "fit": real_train.labels[fit],
        "val": real_train.labels[val],
        "test": real_test.labels,
        "control_fit": control_train[fit],
        "control_val": control_train[val],
        "control_test": control_test,
    }
    weights = bootstrap_weights(len(words), settings.bootstrap, seed=seed)
    rows, packed = [], {}
    for j, layer in enumerate(layers):
        x = states[j]
        fitted = fit_layer(
            task, x[:n_train][fit], x[:n_train][val], x[n_train:], labels, cs=settings.cs
        )
        rows.append(layer_summary(task, layer, fitted, labels, weights))
        packed[str(layer)] = {
            "probe": " ".join(it.encode_predictions(task, fitted["probe_test"])),
            "control": " ".join(it.encode_predictions(task, fitted["control_test"])),
        }
        if bar is not None:
            bar[0].advance(bar[1])
    summary = {
        "columns": list(real_test.columns),
        "metric": "mean_f1" if task == "letter_in_token" else "mean_accuracy",
        "layers": rows,
        "best": best_layer(rows),
    }
    records = {
        "truth": " ".join(it.encode_predictions(task, labels["test"])),
        "control_truth": " ".join(it.encode_predictions(task, labels["control_test"])),
        "layers": packed,
    }
    return summary, records


def probe_model(
    model: Any,
    tokenizer: Any,
    settings: ProbeParams,
    *,
    seed: int,
    prepared: dict[str, Any],
    lens_questions: Sequence[dict],
    console: Console,
    label: str = "model",
) -> dict[str, Any]:
    """Every probe and the logit lens for one loaded model (see the module docstring)."""
    from letterwise.probe.lens import read_slots, summarise

    seconds: dict[str, float] = {}
    layers = chosen_layers(n_layers(model), settings.layer_step)
    strings = prepared["train"] + prepared["words"]
    rows = encode(tokenizer, strings)
    types = [row[-1] for row in rows]  # the token type whose state is probed
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    started = time.monotonic()
    states = last_token_states(
        model,
        rows,
        pad_id,
        layers=layers,
        batch_size=settings.batch_size,
        description=f"{label}: hidden states",
    )
    seconds["extract"] = time.monotonic() - started

    started = time.monotonic()
    probes, records = {}, {}
    with progress() as bar:
        task_bar = bar.add_task(f"{label}: probes", total=len(it.TASKS) * len(layers))
        for task in it.TASKS:
            probes[task], records[task] = probe_states(
                task, states, layers, prepared, types, settings, seed=seed, bar=(bar, task_bar)
            )
    seconds["probes"] = time.monotonic() - started

    lens: dict[str, Any] = {}
    if lens_questions:
        started = time.monotonic()
        for task in ("position", "count"):
            task_rows = [r for r in lens_questions if r["task"] == task]
            per_question = read_slots(
                model,
                tokenizer,
                task_rows,
                layers=layers,
                stems=settings.lens_stems,
                batch_size=settings.batch_size,
                description=f"{label}: logit lens, {task}",
            )
            lens[task] = summarise(per_question, layers, seed=seed)
        seconds["lens"] = time.monotonic() - started

    n_train = len(prepared["train"])
    prefix = len(tokenizer(PREFIX)["input_ids"])
    one_token = sum(len(r) - prefix == 1 for r in rows[:n_train]) / max(n_train, 1)
    for task in it.TASKS:
        best = probes[task]["best"]
        console.print(
            f"{label}: {task}: best layer {best['layer']}, selectivity "
            f"{best['selectivity']:+.3f} [{best['selectivity_ci_low']:+.3f}, "
            f"{best['selectivity_ci_high']:+.3f}] (probe {best['probe']:.3f}, control "
            f"{best['control']:.3f})"
        )
    return {
        "format": FORMAT,
        "settings": {**settings.model_dump(), "seed": seed, "layers": layers},
        "items": {
            "train_strings": n_train,
            "fit": len(prepared["fit"]),
            "val": len(prepared["val"]),
            "split": settings.split,
            "n_words": len(prepared["words"]),
            "words": " ".join(prepared["words"]),
            "train_one_token_share": one_token,
            # held-out words whose probed (last) token is also a training string's last token:
            # where a control task can score by memorising token identity
            "test_types_seen_share": sum(t in set(types[:n_train]) for t in types[n_train:])
            / max(len(types) - n_train, 1),
            "prefix_tokens": prefix,
        },
        "leakage": {"heldout_words_checked": prepared["heldout_checked"], "in_training": 0},
        "probes": probes,
        "records": records,
        "lens": lens,
        "seconds": {key: round(value, 1) for key, value in seconds.items()},
    }


def load_model(
    model: str, adapter: Path | None = None, *, backend: str = "auto"
) -> tuple[str, Any, Any]:
    """(model name, model, tokenizer): the base model of a preset, or an adapter on the base it
    names (letterwise.modeling's loaders, as the eval stages load them)."""
    from letterwise.modeling import load_base_model, load_tuned_model, read_provenance
    from letterwise.presets import resolve_preset

    if adapter is None:
        return (model, *load_base_model(resolve_preset(model), backend=backend))
    provenance = read_provenance(adapter)
    return (provenance["model"], *load_tuned_model(adapter, backend=backend))
