"""The report's Markdown tables, each built from the runs and files it is given."""

from __future__ import annotations

import json
from typing import Any

from letterwise.numbers import MISSING, ci, interval, num, p_value
from letterwise.report.loading import (
    TASKS,
    Run,
    instrument_label,
    instrument_sections,
)

# How each paired test is named in the tables (the `test` field of a delta).
TESTS = {
    "mcnemar_exact": "exact McNemar",
    "sign_flip_permutation": "sign-flip permutation",
}


def statistics_label(delta: dict[str, Any]) -> str:
    """The accuracy CI and paired test behind a row: 0/1 scores get a Wilson CI and the exact
    McNemar test; fractional scores (teacher-forced letters, several samples) a bootstrap CI
    and a sign-flip permutation test. The delta's CI is a paired bootstrap either way."""
    test = delta.get("test")
    accuracy_ci = "Wilson" if test == "mcnemar_exact" else "bootstrap"
    return f"{accuracy_ci}; {TESTS.get(test, str(test))}"


def setting(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def changes_text(run: Run, joiner: str = ", ") -> str:
    return joiner.join(f"{k}={setting(v)}" for k, v in sorted(run.changed.items()))


def results_table(run: Run) -> list[str]:
    lines = [
        "| task | instrument | n | base [95% CI] | fine-tuned [95% CI] "
        "| delta [95% CI, paired bootstrap] | p | CI; test | in format base / tuned |",
        "|---|---|---:|---|---|---|---:|---|---|",
    ]
    for task, metrics in run.tasks().items():
        for key, section in instrument_sections(metrics).items():
            base, tuned, delta = section["base"], section["tuned"], section["delta"]
            in_format = MISSING
            if "in_format_rate" in base:
                in_format = f"{num(base['in_format_rate'], 2)} / {num(tuned['in_format_rate'], 2)}"
            lines.append(
                f"| {task} | {instrument_label(key)} | {delta.get('n')} | {ci(base)} "
                f"| {ci(tuned)} | {ci(delta, sign=True)} | {p_value(delta.get('p_value'))} "
                f"| {statistics_label(delta)} | {in_format} |"
            )
    return lines


def spelling_detail_table(run: Run) -> list[str]:
    """Character-level spelling: share of letters right and edit distance, base vs tuned."""
    spelling = run.tasks().get("spelling") or {}
    base, tuned = spelling.get("base") or {}, spelling.get("tuned") or {}
    if "char_accuracy" not in base:
        return []
    return [
        "| spelling, direct generation | base | fine-tuned |",
        "|---|---:|---:|",
        f"| exact match | {num(base.get('accuracy'))} | {num(tuned.get('accuracy'))} |",
        f"| character accuracy | {num(base.get('char_accuracy'))} "
        f"| {num(tuned.get('char_accuracy'))} |",
        f"| mean edit distance | {num(base.get('mean_edit_distance'), 2)} "
        f"| {num(tuned.get('mean_edit_distance'), 2)} |",
        f"| unparseable | {num(base.get('unparseable_rate'), 2)} "
        f"| {num(tuned.get('unparseable_rate'), 2)} |",
    ]


def habits(run: Run, task: str) -> dict[str, float]:
    """Answer-habit baselines and detector accuracies of a task (see figures.baseline_marks)."""
    metrics = run.tasks().get(task) or {}
    found = dict(((metrics.get("choice") or {}).get("base") or {}).get("baselines") or {})
    per_question = run.stage("eval_position").get("per_question") or {}
    for name, answers in ((per_question.get(task) or {}).get("strategy_right") or {}).items():
        if answers:
            found[f"detector: {name}"] = answers.count("1") / len(answers)
    return {k: v for k, v in found.items() if v is not None}


def chance_table(run: Run) -> list[str]:
    lines = [
        "| task | choice base | choice fine-tuned | answer habit | its accuracy "
        "| fine-tuned above it? |",
        "|---|---:|---:|---|---:|---|",
    ]
    for task, metrics in run.tasks().items():
        choice = metrics.get("choice")
        if not choice:
            continue
        tuned = choice["tuned"]
        for name, value in habits(run, task).items():
            above = "yes: CI above it" if (tuned.get("ci_low") or 0) > value else "no"
            lines.append(
                f"| {task} | {num(choice['base']['accuracy'])} | {num(tuned['accuracy'])} "
                f"| {name.replace('_', ' ')} | {num(value)} | {above} |"
            )
    return lines


def coupling_table(run: Run) -> list[str]:
    """Per transfer task and model: does spelling a word right go with answering its question
    right? (eval_position's per-word coupling with eval_spelling)"""
    lines = [
        "| task | model | n | P(right given spelled right) | P(right given spelled wrong) "
        "| odds ratio [95% CI] | Fisher p |",
        "|---|---|---:|---:|---:|---|---:|",
    ]
    found = False
    for task, metrics in run.tasks().items():
        for model, c in (metrics.get("coupling") or {}).items():
            found = True
            ratio = (
                f"{num(c.get('odds_ratio'), 2)} "
                f"{interval(c.get('odds_ratio_ci_low'), c.get('odds_ratio_ci_high'), digits=2)}"
            )
            lines.append(
                f"| {task} | {model} | {c.get('n')} | {num(c.get('p_right_given_spelled_right'))} "
                f"| {num(c.get('p_right_given_spelled_wrong'))} | {ratio} "
                f"| {p_value(c.get('fisher_p'))} |"
            )
    if not found:
        return ["Absent: the reference run has no coupling results (eval_position computes them "
                "from eval_spelling's predictions)."]  # fmt: skip
    return [*lines, "", "A dash is undefined: no word of that kind (e.g. the base model spelled "
            "no test word right)."]  # fmt: skip


def reproduce_command(run: Run, reference: Run) -> str:
    where = reference.short_name  # the commit, not the experiments that repeat it
    if not run.changed:
        return f"`dvc repro` at {where}"
    sets = " ".join(f"-S '{k}={setting(v)}'" for k, v in sorted(run.changed.items()))
    return f"`dvc exp run {sets}` from {where}"


def experiments_table(runs: list[Run], reference: Run) -> list[str]:
    lines = [
        "| experiment | changes | spelling delta | position delta (direct / choice) "
        "| count delta (direct / choice) | reproduce |",
        "|---|---|---|---|---|---|",
    ]

    def delta(tasks: dict[str, Any], task: str, key: str | None = None) -> str:
        section = tasks.get(task)
        if section and key:
            section = section.get(key)
        return ci(section["delta"], sign=True) if section else MISSING

    for run in runs:
        t = run.tasks()
        lines.append(
            f"| {run.name} | {changes_text(run) or 'reference'} | {delta(t, 'spelling')} "
            f"| {delta(t, 'position')} / {delta(t, 'position', 'choice')} "
            f"| {delta(t, 'count')} / {delta(t, 'count', 'choice')} "
            f"| {reproduce_command(run, reference)} |"
        )
    return lines


def training_table(run: Run, timing: dict[str, Any] | None) -> list[str]:
    """The recipe as run: params.yaml's train section and train's results."""
    p = run.params.get("train", {})
    lora = p.get("lora", {})
    train = run.stage("train")
    data = run.stage("build_dataset")
    examples, steps = train.get("examples"), train.get("steps")
    per_step = (p.get("batch_size") or 0) * (p.get("grad_accum") or 1)
    seen = (
        f"{steps * per_step} of {examples} ({100 * steps * per_step / examples:.0f} %)"
        if examples and steps and per_step
        else MISSING
    )
    machine = (timing or {}).get("machine", MISSING)
    rows = [
        ("model", f"`{run.params.get('model')}`"),
        ("method", f"LoRA r={lora.get('r')}, alpha={lora.get('alpha')}, "
                   f"dropout={lora.get('dropout')}; base weights 4-bit where the backend "
                   f"supports it (load_in_4bit={setting(p.get('load_in_4bit'))})"),
        ("LoRA target modules", ", ".join(f"`{m}`" for m in lora.get("target_modules", []))),
        ("trainable parameters", f"{train.get('trainable_params', MISSING):,}"
         if isinstance(train.get("trainable_params"), int) else MISSING),
        ("learning rate and schedule", f"{p.get('learning_rate')}, {p.get('lr_scheduler')}, "
                                       f"warm-up ratio {p.get('warmup_ratio')}, "
                                       f"weight decay {p.get('weight_decay')}"),
        ("batch", f"{p.get('batch_size')} × gradient accumulation {p.get('grad_accum')}, "
                  f"max sequence length {p.get('max_seq_length')}"),
        ("steps", f"{steps} (max_steps {p.get('max_steps')})"),
        ("training examples seen", seen),
        ("training strings", f"{data.get('training_strings', MISSING)} "
                             f"(of {data.get('token_subset_strings', MISSING)} in the subset)"),
        ("loss", "answer tokens only; final logged loss "
                 f"{num(train.get('final_loss'), 4)}"),
        ("replay share", setting(run.params.get("build_dataset", {}).get("replay_share"))),
        ("seed", setting(run.params.get("seed"))),
        ("wall time", f"{num(train.get('train_seconds'), 0)} s "
                      f"({num(train.get('seconds_per_step'), 2)} s/step)"),
        ("hardware", f"{machine} (docs/results/reference-timing.json)"),
    ]  # fmt: skip
    return ["| setting | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]


def replay_table(replay: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """Tuned accuracy and delta per task and instrument, one column pair per replay run."""
    names = list(replay)
    header = "| task | instrument | base |" + "".join(
        f" tuned ({n}) | delta [95% CI] ({n}) |" for n in names
    )
    lines = [header, "|---|---|---:|" + "---:|---|" * len(names)]
    first = replay[names[0]]
    for task in [t for t in TASKS if t in first]:
        for key, section in instrument_sections(first[task]).items():
            row = f"| {task} | {instrument_label(key)} | {num(section['base']['accuracy'])} |"
            for name in names:
                other = instrument_sections(replay[name].get(task, {})).get(key)
                row += (
                    f" {num(other['tuned']['accuracy'])} | {ci(other['delta'], sign=True)} |"
                    if other
                    else f" {MISSING} | {MISSING} |"
                )
            lines.append(row)
    return lines


def delta_cell(d: dict[str, Any] | None) -> str:
    """A verdict block as "+0.120 [+0.060, +0.180]"; a dash where the arm is missing."""
    return ci(d, sign=True) if isinstance(d, dict) and d.get("delta") is not None else MISSING


def yes_no(value: Any) -> str:
    return {True: "yes", False: "no"}.get(value, MISSING)


def verdict_table(verdict: dict[str, Any]) -> list[str]:
    lines = [
        "| task | instrument | treatment Δ [95% CI] | negative control Δ "
        "| positive control Δ (habit-free) | treatment − negative [95% CI], p "
        "| sees positive control | explained by | margin | MDE | outcome |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    cell, yes = delta_cell, yes_no
    for row in verdict["rows"]:
        diff = row.get("treatment_minus_negative") or {}
        explained = ", ".join(row.get("explained_by") or []) or "nothing"
        free = row.get("positive_control_habit_free")
        margin, mde = row.get("margin"), row.get("mde")
        outcome = row.get("outcome", MISSING) if row.get("primary") else "secondary"
        lines.append(
            f"| {row['task']} | {instrument_label(row['instrument'])} "
            f"| {cell(row.get('treatment'))} "
            f"| {cell(row.get('negative_control'))} | {cell(row.get('positive_control'))}"
            f" ({cell(free)}) "
            f"| {cell(diff)}, p {p_value(diff.get('p_value'))} "
            f"| {yes(row.get('detects_positive_control'))} | {explained} "
            f"| {MISSING if margin is None else f'±{margin:.3f}'} "
            f"| {MISSING if mde is None else f'{mde:.3f}'} | **{outcome}** |"
        )
    return lines


def per_seed_table(verdict: dict[str, Any]) -> list[str]:
    rows = verdict.get("per_seed") or []
    if not rows:
        return []
    lines = [
        "| arm | seed | task | instrument | base | fine-tuned | delta [95% CI] |",
        "|---|---:|---|---|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.get('arm')} | {r.get('seed')} | {r.get('task')} "
            f"| {instrument_label(str(r.get('instrument')))} | {num(r.get('base'))} "
            f"| {num(r.get('tuned'))} | {ci(r, sign=True)} |"
        )
    return lines


DATA_STAGES = ("filter_tokens", "build_dataset")
# (label, stage, path inside its results) for the data-stage comparison
DATA_ROWS = (
    ("vocabulary size", "filter_tokens", "vocab_size"),
    ("tokens kept (English letters only)", "filter_tokens", "kept_tokens"),
    ("distinct strings in the subset", "filter_tokens", "kept_strings"),
    ("mean string length (letters)", "filter_tokens", "mean_length"),
    ("training strings used", "build_dataset", "training_strings"),
    ("training examples", "build_dataset", "sizes.train.spelling"),
    ("held-out words", "build_dataset", "leakage.held_out_words"),
    ("held-out words that are training strings", "build_dataset", "leakage.leaked_words"),
    ("mean tokens per held-out word", "build_dataset", "leakage.mean_tokens_per_word"),
    ("multi-token share of held-out words", "build_dataset", "leakage.multi_token_share"),
)


def data_comparison_table(reference: Run, other: dict[str, dict[str, Any]]) -> list[str]:
    """The data stages' results of another model (e.g. docs/results/qwen3-data/) beside the
    reference run's."""
    from letterwise.report.loading import flatten

    mine = {stage: flatten(reference.stage(stage)) for stage in DATA_STAGES}
    theirs = {stage: flatten(other.get(stage) or {}) for stage in DATA_STAGES}
    model = (other.get("filter_tokens") or other.get("build_dataset") or {}).get("model", "other")

    def shown(value: Any) -> str:
        return num(value) if isinstance(value, float) else MISSING if value is None else str(value)

    lines = [f"| data | {reference.params.get('model')} (reference) | {model} |", "|---|---:|---:|"]
    for label, stage, path in DATA_ROWS:
        lines.append(
            f"| {label} | {shown(mine[stage].get(path))} | {shown(theirs[stage].get(path))} |"
        )
    return lines


def scalars_table(data: dict[str, Any], limit: int = 40) -> list[str]:
    """A results file's scalar values (nested keys joined by dots), for files the report has no
    dedicated table for."""
    from letterwise.report.loading import flatten

    flat = {k: v for k, v in flatten(data).items() if isinstance(v, (int, float, str, bool))}
    shown = list(flat.items())[:limit]
    lines = ["| value | |", "|---|---:|"]
    lines += [f"| {k} | {num(v) if isinstance(v, float) else v} |" for k, v in shown]
    if len(flat) > limit:
        lines.append(f"| … {len(flat) - limit} more in the file | |")
    return lines
