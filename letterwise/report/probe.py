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
                   "legend": {"labelFontSize": 12, "orient": "bottom", "symbolOpacity": 1,
                              "labelLimit": 300},
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
        "not say what spelling training, as against any fine-tuning, does to the states. "
        "That comparison (spelling − negative control, per layer) is made on the study's arms "
        f"in the next subsection: `{STUDY_COMMAND}` probes each committed run's adapter on the "
        "machine that trained it and writes `<arm>-seed<k>/probe.json` beside its results.",
        "",
    ]
    return out


# --------------------------------------------------------------------------- the study's arms

ARM_COLOURS = {
    "base": "#9aa5b1",
    "spelling": "#1f6fb2",
    "negative_control": "#d9822b",
    "positive_control": "#2e8b57",
}
DIFFERENCE_COLOURS = {"spelling − negative": "#1f6fb2", "positive − negative": "#2e8b57"}
DIFFERENCE_LABELS = {
    "spelling - negative_control": "spelling − negative",
    "positive_control - negative_control": "positive − negative",
}
SEED_COLOUR = "#9aa5b1"
ARM_LABELS = {
    "base": "base", "spelling": "spelling", "negative_control": "negative control",
    "positive_control": "positive control",
}  # fmt: skip
# the output-level task each probe reads against (letter_in_token has no transfer task)
OUTPUT_TASK = {"letter_position": "position", "letter_count": "count"}
ARMS_COMMAND = "python -m letterwise.probe arms docs/results/study/<model>"


def arms_figure(model: str) -> str:
    return f"study_probe_{model}.png"


def arms_difference_figure(model: str) -> str:
    return f"study_probe_difference_{model}.png"


def _in_order(summary: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(task, summary["tasks"][task]) for task in PROBE_TASKS if task in summary["tasks"]]


def arm_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per probe task, arm and layer: selectivity (seeds averaged) with its 95% CI."""
    return [
        {"task": PANEL_TITLES[task], "model": arm, "layer": row["layer"],
         "selectivity": row["selectivity"], "low": row["ci_low"], "high": row["ci_high"]}
        for task, entry in _in_order(summary)
        for arm, rows in entry["arms"].items()
        for row in rows
    ]  # fmt: skip


def difference_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per probe task, comparison and layer: the difference with its 95% CI, the
    same-arm seed-to-seed rows labelled 'seed to seed'."""
    out = []
    for task, entry in _in_order(summary):
        series = [(DIFFERENCE_LABELS[k], v) for k, v in entry["differences"].items()] + [
            ("seed to seed", rows) for rows in entry.get("seed_to_seed", {}).values()
        ][:1]
        for label, rows in series:
            out += [
                {"task": PANEL_TITLES[task], "model": label, "layer": row["layer"],
                 "selectivity": row["difference"], "low": row["ci_low"], "high": row["ci_high"]}
                for row in rows
            ]  # fmt: skip
    return out


def arms_chart(rows: list[dict[str, Any]]) -> dict[str, Any]:
    present = [arm for arm in ARM_COLOURS if any(r["model"] == arm for r in rows)]
    spec = _by_layer_chart(rows, "selectivity", "selectivity: probe − control (95% CI)",
                           list(PANEL_TITLES.values()), zero_rule=True)  # fmt: skip
    return _recolour(spec, present, [ARM_COLOURS[a] for a in present])


def arms_difference_chart(rows: list[dict[str, Any]]) -> dict[str, Any]:
    labels = [k for k in DIFFERENCE_COLOURS if any(r["model"] == k for r in rows)]
    colours = [DIFFERENCE_COLOURS[k] for k in labels]
    if any(r["model"] == "seed to seed" for r in rows):
        labels, colours = [*labels, "seed to seed"], [*colours, SEED_COLOUR]
    spec = _by_layer_chart(rows, "selectivity", "difference in selectivity (95% CI)",
                           list(PANEL_TITLES.values()), zero_rule=True)  # fmt: skip
    return _recolour(spec, labels, colours)


def _recolour(spec: dict[str, Any], domain: list[str], colours: list[str]) -> dict[str, Any]:
    for layer in spec["spec"]["layer"]:
        colour = layer["encoding"].get("color")
        if colour is not None:
            colour["scale"] = {"domain": domain, "range": colours}
    return spec


def _interval_text(row: dict[str, Any], key: str = "difference") -> str:
    return ci({"delta": row[key], "ci_low": row["ci_low"], "ci_high": row["ci_high"]}, sign=True)


def _largest(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return max(rows, key=lambda row: (abs(row["difference"]), -row["layer"]))


def _against_output(reading: str, outcome: str | None) -> str:
    """The probe reading set against the output-level outcome of the same task."""
    if outcome is None:
        return reading
    if reading == "more after spelling training" and outcome != "transfer":
        return f"present but unused (more in the states, output {outcome})"
    return f"{reading} (output {outcome})"


def _lens_table(model: str, lens: dict[str, dict[str, Any]]) -> list[str]:
    """Per arm, the logit lens at the cloze answer slot: where the right answer peaks and how
    much of it the last layers take away (seeds averaged)."""
    if not lens:
        return []
    out = [
        f"Table 5d. {model}: logit lens per arm at the cloze answer slot (the first n position "
        "and count questions of the split, seeds averaged): mean probability of the right "
        "answer at its peak layer and at the output, and the late drop between them. The base "
        "model's file may have probed more questions and layers than the arms' (its n is "
        "given), so its row is a reference, not a paired comparison.",
        "",
        "| arm | n | position: peak (layer) → output, drop | count: peak (layer) → output, drop |",
        "|---|---|---|---|",
    ]
    for arm, tasks in lens.items():
        cells = [
            f"{t['peak_p']:.3f} ({t['peak_layer']}) → {t['final_p']:.3f}, {t['late_drop']:.3f}"
            if (t := tasks.get(task)) else "–"
            for task in ("position", "count")
        ]
        n = "/".join(str(t["n"]) for t in tasks.values())
        out.append(f"| {ARM_LABELS.get(arm, arm)} | {n} | {' | '.join(cells)} |")
    return [*out, ""]


def study_probe_lines(
    summaries: dict[str, tuple[Path, dict[str, Any]]],
    verdicts: dict[str, tuple[Path, dict[str, Any]]],
    figures: Any,
) -> list[str]:
    """The study's probe comparison per model: the reading per probe, spelling − negative
    control at the layer where it is largest, the seed-to-seed reference, and the figures."""
    out = ["#### The study's arms: spelling − negative control, layer by layer", ""]
    if not summaries:
        return out + [
            f"Absent: no study probe comparison. `{STUDY_COMMAND}` probes each run's adapter on "
            f"the machine that trained it; `{ARMS_COMMAND}` then writes `probe_arms.json`.",
            "",
        ]
    for model, (path, summary) in summaries.items():
        outcomes = ((verdicts.get(model) or (None, {}))[1] or {}).get("outcomes") or {}
        seeds = "; ".join(f"{arm} {', '.join(map(str, s))}" for arm, s in summary["seeds"].items())
        first = next(iter(summary["tasks"].values()))
        out += [
            f"Table 5c. {model}: probe selectivity of the study's arms (`{path}`, "
            f"`{ARMS_COMMAND}`) on the same {summary['n_words']} held-out "
            f"{summary.get('split')} words; seeds probed: {seeds} (an arm's seeds averaged). "
            "95% bootstrap CIs over words (they do not cover seed-to-seed variation: the last "
            "column is one arm's two seeds against each other); the reading uses intervals "
            f"simultaneous over the {len(first['layers'])} layers "
            f"({first['simultaneous_level']:.1%} each).",
            "",
            "| probe | reading | spelling − negative, largest (layer, 95% CI) | positive − "
            "negative, largest | seed to seed, largest |",
            "|---|---|---|---|---|",
        ]
        for task, entry in _in_order(summary):
            outcome = (outcomes.get(OUTPUT_TASK.get(task, "")) or {}).get("outcome")
            cells = []
            for key in ("spelling - negative_control", "positive_control - negative_control"):
                rows = entry["differences"].get(key)
                top = _largest(rows) if rows else None
                cells.append(f"layer {top['layer']}, {_interval_text(top)}" if top else "not run")
            seed_rows = next(iter(entry.get("seed_to_seed", {}).items()), None)
            if seed_rows:
                top = _largest(seed_rows[1])
                cells.append(f"{seed_rows[0]}: layer {top['layer']}, {_interval_text(top)}")
            else:
                cells.append("one seed per arm")
            reading = _against_output(entry["reading"], outcome)
            out.append(f"| {PROBE_TASKS[task]} | {reading} | {' | '.join(cells)} |")
        out += [""]
        out += _lens_table(model, summary.get("lens") or {})
        name = arms_figure(model)
        if name in figures:
            out += figures.show(
                name,
                f"{model}: probe selectivity by layer per study arm",
                f"{model}: selectivity (probe − control task) by layer for the base model and "
                "each study arm (seeds averaged), one panel per probe, 95% bootstrap CIs over "
                "words.",
            )
        name = arms_difference_figure(model)
        if name in figures:
            out += figures.show(
                name,
                f"{model}: arm differences in probe selectivity by layer",
                f"{model}: spelling − negative control and positive control − negative control "
                "in selectivity by layer"
                + (
                    ", and (grey) one arm's seed against its other seed: the size of a "
                    "difference that seeds alone make"
                    if any(entry.get("seed_to_seed") for entry in summary["tasks"].values())
                    else " (one seed per arm: what seeds alone move is not measured yet)"
                )
                + ". 95% bootstrap CIs over words.",
            )
    return out
