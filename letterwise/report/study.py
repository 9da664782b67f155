"""The powered study in the report: its verdict per task and model family, the equivalence
figure, and what is still to run. The study's results live apart from the pilot's
(docs/results/study/<model>/verdict.json, test split only); the two are never pooled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from letterwise.report.loading import TASKS, FollowUp

STUDY_COMMAND = "python -m letterwise.eval.verdict docs/results/study/<model>"
RUN_COMMAND = "python -m letterwise.study run --phase test"
BREAKDOWN_COMMAND = "python -m letterwise.eval.arm_breakdown docs/results/study/<model>"
ARM_LABELS = {
    "spelling": "spelling", "negative_control": "negative control",
    "positive_control": "positive control",
}  # fmt: skip


def _interval(block: dict[str, Any] | None) -> tuple[float, float, float] | None:
    if not isinstance(block, dict) or block.get("delta") is None:
        return None
    return block["delta"], block["ci_low"], block["ci_high"]


def equivalence_rows(study: dict[str, tuple[Path, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per task and family with a measured difference: spelling − negative control,
    its 95% and 90% intervals, the margin and the positive control's habit-free effect."""
    rows = []
    for model, (_, verdict) in study.items():
        for task, outcome in (verdict.get("outcomes") or {}).items():
            wide = _interval(outcome.get("treatment_minus_negative"))
            narrow = _interval(outcome.get("treatment_minus_negative_tost"))
            if wide is None:
                continue
            habit_free = _interval(outcome.get("positive_control_habit_free"))
            rows.append({
                "panel": task, "family": model, "outcome": outcome.get("outcome"),
                "delta": wide[0], "low95": wide[1], "high95": wide[2],
                "low90": narrow[1] if narrow else wide[1],
                "high90": narrow[2] if narrow else wide[2],
                "margin": outcome.get("margin"),
                "minus_margin": -outcome["margin"] if outcome.get("margin") else None,
                "positive_control": habit_free[0] if habit_free else None,
            })  # fmt: skip
    rows.sort(key=lambda r: (TASKS.index(r["panel"]) if r["panel"] in TASKS else 9, r["family"]))
    return rows


def _signed(value: float | None) -> str:
    return "–" if value is None else f"{value:+.3f}".replace("-", "−")


def _with_ci(interval: tuple[float, float, float] | None) -> str:
    if interval is None:
        return "–"
    delta, low, high = interval
    return f"{_signed(delta)} [{_signed(low)}, {_signed(high)}]"


def outcome_table(study: dict[str, tuple[Path, dict[str, Any]]]) -> list[str]:
    lines = [
        "| family | task | outcome | spelling − negative (95% CI) | 90% CI | margin | MDE | "
        "positive control, habit-free | measure |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model, (_, verdict) in study.items():
        plan = verdict.get("plan") or {}
        measure = plan.get("primary_outcome")
        for task, o in (verdict.get("outcomes") or {}).items():
            narrow = _interval(o.get("treatment_minus_negative_tost"))
            task_measure = measure.get(task) if isinstance(measure, dict) else measure
            ninety = "–" if narrow is None else f"[{_signed(narrow[1])}, {_signed(narrow[2])}]"
            margin = "–" if o.get("margin") is None else f"±{o['margin']:.3f}"
            mde = "–" if o.get("mde") is None else f"{o['mde']:.3f}"
            lines.append(
                f"| {model} | {task} | **{o.get('outcome')}** | "
                f"{_with_ci(_interval(o.get('treatment_minus_negative')))} | {ninety} | "
                f"{margin} | {mde} | "
                f"{_with_ci(_interval(o.get('positive_control_habit_free')))} | "
                f"{task_measure or '–'} |"
            )
    return lines


def compute_line(model: str, entry: dict[str, Any]) -> str:
    """One model's compute: test runs done of planned, confirm runs, superseded runs."""

    def hours(block: dict[str, Any]) -> str:
        return f"{block['runs']} run(s), {block['minutes'] / 60:.1f} h"

    test = entry["test"]
    parts = [
        f"test split {test['runs']} of {test['planned']} planned runs, "
        f"{test['minutes'] / 60:.1f} h",
        f"confirm (validation) {hours(entry['confirm'])}",
    ]
    if entry.get("superseded", {}).get("runs"):
        parts.append(f"superseded (redone, not pooled) {hours(entry['superseded'])}")
    estimate = entry.get("estimate") or "none"
    return f"{model}: {'; '.join(parts)} (plan's estimate: {estimate})."


def seeds_line(model: str, verdict: dict[str, Any], planned: list[int] | None) -> str:
    """Which seeds of each arm the verdict pools, and whether that is the whole plan."""
    arms = verdict.get("arms") or {}
    have = "; ".join(
        f"{ARM_LABELS.get(arm, arm)} {', '.join(str(s) for s in seeds) or 'none'}"
        for arm, seeds in arms.items()
    )
    if not planned:
        return f"{model}: seeds pooled: {have}."
    complete = all(sorted(arms.get(arm) or []) == sorted(planned) for arm in ARM_LABELS)
    plan = ", ".join(str(s) for s in planned)
    if complete:
        return f"{model}: every planned seed ({plan}) of every arm is pooled."
    return (
        f"{model}: **an interim reading**: the seeds pooled so far are {have}, of {plan} "
        "planned per arm. The rule is applied as it will be to the whole study; the outcome "
        "may change as the remaining runs land."
    )


def habit_table(study: dict[str, tuple[Path, dict[str, Any]]]) -> list[str]:
    """Spelling − negative control on the questions each detector gets wrong (the primary
    instrument): where a habit explains the effect, this is the part it cannot reach."""
    lines = [
        "| family | task | detector | questions it gets wrong | spelling − negative there | "
        "positive control there |",
        "|---|---|---|---|---|---|",
    ]
    found = False
    for model, (_, verdict) in study.items():
        for row in verdict.get("rows") or []:
            if not row.get("primary"):
                continue
            control = row.get("positive_control_strategies") or {}
            for name, block in (row.get("strategies") or {}).items():
                found = True
                lines.append(
                    f"| {model} | {row['task']} | {name} | {block.get('n_questions', '–')} | "
                    f"{_with_ci(_interval(block))} | {_with_ci(_interval(control.get(name)))} |"
                )
    return lines if found else []


def what_would_decide(row: dict[str, Any], outcome: dict[str, Any]) -> str | None:
    """For one inconclusive task, what the verdict says stands between it and a decision,
    read from its fields: an unseen positive control, a habit that explains the gain, an
    interval too wide for the margin at this n, or one narrow enough whose centre is not inside."""
    if outcome.get("outcome") != "inconclusive":
        return None
    n = (outcome.get("treatment_minus_negative") or {}).get("n_questions")
    needs = []
    if not row.get("detects_positive_control"):
        explained = row.get("positive_control_explained_by") or []
        why = f"explained by {', '.join(explained)}" if explained else "not above 0"
        needs.append(
            f"an instrument or recipe that sees the positive control (here {why}), so that a "
            "margin exists"
        )
    habits = row.get("explained_by") or []
    if habits:
        habit = f"{' and '.join(habits)} habit" + ("s get" if len(habits) > 1 else " gets")
        needs.append(
            f"a gain that survives on the questions the {habit} wrong (Table 1b), for transfer"
        )
    margin, wanted = outcome.get("margin"), outcome.get("n_for_margin")
    narrow = _interval(outcome.get("treatment_minus_negative_tost"))
    if margin and wanted and n and wanted > n:
        needs.append(
            f"a 90% interval inside ±{margin:.3f}, for equivalence: about {wanted:,} questions "
            f"(now {n:,}) at this seed-to-seed spread"
        )
    elif margin and narrow and narrow[2] - narrow[1] < 2 * margin:
        needs.append(
            f"nothing more questions give, for equivalence: the 90% interval "
            f"[{_signed(narrow[1])}, {_signed(narrow[2])}] is narrower than the ±{margin:.3f} "
            f"band, but the difference itself ({_signed(narrow[0])}) is at or beyond its edge"
        )
    return "; ".join(needs) if needs else None


def decide_lines(study: dict[str, tuple[Path, dict[str, Any]]]) -> list[str]:
    """Per family and inconclusive task, what would decide it (what_would_decide)."""
    lines = []
    for model, (_, verdict) in study.items():
        outcomes = verdict.get("outcomes") or {}
        for row in verdict.get("rows") or []:
            if row.get("primary") and row.get("task") in outcomes:
                need = what_would_decide(row, outcomes[row["task"]])
                if need:
                    lines.append(f"- {model}, {row['task']}: {need}.")
    if not lines:
        return []
    return [
        "What would decide each inconclusive outcome, read from its verdict (a new plan, "
        "committed before new test-split numbers, not a re-reading of these):",
        "",
        *lines,
        "",
    ]


def breakdown_lines(model: str, breakdown: dict[str, Any], path: Path) -> list[str]:
    """Accuracy per arm by true count and token boundary (letterwise.eval.arm_breakdown)."""
    instrument = breakdown.get("primary_instrument", "cloze_calibrated")
    lines = [
        f"Table 1c ({model}). Accuracy by true count and by where the asked letter sits among "
        f"the word's tokens, {instrument} (0/1), seeds pooled, 95% CI (`{path}`, "
        f"`{BREAKDOWN_COMMAND}`).",
        "",
        "| task | questions | n | base | spelling | negative control | positive control | "
        "spelling − negative |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def plain(block: dict[str, Any] | None) -> str:
        if not block:
            return "–"
        return f"{block['delta']:.3f} [{block['ci_low']:.3f}, {block['ci_high']:.3f}]"

    for task, bins in (breakdown.get("tasks") or {}).items():
        for name, entry in bins.items():
            cell = entry.get(instrument) or {}
            lines.append(
                f"| {task} | {name.replace('_', ' ')} | {entry['n_questions']} | "
                f"{plain(cell.get('base'))} | {plain(cell.get('spelling'))} | "
                f"{plain(cell.get('negative_control'))} | {plain(cell.get('positive_control'))} | "
                f"{_with_ci(_interval(cell.get('spelling_minus_negative')))} |"
            )
    return lines + [""]


def study_lines(
    study: dict[str, tuple[Path, dict[str, Any]]],
    figures: Any,
    study_dir: Path = Path("docs/results/study"),
    planned_seeds: dict[str, list[int]] | None = None,
    breakdowns: dict[str, tuple[Path, dict[str, Any]]] | None = None,
    compute: dict[str, dict[str, Any]] | None = None,
) -> list[str]:
    """The report's study subsection: the outcomes, the figure, or what is still to run."""
    out = ["### 1a. The powered study", ""]
    plan = study_dir / "plan.yaml"
    if not study:
        return out + [
            f"No test-split result of the study is committed yet. Its plan (`{plan}`) was "
            "committed before any test-split number; the confirm runs on validation that "
            f"decided its recipe are under `{study_dir}/<model>/validation/`. Run it with "
            f"`{RUN_COMMAND}` (each run commits itself; a stop loses at most the run in "
            f"flight), then `{STUDY_COMMAND}` and render this report again. Until then the "
            "verdict below is the pilot's.",
            "",
        ]
    out += [
        "Table 1a. The study's verdict per model family and task, on the pre-registered "
        f"primary instrument and measure (`{plan}`; from "
        + ", ".join(f"`{path}`" for path, _ in study.values())
        + f", `{STUDY_COMMAND}`).",
        "",
        *outcome_table(study),
        "",
    ]
    for model, (_, verdict) in study.items():
        out += [f"- {seeds_line(model, verdict, (planned_seeds or {}).get(model))}"]
        out += [f"- {verdict['sentence'].strip()}"]
    out += [""]
    if compute:
        out += [
            "Compute spent, from each committed run's `timing.json` (wall time on the machine "
            "that ran it), against the plan's estimate:",
            "",
            *(f"- {compute_line(model, entry)}" for model, entry in compute.items()),
            "",
        ]
    habits = habit_table(study)
    if habits:
        out += [
            "Table 1b. The primary instrument on the questions each strategy detector gets "
            "wrong: an effect that vanishes (or turns negative) there is the habit's, not "
            "transfer.",
            "",
            *habits,
            "",
        ]
    out += decide_lines(study)
    for model, (path, breakdown) in (breakdowns or {}).items():
        out += breakdown_lines(model, breakdown, path)
    if "study_equivalence.png" in figures:
        out += figures.show(
            "study_equivalence.png",
            "equivalence plot of the study",
            "The study per task and family: spelling − negative control (dot) with its 90% "
            "(thick) and 95% (thin) intervals, the ±margin band (grey: half the positive "
            "control's habit-free effect) and that effect itself (diamond). The whole 90% "
            "interval inside the band is `equivalent`; the 95% interval above 0 where the "
            "positive control is seen is `transfer`; anything else is `inconclusive`.",
        )
    return out


FOLLOW_UP_RUN_COMMAND = "python -m letterwise.study --plan {plan} run"
FOLLOW_UP_VERDICT_COMMAND = "python -m letterwise.eval.verdict {dir}/<model> --questions habit_free"


def direction_lines(study: dict[str, tuple[Path, dict[str, Any]]]) -> list[str]:
    """Where spelling − negative control is below 0 with its whole 95% interval: the spelling
    arm answers worse there (the rule's outcome stays what it is; this says which way)."""
    lines = []
    for model, (_, verdict) in study.items():
        for task, outcome in (verdict.get("outcomes") or {}).items():
            interval = _interval(outcome.get("treatment_minus_negative"))
            if interval and interval[2] < 0:
                lines.append(
                    f"- {model}, {task}: spelling − negative control is below 0 "
                    f"({_with_ci(interval)}): on these questions the spelling arm answers "
                    "worse than the negative control, not better."
                )
    return lines


def recipe_search_lines(searches: dict[str, tuple[Path, dict[str, Any]]]) -> list[str]:
    """Each validation search for a recipe: does its positive control show on count?"""
    lines = []
    for label, (path, verdict) in searches.items():
        count = (verdict.get("outcomes") or {}).get("count") or {}
        full = _interval(count.get("positive_control"))
        free = _interval(count.get("positive_control_habit_free"))
        if full is None:
            continue
        seen = "sees" if count.get("detects_positive_control") else "does not see"
        habit_free = "–" if free is None else _with_ci(free)
        n = (count.get("positive_control") or {}).get("n_questions")
        lines.append(
            f"- {label} (validation, n = {n}; `{path}`): the count positive control gains "
            f"{_with_ci(full)}, {habit_free} on the questions no habit answers; the primary "
            f"instrument {seen} it."
        )
    if not lines:
        return []
    return [
        "Validation search for a recipe under which the count positive control shows (positive "
        "control alone, no test split read):",
        "",
        *lines,
        "",
    ]


ORDINALS = ("second", "third", "fourth", "fifth")


def follow_up_intro(follow_up: FollowUp, ordinal: str) -> str:
    """What the plan fixes, from the plan itself: recipe, fresh words, questions, seeds."""
    plan = follow_up.plan
    steps = (plan.get("recipe") or {}).get("train.max_steps")
    n = plan.get("n") or {}
    first = int(n.get("build_dataset.validation_words", 0)) + 1
    last = first + int(n.get("build_dataset.test_words", 0)) - 1
    seeds = "; ".join(
        f"{model} seeds {', '.join(map(str, values))}" for model, values in follow_up.seeds.items()
    )
    code = str(plan.get("code_commit") or "HEAD")[:7]
    questions = ((plan.get("primary") or {}).get("questions") or "all").replace("_", "-")
    return (
        f"The {ordinal} study: {int(steps or 0):,} training steps for every arm, at code "
        f"{code}, asked on test words {first:,}-{last:,} of the shuffled held-out pool "
        f"(words no earlier study scored), {seeds}, with the rule applied to the {questions} "
        "questions only (those every strategy detector gets wrong, so no habit can explain an "
        "effect, and the margin comes from the positive control on the same questions). Its "
        f"plan (`{follow_up.path / 'plan.yaml'}`) was committed before any of its numbers and "
        "says why it was run."
    )


def follow_up_lines(follow_up: FollowUp, ordinal: str, table: str) -> list[str]:
    """One follow-up study: what it fixed, then its verdict or how to run it."""
    study, plan = follow_up.verdicts, follow_up.path / "plan.yaml"
    words = int((follow_up.plan.get("n") or {}).get("build_dataset.test_words", 0))
    out = [
        f"#### The {ordinal} study: fresh test words, the questions no habit answers",
        "",
        follow_up_intro(follow_up, ordinal),
        "",
    ]
    if not study:
        return out + [
            f"No verdict of the {ordinal} study is committed yet: "
            f"`{FOLLOW_UP_RUN_COMMAND.format(plan=plan)}` (it resumes from the committed runs), "
            f"then `{FOLLOW_UP_VERDICT_COMMAND.format(dir=follow_up.path)}`.",
            "",
        ]
    out += [
        f"Table {table}. The {ordinal} study's verdict (`"
        + "`, `".join(str(path) for path, _ in study.values())
        + f"`, `{FOLLOW_UP_VERDICT_COMMAND.format(dir=follow_up.path)}`); n is the number of "
        f"habit-free questions of the {words:,} per task.",
        "",
        *outcome_table(study),
        "",
    ]
    for model, (_, verdict) in study.items():
        out += [f"- {seeds_line(model, verdict, follow_up.seeds.get(model))}"]
        out += [f"- {verdict['sentence'].strip()}"]
    out += direction_lines(study)
    return out + [*(f"- Compute: {compute_line(m, e)}" for m, e in follow_up.compute.items()), ""]


def follow_up_sections(
    follow_ups: list[FollowUp], searches: dict[str, tuple[Path, dict[str, Any]]] | None = None
) -> list[str]:
    """Every follow-up study in order; the validation recipe search, which decides the recipe
    of the studies after the second, comes right after the second."""
    out: list[str] = []
    for index, follow_up in enumerate(follow_ups):
        out += follow_up_lines(follow_up, ORDINALS[index], f"1{chr(ord('d') + index)}")
        if index == 0:
            out += recipe_search_lines(searches or {})
    if not follow_ups:
        out += recipe_search_lines(searches or {})
    return out
