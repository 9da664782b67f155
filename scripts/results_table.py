"""Markdown tables of a run's eval metrics: task x instrument (base, tuned, delta [CI], p), the
in-format rates, choice-scoring baselines and the per-word coupling.

    python scripts/results_table.py                       # metrics/ of this checkout
    python scripts/results_table.py --metrics docs/results/every-instrument
    python scripts/results_table.py --compare docs/results/replay/val-replay0 \
                                             docs/results/replay/val-replay25

Reads only eval_spelling.json and eval_position.json of the given folders, so every number it
prints comes from those files.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

# The same number formatting as the final report and the model card.
from letterwise.numbers import ci, num, p_scientific

INSTRUMENTS = {
    "direct": "direct generation",
    "spell_first": "spell-first generation",
    "choice": "choice scoring",
    "teacher_forced": "teacher-forced letters",
    "cloze": "cloze slot",
    "cloze_calibrated": "cloze slot, calibrated",
    "oracle": "cloze after the right spelling",
    "two_turn": "cloze after own spelling",
}
# strategy detectors per task (letterwise/eval/detectors.py): the share of answers each habit
# would give, base / tuned
HABITS = {
    "position": (("first_letter", "first letter"), ("positional_prior", "positional prior")),
    "count": (("one", '"1"'), ("zero", '"0"'), ("word_length", "word length"),
              ("presence", "presence"), ("majority_answer", "majority")),
}  # fmt: skip
TASKS = ("spelling", "position", "count")


def load_tasks(metrics_dir: Path) -> dict[str, dict[str, Any]]:
    found = {}
    for name in ("eval_spelling.json", "eval_position.json"):
        # a run's full results are in metrics/details/; saved result folders hold them directly
        path = metrics_dir / "details" / name
        if not path.is_file():
            path = metrics_dir / name
        if path.is_file():
            data = json.loads(path.read_text())
            found |= {task: data[task] for task in TASKS if task in data}
    if not found:
        raise SystemExit(f"no eval metrics in {metrics_dir} (run `dvc repro` first)")
    return found


def instrument_table(tasks: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| task | instrument | n | base [95% CI] | fine-tuned [95% CI] | delta [95% CI] | p "
        "| in format base / tuned |",
        "|---|---|---:|---|---|---|---:|---|",
    ]
    for task, metrics in tasks.items():
        sections = {"direct": metrics} | {k: metrics[k] for k in INSTRUMENTS if k in metrics}
        for key, section in sections.items():
            base, tuned, delta = section["base"], section["tuned"], section["delta"]
            in_format = "–"
            if "in_format_rate" in base:
                in_format = f"{num(base['in_format_rate'], 2)} / {num(tuned['in_format_rate'], 2)}"
            lines.append(
                f"| {task} | {INSTRUMENTS[key]} | {delta['n']} | {ci(base)} "
                f"| {ci(tuned)} | {ci(delta, sign=True)} "
                f"| {p_scientific(delta.get('p_value'))} | {in_format} |"
            )
    return "\n".join(lines)


def baselines_table(tasks: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| task | choice base / tuned | mean rank base / tuned | uniform chance | majority answer "
        "| positional prior |",
        "|---|---|---|---:|---:|---:|",
    ]
    for task, metrics in tasks.items():
        choice = metrics.get("choice")
        if not choice:
            continue
        base, tuned = choice["base"], choice["tuned"]
        prior = base["baselines"]
        lines.append(
            f"| {task} | {num(base['accuracy'])} / {num(tuned['accuracy'])} "
            f"| {num(base['mean_rank'], 2)} / {num(tuned['mean_rank'], 2)} "
            f"| {num(prior.get('uniform_chance'))} | {num(prior.get('majority_answer'))} "
            f"| {num(prior.get('positional_prior'))} |"
        )
    return "\n".join(lines)


def coupling_table(tasks: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| task | where | model | words | P(right given spelled right) "
        "| P(right given spelled wrong) | odds ratio [95% CI] | Fisher p |",
        "|---|---|---|---:|---:|---:|---|---:|",
    ]
    for task, metrics in tasks.items():
        sources = {"spelling question x direct answer": metrics.get("coupling", {})}
        if "spell_first" in metrics:
            sources["spell-first: own spelling x answer"] = metrics["spell_first"]["coupling"]
        for where, per_model in sources.items():
            for model, c in per_model.items():
                lines.append(
                    f"| {task} | {where} | {model} | {c.get('n')} "
                    f"| {num(c.get('p_right_given_spelled_right'), 2)} "
                    f"| {num(c.get('p_right_given_spelled_wrong'), 2)} "
                    f"| {num(c.get('odds_ratio'), 2)} [{num(c.get('odds_ratio_ci_low'), 2)}, "
                    f"{num(c.get('odds_ratio_ci_high'), 2)}] | {p_scientific(c.get('fisher_p'))} |"
                )
    return "\n".join(lines)


def detectors_table(tasks: dict[str, dict[str, Any]]) -> str:
    """Per transfer task and instrument: how often each model's answer is what an answer habit
    would say (base / tuned), the habit's own accuracy, and the habits that explain the delta."""
    lines = [
        "| task | instrument | answers equal to the habit's (base / tuned; habit accuracy) "
        "| accuracy at index 1 / later (tuned) | explained by |",
        "|---|---|---|---|---|",
    ]
    for task, habits in HABITS.items():
        metrics = tasks.get(task, {})
        for key in INSTRUMENTS:
            section = metrics if key == "direct" else metrics.get(key)
            if not section or "detectors" not in section:
                continue
            base, tuned = section["detectors"]["base"], section["detectors"]["tuned"]
            shares = "; ".join(
                f"{label} {num(base['strategies'][name]['share'], 2)} / "
                f"{num(tuned['strategies'][name]['share'], 2)} "
                f"({num(base['strategies'][name]['baseline'], 2)})"
                for name, label in habits
                if name in base["strategies"]  # runs before a detector existed lack it
            )
            index = "–"
            if "index_1" in tuned:
                index = (
                    f"{num(tuned['index_1']['accuracy'], 2)} / "
                    f"{num(tuned['index_above_1']['accuracy'], 2)}"
                )
            explained = ", ".join(section.get("explained_by", [])) or "none"
            lines.append(f"| {task} | {INSTRUMENTS[key]} | {shares} | {index} | {explained} |")
    return "\n".join(lines)


def compare_table(runs: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Two or more runs on the same questions, one row per task and instrument: the shared base
    accuracy once, then each run's fine-tuned accuracy, delta [95% CI] and in-format rate."""
    names = list(runs)
    first = runs[names[0]]
    header = "| task | instrument | n | base |" + "".join(
        f" tuned ({name}) | delta [95% CI] ({name}) |" for name in names
    )
    lines = [header, "|---|---|---:|---:|" + "---:|---|" * len(names)]
    for task, metrics in first.items():
        for key in INSTRUMENTS:
            section = metrics if key == "direct" else metrics.get(key)
            if section is None:
                continue
            row = (
                f"| {task} | {INSTRUMENTS[key]} | {section['delta']['n']} "
                f"| {num(section['base']['accuracy'])} |"
            )
            for name in names:
                other = runs[name].get(task, {})
                other = other if key == "direct" else other.get(key)
                if other is None:
                    row += " – | – |"
                    continue
                if other["base"]["accuracy"] != section["base"]["accuracy"]:
                    raise SystemExit(f"{name}: base {task} {key} differs: not the same questions")
                tuned = num(other["tuned"]["accuracy"])
                if "in_format_rate" in other["tuned"]:
                    tuned += f" (in format {num(other['tuned']['in_format_rate'], 2)})"
                row += f" {tuned} | {ci(other['delta'], sign=True)} |"
            lines.append(row)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--metrics",
        type=Path,
        default=Path("metrics"),
        help="folder holding eval_spelling.json / eval_position.json (default: metrics)",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        nargs="+",
        default=None,
        help="instead: compare these result folders (same questions) side by side",
    )
    args = parser.parse_args(argv)
    if args.compare:
        print(compare_table({path.name: load_tasks(path) for path in args.compare}))
        return
    tasks = load_tasks(args.metrics)
    print(instrument_table(tasks), end="\n\n")
    baselines = baselines_table(tasks)
    if baselines.count("\n") > 1:  # rows only where choice scoring ran
        print(baselines, end="\n\n")
    print(coupling_table(tasks))
    if any("detectors" in tasks.get(task, {}) for task in HABITS):
        print("\n" + detectors_table(tasks))


if __name__ == "__main__":
    main()
