"""Per study arm, accuracy on the questions a habit cannot answer: count questions by true count
(0, 1, >= 2: presence alone answers most 0/1 questions) and position/count questions by where
the asked letter sits among the word's tokens (position: inside a token or at its edge; count:
every occurrence in one token, across tokens, or absent). Spelling training that teaches the
letters *inside* tokens should help most where the letter is inside a token or the count needs
letters from several tokens; a first-letter or presence habit helps elsewhere.

Reads every DIR/<arm>-seed<k>/ run of a study (letterwise.eval.verdict.find_runs): the
per-question right/wrong bits of eval_position.json and the questions' words, positions and
letters from predictions_eval_position.jsonl.gz. The token boundary of each question is worked
out again from the model's own tokenizer (offline, no torch) by the same rule build_dataset
used, and checked against the bin sizes each run committed (accuracy_by_boundary), so a
tokenizer that differs from the run's is an error, not a silent re-binning.

Per arm, bin and instrument: tuned accuracy, seeds pooled, with the verdict's two-level
bootstrap (seeds, then questions); the base model once; and spelling - negative control on the
bin's questions (paired). 95% intervals.

    python -m letterwise.eval.arm_breakdown docs/results/study/smollm2-135m
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from letterwise.data.dataset import token_boundary
from letterwise.eval.arm_coupling import POSITION_FILE, read_jsonl_gz
from letterwise.eval.verdict import (
    ARMS,
    NEGATIVE,
    RESULTS_FILE,
    TASKS,
    TREATMENT,
    Run,
    TaskData,
    find_runs,
    hierarchical_delta,
    load_task,
    question_draws,
)
from letterwise.io import write_json

# the bins of each task, in reading order; "count >= 2" is the "answer >= 2" subset.
# The boundary bin "absent" is "count 0" by definition, so only the latter is reported.
BINS = {
    "position": ("inside", "edge"),
    "count": ("count 0", "count 1", "count >= 2", "one_token", "across_tokens"),
}
PRIMARY = "cloze_calibrated"


def question_bins(row: dict, pieces: list[str] | None) -> list[str]:
    """The bins one position/count prediction row belongs to."""
    bins = []
    if row["task"] == "count":
        count = row.get("count")
        if not isinstance(count, int):
            raise ValueError(f"count question {row.get('id')!r} has no integer `count`")
        bins.append("count 0" if count == 0 else "count 1" if count == 1 else "count >= 2")
    boundary = token_boundary(row, pieces)
    if boundary is not None:
        bins.append(boundary)
    return bins


def tokenizer_pieces(model: str) -> Callable[[str], list[str]]:
    """word -> the model's token pieces (leading-space markers stripped), offline."""
    from letterwise.data.vocab import load_vocab_tokenizer, stripped_pieces
    from letterwise.presets import resolve_preset

    return functools.partial(stripped_pieces, load_vocab_tokenizer(resolve_preset(model)))


def _committed_bin_sizes(data: dict, task: str) -> dict[str, int] | None:
    """The boundary bin sizes a run committed for a task (any instrument's base detectors)."""
    block = data.get(task) or {}
    for detectors in [block.get("detectors")] + [
        (value or {}).get("detectors") for value in block.values() if isinstance(value, dict)
    ]:
        sizes = ((detectors or {}).get("base") or {}).get("accuracy_by_boundary")
        if isinstance(sizes, dict):
            return {name: entry["n"] for name, entry in sizes.items()}
    return None


def run_bins(
    folder: Path, run: Run, pieces: Callable[[str], list[str] | None]
) -> dict[str, list[list[str]]]:
    """task -> the bins of each question, in per_question id order, checked against the
    run's committed boundary bin sizes."""
    rows = {row["id"]: row for row in read_jsonl_gz(folder / POSITION_FILE)}
    committed = json.loads((folder / RESULTS_FILE).read_text())
    out: dict[str, list[list[str]]] = {}
    for task in TASKS:
        ids = (run.per_question.get(task) or {}).get("ids") or []
        missing = [i for i in ids if i not in rows]
        if missing:
            raise ValueError(f"{folder / POSITION_FILE}: no row for {task} question {missing[0]!r}")
        out[task] = [question_bins(rows[i], pieces(rows[i]["word"])) for i in ids]
        expected = _committed_bin_sizes(committed, task)
        if expected is not None:
            found: dict[str, int] = {}
            for bins in out[task]:
                for name in bins:
                    if name in expected:
                        found[name] = found.get(name, 0) + 1
            if found != expected:
                raise ValueError(
                    f"{folder}: {task} token-boundary bins {found} differ from the run's "
                    f"committed {expected}: the tokenizer is not the run's"
                )
    return out


def _block(result: dict[str, Any]) -> dict[str, Any]:
    return {
        key: result[key]
        for key in ("delta", "ci_low", "ci_high", "n_questions", "n_seeds")
        if key in result
    }


def _tuned(
    data: TaskData, arm: str, seeds: list[int], instrument: str, columns: np.ndarray
) -> np.ndarray | None:
    """(seeds x bin questions) tuned scores of one arm, or None when a seed lacks them."""
    keys = [(arm, seed, instrument) for seed in seeds]
    if not keys or any(key not in data.tuned for key in keys):
        return None
    return np.stack([data.tuned[key][columns].astype(float) for key in keys])


def study_breakdown(
    results_dir: str | Path,
    pieces: Callable[[str], list[str] | None] | None = None,
    *,
    seed: int = 0,
    resamples: int = 2000,
) -> dict[str, Any]:
    """Per task, bin and instrument: base, each arm's tuned accuracy and spelling - negative."""
    results_dir = Path(results_dir)
    runs, notes = find_runs(results_dir)
    if not runs:
        raise ValueError(f"{results_dir}: no <arm>-seed<k> run folders with results")
    runs.sort(key=lambda r: (ARMS.index(r.arm), r.seed))
    if pieces is None:
        model = json.loads((results_dir / runs[0].name / RESULTS_FILE).read_text()).get("model")
        if not model:
            raise ValueError(f"{runs[0].name}/{RESULTS_FILE} names no model")
        pieces = tokenizer_pieces(model)
    bins = run_bins(results_dir / runs[0].name, runs[0], pieces)
    for run in runs[1:]:
        if run_bins(results_dir / run.name, run, pieces) != bins:
            raise ValueError(f"{run.name}: its questions fall in other bins than {runs[0].name}'s")
    seeds = {arm: [r.seed for r in runs if r.arm == arm] for arm in ARMS}
    tasks: dict[str, Any] = {}
    for task in TASKS:
        if not bins.get(task):
            continue
        data = load_task(runs, task)
        draws = question_draws(len(data.ids), seed=seed, resamples=resamples)
        first = (runs[0].arm, runs[0].seed)
        per_bin: dict[str, Any] = {}
        for name in BINS[task]:
            columns = np.array([k for k, b in enumerate(bins[task]) if name in b], dtype=int)
            if columns.size == 0:  # a bin with no question is left out, not reported as 0
                continue
            counts = draws[:, columns]
            entry: dict[str, Any] = {"n_questions": int(columns.size)}
            for instrument in data.instruments:
                base = data.base.get((*first, instrument))
                if base is None:
                    continue
                cell: dict[str, Any] = {
                    "base": _block(hierarchical_delta(
                        base[columns].astype(float), seed=seed, question_counts=counts
                    )),
                }  # fmt: skip
                for arm in ARMS:
                    scores = _tuned(data, arm, seeds[arm], instrument, columns)
                    if scores is not None:
                        cell[arm] = _block(
                            hierarchical_delta(scores, seed=seed, question_counts=counts)
                        )
                treatment = _tuned(data, TREATMENT, seeds[TREATMENT], instrument, columns)
                control = _tuned(data, NEGATIVE, seeds[NEGATIVE], instrument, columns)
                if treatment is not None and control is not None:
                    cell["spelling_minus_negative"] = _block(hierarchical_delta(
                        treatment, control, seed=seed, question_counts=counts
                    ))  # fmt: skip
                entry[instrument] = cell
            per_bin[name] = entry
        tasks[task] = per_bin
    return {
        "results_dir": str(results_dir),
        "seeds": seeds,
        "notes": notes,
        "confidence": 0.95,
        "bootstrap": {"seed": seed, "resamples": resamples},
        "primary_instrument": PRIMARY,
        "tasks": tasks,
    }


def _ci(block: dict[str, Any] | None, signed: bool = False) -> str:
    if not block:
        return "-"
    form = "{:+.3f}" if signed else "{:.3f}"
    return (
        f"{form.format(block['delta'])} "
        f"[{form.format(block['ci_low'])}, {form.format(block['ci_high'])}]"
    )


def breakdown_table(result: dict[str, Any], instrument: str = PRIMARY) -> Table:
    table = Table(title=f"accuracy by bin, {instrument}: {result['results_dir']}")
    for column in ("task", "bin", "n", "base", *ARMS, "spelling - negative"):
        table.add_column(column, no_wrap=True)
    for task, per_bin in result["tasks"].items():
        for name, entry in per_bin.items():
            cell = entry.get(instrument) or {}
            table.add_row(
                task, name, str(entry["n_questions"]), _ci(cell.get("base")),
                *(_ci(cell.get(arm)) for arm in ARMS),
                _ci(cell.get("spelling_minus_negative"), signed=True),
            )  # fmt: skip
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m letterwise.eval.arm_breakdown",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("results_dir", help="a study's model folder of <arm>-seed<k>/ runs")
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON to write (default: RESULTS_DIR/breakdown.json)"
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument(
        "--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = study_breakdown(args.results_dir, seed=args.seed, resamples=args.resamples)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    out = args.out or Path(args.results_dir) / "breakdown.json"
    write_json(out, result)
    console = Console(width=170) if not Console().is_terminal else Console()
    console.print(breakdown_table(result))
    for note in result["notes"]:
        console.print(f"[dim]{note}[/]")
    console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
