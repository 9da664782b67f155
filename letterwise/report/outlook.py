"""Sections 6-10 and the appendix: Qwen3 and the CPU analogue, limitations, deployment,
future work, references, every run."""

from __future__ import annotations

import statistics

from letterwise.numbers import ci, num, percent
from letterwise.report import axes, tables
from letterwise.report.citations import REFERENCES
from letterwise.report.common import (
    TRANSFER_TASKS,
    VERDICT_COMMAND,
    question_counts,
)
from letterwise.report.loading import (
    TASKS,
    Inputs,
    Run,
    instrument_sections,
)


def qwen3_section(reference: Run, runs: list[Run], inputs: Inputs) -> list[str]:
    out = ["## 6. Qwen3-4B, thinking mode and the CPU analogue", "", "### Measured on CPU", ""]
    if inputs.qwen3_data:
        made = inputs.qwen3_data_path / "COMMAND"
        out += [
            "The `qwen3-4b` data stages run offline on a CPU (the Qwen3 tokenizer is bundled). "
            f"Their results, committed in `{inputs.qwen3_data_path}`"
            + (f" (how they were made: `{made}`)" if made.is_file() else "")
            + ", beside the reference run's:",
            "",
            *tables.data_comparison_table(reference, inputs.qwen3_data),
            "",
        ]
        for name, data in inputs.qwen3_data.items():
            if name not in tables.DATA_STAGES:
                out += [f"`{name}.json`:", "", *tables.scalars_table(data), ""]
    else:
        out += [
            f"Absent: `{inputs.qwen3_data_path}` (the `qwen3-4b` token subset and datasets, "
            "made offline with the bundled Qwen3 tokenizer by "
            "`dvc exp run build_dataset -S model=qwen3-4b`) is not committed.",
            "",
        ]
    qwen_runs = [r for r in runs if str(r.params.get("model", "")).startswith("qwen3")]
    modes = {r.eval_setting("mode") for r in qwen_runs}
    out += ["### Needs the GPU run", ""]
    if qwen_runs:
        out += [f"{len(qwen_runs)} Qwen3 run(s) among these experiments (Table 6).", ""]
    else:
        out += [
            "Not run: no Qwen3 training or evaluation is in these results (Qwen3-4B needs a "
            "CUDA GPU for 4-bit LoRA). No Qwen3 accuracy is reported here. The runs that fill "
            "this section:",
            "",
            "```",
            "dvc exp run -S model=qwen3-4b",
            "dvc exp run -S model=qwen3-4b -S eval.mode=thinking -S eval.decoding=sampled "
            "-S eval.n_samples=4",
            "```",
            "",
            "then `python -m letterwise.report --rev <commit>` (or `dvc exp pull` the Studio's "
            "experiments first).",
            "",
        ]
    out += ["### Mode comparison (thinking vs non-thinking)", ""]
    if {"thinking", "non-thinking"} <= modes:
        rows = [r for r in qwen_runs if r.eval_setting("mode") in ("thinking", "non-thinking")]
        out += tables.experiments_table(rows, reference) + [""]
    else:
        out += ["Absent: no thinking-mode run among these experiments. On a Qwen3 preset run "
                "`python -m letterwise.experiments mode`; SmolLM2 has no thinking mode.",
                ""]  # fmt: skip
    out += ["### CPU analogue: answer directly vs spell, then answer", ""]
    lines = ["| run | task | direct: fine-tuned, delta [95% CI] | spell-first: fine-tuned, "
             "delta [95% CI] |", "|---|---|---|---|"]  # fmt: skip
    for run in runs:
        for task in TRANSFER_TASKS:
            metrics = run.tasks().get(task) or {}
            if "spell_first" not in metrics:
                continue
            sf = metrics["spell_first"]
            lines.append(
                f"| {run.short_name} | {task} | {num(metrics['tuned']['accuracy'])}, "
                f"{ci(metrics['delta'], True)} | {num(sf['tuned']['accuracy'])}, "
                f"{ci(sf['delta'], True)} |"
            )
    if len(lines) > 2:
        out += ["Spell-first prompting is the CPU stand-in for thinking mode: the model writes "
                "the spelling before it answers.", "", *lines, ""]  # fmt: skip
    else:
        out += ["Absent: no run evaluated spell-first prompting; run "
                "`dvc exp run -S 'eval.prompting=[\"direct\", \"spell_first\"]'`.", ""]
    return out


# --------------------------------------------------------------------------- 7-10


def recipe_item(reference: Run, inputs: Inputs) -> str:
    """What the recipe search leaves to do: none searched, none reaching both goals (keep 90%
    of the base's in-format rate with a spelling gain whose CI is above 0), or more seeds."""
    rows = axes.tradeoff_rows(axes.settings(inputs.axes, reference.params))
    if not rows:
        return "A recipe that keeps the answer format (replay share tuned on validation)."
    both = [r["recipe"] for r in rows if r["kept"] >= 0.9 and (r["low"] or 0) > 0]
    if both:
        return f"Run the format-keeping recipe ({', '.join(both)}) on test with its controls."
    return (f"A recipe that keeps the answer format and a significant spelling gain: none of the "
            f"{len(rows)} settings searched on validation does both (Table 8).")  # fmt: skip


def dose_item(reference: Run, inputs: Inputs) -> str:
    """What the dose-response leaves to do: a dose-response at all, control arms at the step
    counts without them, or more seeds where they have one."""
    default = (reference.params.get("train") or {}).get("max_steps")
    steps = sorted({r.setting("train", "max_steps") for r in inputs.axes} - {None, default})
    if not steps:
        return ("Train on the whole token subset (more steps) and report a dose-response over "
                "training steps.")  # fmt: skip
    missing = [s for s in steps if s not in inputs.dose_verdicts]
    # the main verdict's arms are trained at the reference's own step count
    have = sorted(set(inputs.dose_verdicts) | ({default} if inputs.verdict else set()))
    if missing:
        return (f"Control arms at {', '.join(map(str, missing))} steps ("
                + (f"the dose-response has them only at {', '.join(map(str, have))}"
                   if have else "no step count has them")
                + ") and a full epoch of the token subset.")
    return (f"More seeds per arm at {', '.join(map(str, steps))} steps (one each; Table 8 "
            "dose-response with the controls) and a full epoch of the token subset.")


def other_models(inputs: Inputs) -> list[str]:
    """Models besides the reference's with their own verdict (<controls>-<model>/)."""
    return [path.parent.name.partition("-")[2] for path in inputs.model_verdicts]


def limitations_section(reference: Run, runs: list[Run], inputs: Inputs) -> list[str]:
    train = reference.stage("train")
    p = reference.params.get("train", {})
    seeds = sorted({str(r.params.get("train", {}).get("seed") or r.params.get("seed"))
                    for r in runs})  # fmt: skip
    models = sorted({str(r.params.get("model")) for r in runs} | {r.model for r in inputs.axes})
    seen = (train.get("steps") or 0) * (p.get("batch_size") or 0) * (p.get("grad_accum") or 1)
    examples = train.get("examples")
    data = reference.stage("build_dataset")
    bands = (data.get("freq_bands") or {}).get(reference.eval_setting("split")) or {}
    widths = [
        s["delta"]["ci_high"] - s["delta"]["ci_low"]
        for m in reference.tasks().values()
        for s in instrument_sections(m).values()
        if s["delta"].get("ci_high") is not None and s["delta"].get("ci_low") is not None
    ]
    out = ["## 7. Limitations", ""]
    if inputs.verdict is None:
        out.append(
            f"- **One training seed:** every run in the grid trains with seed "
            f"{', '.join(seeds)}; run-to-run variation of training is not measured, and no "
            "control arm was run (section 1)."
        )
    out += [
        f"- **Little training:** {train.get('steps')} steps × {p.get('batch_size')} examples "
        f"= {seen} of {examples} training examples seen "
        f"({percent(seen / examples if examples else None)}); "
        f"{data.get('training_strings', '–')} of {data.get('token_subset_strings', '–')} "
        "subset strings were used at all.",
        "- **Rare multi-token test words only:** held-out words are, by construction, split "
        "into several tokens and never a training string; the test words come from the "
        "frequency bands " + (", ".join(f"{k} ({v})" for k, v in bands.items()) or "–")
        + ". Frequent, single-token words are not tested.",
        f"- **Small models only:** {', '.join(models)}"
        + (f" (one seed per arm for {', '.join(other_models(inputs))}, Table 8.1)"
           if other_models(inputs) else "")
        + "; the Qwen3-4B run is absent (section 6).",
        f"- **Small test sets:** {question_counts(reference)}; the median width of a delta's "
        f"95% CI is {num(statistics.median(widths) if widths else None)}.",
        "- **Format confound:** direct generation scores knowledge and answer format together "
        "(the in-format rates in Table 3); choice scoring removes the format but not answer "
        "habits (Table 9).",
        "- **Unadjusted p-values** (section 2, multiple comparisons).",
        "- Wall times depend on the machine and its load.",
        "",
    ]
    return out


def deployment_section(reference: Run) -> list[str]:
    t = reference.tasks()
    worse = [task for task in TRANSFER_TASKS
             if task in t and (t[task]["delta"].get("ci_high") or 0) < 0]  # fmt: skip
    lines = [
        "## 8. Deployment considerations",
        "",
        "- The API ([docs/api.md](api.md)) serves spelling, position and count with the "
        "published adapter in non-thinking mode; every answer's ground truth is computable, so "
        "the server scores itself and exports live accuracy per task "
        "([docs/monitoring.md](monitoring.md)); alerts fire when it drops below the published "
        "evaluation's CI. Containers, Compose and Kubernetes: "
        "[docs/deployment.md](deployment.md).",
        "- Expect the published accuracies, not better: fine-tuned direct generation "
        + ", ".join(f"{task} {ci(t[task]['tuned'])}" for task in TASKS if task in t)
        + " (Table 3).",
    ]
    if worse:
        lines.append(
            "- Fine-tuning made direct answers worse than the base model on "
            + " and ".join(worse)
            + ": for those questions the base model answers better than the adapter."
        )
    return lines + [""]


def future_work_section(reference: Run, inputs: Inputs) -> list[str]:
    items = []
    if inputs.verdict is None:
        items.append(f"Run the control arms over three seeds and compute the verdict "
                     f"(`{VERDICT_COMMAND}`).")  # fmt: skip
    items += [
        dose_item(reference, inputs),
        "The Qwen3-4B run on a GPU, thinking vs non-thinking (section 6).",
        "More seeds for the second family's arms (Table 8.1)."
        if other_models(inputs)
        else "A second CPU family (Gemma 3 270M) with its own control arms.",
        recipe_item(reference, inputs),
        "Commit per-question choice records with the grid, so the choice histograms render "
        "from committed files.",
    ]
    return ["## 9. Future work", "", *(f"- {item}" for item in items), ""]


def references_section() -> list[str]:
    return ["## 10. References", "", *(f"- {ref}" for ref in REFERENCES), ""]


def appendix(runs: list[Run], reference: Run) -> list[str]:
    out = ["## Appendix A. Every run", ""]
    for letter, run in enumerate(runs, 1):
        train = run.stage("train")
        sampling = run.stage("eval_position").get("sampling") or {}
        out += [
            f"### A.{letter} {run.name}",
            "",
            f"Revision `{run.rev[:12]}`; changes: {tables.changes_text(run) or 'none (reference)'}"
            f"; reproduce: {tables.reproduce_command(run, reference)}.",
            "",
            f"Training: {train.get('steps', '–')} steps, final loss "
            f"{num(train.get('final_loss'), 4)}, {num(train.get('train_seconds'), 0)} s. "
            f"Evaluation: {run.eval_setting('split')} split, {run.eval_setting('mode')}, "
            f"{sampling.get('decoding', run.eval_setting('decoding'))}"
            + (f" at T={sampling['temperature']}" if sampling.get("temperature") else "")
            + ".",
            "",
            *tables.results_table(run),
            "",
        ]
    return out
