"""Compare probe results: two files, or every arm of a study, layer by layer, on the same words.

    python -m letterwise.probe compare FIRST SECOND          # one file minus another
    python -m letterwise.probe arms docs/results/study/smollm2-135m

`arms` reads each study run's probe.json (`python -m letterwise.probe study`) and the base
model's (docs/results/probe/<model>-base.json), checks that all of them probed the same held-out
words with the same control labels, and writes <study>/<model>/probe_arms.json: per task, arm
and layer the selectivity (mean over the arm's probed seeds) with a 95% bootstrap CI over
words; spelling − negative control and positive control − negative control per layer; the
same-arm seed-to-seed difference where an arm has two probed seeds (what seeds alone move);
and a reading per task. No torch: this reads JSON.

The reading uses intervals simultaneous over the layers (Bonferroni: 1 − 0.05 / L each), so that
"some layer differs" is not a pick of the best of L 95% intervals:
- `absent`: the spelling arm's selectivity is above 0 at no layer;
- `more after spelling training` / `less after spelling training`: spelling − negative control
  is above (below) 0 at some layer;
- `present in both arms`: both arms are above 0 at some layer and no layer differs;
- `present, not shown in the negative control`: the spelling arm is above 0 somewhere, the
  negative control nowhere, and no layer's difference is shown.
The CI covers the words, not the seeds; the seed-to-seed row says how far seeds alone move it.
So a shown difference no larger, at any layer where it is shown, than one arm's two seeds differ
at that layer reads `within seed-to-seed variation`: the words cannot tell it from a reseed.
(Conservative: a single-seed gap has twice the seed variance of a two-seed mean difference.)
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from letterwise.eval.stats import CONFIDENCE
from letterwise.probe import items as it
from letterwise.probe.probes import bootstrap_weights, compare_groups, group_selectivity, interval

ARMS = ("spelling", "negative_control", "positive_control")
COMPARISONS = (("spelling", "negative_control"), ("positive_control", "negative_control"))
SUMMARY_FILE = "probe_arms.json"
RUN_FOLDER = re.compile(r"^(?P<arm>[a-z_]+)-seed(?P<seed>\d+)$")
DEFAULT_BASE_DIR = Path("docs/results/probe")


def decoded_records(result: dict[str, Any], task: str, layer: int) -> dict[str, np.ndarray]:
    """One task's per-word truth and predictions at one layer, from a probe JSON."""
    records = result["records"][task]
    layer_records = records["layers"][str(layer)]
    return {
        "truth": it.decode_predictions(task, records["truth"].split()),
        "control_truth": it.decode_predictions(task, records["control_truth"].split()),
        "probe": it.decode_predictions(task, layer_records["probe"].split()),
        "control": it.decode_predictions(task, layer_records["control"].split()),
    }


def shared_layers(results: Sequence[dict[str, Any]], task: str) -> list[int]:
    """The layers every result probed for `task`, in order."""
    sets = [{int(k) for k in r["records"][task]["layers"]} for r in results]
    return sorted(set.intersection(*sets)) if sets else []


def check_same_items(results: dict[str, dict[str, Any]]) -> None:
    """Every result probed the same held-out words with the same truth and control labels, or a
    ValueError naming the first that differs: a paired bootstrap needs the same words."""
    (first_label, first), *rest = results.items()
    for label, result in rest:
        if result["items"]["words"] != first["items"]["words"]:
            raise ValueError(
                f"{label} and {first_label} probed different held-out words; rerun one of them "
                "with the same probe settings"
            )
        for task in it.TASKS:
            for key in ("truth", "control_truth"):
                if result["records"][task][key] != first["records"][task][key]:
                    raise ValueError(
                        f"{label} and {first_label} have different {task} {key} labels (other "
                        "probe settings or seed); rerun one of them with the same settings"
                    )


def compare(
    first: dict[str, Any], second: dict[str, Any], *, seed: int = 0, n_resamples: int = 1000
) -> dict[str, Any]:
    """Per task and layer both files share: selectivity of `first` minus `second` with a CI,
    paired over the same held-out words (the two files must have probed the same words). A
    probe stage's details file (base and tuned) stands for its tuned model."""
    first, second = (r["tuned"] if "tuned" in r else r for r in (first, second))
    if first["items"]["words"] != second["items"]["words"]:
        raise ValueError("the two probe files tested different held-out words; rerun one of them")
    return {
        task: [
            {
                "layer": layer,
                **compare_groups(
                    task,
                    [decoded_records(first, task, layer)],
                    [decoded_records(second, task, layer)],
                    n_resamples=n_resamples,
                    seed=seed,
                ),
            }
            for layer in shared_layers([first, second], task)
        ]
        for task in it.TASKS
    }


def study_probes(study_dir: Path) -> dict[str, dict[int, dict[str, Any]]]:
    """arm -> seed -> probe result, for every <arm>-seed<k>/probe.json directly under study_dir.
    A run made with the probe stage saved the stage's details (base and tuned): its tuned part
    is the arm's result, as `python -m letterwise.probe study` writes it."""
    found: dict[str, dict[int, dict[str, Any]]] = {}
    for path in sorted(study_dir.glob("*/probe.json")):
        match = RUN_FOLDER.match(path.parent.name)
        if match and match["arm"] in ARMS:
            result = json.loads(path.read_text())
            if "tuned" in result:
                result = {"model": result.get("model"), **result["tuned"]}
            found.setdefault(match["arm"], {})[int(match["seed"])] = result
    return found


def _arm_layers(
    task: str, group: list[dict[str, Any]], layers: list[int], weights: np.ndarray, level: float
) -> list[dict[str, Any]]:
    rows = []
    whole = np.ones((1, weights.shape[1]))
    for layer in layers:
        records = [decoded_records(result, task, layer) for result in group]
        samples = group_selectivity(task, records, weights)
        low, high = interval(samples)
        simultaneous = interval(samples, level)
        rows.append({
            "layer": layer,
            "selectivity": float(group_selectivity(task, records, whole)[0]),
            "ci_low": low, "ci_high": high,
            "simultaneous_low": simultaneous[0], "simultaneous_high": simultaneous[1],
        })  # fmt: skip
    return rows


def _difference_layers(
    task: str,
    first: list[dict[str, Any]],
    second: list[dict[str, Any]],
    layers: list[int],
    weights: np.ndarray,
    level: float,
) -> list[dict[str, Any]]:
    """Per layer, mean selectivity of `first` minus `second` under the shared resampling
    weights, with its 95% and its simultaneous interval from the one set of samples."""
    rows = []
    whole = np.ones((1, weights.shape[1]))
    for layer in layers:
        a = [decoded_records(result, task, layer) for result in first]
        b = [decoded_records(result, task, layer) for result in second]
        samples = group_selectivity(task, a, weights) - group_selectivity(task, b, weights)
        point = group_selectivity(task, a, whole) - group_selectivity(task, b, whole)
        low, high = interval(samples)
        simultaneous = interval(samples, level)
        rows.append({
            "layer": layer, "difference": float(point[0]), "ci_low": low, "ci_high": high,
            "simultaneous_low": simultaneous[0], "simultaneous_high": simultaneous[1],
        })  # fmt: skip
    return rows


def beyond_seeds(shown: list[dict[str, Any]], seed_to_seed: Sequence[list[dict[str, Any]]]) -> bool:
    """Whether some shown layer's difference is larger than every same-layer seed-to-seed gap
    (True where no arm has two probed seeds: there is nothing to compare against)."""
    if not seed_to_seed:
        return True
    gaps: dict[int, float] = {}
    for rows in seed_to_seed:
        for row in rows:
            gaps[row["layer"]] = max(gaps.get(row["layer"], 0.0), abs(row["difference"]))
    return any(abs(row["difference"]) > gaps.get(row["layer"], 0.0) for row in shown)


def reading(
    spelling: list[dict[str, Any]],
    negative: list[dict[str, Any]],
    difference: list[dict[str, Any]],
    seed_to_seed: Sequence[list[dict[str, Any]]] = (),
) -> str:
    """The probe's answer for one task, from simultaneous intervals (see the module doc)."""
    if not any(row["simultaneous_low"] > 0 for row in spelling):
        return "absent"
    for label, shown in (
        ("more after spelling training", [r for r in difference if r["simultaneous_low"] > 0]),
        ("less after spelling training", [r for r in difference if r["simultaneous_high"] < 0]),
    ):
        if shown:
            return label if beyond_seeds(shown, seed_to_seed) else "within seed-to-seed variation"
    if any(row["simultaneous_low"] > 0 for row in negative):
        return "present in both arms"
    return "present, not shown in the negative control"


def lens_by_arm(groups: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per arm and lens task (position, count): the right answer's mean probability at its peak
    layer and at the last one, and the late drop, each averaged over the arm's seeds (their
    own per-layer means, on the same questions). Arms or runs without a lens are left out."""
    out: dict[str, dict[str, Any]] = {}
    for arm, group in groups.items():
        for task in ("position", "count"):
            lenses = [r["lens"][task] for r in group if (r.get("lens") or {}).get(task)]
            if len(lenses) != len(group):
                continue
            layers = [row["layer"] for row in lenses[0]["layers"]]
            means = np.mean([[row["mean_p"] for row in lens["layers"]] for lens in lenses], axis=0)
            peak = int(np.argmax(means))
            out.setdefault(arm, {})[task] = {
                "n": lenses[0]["n"],
                "peak_layer": layers[peak],
                "peak_p": float(means[peak]),
                "final_layer": layers[-1],
                "final_p": float(means[-1]),
                "late_drop": float(means[peak] - means[-1]),
            }
    return out


def summarise_arms(
    by_arm: dict[str, dict[int, dict[str, Any]]],
    base: dict[str, Any] | None = None,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """The study's probe comparison (see the module doc) from arm -> seed -> probe result."""
    missing = [arm for arm in ("spelling", "negative_control") if not by_arm.get(arm)]
    if missing:
        raise ValueError(
            f"no probe.json for the {' and '.join(missing)} arm(s): run "
            "`python -m letterwise.probe study DIR` on the machine that trained them"
        )
    labelled = {
        f"{arm}-seed{s}": result
        for arm in ARMS
        for s, result in sorted(by_arm.get(arm, {}).items())
    }
    if base is not None:
        labelled = {"base": base, **labelled}
    check_same_items(labelled)
    groups = {arm: [by_arm[arm][s] for s in sorted(by_arm[arm])] for arm in ARMS if by_arm.get(arm)}
    if base is not None:
        groups = {"base": [base], **groups}
    n_words = len(next(iter(labelled.values()))["items"]["words"].split())
    weights = bootstrap_weights(n_words, n_resamples, seed=seed)
    tasks: dict[str, Any] = {}
    for task in it.TASKS:
        layers = shared_layers(list(labelled.values()), task)
        level = 1 - (1 - CONFIDENCE) / len(layers)
        arms = {arm: _arm_layers(task, g, layers, weights, level) for arm, g in groups.items()}
        options = {"weights": weights, "level": level}
        differences = {
            f"{a} - {b}": _difference_layers(task, groups[a], groups[b], layers, **options)
            for a, b in COMPARISONS
            if a in groups and b in groups
        }
        seed_to_seed = {
            f"{arm} seed {min(by_arm[arm])} - seed {max(by_arm[arm])}": _difference_layers(
                task, [by_arm[arm][min(by_arm[arm])]], [by_arm[arm][max(by_arm[arm])]], layers,
                **options,
            )
            for arm in ARMS
            if len(by_arm.get(arm, {})) >= 2
        }  # fmt: skip
        tasks[task] = {
            "layers": layers,
            "simultaneous_level": level,
            "arms": arms,
            "differences": differences,
            "seed_to_seed": seed_to_seed,
            "reading": reading(
                arms["spelling"], arms["negative_control"],
                differences["spelling - negative_control"], list(seed_to_seed.values()),
            ),
        }  # fmt: skip
    first = next(iter(labelled.values()))
    return {
        "model": first.get("model"),
        "n_words": n_words,
        "split": first["items"].get("split"),
        "seeds": {arm: sorted(by_arm[arm]) for arm in ARMS if by_arm.get(arm)},
        "base": base is not None,
        "bootstrap": {"resamples": n_resamples, "seed": seed, "over": "words"},
        "selectivity": "probe - control task, mean over the arm's probed seeds",
        "tasks": tasks,
        "lens": lens_by_arm(groups),
    }
