"""Section 1: the verdict (from the control arms' verdict.json) and the findings of the
reference run, each pointing at its table or figure."""

from __future__ import annotations

from typing import Any

from letterwise.numbers import ci, num, p_value
from letterwise.report import tables
from letterwise.report.common import (
    TRANSFER_TASKS,
    VERDICT_COMMAND,
    Figures,
    arms_text,
    delta_excludes_zero,
    delta_word,
    pointer,
    question_counts,
)
from letterwise.report.loading import (
    FORMAT_NEUTRAL,
    Inputs,
    Run,
    instrument_label,
    instrument_sections,
)
from letterwise.report.study import follow_up_sections, study_lines

# --------------------------------------------------------------------------- 1. verdict


def corrected_estimates(verdict: dict[str, Any]) -> list[str]:
    """One line: the control-corrected estimate (treatment − negative control) with its CI on
    each format-neutral instrument, and whether the positive control is seen there."""
    parts = []
    for row in verdict["rows"]:
        diff = row.get("treatment_minus_negative")
        if not row.get("format_neutral") or not isinstance(diff, dict):
            continue
        seen = "sees" if row.get("detects_positive_control") else "does not see"
        parts.append(
            f"{row['task']} {instrument_label(row['instrument'])} {ci(diff, sign=True)} "
            f"(p {p_value(diff.get('p_value'))}; {seen} the positive control)"
        )
    if not parts:
        return []
    return [
        "Control-corrected estimates (treatment − negative control, fine-tuned minus base "
        "accuracy) on the format-neutral instruments: " + "; ".join(parts) + ".",
        "",
    ]


def verdict_section(inputs: Inputs, figures: Figures) -> list[str]:
    verdict = inputs.verdict
    out = [
        "## 1. Verdict",
        "",
        *study_lines(
            inputs.study, figures, inputs.study_path, inputs.study_seeds, inputs.study_breakdowns,
            inputs.study_compute,
        ),
        *follow_up_sections(inputs.follow_ups, inputs.recipe_searches),
    ]
    out += [
        "### 1b. The pilot (n = 200 per task, 3 seeds; never pooled with the study)",
        "",
        f"The pilot's arms (`{inputs.verdict_path.parent}`) ran before the study's stems, "
        "calibration and re-balanced count questions; their verdict, under the same rule, "
        "shaped the study's plan.",
        "",
    ]
    if verdict is None:
        return out + [
            f"**The verdict has not been computed:** `{inputs.verdict_path}` is absent. It "
            "compares the treatment (spelling) arm with a negative control (same recipe, "
            "letter-free replay turns only) and a positive control (trained on position/count "
            "questions about training tokens) across seeds; compute it with "
            f"`{VERDICT_COMMAND}` once the arms' results are committed, then render this report "
            "again. Until then, nothing below is a transfer claim: the findings describe "
            "fine-tuned vs base on one training run without controls.",
            "",
        ]
    arms = arms_text(verdict.get("arms") or {})
    out += [
        f"**{verdict['sentence'].strip()}**",
        "",
        "Outcome per task (transfer / equivalent / inconclusive): "
        + "; ".join(
            f"{task} **{o['outcome']}**" for task, o in (verdict.get("outcomes") or {}).items()
        )
        + f". Arms: {arms or '–'}. "
        f"From `{inputs.verdict_path}` (`{VERDICT_COMMAND}`).",
        "",
        *corrected_estimates(verdict),
        f"> **Rule.** {verdict['rule'].strip()}",
        "",
        "Table 1. Per task and instrument: fine-tuned minus base for each arm (seeds pooled), "
        "the control-corrected difference with its paired test, whether the instrument sees "
        "the positive control, which answer-habit detectors explain the effect, and whether "
        "the row supports transfer.",
        "",
        *tables.verdict_table(verdict),
        "",
    ]
    notes = [str(n) for n in verdict.get("notes") or []]
    if notes:
        out += ["Notes from the verdict:", "", *(f"- {n}" for n in notes), ""]
    if "verdict.png" in figures:
        seeds = {arm: len(s) for arm, s in (verdict.get("arms") or {}).items()}
        out += figures.show(
            "verdict.png",
            "treatment vs controls per format-neutral instrument",
            "Treatment vs controls on the format-neutral instruments "
            f"({' and '.join(instrument_label(i) for i in FORMAT_NEUTRAL)}): fine-tuned minus base "
            "per arm and the treatment − negative control difference, 95% CIs; seeds per arm: "
            + ", ".join(f"{a} {n}" for a, n in seeds.items())
            + ". Transfer needs the last row above 0 where the positive control is seen.",
        )
    return out


def findings(reference: Run, inputs: Inputs, figures: Figures) -> list[str]:
    """One sentence per finding of the reference run, each pointing at its table or figure."""
    t = reference.tasks()
    out = []
    spelling = t.get("spelling")
    if spelling:
        base, tuned = spelling["base"], spelling["tuned"]
        line = (
            f"- **Spelling (trained), {delta_word(spelling)}:** exact spelling of held-out words "
            f"{num(base['accuracy'])} → {num(tuned['accuracy'])} (delta "
            f"{ci(spelling['delta'], True)}, p {p_value(spelling['delta'].get('p_value'))})"
        )
        if "char_accuracy" in base:
            line += f"; letters right {num(base['char_accuracy'])} → {num(tuned['char_accuracy'])}"
        for key in ("teacher_forced", "choice"):
            if key in spelling:
                line += f"; {instrument_label(key)} {ci(spelling[key]['delta'], True)}"
        out.append(f"{line} {pointer('Table 3', 'Table 4', figures.ref('instruments.png'))}.")
    for task in TRANSFER_TASKS:
        metrics = t.get(task)
        if not metrics:
            continue
        parts = []
        for key, section in instrument_sections(metrics).items():
            parts.append(
                f"{instrument_label(key)} {ci(section['delta'], True)} "
                f"({delta_excludes_zero(section)})"
            )
        out.append(
            f"- **{task.capitalize()} (never trained), fine-tuned − base:** "
            + "; ".join(parts)
            + f" {pointer('Table 3', figures.ref('deltas.png'))}."
        )
        choice = metrics.get("choice")
        found = tables.habits(reference, task)
        if choice and found:
            name, value = max(found.items(), key=lambda kv: kv[1])
            tuned = choice["tuned"]
            above = (tuned.get("ci_low") or 0) > value
            relation = (
                "its CI lies above"
                if above
                else "it does not exceed"
                if tuned["accuracy"] <= value
                else "its CI includes"
            )
            where = pointer("Table 9", figures.ref("instruments.png"))
            out.append(
                f"- **{task.capitalize()}, choice scoring vs answer habits:** fine-tuned "
                f"{ci(tuned)}; {relation} the best answer-habit baseline, "
                f"{name.replace('_', ' ')} {num(value)} {where}"
                + ("." if above else ", so this instrument alone does not show letter knowledge.")
            )
        base, tuned = metrics["base"], metrics["tuned"]
        if "in_format_rate" in base:
            out.append(
                f"- **{task.capitalize()}, answer format:** direct answers in the asked format "
                f"{num(base['in_format_rate'], 2)} (base) → {num(tuned['in_format_rate'], 2)} "
                f"(fine-tuned); unparseable {num(base.get('unparseable_rate'), 2)} → "
                f"{num(tuned.get('unparseable_rate'), 2)} (Table 3): direct generation mixes "
                "letter knowledge with the answer habit the fine-tune taught."
            )
    first = (inputs.breakdowns.get("eval_position", {}).get("position") or {}).get("position")
    if first and "1" in first:
        b, f = first["1"]["base"], first["1"]["tuned"]
        out.append(
            f"- **First-letter questions:** base {num(b['accuracy'])} vs fine-tuned "
            f"{num(f['accuracy'])} (n = {b.get('n')}; "
            f"{figures.ref('by_index_and_count.png') or 'dvclive breakdowns'})."
        )
    return out


def summary_section(reference: Run, runs: list[Run], inputs: Inputs, figures: Figures
                    ) -> list[str]:  # fmt: skip
    out = verdict_section(inputs, figures)
    p = reference.params
    out += [
        "### Findings on the reference run",
        "",
        f"Reference: **{reference.name}** (`{reference.rev[:12]}`), model `{p.get('model')}`, "
        f"{reference.eval_setting('split')} split, {reference.eval_setting('mode')} mode, "
        f"{reference.eval_setting('decoding')} decoding; {question_counts(reference)}.",
        "",
        *findings(reference, inputs, figures),
    ]
    transfer = [
        (run.short_name, task, key)
        for run in runs
        for task in TRANSFER_TASKS
        for key, section in instrument_sections(run.tasks().get(task, {})).items()
        if run.tasks().get(task) and (section["delta"].get("ci_low") or 0) > 0
    ]
    cells = sum(
        len(instrument_sections(run.tasks()[task]))
        for run in runs
        for task in TRANSFER_TASKS
        if task in run.tasks()
    )
    out.append(
        f"- **Across the {len(runs)} runs** {pointer('Table 6', figures.ref('deltas.png'))}: "
        f"{len(transfer)} of {cells} transfer rows (run × task × instrument) have a delta "
        "whose CI is above 0"
        + (
            ": "
            + ", ".join(sorted({f"{task} {instrument_label(key)}" for _, task, key in transfer}))
            + "."  # fmt: skip
            if transfer
            else "."
        )
    )
    return out + [""]
