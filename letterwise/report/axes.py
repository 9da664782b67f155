"""Does the answer depend on the recipe or the model? Saved runs along three axes (model, training
recipe, training steps), one table row per setting, with the recipe trade-off and the dose-response
as figures. The runs are saved folders (report.loading.SavedRun: params.yaml and the eval stages'
details), as docs/results/<group>/<run>/ keeps them."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from letterwise.eval.verdict import why_not
from letterwise.numbers import MISSING, ci, num
from letterwise.report.common import arms_text
from letterwise.report.loading import TASKS, SavedRun, instrument_label, instrument_sections
from letterwise.report.tables import delta_cell, verdict_table, yes_no

# The knobs that make a recipe (everything else the axes runs share with the default).
RECIPE_KEYS = (
    (("build_dataset", "replay_share"), "replay"),
    (("train", "learning_rate"), "lr"),
    (("train", "lora", "r"), "r"),
    (("train", "lora", "target_modules"), "targets"),
)
TRANSFER_COLUMNS = (
    ("position", "cloze"), ("position", "cloze_calibrated"),
    ("count", "cloze"), ("count", "cloze_calibrated"),
)  # fmt: skip
DOSE_INSTRUMENTS = ("direct", "cloze", "cloze_calibrated")


def recipe_label(run: SavedRun, default: dict[str, Any]) -> str:
    """The recipe knobs that differ from the default params ("default" if none)."""
    reference = SavedRun("default params", default, {})
    changed = []
    for path, label in RECIPE_KEYS:
        mine = run.setting(*path)
        if mine != reference.setting(*path):
            changed.append(f"{label}={','.join(mine) if isinstance(mine, list) else mine}")
    return " ".join(changed) or "default"


def settings(runs: list[SavedRun], default: dict[str, Any]) -> dict[tuple, list[SavedRun]]:
    """Treatment-arm runs grouped by (model, recipe, steps, split); seeds share a group."""
    groups: dict[tuple, list[SavedRun]] = {}
    for run in runs:
        if run.arm != "spelling":
            continue
        split = str(run.setting("eval", "split") or MISSING)
        key = (run.model, recipe_label(run, default), run.setting("train", "max_steps"), split)
        groups.setdefault(key, []).append(run)
    return dict(sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][3], kv[0][1],
                                                       kv[0][2] or 0)))  # fmt: skip


def _section(run: SavedRun, task: str, key: str) -> dict[str, Any] | None:
    return instrument_sections(run.tasks.get(task, {})).get(key)


def _delta_cell(group: list[SavedRun], task: str, key: str) -> str:
    """One seed: the delta with its CI. Several: the mean delta and the seeds' range."""
    sections = [s for s in (_section(r, task, key) for r in group) if s]
    if not sections:
        return MISSING
    if len(sections) == 1:
        return ci(sections[0]["delta"], sign=True)
    values = [s["delta"]["delta"] for s in sections]
    return (f"{num(statistics.mean(values), sign=True)} (seeds {num(min(values), sign=True)} "
            f"… {num(max(values), sign=True)})")  # fmt: skip


def _in_format(group: list[SavedRun], task: str) -> str:
    found = [r.tasks[task] for r in group if task in r.tasks]
    if not found or "in_format_rate" not in found[0].get("base", {}):
        return MISSING
    tuned = statistics.mean(f["tuned"]["in_format_rate"] for f in found)
    return f"{num(found[0]['base']['in_format_rate'], 2)} → {num(tuned, 2)}"


def axes_table(groups: dict[tuple, list[SavedRun]]) -> list[str]:
    header = ("| model | recipe | steps | split | runs | spelling Δ (direct) "
              "| in-format position / count (base → tuned) | "
              + " | ".join(f"{t} {instrument_label(k)} Δ" for t, k in TRANSFER_COLUMNS) + " |")
    lines = [header, "|" + "---|" * (7 + len(TRANSFER_COLUMNS))]
    for (model, recipe, steps, split), group in groups.items():
        seeds = ", ".join(str(r.seed) for r in group)
        lines.append(
            f"| {model} | {recipe} | {steps} | {split} | {len(group)} (seed {seeds}) "
            f"| {_delta_cell(group, 'spelling', 'direct')} "
            f"| {_in_format(group, 'position')} / {_in_format(group, 'count')} | "
            + " | ".join(_delta_cell(group, t, k) for t, k in TRANSFER_COLUMNS) + " |"
        )
    return lines


def tradeoff_rows(groups: dict[tuple, list[SavedRun]]) -> list[dict[str, Any]]:
    """Per recipe on validation: tuned in-format rate as a share of the base's (position and
    count pooled) against the spelling gain (direct exact match)."""
    rows = []
    for (model, recipe, steps, split), group in groups.items():
        if split != "validation":
            continue
        for run in group:
            rates = [
                (run.tasks[t]["tuned"]["in_format_rate"], run.tasks[t]["base"]["in_format_rate"])
                for t in ("position", "count")
                if t in run.tasks and "in_format_rate" in run.tasks[t].get("base", {})
            ]
            spelling = _section(run, "spelling", "direct")
            if not rates or not spelling or not sum(b for _, b in rates):
                continue
            d = spelling["delta"]
            rows.append({
                "recipe": f"{recipe} ({steps} steps)", "model": model,
                "kept": sum(t for t, _ in rates) / sum(b for _, b in rates),
                "gain": d["delta"], "low": d.get("ci_low"), "high": d.get("ci_high"),
            })  # fmt: skip
    return rows


def dose_rows(groups: dict[tuple, list[SavedRun]], model: str) -> list[dict[str, Any]]:
    """Per training-step count of the default recipe on test (for `model`, the reference's),
    the delta of each instrument per task; 0 steps is the base model itself (delta 0)."""
    rows = []
    dose = {
        key: group for key, group in groups.items()
        if key[0] == model and key[1] == "default" and key[3] == "test" and key[2] is not None
    }  # fmt: skip
    for (_, _, steps, _), group in dose.items():
        for task in TASKS:
            for key in DOSE_INSTRUMENTS:
                for run in group:
                    section = _section(run, task, key)
                    if not section:
                        continue
                    d = section["delta"]
                    rows.append({"steps": steps, "task": task,
                                 "instrument": instrument_label(key), "delta": d["delta"],
                                 "low": d.get("ci_low"), "high": d.get("ci_high"),
                                 "seed": str(run.seed)})  # fmt: skip
    if len({r["steps"] for r in rows}) < 2:
        return []
    for task, label in {(r["task"], r["instrument"]) for r in list(rows)}:
        rows.append({"steps": 0, "task": task, "instrument": label, "delta": 0.0,
                     "low": None, "high": None, "seed": "base"})  # fmt: skip
    return sorted(rows, key=lambda r: (TASKS.index(r["task"]), r["instrument"], r["steps"]))


def tradeoff_chart(rows: list[dict[str, Any]]) -> dict[str, Any]:
    x = {"field": "kept", "type": "quantitative", "scale": {"zero": True},
         "title": "tuned in-format rate ÷ base's (position and count pooled)"}
    y_title = "spelling gain, exact match (fine-tuned − base; 95% CI)"
    colour = {"field": "recipe", "type": "nominal", "title": "recipe"}
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "config": {"font": "DejaVu Sans", "axis": {"labelFontSize": 12, "titleFontSize": 13},
                   "legend": {"labelFontSize": 12, "titleFontSize": 13, "labelLimit": 400}},
        "data": {"values": rows}, "width": 520, "height": 320,
        "layer": [
            {"mark": {"type": "rule", "color": "#888", "strokeDash": [4, 3]},
             "encoding": {"x": {"datum": 0.9, "type": "quantitative"}}},
            {"mark": {"type": "rule", "strokeWidth": 2},
             "encoding": {"x": x, "y": {"field": "low", "type": "quantitative", "title": y_title},
                          "y2": {"field": "high"}, "color": colour}},
            {"mark": {"type": "point", "filled": True, "size": 90},
             "encoding": {"x": x, "y": {"field": "gain", "type": "quantitative",
                                        "title": y_title}, "color": colour}},
        ],
    }  # fmt: skip


def dose_chart(rows: list[dict[str, Any]],
               y_title: str = "fine-tuned − base (95% CI)") -> dict[str, Any]:  # fmt: skip
    x = {"field": "steps", "type": "quantitative", "title": "training steps (batch 8)"}
    y = {"field": "delta", "type": "quantitative", "title": y_title}
    colour = {"field": "instrument", "type": "nominal", "title": "instrument"}
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "config": {"font": "DejaVu Sans", "axis": {"labelFontSize": 12, "titleFontSize": 13},
                   "legend": {"labelFontSize": 12, "titleFontSize": 13, "labelLimit": 300,
                              "orient": "bottom"},
                   "header": {"labelFontSize": 13}},
        "data": {"values": rows},
        "facet": {"column": {"field": "task", "type": "nominal", "title": None,
                             "sort": list(TASKS)}},
        "resolve": {"scale": {"y": "shared"}},
        "spec": {
            "width": 260, "height": 240,
            "layer": [
                {"mark": {"type": "rule", "color": "#444", "strokeDash": [4, 3]},
                 "encoding": {"y": {"datum": 0, "type": "quantitative"}}},
                {"mark": {"type": "line", "point": True},
                 "encoding": {"x": x, "y": {**y, "aggregate": "mean"}, "color": colour}},
                {"mark": {"type": "rule"},
                 "encoding": {"x": x, "y": {"field": "low", "type": "quantitative"},
                              "y2": {"field": "high"}, "color": colour}},
            ],
        },
    }  # fmt: skip


def model_verdict_tables(model_verdicts: dict[Path, dict[str, Any]]) -> list[str]:
    """The verdict's rule on another model's arms, one table per <controls>-<model>/ folder."""
    out: list[str] = []
    for number, (path, verdict) in enumerate(model_verdicts.items(), start=1):
        model = path.parent.name.partition("-")[2] or path.parent.name
        arms = arms_text(verdict.get("arms") or {})
        out += [
            f"Table 8.{number}. The verdict's rule (section 1) on {model}'s own arms "
            f"({arms or '–'}; from `{path}`, `python -m letterwise.eval.verdict "
            f"{path.parent}`). Transfer claimed: **{'yes' if verdict['claimed'] else 'no'}**. "
            f"{verdict['sentence'].strip()}",
            "",
            *verdict_table(verdict),
            "",
        ]
        # a note about a run's recipe (a control that kept few replay rows) changes the reading
        flagged = [n for n in verdict.get("notes") or [] if "replay rows" in str(n)]
        if flagged:
            out += ["**Read with care:**", "", *(f"- {n}" for n in flagged), ""]
    return out


def dose_verdicts_with_reference(inputs: Any, params: dict[str, Any]) -> dict[int, tuple]:
    """The dose verdicts plus the main verdict at the reference's own step count (whose arms
    live in the controls folder); empty when there are no dose verdicts."""
    dose = dict(inputs.dose_verdicts)
    steps = (params.get("train") or {}).get("max_steps")
    if dose and inputs.verdict is not None and isinstance(steps, int):
        dose.setdefault(steps, (inputs.verdict_path, inputs.verdict))
    return dose


def dose_control_rows(dose_verdicts: dict[int, tuple[Path, dict[str, Any]]]) -> list[dict]:
    """Spelling − negative control per step count, task and format-neutral slot (the dose
    chart's rows); none unless at least two step counts have their arms."""
    if len(dose_verdicts) < 2:
        return []
    rows = []
    for steps, (_, verdict) in sorted(dose_verdicts.items()):
        for row in verdict["rows"]:
            d = row.get("treatment_minus_negative") or {}
            if row.get("format_neutral") and d.get("delta") is not None:
                rows.append({"steps": steps, "task": row["task"],
                             "instrument": instrument_label(row["instrument"]),
                             "delta": d["delta"], "low": d.get("ci_low"),
                             "high": d.get("ci_high"), "seed": "pooled"})  # fmt: skip
    return rows


def dose_verdict_table(dose_verdicts: dict[int, tuple[Path, dict[str, Any]]]) -> list[str]:
    """The verdict's format-neutral rows at each training-step count: spelling, negative and
    positive control (fine-tuned − base), spelling − negative, and what explains it."""
    lines = [
        "| steps | seeds per arm | task | instrument | spelling Δ | negative control Δ "
        "| positive control Δ | spelling − negative [95% CI] | sees positive control "
        "| why not transfer | outcome |",
        "|---:|---|---|---|---:|---:|---:|---|---|---|---|",
    ]
    cell, yes = delta_cell, yes_no
    for steps, (_, verdict) in sorted(dose_verdicts.items()):
        seeds = "/".join(str(len(v)) for v in (verdict.get("arms") or {}).values()) or MISSING
        for row in verdict["rows"]:
            if not row.get("format_neutral"):
                continue
            d = row.get("treatment_minus_negative") or {}
            lines.append(
                f"| {steps} | {seeds} | {row['task']} | {instrument_label(row['instrument'])} "
                f"| {num((row.get('treatment') or {}).get('delta'), sign=True)} "
                f"| {num((row.get('negative_control') or {}).get('delta'), sign=True)} "
                f"| {cell(row.get('positive_control'))} | {cell(d)} "
                f"| {yes(row.get('detects_positive_control'))} "
                f"| {why_not(row) or MISSING} "
                f"| **{row.get('outcome', MISSING) if row.get('primary') else 'secondary'}** |"
            )
    return lines


def dose_verdict_block(dose_verdicts: dict[int, tuple[Path, dict[str, Any]]],
                       number: int) -> list[str]:  # fmt: skip
    """Table 8.<number>: the rule applied at every step count that has its three arms."""
    if len(dose_verdicts) < 2:
        return []
    claimed = [steps for steps, (_, v) in sorted(dose_verdicts.items()) if v.get("claimed")]
    sources = ", ".join(f"`{path}`" for _, (path, _) in sorted(dose_verdicts.items()))
    return [
        f"Table 8.{number}. Dose-response with the controls: the verdict's rule (section 1) on "
        "the three arms trained for each step count (default recipe, test split; the "
        "format-neutral slots; seeds per arm as spelling/negative/positive). Transfer claimed "
        "at: **" + (", ".join(f"{s} steps" for s in claimed) or "no step count") + "**. "
        f"From {sources} (`python -m letterwise.eval.verdict <folder>`).",
        "",
        *dose_verdict_table(dose_verdicts),
        "",
    ]


def axes_section(
    runs: list[SavedRun],
    default: dict[str, Any],
    figures: Any,
    folder: str,
    model_verdicts: dict[Path, dict[str, Any]] | None = None,
    dose_verdicts: dict[int, tuple[Path, dict[str, Any]]] | None = None,
) -> list[str]:
    out = ["### Recipe, training steps and model", ""]
    groups = settings(runs, default)
    verdicts = model_verdict_tables(model_verdicts or {})
    verdicts += dose_verdict_block(dose_verdicts or {}, len(model_verdicts or {}) + 1)
    if len(groups) < 2:
        return out + [
            "Absent: fewer than two settings are saved under the axes results "
            f"(`{folder}`); run `python -m letterwise.experiments recipe dose models` and save "
            "each run's details there.",
            "",
        ] + verdicts
    out += [
        "Table 8. The spelling (treatment) arm by model × recipe × training steps: the spelling "
        "gain, the answer format kept, and fine-tuned − base on the format-neutral slots "
        "(95% CI; with several seeds, their mean and range). Recipe runs are on the "
        "validation split (tuning), the rest on test. Control-corrected estimates exist only "
        "where control arms were trained (the verdict, section 1"
        + (", and below for other models" if verdicts else "")
        + f"); elsewhere the row is fine-tuned − base. Saved runs: `{folder}` and the "
        "spelling arm's seeds in docs/results/controls/.",
        "",
        *axes_table(groups),
        "",
        *verdicts,
    ]
    if "recipe_tradeoff.png" in figures:
        out += figures.show(
            "recipe_tradeoff.png", "recipe trade-off: format kept vs spelling gain",
            "Recipe search on the validation split: the share of the base's in-format rate the "
            "tuned model keeps (x; the goal is 0.9, dashed) against the spelling gain (y, 95% "
            "CI), one point per recipe.",
        )  # fmt: skip
    if "dose_response.png" in figures:
        out += figures.show(
            "dose_response.png", "dose-response over training steps",
            "Dose-response, default recipe, test split: fine-tuned − base per instrument and "
            "task against training steps (0 = the base model; lines through the mean over "
            "seeds, 95% CIs per run).",
        )  # fmt: skip
    if "dose_controls.png" in figures:
        out += figures.show(
            "dose_controls.png", "dose-response against the negative control",
            "Dose-response with the controls, test split: spelling arm − negative control "
            "(each fine-tuned − base) on the format-neutral slots against training steps, "
            "95% CIs of the verdict's bootstrap (seeds pooled where an arm has several). "
            "Whether a point is transfer is the rule's call (the table above): a habit can "
            "explain it.",
        )  # fmt: skip
    return out
