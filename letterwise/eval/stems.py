"""Choose the cloze stems on the validation split, by a rule written before the test split:

    python -m letterwise.eval.stems                      # base model of params.yaml's preset
    python -m letterwise.eval.stems --out docs/results/stems/validation.json

Every stem of letterwise.eval.cloze.CANDIDATE_STEMS is scored on the validation questions by
the base model (plain slot, one stem at a time). The rule, per task:
1. a stem ending in the spelling answers' lead-in ("'{word}' is") is out: after it a
   spelling-tuned model names the word's first letter whatever was asked;
2. position: a stem qualifies when the base model's answers equal the word's first letter on
   fewer than `--max-habit-share` (30%) of questions; count: when the base model's most common
   answer covers fewer than that share (few qualify: the base answers "1" almost always);
3. the `--stems` (3) qualifying stems with the lowest habit share are chosen; when fewer
   qualify, the lowest-share stems that pass step 1 fill up, and the output says so.
The positive-control half of the rule (a stem must see the positive control) needs a
positive-control adapter on validation; without one it is reported as not checked.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from letterwise.eval.cloze import CANDIDATE_STEMS, CLOZE_TASKS, ends_in_lead_in, slot_keys, stem

DEFAULT_OUT = Path("docs/results/stems/validation.json")
MAX_HABIT_SHARE = 0.30
N_STEMS = 3


def habit_share(task: str, rows: Sequence[dict], answers: Sequence[str | None]) -> float:
    """Position: share of answers equal to the word's first letter; count: share of the most
    common answer. An unanswered question (a tie) counts for no habit."""
    if not rows:
        raise ValueError("no questions")
    if task == "position":
        return sum(a == row["word"][0] for a, row in zip(answers, rows, strict=True)) / len(rows)
    tally = Counter(a for a in answers if a is not None)
    return (tally.most_common(1)[0][1] if tally else 0) / len(rows)


def choose_stems(
    task: str,
    shares: dict[str, float],
    *,
    max_share: float = MAX_HABIT_SHARE,
    n_stems: int = N_STEMS,
) -> dict[str, Any]:
    """The rule above on measured habit shares (stem template -> share)."""
    allowed = {t: s for t, s in shares.items() if not ends_in_lead_in(t)}
    ranked = sorted(allowed, key=lambda t: (allowed[t], t))
    qualifying = [t for t in ranked if allowed[t] < max_share]
    chosen = qualifying[:n_stems]
    filled = [t for t in ranked if t not in chosen][: n_stems - len(chosen)]
    return {
        "task": task,
        "excluded_lead_in": sorted(set(shares) - set(allowed)),
        "qualifying": qualifying,
        "chosen": chosen + filled,
        "filled_below_rule": filled,
    }


def measure(model: Any, tokenizer: Any, rows: Sequence[dict], *, batch_size: int) -> dict:
    """Per task and candidate stem: the base model's plain-slot accuracy, habit share and mean
    probability of the right answer on `rows`."""
    from letterwise.eval.choice_metrics import log_softmax
    from letterwise.eval.cloze import render, turns_for
    from letterwise.eval.slots import score_slots

    result: dict[str, Any] = {}
    for task in CLOZE_TASKS:
        task_rows = [row for row in rows if row["task"] == task]
        templates = CANDIDATE_STEMS[task]
        keys = slot_keys(task)
        raw = score_slots(
            model, tokenizer,
            [render(tokenizer, turns_for("cloze", row)) for row in task_rows],
            [[stem(row, t) for t in templates] for row in task_rows],
            [[f" {k}" for k in keys] for _ in task_rows],
            batch_size=batch_size, description=f"stems, {task}",
        )  # fmt: skip
        per_stem: dict[str, Any] = {}
        for s, template in enumerate(templates):
            answers, right, p_true = [], 0, 0.0
            for row, question in zip(task_rows, raw, strict=True):
                scores = log_softmax(question[s])
                best = max(range(len(keys)), key=lambda c: scores[c])
                answers.append(keys[best])
                right += keys[best] == row["expected"]
                p_true += math.exp(scores[keys.index(row["expected"])])
            per_stem[template] = {
                "accuracy": right / len(task_rows),
                "habit_share": habit_share(task, task_rows, answers),
                "mean_p_true": p_true / len(task_rows),
                "n": len(task_rows),
            }
        result[task] = per_stem
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m letterwise.eval.stems", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--params", type=Path, default=Path("params.yaml"),
                        help="params file: its model preset is the base model (default: %(default)s)")  # fmt: skip
    parser.add_argument("--dataset", type=Path, default=Path("data/dataset/jsonl/validation.jsonl"),
                        help="validation questions (build_dataset's JSONL; default: %(default)s)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="where to write the measurements and the choice (default: %(default)s)")  # fmt: skip
    parser.add_argument("--max-habit-share", type=float, default=MAX_HABIT_SHARE,
                        help="a stem qualifies below this habit share (default: %(default)s)")  # fmt: skip
    parser.add_argument("--stems", type=int, default=N_STEMS,
                        help="stems chosen per task (default: %(default)s)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=64,
                        help="questions per forward pass (default: %(default)s)")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.dataset.is_file():
        raise SystemExit(f"stems: {args.dataset} not found; run `dvc repro build_dataset` first")
    rows = [json.loads(line) for line in args.dataset.read_text().splitlines() if line]
    if any(row.get("split") != "validation" for row in rows):
        raise SystemExit(f"stems: {args.dataset} holds rows that are not validation rows")
    from letterwise.io import write_json
    from letterwise.modeling import load_base_model
    from letterwise.params import load_params
    from letterwise.presets import resolve_preset

    params = load_params(args.params)
    model, tokenizer = load_base_model(resolve_preset(params.model))
    measured = measure(model, tokenizer, rows, batch_size=args.batch_size)
    choice = {
        task: choose_stems(
            task,
            {t: m["habit_share"] for t, m in per_stem.items()},
            max_share=args.max_habit_share,
            n_stems=args.stems,
        )  # fmt: skip
        for task, per_stem in measured.items()
    }
    write_json(args.out, {
        "model": params.model, "split": "validation", "dataset": str(args.dataset),
        "rule": __doc__.split("\n\n")[2], "max_habit_share": args.max_habit_share,
        "measured": measured, "choice": choice,
        "positive_control": "not checked: no positive-control adapter on validation here",
    })  # fmt: skip
    for task, picked in choice.items():
        print(f"{task}: {picked['chosen']}" + (
            f" (below the rule, to fill: {picked['filled_below_rule']})"
            if picked["filled_below_rule"] else ""))  # fmt: skip
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
