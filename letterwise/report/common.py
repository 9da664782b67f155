"""What the report's sections share: figure numbering, pointers and how a delta reads."""

from __future__ import annotations

from typing import Any

from letterwise.report.loading import Run

VERDICT_COMMAND = "python -m letterwise.eval.verdict docs/results/controls"
TRANSFER_TASKS = ("position", "count")
ALPHA = 0.05


# The order figures appear in; numbers follow it, skipping absent figures.
FIGURE_ORDER = (
    "study_equivalence.png", "verdict.png", "instruments.png", "training_loss.png",
    "by_word_length.png", "by_index_and_count.png", "choices.png", "deltas.png", "temperature.png",
    "probe_selectivity.png", "probe_lens.png", "study_probe_*", "recipe_tradeoff.png",
    "dose_response.png",
)  # fmt: skip
# a FIGURE_ORDER entry ending in "*" stands for every planned figure with that prefix, in the
# plan's order (one per model: their names are known only from the data)


class Figures:
    """Numbers the figures that are present and writes their Markdown."""

    def __init__(self, folder: str, plan: dict[str, Any]) -> None:
        self.folder, self.plan = folder, plan
        ordered = [
            name
            for entry in FIGURE_ORDER
            for name in (
                [n for n in plan if n.startswith(entry[:-1])] if entry.endswith("*") else [entry]
            )
            if name in plan
        ]
        self.numbers = {name: i for i, name in enumerate(ordered, 1)}

    def __contains__(self, name: str) -> bool:
        return name in self.plan

    def ref(self, name: str) -> str:
        """ "Figure 2" for a present figure, "" otherwise (for "see ..." pointers)."""
        return f"Figure {self.numbers[name]}" if name in self.numbers else ""

    def show(self, name: str, alt: str, caption: str) -> list[str]:
        return [
            f"![{alt}]({self.folder}/{name})",
            "",
            f"*{self.ref(name)}. {caption}*",
            "",
        ]


def question_counts(run: Run) -> str:
    """ "n = 200 spelling, 200 position, 200 count questions" from the paired deltas."""
    parts = [f"{m['delta'].get('n')} {task}" for task, m in run.tasks().items()]
    return f"n = {', '.join(parts)} questions ({run.eval_setting('split')} split)"


def delta_word(section: dict[str, Any]) -> str:
    """How a paired delta reads: improved / got worse / no measurable change (its 95% CI)."""
    return {"above 0": "improved", "below 0": "got worse"}.get(
        delta_excludes_zero(section), "no measurable change"
    )


def delta_excludes_zero(section: dict[str, Any]) -> str:
    d = section["delta"]
    if (d.get("ci_low") or 0) > 0:
        return "above 0"
    if (d.get("ci_high") or 0) < 0:
        return "below 0"
    return "includes 0"


def pointer(*refs: str) -> str:
    """ "(Table 3, Figure 2)" from the references that exist."""
    return f"({', '.join(r for r in refs if r)})"


def arms_text(arms: dict[str, list[int]], style: str = "plain") -> str:
    """ "spelling (seeds 42, 1, 2); negative_control (no run)" from a verdict's `arms`."""
    parts = []
    for arm, seeds in arms.items():
        name = f"`{arm}`" if style == "code" else arm
        label = "seed " if len(seeds) == 1 else "seeds "
        parts.append(f"{name} ({label + ', '.join(map(str, seeds)) if seeds else 'no run'})")
    return "; ".join(parts)
