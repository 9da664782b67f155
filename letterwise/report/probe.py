"""The probes in the report: are a word's letters in the hidden states, layer by layer, for the
base model and the fine-tuned one, and where does the right answer appear in the logit lens?
Read from the `probe` stage's metrics/details/probe.json (letterwise.probe): selectivity =
probe minus its control task (Hewitt & Liang), per layer with a 95% bootstrap CI over words.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from letterwise.numbers import ci

PROBE_TASKS = {
    "letter_in_token": "letter in token (mean F1 over 26 letters)",
    "letter_position": "letter at position 1-5 and last (accuracy)",
    "letter_count": "count of a letter, 0/1/2/3+ (accuracy)",
}
# Figure panel titles (the table gives the long names): short enough not to run into each other.
PANEL_TITLES = {
    "letter_in_token": "letter in token (F1)",
    "letter_position": "letter at position",
    "letter_count": "letter count",
}
LENS_TASKS = {"position": "position: right letter", "count": "count: right number"}
MODELS = ("base", "tuned")
STAGE_COMMAND = "dvc repro probe"
STUDY_COMMAND = "python -m letterwise.probe study docs/results/study/<model>"


def check_probe(details: Any, path: Path) -> dict[str, Any]:
    """The parts of a probe details file the report reads, or a clear error naming them."""
    if not isinstance(details, dict):
        raise ValueError(f"{path}: expected an object")
    for model in MODELS:
        for task in PROBE_TASKS:
            layers = (((details.get(model) or {}).get("probes") or {}).get(task) or {}).get(
                "layers"
            )
            if not isinstance(layers, list) or not layers:
                raise ValueError(f"{path}: no {model}.probes.{task}.layers")
    return details


def selectivity_rows(details: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per probe task, model and layer: selectivity with its 95% CI."""
    return [
        {
            "task": PANEL_TITLES[task], "model": model, "layer": layer["layer"],
            "selectivity": layer["selectivity"],
            "low": layer["selectivity_ci_low"], "high": layer["selectivity_ci_high"],
        }
        for task in PROBE_TASKS
        for model in MODELS
        for layer in details[model]["probes"][task]["layers"]
    ]  # fmt: skip


def lens_rows(details: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per lens task, model and layer: the right answer's mean probability and CI."""
    return [
        {
            "task": LENS_TASKS[task], "model": model, "layer": layer["layer"],
            "mean_p": layer["mean_p"], "low": layer["p_ci_low"], "high": layer["p_ci_high"],
        }
        for task in LENS_TASKS
        for model in MODELS
        for layer in ((details[model].get("lens") or {}).get(task) or {}).get("layers", [])
    ]  # fmt: skip


def _by_layer_chart(rows: list[dict[str, Any]], y: str, y_title: str, sort: list[str],
                    zero_rule: bool) -> dict[str, Any]:  # fmt: skip
    x = {"field": "layer", "type": "quantitative", "title": "layer (0 = embeddings)"}
    colour = {"field": "model", "type": "nominal", "title": None,
              "scale": {"domain": list(MODELS), "range": ["#9aa5b1", "#1f6fb2"]}}  # fmt: skip
    layers = [
        {"mark": {"type": "area", "opacity": 0.18},
         "encoding": {"x": x, "y": {"field": "low", "type": "quantitative", "title": y_title},
                      "y2": {"field": "high"}, "color": colour}},
        {"mark": {"type": "line", "point": True},
         "encoding": {"x": x, "y": {"field": y, "type": "quantitative", "title": y_title},
                      "color": colour}},
    ]  # fmt: skip
    if zero_rule:
        layers.insert(0, {"mark": {"type": "rule", "color": "#444", "strokeDash": [4, 3]},
                          "encoding": {"y": {"datum": 0, "type": "quantitative"}}})  # fmt: skip
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "config": {"font": "DejaVu Sans", "axis": {"labelFontSize": 12, "titleFontSize": 13},
                   "legend": {"labelFontSize": 12, "orient": "bottom", "symbolOpacity": 1},
                   "header": {"labelFontSize": 13}},
        "background": "white",
        "data": {"values": rows},
        "facet": {"column": {"field": "task", "type": "nominal", "title": None, "sort": sort}},
        "spec": {"width": 230, "height": 200, "layer": layers},
    }  # fmt: skip


def selectivity_chart(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return _by_layer_chart(rows, "selectivity", "selectivity: probe − control (95% CI)",
                           list(PANEL_TITLES.values()), zero_rule=True)  # fmt: skip


def lens_chart(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return _by_layer_chart(rows, "mean_p", "logit lens: P(right answer) (95% CI)",
                           list(LENS_TASKS.values()), zero_rule=False)  # fmt: skip


def _best(details: dict[str, Any], model: str, task: str) -> str:
    best = details[model]["probes"][task]["best"]
    interval = ci({"delta": best["selectivity"], "ci_low": best["selectivity_ci_low"],
                   "ci_high": best["selectivity_ci_high"]}, sign=True)  # fmt: skip
    return f"layer {best['layer']}, {interval}"


def _biggest_change(details: dict[str, Any], task: str) -> str:
    rows = (details.get("tuned_minus_base") or {}).get(task) or []
    if not rows:
        return "not measured"
    top = max(rows, key=lambda r: abs(r["difference"]))
    interval = ci({"delta": top["difference"], "ci_low": top["ci_low"],
                   "ci_high": top["ci_high"]}, sign=True)  # fmt: skip
    return f"layer {top['layer']}, {interval}"


def probe_lines(details: dict[str, Any] | None, path: Path, figures: Any) -> list[str]:
    """The report's probe subsection: per task the best layer for base and tuned, the biggest
    per-layer change, the figures, and what the comparison that matters still needs."""
    out = ["### Inside the model: linear probes and the logit lens", ""]
    if details is None:
        return out + [
            f"Absent: no probe results at `{path}`. `{STAGE_COMMAND}` probes the base model and "
            "the trained adapter layer by layer (docs/probe.md), then render this report again.",
            "",
        ]
    settings = details["base"].get("settings") or {}
    items = details["base"].get("items") or {}
    out += [
        f"Table 5b. Linear probes on the hidden states of the reference run (`{path}`, the "
        f"`probe` stage; {details.get('model')}): fitted on {items.get('fit', '?')} "
        f"training-vocabulary strings, tested on {items.get('n_words', '?')} held-out "
        f"{items.get('split', settings.get('split', '?'))} words, layers "
        f"{', '.join(map(str, settings.get('layers', [])))}; selectivity = probe − control "
        "task (labels fixed at random per token type), 95% bootstrap CI over words.",
        "",
        "| probe | base: best layer, selectivity | tuned: best layer, selectivity | "
        "largest tuned − base change (layer, 95% CI) |",
        "|---|---|---|---|",
    ]
    for task, label in PROBE_TASKS.items():
        base, tuned = _best(details, "base", task), _best(details, "tuned", task)
        out.append(f"| {label} | {base} | {tuned} | {_biggest_change(details, task)} |")
    out += [""]
    if "probe_selectivity.png" in figures:
        out += figures.show(
            "probe_selectivity.png",
            "probe selectivity by layer",
            "Selectivity (probe − control task) by layer for the base model (grey) and the "
            "reference run's adapter (blue), one panel per probe, 95% bootstrap CIs over words.",
        )
    if "probe_lens.png" in figures:
        lens = details["base"].get("lens") or {}
        n = ", ".join(f"{(lens.get(t) or {}).get('n', '?')} {t}" for t in LENS_TASKS)
        out += figures.show(
            "probe_lens.png",
            "logit lens by layer",
            "Logit lens at the cloze answer slot: the mean probability of the right letter "
            "(position) or number (count) when each layer's residual stream is decoded with "
            f"the final norm and unembedding; base (grey) and tuned (blue); n = {n} questions.",
        )
    out += [
        "This compares the spelling-tuned reference adapter with its own base model; it does "
        "not yet say what spelling training, as against any fine-tuning, does to the states. "
        "That comparison (spelling − negative control, per layer) needs the study's arms: "
        f"`{STUDY_COMMAND}` probes each committed run's adapter on the machine that trained "
        "it and writes `<arm>-seed<k>/probe.json` beside its results.",
        "",
    ]
    return out
