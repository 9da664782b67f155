"""The report's figures as Vega-Lite specs, rendered offline to PNG with vl-convert.

Each chart is laid out to fit a 1,000 px page at its natural size (width ≤ ~960 CSS px) and is
rendered at 2x, so text stays at 11-13 px on screen. Every positional axis has a title; every
bar chart labels its values, so a zero bar reads "0.000" rather than looking like missing data.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from letterwise.report import axes, probe
from letterwise.report.loading import (
    FORMAT_NEUTRAL,
    TASKS,
    Run,
    instrument_label,
    instrument_sections,
)
from letterwise.report.study import equivalence_rows

SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"
SCALE = 2  # PNG pixels per CSS pixel
MODEL_COLOURS = {"domain": ["base", "tuned"], "range": ["#9aa5b1", "#1f6fb2"]}
CONFIG = {
    "font": "sans-serif",
    "axis": {"labelFontSize": 12, "titleFontSize": 13, "labelLimit": 260},
    "header": {"labelFontSize": 13, "titleFontSize": 13, "labelFontWeight": "bold"},
    "legend": {"labelFontSize": 12, "titleFontSize": 12, "orient": "bottom"},
    "title": {"fontSize": 14},
    "view": {"stroke": "#ddd"},
}


# Row facets name their panel above it, left-aligned, instead of a rotated label at the side.
HEADER_TOP = {"labelAngle": 0, "labelOrient": "top", "labelAnchor": "start"}


def _chart(body: dict[str, Any]) -> dict[str, Any]:
    return {"$schema": SCHEMA, "config": CONFIG, "background": "white", **body}


def _task_order(task: str) -> int:
    return TASKS.index(task) if task in TASKS else len(TASKS)


# --------------------------------------------------------------------------- instruments


def baseline_marks(run: Run) -> list[dict[str, Any]]:
    """Answer-habit baselines per task: what a model scores by always answering the same way
    (uniform chance over the candidates, the majority answer, the positional prior), and, where
    the evaluation saved per-question detectors, each strategy's accuracy."""
    marks = []
    position = run.stage("eval_position").get("per_question") or {}
    for task, metrics in run.tasks().items():
        choice = metrics.get("choice") or {}
        habits = dict((choice.get("base") or {}).get("baselines") or {})
        for name, answers in ((position.get(task) or {}).get("strategy_right") or {}).items():
            if answers:
                habits[f"detector: {name}"] = answers.count("1") / len(answers)
        for name, value in habits.items():
            if value is None:
                continue
            for key in instrument_sections(metrics):
                if task == "spelling" and key != "choice":
                    continue  # near-miss candidates: only choice scoring has a chance level
                if key == "teacher_forced" or (name == "uniform_chance" and key == "direct"):
                    continue
                marks.append({
                    "task": task, "instrument": instrument_label(key),
                    "habit": name.replace("_", " "), "accuracy": value, "kind": "habit",
                })  # fmt: skip
    return marks


def instrument_rows(run: Run) -> list[dict[str, Any]]:
    rows = []
    for task, metrics in run.tasks().items():
        for key, section in instrument_sections(metrics).items():
            for model in ("base", "tuned"):
                s = section[model]
                rows.append({
                    "task": task, "instrument": instrument_label(key), "model": model,
                    "accuracy": s["accuracy"], "low": s.get("ci_low"), "high": s.get("ci_high"),
                    "label": f"{s['accuracy']:.3f}", "kind": "result",
                })  # fmt: skip
    return rows


def instruments_chart(run: Run) -> dict[str, Any]:
    """Base vs fine-tuned accuracy per task (trained task first) and instrument, with 95% CIs,
    value labels and the answer-habit baselines as black marks."""
    rows = instrument_rows(run)
    order = list(dict.fromkeys(r["instrument"] for r in rows))
    y = {"field": "instrument", "type": "nominal", "title": "instrument", "sort": order}
    x_title = "accuracy (exact match; lines: 95% CI; black marks: answer-habit baselines)"
    x = {"field": "accuracy", "type": "quantitative", "title": x_title,
         "scale": {"domain": [0, 1]}}  # fmt: skip
    result = {"filter": "datum.kind === 'result'"}
    return _chart({
        "data": {"values": rows + baseline_marks(run)},
        "facet": {"row": {"field": "task", "type": "nominal", "title": None,
                          "header": HEADER_TOP,
                          "sort": [t for t in TASKS if t in run.tasks()]}},
        "spec": {
            "width": 560,
            "height": {"step": 34},
            "layer": [
                {"transform": [result], "mark": "bar",
                 "encoding": {"y": y, "yOffset": {"field": "model", "sort": ["base", "tuned"]},
                              "x": x, "color": {"field": "model", "type": "nominal",
                                                "title": "model", "scale": MODEL_COLOURS}}},
                {"transform": [result], "mark": {"type": "rule", "color": "black"},
                 "encoding": {"y": y, "yOffset": {"field": "model", "sort": ["base", "tuned"]},
                              "x": {"field": "low", "type": "quantitative", "title": x_title},
                              "x2": {"field": "high"}}},
                {"transform": [result],
                 "mark": {"type": "text", "align": "left", "dx": 4, "fontSize": 11},
                 "encoding": {"y": y, "yOffset": {"field": "model", "sort": ["base", "tuned"]},
                              "x": {"field": "high", "type": "quantitative", "title": x_title},
                              "text": {"field": "label"}}},
                {"transform": [{"filter": "datum.kind === 'habit'"}],
                 "mark": {"type": "point", "filled": True, "color": "black", "size": 90},
                 "encoding": {"y": y, "x": x,
                              "shape": {"field": "habit", "type": "nominal",
                                        "title": "answer-habit baseline"}}},
            ],
        },
        "resolve": {"scale": {"y": "independent"}},
    })  # fmt: skip


# --------------------------------------------------------------------------- deltas


def delta_rows(runs: list[Run]) -> list[dict[str, Any]]:
    rows = []
    for run in runs:
        for task, metrics in run.tasks().items():
            for key, section in instrument_sections(metrics).items():
                d = section["delta"]
                rows.append({
                    "experiment": run.short_name, "task": task,
                    "instrument": instrument_label(key), "delta": d["delta"],
                    "low": d.get("ci_low"), "high": d.get("ci_high"),
                })  # fmt: skip
    return rows


def deltas_chart(runs: list[Run]) -> dict[str, Any]:
    """Small multiples, one panel per task: fine-tuned minus base with its 95% CI, experiments
    on the y axis, one colour per instrument."""
    rows = delta_rows(runs)
    experiments = list(dict.fromkeys(r["experiment"] for r in rows))
    instruments = list(dict.fromkeys(r["instrument"] for r in rows))
    y = {"field": "experiment", "type": "nominal", "title": "experiment", "sort": experiments}
    offset = {"field": "instrument", "sort": instruments}
    x_title = "fine-tuned − base, accuracy (lines: 95% CI)"
    return _chart({
        "data": {"values": rows},
        "facet": {"row": {"field": "task", "type": "nominal", "title": None,
                          "header": HEADER_TOP,
                          "sort": [t for t in TASKS if any(r["task"] == t for r in rows)]}},
        "spec": {
            "width": 520,
            "height": len(experiments) * (7 * len(instruments) + 8),
            "layer": [
                {"mark": {"type": "rule", "color": "#444", "strokeDash": [4, 3]},
                 "encoding": {"x": {"datum": 0, "type": "quantitative", "title": x_title}}},
                {"mark": "rule",
                 "encoding": {"y": y, "yOffset": offset,
                              "x": {"field": "low", "type": "quantitative", "title": x_title},
                              "x2": {"field": "high"},
                              "color": {"field": "instrument", "type": "nominal",
                                        "title": "instrument", "sort": instruments}}},
                {"mark": {"type": "point", "filled": True, "size": 50},
                 "encoding": {"y": y, "yOffset": offset,
                              "x": {"field": "delta", "type": "quantitative", "title": x_title},
                              "color": {"field": "instrument", "type": "nominal",
                                        "title": "instrument", "sort": instruments}}},
            ],
        },
    })  # fmt: skip


# --------------------------------------------------------------------------- temperature


def decoding_label(run: Run) -> str | None:
    """'greedy' or 'T=0.7' (the temperature the evaluation resolved), from the run's results."""
    sampling = run.stage("eval_position").get("sampling") or {}
    if sampling.get("decoding") == "greedy":
        return "greedy"
    if sampling.get("decoding") == "sampled" and sampling.get("temperature") is not None:
        return f"T={sampling['temperature']:.1f}"
    return None


def temperature_rows(runs: list[Run], reference: Run) -> list[dict[str, Any]]:
    """Direct-generation accuracy of base and tuned per decoding setting, for the reference and
    the runs that differ from it only in decoding (one point per setting)."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    decoding_keys = {"eval.decoding", "eval.temperature", "eval.top_p", "eval.top_k",
                     "eval.min_p"}  # fmt: skip
    for run in [reference] + [r for r in runs if r is not reference]:
        label = decoding_label(run)
        if label is None or label in seen or not set(run.changed) <= decoding_keys:
            continue
        seen.add(label)
        for task, metrics in run.tasks().items():
            for model in ("base", "tuned"):
                s = metrics[model]
                rows.append({
                    "decoding": label, "task": task, "model": model, "accuracy": s["accuracy"],
                    "low": s.get("ci_low"), "high": s.get("ci_high"), "n": s.get("n"),
                })  # fmt: skip
    return rows


def temperature_chart(rows: list[dict[str, Any]]) -> dict[str, Any]:
    settings = sorted({r["decoding"] for r in rows}, key=lambda s: (s != "greedy", s))
    x = {"field": "decoding", "type": "ordinal", "title": "decoding (greedy; sampled at T)",
         "sort": settings, "axis": {"labelAngle": 0}}  # fmt: skip
    y_title = "accuracy, direct (lines: 95% CI)"
    offset = {"field": "model", "sort": ["base", "tuned"]}
    colour = {"field": "model", "type": "nominal", "title": "model", "scale": MODEL_COLOURS}
    return _chart({
        "data": {"values": rows},
        "facet": {"column": {"field": "task", "type": "nominal", "title": None,
                             "sort": [t for t in TASKS if any(r["task"] == t for r in rows)]}},
        "spec": {
            "width": 230,
            "height": 240,
            "layer": [
                {"mark": "rule",
                 "encoding": {"x": x, "xOffset": offset, "color": colour,
                              "y": {"field": "low", "type": "quantitative", "title": y_title,
                                    "scale": {"zero": False}},
                              "y2": {"field": "high"}}},
                {"mark": {"type": "point", "filled": True, "size": 60},
                 "encoding": {"x": x, "xOffset": offset, "color": colour,
                              "y": {"field": "accuracy", "type": "quantitative",
                                    "title": y_title}}},
            ],
        },
        "resolve": {"scale": {"y": "independent"}},
    })  # fmt: skip


# --------------------------------------------------------------------------- training loss


SMOOTHING_STEPS = 9  # centred moving average over this many logged steps


def loss_chart(curves: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Per-step training loss (faint) and its centred moving average (solid), one colour per
    trained run."""
    rows = [{"run": name, **point} for name, points in curves.items() for point in points]
    half = SMOOTHING_STEPS // 2
    colour = {"field": "run", "type": "nominal", "title": "run"}
    x = {"field": "step", "type": "quantitative", "title": "training step"}
    y_title = "training loss (answer tokens only)"
    return _chart({
        "width": 760,
        "height": 280,
        "data": {"values": rows},
        "layer": [
            {"mark": {"type": "line", "opacity": 0.25},
             "encoding": {"x": x, "color": colour,
                          "y": {"field": "loss", "type": "quantitative", "title": y_title}}},
            {"transform": [{"window": [{"op": "mean", "field": "loss", "as": "smoothed"}],
                            "frame": [-half, half], "groupby": ["run"],
                            "sort": [{"field": "step"}]}],
             "mark": {"type": "line", "strokeWidth": 2.5},
             "encoding": {"x": x, "color": colour,
                          "y": {"field": "smoothed", "type": "quantitative",
                                "title": y_title}}},
        ],
    })  # fmt: skip


# --------------------------------------------------------------------------- breakdowns


def breakdown_rows(breakdowns: dict[str, dict[str, Any]], groups: dict[str, str]
                   ) -> list[dict[str, Any]]:  # fmt: skip
    """(panel, bucket label with its n, model, accuracy, CI) from dvclive breakdowns.json files;
    `groups` maps "task.breakdown" to the panel title."""
    rows = []
    for per_task in breakdowns.values():
        for where, panel in groups.items():
            task, key = where.split(".")
            buckets = (per_task.get(task) or {}).get(key) or {}
            for bucket in sorted(buckets, key=lambda b: (len(b), b)):
                for model, s in buckets[bucket].items():
                    rows.append({
                        "panel": panel, "bucket": f"{bucket} (n={s.get('n')})",
                        "order": int(bucket) if bucket.isdigit() else 0, "model": model,
                        "accuracy": s["accuracy"], "low": s.get("ci_low"),
                        "high": s.get("ci_high"),
                    })  # fmt: skip
    return rows


LENGTH_PANELS = {
    "spelling.word_length": "spelling",
    "position.word_length": "position",
    "count.word_length": "count",
}
INDEX_PANELS = {
    "position.position": "position: by letter index asked",
    "count.true_count": "count: by true count",
}


def breakdown_chart(rows: list[dict[str, Any]], x_title: str) -> dict[str, Any]:
    """Accuracy per bucket (x, labelled with its n), base vs tuned with 95% CIs, one panel per
    task or breakdown, stacked."""
    colour = {"field": "model", "type": "nominal", "title": "model", "scale": MODEL_COLOURS}
    x = {"field": "bucket", "type": "ordinal", "title": x_title,
         "sort": {"field": "order"}, "axis": {"labelAngle": -45}}  # fmt: skip
    y_title = "accuracy, direct (lines: 95% CI)"
    offset = {"field": "model", "sort": ["base", "tuned"]}
    panels = list(dict.fromkeys(r["panel"] for r in rows))
    return _chart({
        "data": {"values": rows},
        "facet": {"row": {"field": "panel", "type": "nominal", "title": None, "sort": panels,
                          "header": HEADER_TOP}},
        "spec": {
            "width": {"step": 20},
            "height": 170,
            "layer": [
                {"mark": "rule",
                 "encoding": {"x": x, "xOffset": offset, "color": colour,
                              "y": {"field": "low", "type": "quantitative", "title": y_title,
                                    "scale": {"domain": [0, 1]}},
                              "y2": {"field": "high"}}},
                {"mark": {"type": "point", "filled": True, "size": 45},
                 "encoding": {"x": x, "xOffset": offset, "color": colour,
                              "y": {"field": "accuracy", "type": "quantitative",
                                    "title": y_title}}},
            ],
        },
        "resolve": {"scale": {"x": "independent"}},
    })  # fmt: skip


# --------------------------------------------------------------------------- choices


def choices_chart(records: list[dict[str, Any]]) -> dict[str, Any]:
    """How often choice scoring picked each answer, base vs tuned, beside how often each answer
    is right: a model that always picks one answer shows one tall bar."""
    counts: dict[tuple[str, str, str], int] = {}
    for r in records:
        for series, key in (("base", "base"), ("tuned", "tuned"), ("correct answer", "expected")):
            if r[key] is not None:
                where = (r["task"], series, str(r[key]))
                counts[where] = counts.get(where, 0) + 1
    rows = [{"task": t, "series": s, "answer": a, "questions": n}
            for (t, s, a), n in counts.items()]  # fmt: skip
    # numbers in numeric order, then letters
    answers = sorted({a for _, _, a in counts}, key=lambda a: (not a.isdigit(), len(a), a))
    colour = {"field": "series", "type": "nominal", "title": None,
              "scale": {"domain": ["base", "tuned", "correct answer"],
                        "range": ["#9aa5b1", "#1f6fb2", "#e08a2c"]}}  # fmt: skip
    return _chart({
        "data": {"values": rows},
        "facet": {"row": {"field": "task", "type": "nominal", "title": None,
                          "header": HEADER_TOP, "sort": ["position", "count"]}},
        "spec": {
            "width": {"step": 30},
            "height": 160,
            "mark": "bar",
            "encoding": {
                "x": {"field": "answer", "type": "nominal", "title": "answer (picked, or correct)",
                      "sort": answers, "axis": {"labelAngle": 0}},
                "xOffset": {"field": "series", "sort": ["base", "tuned", "correct answer"]},
                "y": {"field": "questions", "type": "quantitative", "title": "questions"},
                "color": colour,
            },
        },
        "resolve": {"scale": {"x": "independent", "y": "independent"}},
    })  # fmt: skip


# --------------------------------------------------------------------------- verdict


ARMS = (
    ("treatment", "treatment (spelling)"),
    ("negative_control", "negative control"),
    ("positive_control", "positive control"),
    ("treatment_minus_negative", "treatment − negative"),
)


def verdict_rows(verdict: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for row in verdict["rows"]:
        if not row.get("format_neutral", row["instrument"] in FORMAT_NEUTRAL):
            continue
        for key, label in ARMS:
            d = row.get(key)
            if isinstance(d, dict) and d.get("delta") is not None:
                rows.append({
                    "panel": f"{row['task']}: {instrument_label(row['instrument'])}",
                    "arm": label, "delta": d["delta"], "low": d.get("ci_low"),
                    "high": d.get("ci_high"),
                })  # fmt: skip
    return rows


def verdict_chart(verdict: dict[str, Any]) -> dict[str, Any]:
    """Per format-neutral instrument: the treatment's delta beside the negative and positive
    controls' and the control-corrected difference, each with its 95% CI."""
    rows = verdict_rows(verdict)
    arms = [label for _, label in ARMS]
    y = {"field": "arm", "type": "nominal", "title": "arm", "sort": arms}
    x_title = "fine-tuned − base, accuracy (lines: 95% CI)"
    colour = {"field": "arm", "type": "nominal", "title": None, "sort": arms, "legend": None}
    return _chart({
        "data": {"values": rows},
        "facet": {"row": {"field": "panel", "type": "nominal", "title": None,
                          "header": HEADER_TOP}},
        "spec": {
            "width": 520,
            "height": {"step": 26},
            "layer": [
                {"mark": {"type": "rule", "color": "#444", "strokeDash": [4, 3]},
                 "encoding": {"x": {"datum": 0, "type": "quantitative", "title": x_title}}},
                {"mark": {"type": "rule", "strokeWidth": 2},
                 "encoding": {"y": y, "color": colour,
                              "x": {"field": "low", "type": "quantitative", "title": x_title},
                              "x2": {"field": "high"}}},
                {"mark": {"type": "point", "filled": True, "size": 70},
                 "encoding": {"y": y, "color": colour,
                              "x": {"field": "delta", "type": "quantitative",
                                    "title": x_title}}},
            ],
        },
    })  # fmt: skip


def equivalence_chart(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per task (panel) and family (row): spelling − negative control with its 90% (thick) and
    95% (thin) intervals, the ±margin band (grey) and the positive control's habit-free
    effect (diamond): inside the band = equivalent, above 0 = transfer."""
    y = {"field": "family", "type": "nominal", "title": "model family"}
    x = {"field": "delta", "type": "quantitative",
         "title": "spelling − negative control (thick: 90% CI, thin: 95% CI)"}  # fmt: skip
    return _chart({
        "data": {"values": rows},
        "facet": {"row": {"field": "panel", "type": "nominal", "title": None,
                          "header": HEADER_TOP, "sort": list(TASKS)}},
        "resolve": {"scale": {"x": "independent"}},
        "spec": {
            "width": 620,
            "height": {"step": 34},
            "layer": [
                {"mark": {"type": "bar", "color": "#d9dee4", "height": 24},
                 "encoding": {"y": y, "x": {"field": "minus_margin", "type": "quantitative"},
                              "x2": {"field": "margin"}}},
                {"mark": {"type": "rule", "color": "#444", "strokeDash": [4, 3]},
                 "encoding": {"x": {"datum": 0, "type": "quantitative"}}},
                {"mark": {"type": "rule", "strokeWidth": 1.5, "color": "#1f6fb2"},
                 "encoding": {"y": y, "x": {"field": "low95", "type": "quantitative"},
                              "x2": {"field": "high95"}}},
                {"mark": {"type": "rule", "strokeWidth": 5, "color": "#1f6fb2"},
                 "encoding": {"y": y, "x": {"field": "low90", "type": "quantitative"},
                              "x2": {"field": "high90"}}},
                {"mark": {"type": "point", "filled": True, "size": 80, "color": "#0b3d66"},
                 "encoding": {"y": y, "x": x}},
                {"mark": {"type": "point", "shape": "diamond", "filled": True, "size": 90,
                          "color": "#c2410c"},
                 "encoding": {"y": y, "x": {"field": "positive_control", "type": "quantitative"}}},
                {"mark": {"type": "text", "align": "left", "dx": 8, "dy": -12, "fontSize": 11},
                 "encoding": {"y": y, "x": {"field": "high95", "type": "quantitative"},
                              "text": {"field": "outcome"}}},
            ],
        },
    })  # fmt: skip


# --------------------------------------------------------------------------- output


def save_png(spec: dict[str, Any], path: Path) -> str:
    import vl_convert

    png = vl_convert.vegalite_to_png(spec, scale=SCALE)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(png)
    tmp.replace(path)
    return path.name


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels, from the PNG header."""
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


# --------------------------------------------------------------------------- the plan


def figure_plan(runs: list[Run], reference: Run, inputs: Any) -> dict[str, dict[str, Any]]:
    """file name -> Vega-Lite spec, for every figure whose data is present (the report text
    says which are absent and why)."""
    plan: dict[str, dict[str, Any]] = {}
    study_rows = equivalence_rows(getattr(inputs, "study", None) or {})
    if study_rows:
        plan["study_equivalence.png"] = equivalence_chart(study_rows)
    if inputs.verdict is not None and verdict_rows(inputs.verdict):
        plan["verdict.png"] = verdict_chart(inputs.verdict)
    if reference.tasks():
        plan["instruments.png"] = instruments_chart(reference)
    if len(runs) > 1:
        plan["deltas.png"] = deltas_chart(runs)
    if getattr(inputs, "probe", None):
        selectivity = probe.selectivity_rows(inputs.probe)
        plan["probe_selectivity.png"] = probe.selectivity_chart(selectivity)
        lens = probe.lens_rows(inputs.probe)
        if lens:
            plan["probe_lens.png"] = probe.lens_chart(lens)
    for model, (_, summary) in (getattr(inputs, "study_probes", None) or {}).items():
        plan[probe.arms_figure(model)] = probe.arms_chart(probe.arm_rows(summary))
        plan[probe.arms_difference_figure(model)] = probe.arms_difference_chart(
            probe.difference_rows(summary)
        )
    rows = temperature_rows(runs, reference)
    if len({r["decoding"] for r in rows}) > 1:
        plan["temperature.png"] = temperature_chart(rows)
    if inputs.loss_curves:
        plan["training_loss.png"] = loss_chart(inputs.loss_curves)
    if breakdown_rows(inputs.breakdowns, LENGTH_PANELS):
        rows = breakdown_rows(inputs.breakdowns, LENGTH_PANELS)
        plan["by_word_length.png"] = breakdown_chart(rows, "word length (letters), with n")
    if breakdown_rows(inputs.breakdowns, INDEX_PANELS):
        rows = breakdown_rows(inputs.breakdowns, INDEX_PANELS)
        plan["by_index_and_count.png"] = breakdown_chart(
            rows, "letter index asked / true count of the letter, with n"
        )
    if inputs.choices:
        plan["choices.png"] = choices_chart(inputs.choices)
    if inputs.axes:
        groups = axes.settings(inputs.axes, reference.params)
        tradeoff = axes.tradeoff_rows(groups)
        if tradeoff:
            plan["recipe_tradeoff.png"] = axes.tradeoff_chart(tradeoff)
        dose = axes.dose_rows(groups, str(reference.params.get("model")))
        if dose:
            plan["dose_response.png"] = axes.dose_chart(dose)
    controls = axes.dose_control_rows(axes.dose_verdicts_with_reference(inputs, reference.params))
    if controls:
        plan["dose_controls.png"] = axes.dose_chart(
            controls, "spelling − negative control (95% CI)"
        )
    return plan
