"""Sections 4 and 5: results with their figures, and the baselines and detectors."""

from __future__ import annotations

from letterwise.report import tables
from letterwise.report.axes import axes_section, dose_verdicts_with_reference
from letterwise.report.common import (
    TRANSFER_TASKS,
    Figures,
    question_counts,
)
from letterwise.report.loading import (
    Inputs,
    Run,
    instrument_label,
)
from letterwise.report.probe import probe_lines, study_probe_lines

# --------------------------------------------------------------------------- 4. results


def results_section(reference: Run, runs: list[Run], inputs: Inputs, figures: Figures
                    ) -> list[str]:  # fmt: skip
    out = [
        "## 4. Results",
        "",
        f"Table 3. Reference run, every instrument; {question_counts(reference)}.",
        "",
        *tables.results_table(reference),
        "",
    ]
    detail = tables.spelling_detail_table(reference)
    if detail:
        out += ["Table 4. Spelling at the character level (direct generation).", "", *detail,
                ""]  # fmt: skip
    if "instruments.png" in figures:
        out += figures.show(
            "instruments.png",
            "base vs fine-tuned accuracy per task and instrument",
            "Base vs fine-tuned accuracy per task (trained task first) and instrument, "
            "reference run, 95% CIs; black marks are answer-habit baselines (uniform chance "
            "over the candidates, majority answer, positional prior); "
            f"{question_counts(reference)}.",
        )
    if "training_loss.png" in figures:
        names = ", ".join(inputs.loss_curves)
        out += figures.show(
            "training_loss.png",
            "training loss",
            f"Training loss per step (faint) and its centred moving average over 9 steps "
            f"(solid), for the runs whose curves are available: {names}. The grid's other "
            "trained runs kept only their final loss (Appendix).",
        )
    else:
        out += ["No training curve was given (`--loss`): the per-step loss is absent.", ""]
    out += breakdown_figures(inputs, figures)
    out += ["### Answer choices", ""]
    if "choices.png" in figures:
        n = {t: sum(r["task"] == t for r in inputs.choices) for t in TRANSFER_TASKS}
        out += figures.show(
            "choices.png",
            "choice histograms",
            "Which answer choice scoring picked, base vs fine-tuned, beside the correct "
            "answers' distribution; n = "
            + ", ".join(f"{v} {t}" for t, v in n.items())
            + " questions.",
        )
    else:
        out += [
            "Absent: the histograms of the answers choice scoring picked need the per-question "
            "records in `data/predictions/eval_position.jsonl` (a DVC output, not committed "
            "with the grid's results). Render them with `dvc pull` and "
            "`python -m letterwise.report --predictions data/predictions/eval_position.jsonl`.",
            "",
        ]
    out += [
        "### Transfer coupling (reference run)",
        "",
        "Table 5. Per word: does spelling it right go with answering its question right?",
        "",
        *tables.coupling_table(reference),
        "",
        *probe_lines(inputs.probe, inputs.probe_path, figures),
        *study_probe_lines(inputs.study_probes, inputs.study, figures),
        "### Experiments",
        "",
        "Table 6. Every evaluated run: what it changed against the reference, the deltas and "
        "the command that reproduces it.",
        "",
        *tables.experiments_table(runs, reference),
        "",
    ]
    if "deltas.png" in figures:
        ns = sorted({m["delta"].get("n") for r in runs for m in r.tasks().values()})
        out += figures.show(
            "deltas.png",
            "transfer deltas per experiment",
            "Fine-tuned minus base per experiment (y) and instrument (colour), one panel per "
            f"task, 95% CIs; {len(runs)} runs, n = {', '.join(map(str, ns))} questions per "
            "task and run.",
        )
    out += sampling_section(reference, runs, figures)
    if inputs.replay:
        names = ", ".join(f"`{n}`" for n in inputs.replay)
        out += [
            "### Format retention (replay)",
            "",
            f"Table 7. Replay turns mixed into training (saved runs {names}, "
            "docs/results/replay/): tuned accuracy and delta per instrument; the runs share "
            "their base model and questions.",
            "",
            *tables.replay_table(inputs.replay),
            "",
        ]
    return out + axes_section(inputs.axes, reference.params, figures, str(inputs.axes_path),
                              inputs.model_verdicts,
                              dose_verdicts_with_reference(inputs, reference.params))


def breakdown_figures(inputs: Inputs, figures: Figures) -> list[str]:
    out = ["### Breakdowns", ""]
    if "by_word_length.png" in figures:
        out += figures.show(
            "by_word_length.png",
            "accuracy by word length",
            "Direct-generation accuracy by word length, base vs fine-tuned, 95% CIs; each "
            "bucket's n on the axis (`dvclive/*/breakdowns.json` of the reference run).",
        )
    if "by_index_and_count.png" in figures:
        out += figures.show(
            "by_index_and_count.png",
            "accuracy by letter index and by true count",
            "Position accuracy by the letter index asked and count accuracy by the true count, "
            "base vs fine-tuned, 95% CIs, n per bucket on the axis: an answer habit (always "
            "the first letter, always 1) shows as one high bucket.",
        )
    if len(out) == 2:
        out += ["Absent: no breakdowns.json was given (`--breakdowns`).", ""]
    return out


def sampling_section(reference: Run, runs: list[Run], figures: Figures) -> list[str]:
    out = ["### Decoding temperature", ""]
    if "temperature.png" in figures:
        out += figures.show(
            "temperature.png",
            "accuracy by decoding temperature",
            "Direct-generation accuracy of base and fine-tuned under greedy decoding and "
            "sampling at each temperature (runs that change only decoding), 95% CIs, y axis "
            f"zoomed per task; {question_counts(reference)} per setting.",
        )
    else:
        out += ["Absent: fewer than two decoding settings among runs that change only "
                "decoding; run `python -m letterwise.experiments temperature`.", ""]  # fmt: skip
    out += ["### Samples per question", ""]
    values = {r.eval_setting("n_samples") for r in runs if r.eval_setting("decoding") == "sampled"}
    if len(values) > 1:
        rows = [r for r in runs if r.eval_setting("decoding") == "sampled"]
        out += tables.experiments_table(rows, reference) + [""]
    else:
        out += ["Absent: fewer than two sampled runs differ in `eval.n_samples`; run "
                "`python -m letterwise.experiments n_samples`.", ""]  # fmt: skip
    return out


# --------------------------------------------------------------------------- 5-6


def baselines_section(reference: Run, inputs: Inputs) -> list[str]:
    out = [
        "## 5. Baselines and detectors",
        "",
        "Table 9. Choice scoring against answer habits: what a model scores by always giving "
        "the same kind of answer, whatever the word (uniform chance over the candidates, the "
        "most common answer, the most common letter at each position; detectors where the "
        "evaluation saved per-question strategies).",
        "",
        *tables.chance_table(reference),
        "",
        "The untuned base model is the first baseline throughout: every delta is fine-tuned "
        "minus base on the same questions.",
    ]
    if inputs.verdict is not None:
        explained = sorted({
            f"{r['task']} {instrument_label(r['instrument'])}: {', '.join(r['explained_by'])}"
            for r in inputs.verdict["rows"] if r.get("explained_by")
        })  # fmt: skip
        out += ["", "Detectors that explain a row of the verdict: "
                + ("; ".join(explained) if explained else "none") + "."]  # fmt: skip
    return out + [""]
