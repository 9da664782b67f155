"""The transfer verdict over the control arms: does spelling-only training beat the negative
control on a format-neutral instrument that sees the positive control, with no answer-habit
strategy explaining the gain?

    python -m letterwise.eval.verdict docs/results/controls            # writes .../verdict.json
    python -m letterwise.eval.verdict RESULTS_DIR --out v.json --seed 1 --resamples 5000

Reads RESULTS_DIR/<arm>-seed<k>/eval_position.json ("per_question": per-question 0/1 bit
strings of every instrument, base and tuned, and of every strategy detector; see
notes/INTERFACES.md). Intervals come from a two-level bootstrap over seeds and questions
(`hierarchical_delta`), so seed-to-seed variance counts; per-seed rows use the ordinary paired
question bootstrap (letterwise.eval.stats.paired_delta). Torch-free: numpy and scipy only.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from letterwise.eval.stats import CONFIDENCE, paired_delta
from letterwise.io import write_json

TREATMENT = "spelling"
NEGATIVE = "negative_control"
POSITIVE = "positive_control"
ARMS = (TREATMENT, NEGATIVE, POSITIVE)
TASKS = ("position", "count")
FORMAT_NEUTRAL = ("cloze", "cloze_calibrated")
INSTRUMENT_ORDER = (
    "direct", "choice", "cloze", "cloze_calibrated", "oracle", "two_turn", "spell_first"
)  # fmt: skip
DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0
RESULTS_FILE = "eval_position.json"

RULE = (
    "Transfer is claimed only if, for some task (position or count) and some format-neutral "
    "instrument (cloze or cloze_calibrated), all three hold: (a) the instrument detects the "
    "positive control: the positive_control arm's tuned-minus-base accuracy delta, seeds pooled, "
    "has its 95% confidence interval above 0; (b) the treatment arm (spelling) beats the "
    "negative control: the difference between the spelling arm's and the negative_control arm's "
    "tuned-minus-base deltas has its 95% interval above 0; (c) no strategy detector explains "
    "it: recomputing (b) only on the questions each strategy (first letter, word length, "
    "majority answer, ...) gets wrong still has its interval above 0 for every strategy, and a "
    "strategy that gets no question wrong explains the gain. Intervals are 95% percentile "
    "intervals of a two-level bootstrap that resamples seeds within each arm and then questions, "
    "the same questions for every arm in a resample. Rows for the other instruments are computed "
    "and reported but never support a claim, and if any of the three arms is missing nothing is "
    "claimed."
)

_RUN_DIR = re.compile(r"^(?P<arm>.+)-seed(?P<seed>-?\d+)$")


# --------------------------------------------------------------------------- statistics


def _difference_matrix(values: Any, name: str) -> np.ndarray:
    matrix = np.asarray(values, dtype=float)
    if matrix.ndim == 1:
        matrix = matrix[None, :]  # one seed
    if matrix.ndim != 2 or matrix.shape[0] == 0:
        raise ValueError(f"{name}: expected a (seeds x questions) array, got shape {matrix.shape}")
    return matrix


def _draw_counts(rng: np.random.Generator, resamples: int, n: int) -> np.ndarray:
    """How often each of n units is drawn (n draws with replacement) in each resample."""
    drawn = rng.integers(0, n, size=(resamples, n))
    flat = (drawn + n * np.arange(resamples)[:, None]).ravel()
    return np.bincount(flat, minlength=resamples * n).reshape(resamples, n).astype(float)


def question_draws(
    n_questions: int, *, seed: int | Sequence[int], resamples: int = DEFAULT_RESAMPLES
) -> np.ndarray:
    """(resamples x questions) counts of how often each question is drawn in each resample.

    Pass the same draws to several `hierarchical_delta` calls (arms, instruments) so they all
    resample the same questions."""
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if n_questions < 1:
        raise ValueError("no questions to bootstrap")
    return _draw_counts(np.random.default_rng(seed), resamples, n_questions)


def _arm_statistic(
    rng: np.random.Generator, differences: np.ndarray, question_counts: np.ndarray
) -> np.ndarray:
    """Per resample: mean over drawn seeds and drawn questions of an arm's tuned - base."""
    resamples, n = question_counts.shape
    n_seeds = differences.shape[0]
    seed_counts = _draw_counts(rng, resamples, n_seeds)
    per_seed = question_counts @ differences.T  # (resamples, seeds): sum over drawn questions
    # whole-number sums for 0/1 scores, divided once: equal true means give equal floats, so a
    # zero difference stays exactly 0 (no +1e-17 that would read as "above 0")
    return np.einsum("rs,rs->r", seed_counts, per_seed) / (n_seeds * n)


def hierarchical_delta(
    treatment: Any,
    control: Any | None = None,
    *,
    seed: int | Sequence[int] = DEFAULT_SEED,
    resamples: int = DEFAULT_RESAMPLES,
    question_counts: np.ndarray | None = None,
    return_resamples: bool = False,
) -> dict[str, Any]:
    """Tuned - base, seeds pooled, with a two-level bootstrap CI over seeds and questions.

    `treatment` (and `control`) are (seeds x questions) arrays of per-question tuned - base
    scores (a 1-D array is one seed); all share the same questions in the same order. Without
    `control` the statistic is the treatment's mean delta; with it, the treatment's mean delta
    minus the control's. Each resample draws seeds with replacement within each arm, then
    question indices with replacement, the same indices for both arms (the comparison stays
    paired), and takes the mean over the drawn seeds and questions. With one seed per arm this
    is the ordinary paired question bootstrap.

    `question_counts` (from `question_draws`) shares one set of question draws between calls;
    then `seed` drives only the seed draws and `resamples` is its row count.

    Returns delta (point estimate), ci_low/ci_high (95% percentile), p_value (two-sided:
    2 * min(share <= 0, share >= 0), floored at 1/resamples, at most 1), n_questions, n_seeds
    (per arm) and, with `return_resamples`, the resampled statistics.
    """
    arms = [_difference_matrix(treatment, "treatment")]
    if control is not None:
        arms.append(_difference_matrix(control, "control"))
    n = arms[0].shape[1]
    if any(arm.shape[1] != n for arm in arms):
        raise ValueError(
            f"treatment and control need the same questions: {n} vs {arms[-1].shape[1]}"
        )
    if n == 0:
        raise ValueError("no questions to bootstrap")
    rng = np.random.default_rng(seed)
    if question_counts is None:
        if resamples < 1:
            raise ValueError(f"resamples must be at least 1, got {resamples}")
        question_counts = _draw_counts(rng, resamples, n)
    elif question_counts.ndim != 2 or question_counts.shape[1] != n:
        raise ValueError(
            f"question_counts has shape {question_counts.shape}, expected (resamples, {n})"
        )
    resamples = question_counts.shape[0]
    statistics = _arm_statistic(rng, arms[0], question_counts)
    point = float(arms[0].mean())
    if control is not None:
        statistics = statistics - _arm_statistic(rng, arms[1], question_counts)
        point -= float(arms[1].mean())
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(statistics, [tail, 100 - tail])
    share_low = float(np.mean(statistics <= 0))
    share_high = float(np.mean(statistics >= 0))
    p_value = min(1.0, max(1.0 / resamples, 2 * min(share_low, share_high)))
    result: dict[str, Any] = {
        "delta": point,
        "ci_low": float(low),
        "ci_high": float(high),
        "p_value": p_value,
        "n_questions": n,
        "n_seeds": [arm.shape[0] for arm in arms],
    }
    if return_resamples:
        result["resamples"] = statistics
    return result


# --------------------------------------------------------------------------- reading


@dataclass
class Run:
    arm: str
    seed: int
    name: str
    per_question: dict[str, Any]


def _bits(value: Any, length: int, where: str) -> np.ndarray:
    if not isinstance(value, str):
        raise ValueError(f"{where}: expected a bit string, got {type(value).__name__}")
    if len(value) != length:
        raise ValueError(f"{where}: {len(value)} bits for {length} questions")
    if value.strip("01"):
        raise ValueError(f"{where}: bit strings may hold only '0' and '1'")
    return np.frombuffer(value.encode("ascii"), dtype=np.uint8) - ord("0")


def find_runs(results_dir: str | Path) -> tuple[list[Run], list[str]]:
    """Every <arm>-seed<k>/eval_position.json with per-question results, and notes on what was
    skipped (no results file, no per_question, an unknown arm)."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ValueError(f"{results_dir} is not a directory")
    runs: list[Run] = []
    notes: list[str] = []
    seen: dict[tuple[str, int], str] = {}
    for folder in sorted(p for p in results_dir.iterdir() if p.is_dir()):
        match = _RUN_DIR.match(folder.name)
        if not match:
            notes.append(f"{folder.name}: not an <arm>-seed<k> folder, skipped")
            continue
        arm, seed = match["arm"], int(match["seed"])
        if arm not in ARMS:
            notes.append(f"{folder.name}: unknown arm {arm!r} (known: {', '.join(ARMS)}), skipped")
            continue
        path = folder / RESULTS_FILE
        if not path.is_file():
            notes.append(f"{folder.name}: no {RESULTS_FILE}, skipped")
            continue
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not data.get("per_question"):
            notes.append(f"{folder.name}: {RESULTS_FILE} has no per_question results, skipped")
            continue
        if not isinstance(data["per_question"], dict) or not all(
            isinstance(entry, dict) for entry in data["per_question"].values()
        ):
            raise ValueError(f"{path}: per_question must map each task to an object")
        if (arm, seed) in seen:
            raise ValueError(f"{folder.name} and {seen[arm, seed]} are both {arm} seed {seed}")
        seen[arm, seed] = folder.name
        runs.append(Run(arm, seed, folder.name, data["per_question"]))
    return runs, notes


@dataclass
class TaskData:
    """One task's questions across all runs, validated and as arrays."""

    ids: list[str]
    instruments: list[str]
    strategies: dict[str, np.ndarray]  # strategy -> (questions,) 1 = strategy right
    base: dict[tuple[str, int, str], np.ndarray]  # (arm, seed, instrument) -> bits
    tuned: dict[tuple[str, int, str], np.ndarray]

    def differences(self, arm: str, seeds: list[int], instrument: str) -> np.ndarray:
        keys = [(arm, seed, instrument) for seed in seeds]
        return np.stack([self.tuned[k].astype(float) - self.base[k] for k in keys])


def _instrument_key(name: str) -> tuple[int, str]:
    order = INSTRUMENT_ORDER.index(name) if name in INSTRUMENT_ORDER else len(INSTRUMENT_ORDER)
    return order, name


def load_task(runs: list[Run], task: str) -> TaskData:
    """Validate one task across runs: the same ids in the same order and the same strategy bits
    everywhere, bit strings of the right length holding only 0/1. Instruments may differ
    between runs (the seed runs measure fewer); each instrument pools the runs that have it."""
    first = runs[0]
    reference = first.per_question[task]
    ids = reference.get("ids")
    if not isinstance(ids, list) or not ids:
        raise ValueError(f"{first.name}: {task} has no question ids")
    instruments = sorted(
        {name for run in runs for name in run.per_question[task].get("correct") or {}},
        key=_instrument_key,
    )
    strategy_names = sorted(reference.get("strategy_right") or {})
    data = TaskData(ids, instruments, {}, {}, {})
    for run in runs:
        entry = run.per_question[task]
        if entry.get("ids") != ids:
            other = entry.get("ids") or []
            where = next(
                (i for i, (a, b) in enumerate(zip(ids, other, strict=False)) if a != b),
                min(len(ids), len(other)),
            )
            raise ValueError(
                f"{task}: question ids differ between runs {first.name} and {run.name} "
                f"({len(ids)} vs {len(other)} ids, first difference at index {where}); "
                "every run must be evaluated on the same questions in the same order"
            )
        correct = entry.get("correct") or {}
        strategies = entry.get("strategy_right") or {}
        if sorted(strategies) != strategy_names:
            raise ValueError(
                f"{task}: strategy detectors differ between runs {first.name} and {run.name}"
            )
        for name in strategy_names:
            bits = _bits(strategies[name], len(ids), f"{run.name} {task} strategy {name}")
            if name not in data.strategies:
                data.strategies[name] = bits
            elif not np.array_equal(bits, data.strategies[name]):
                raise ValueError(
                    f"{task}: strategy {name} bits differ between runs {first.name} and "
                    f"{run.name}; a strategy's answers depend only on the questions"
                )
        for instrument in [name for name in instruments if name in correct]:
            for model, store in (("base", data.base), ("tuned", data.tuned)):
                where = f"{run.name} {task} {instrument} {model}"
                pair = correct[instrument]
                if not isinstance(pair, dict) or model not in pair:
                    raise ValueError(f"{where}: missing")
                store[run.arm, run.seed, instrument] = _bits(pair[model], len(ids), where)
    return data


def _tasks(runs: list[Run]) -> list[str]:
    tasks = sorted(runs[0].per_question, key=lambda t: (TASKS.index(t) if t in TASKS else 9, t))
    for run in runs:
        if sorted(run.per_question) != sorted(tasks):
            raise ValueError(
                f"tasks differ between runs {runs[0].name} ({', '.join(tasks)}) and "
                f"{run.name} ({', '.join(sorted(run.per_question))})"
            )
    return tasks


# --------------------------------------------------------------------------- the verdict


def _stream(seed: int, *labels: str) -> list[int]:
    # one random stream per label (task, instrument, arm, subset), so adding a row or an
    # instrument never moves another's numbers
    return [seed, zlib.crc32("/".join(labels).encode())]


ALL_QUESTIONS = ""  # key of the draws over every question (the others: a strategy's wrong subset)


def _task_draws(data: TaskData, task: str, *, seed: int, resamples: int) -> dict[str, np.ndarray]:
    """One set of question draws per question subset of a task, shared by every arm and
    instrument: the questions are the same, so every comparison stays paired."""
    draws = {
        ALL_QUESTIONS: question_draws(len(data.ids), seed=_stream(seed, task), resamples=resamples)
    }
    for name, right in data.strategies.items():
        wrong = int(np.sum(right == 0))
        if wrong:
            draws[name] = question_draws(wrong, seed=_stream(seed, task, name), resamples=resamples)
    return draws


def _interval(result: dict[str, Any], with_p: bool = False) -> dict[str, Any]:
    keys = ["delta", "ci_low", "ci_high", "n_questions", "n_seeds"]
    if with_p:
        keys.append("p_value")
    return {k: result[k] for k in keys}


def _row(
    data: TaskData,
    task: str,
    instrument: str,
    arms: dict[str, list[int]],
    draws: dict[str, np.ndarray],
    *,
    seed: int,
) -> dict[str, Any]:
    # the runs that measured this instrument (seed runs may measure fewer)
    arms = {
        arm: [s for s in seeds if (arm, s, instrument) in data.base] for arm, seeds in arms.items()
    }
    row: dict[str, Any] = {
        "task": task,
        "instrument": instrument,
        "format_neutral": instrument in FORMAT_NEUTRAL,
        "seeds": arms,
    }
    diffs = {arm: data.differences(arm, seeds, instrument) for arm, seeds in arms.items() if seeds}
    names = {TREATMENT: "treatment", NEGATIVE: "negative_control", POSITIVE: "positive_control"}
    for arm, key in names.items():
        row[key] = None
        if arm in diffs:
            result = hierarchical_delta(
                diffs[arm], seed=_stream(seed, task, instrument, arm),
                question_counts=draws[ALL_QUESTIONS],
            )  # fmt: skip
            row[key] = _interval(result)
    positive = row["positive_control"]
    row["detects_positive_control"] = bool(positive and positive["ci_low"] > 0)
    row["treatment_minus_negative"] = None
    row["strategies"] = {}
    row["explained_by"] = []
    if TREATMENT in diffs and NEGATIVE in diffs:
        result = hierarchical_delta(
            diffs[TREATMENT], diffs[NEGATIVE],
            seed=_stream(seed, task, instrument, "difference"),
            question_counts=draws[ALL_QUESTIONS],
        )  # fmt: skip
        row["treatment_minus_negative"] = _interval(result, with_p=True)
        for name, right in data.strategies.items():
            wrong = np.flatnonzero(right == 0)
            if wrong.size == 0:
                row["strategies"][name] = {"n_wrong": 0}
                row["explained_by"].append(name)
                continue
            result = hierarchical_delta(
                diffs[TREATMENT][:, wrong], diffs[NEGATIVE][:, wrong],
                seed=_stream(seed, task, instrument, "difference", name),
                question_counts=draws[name],
            )  # fmt: skip
            row["strategies"][name] = {"n_wrong": int(wrong.size), **_interval(result, True)}
            if result["ci_low"] <= 0:
                row["explained_by"].append(name)
    difference = row["treatment_minus_negative"]
    row["supports_transfer"] = bool(
        row["format_neutral"]
        and all(arms.get(arm) for arm in ARMS)
        and row["detects_positive_control"]
        and difference is not None
        and difference["ci_low"] > 0
        and not row["explained_by"]
    )
    return row


def _per_seed_rows(
    data: TaskData, task: str, arms: dict[str, list[int]], *, seed: int, resamples: int
) -> list[dict[str, Any]]:
    rows = []
    for arm, seeds in arms.items():
        for run_seed in seeds:
            for instrument in data.instruments:
                if (arm, run_seed, instrument) not in data.base:
                    continue
                base = data.base[arm, run_seed, instrument]
                tuned = data.tuned[arm, run_seed, instrument]
                result = paired_delta(
                    base.astype(bool).tolist(), tuned.astype(bool).tolist(),
                    seed=seed, n_resamples=resamples,
                )  # fmt: skip
                rows.append({
                    "arm": arm, "seed": run_seed, "task": task, "instrument": instrument,
                    "base": float(base.mean()), "tuned": float(tuned.mean()),
                    "delta": result["delta"], "ci_low": result["ci_low"],
                    "ci_high": result["ci_high"], "p_value": result["p_value"],
                    "test": result["test"], "n": result["n"],
                })  # fmt: skip
    return rows


def _signed(value: float) -> str:
    return f"{value:+.3f}".replace("-", "\u2212")


def _with_ci(block: dict[str, Any]) -> str:
    return f"{_signed(block['delta'])} [{_signed(block['ci_low'])}, {_signed(block['ci_high'])}]"


def why_not(row: dict[str, Any]) -> str:
    """Why a format-neutral row does not support transfer ("" when it does)."""
    reasons = []
    if not row["detects_positive_control"]:
        reasons.append("positive control not detected")
    if row["treatment_minus_negative"]["ci_low"] <= 0:
        reasons.append("difference not above 0")
    elif row["explained_by"]:
        reasons.append(f"explained by {', '.join(row['explained_by'])}")
    return "; ".join(reasons)


def verdict_sentence(rows: list[dict[str, Any]], arms: dict[str, list[int]]) -> str:
    """One sentence from the numbers: what is claimed, or why nothing is."""
    missing = [arm for arm in ARMS if not arms.get(arm)]
    if missing:
        names, verb = missing[-1], "arm is"
        if len(missing) > 1:
            names, verb = f"{', '.join(missing[:-1])} and {missing[-1]}", "arms are"
        return (
            f"No transfer claimed: the {names} {verb}"
            " missing (no <arm>-seed<k> run with per-question results), so the verdict rule "
            "cannot be applied."
        )
    supporting = [row for row in rows if row["supports_transfer"]]
    if supporting:
        parts = [
            f"{row['task']} under {row['instrument']}: {_with_ci(row['treatment_minus_negative'])}"
            f" (p={row['treatment_minus_negative']['p_value']:.3g})"
            for row in supporting
        ]
        return (
            f"Transfer on {'; '.join(parts)} over the negative control, "
            "detected positive control, no detector explains it."
        )
    neutral = [row for row in rows if row["format_neutral"]]
    if not neutral:
        return (
            "No transfer claimed: the results hold no format-neutral instrument "
            f"({', '.join(FORMAT_NEUTRAL)})."
        )
    parts = [
        f"{_with_ci(row['treatment_minus_negative'])} on {row['task']} ({row['instrument']}: "
        f"{why_not(row)})"
        for row in neutral
    ]
    return (
        "No transfer: on the format-neutral instruments, spelling-only training minus the "
        f"negative control is {', '.join(parts)}."
    )


def verdict_from_dir(
    path: str | Path, *, seed: int = DEFAULT_SEED, resamples: int = DEFAULT_RESAMPLES
) -> dict[str, Any]:
    """The verdict (the verdict.json content, see notes/INTERFACES.md) for a results folder of
    <arm>-seed<k>/eval_position.json runs. Raises ValueError on inconsistent inputs."""
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    runs, notes = find_runs(path)
    if not runs:
        raise ValueError(
            f"{path}: no <arm>-seed<k>/{RESULTS_FILE} with per_question results"
            + (f" ({'; '.join(notes)})" if notes else "")
        )
    arms = {arm: sorted(run.seed for run in runs if run.arm == arm) for arm in ARMS}
    rows: list[dict[str, Any]] = []
    per_seed: list[dict[str, Any]] = []
    loaded = {task: load_task(runs, task) for task in _tasks(runs)}  # validate all, then compute
    for task, data in loaded.items():
        draws = _task_draws(data, task, seed=seed, resamples=resamples)
        for instrument in data.instruments:
            rows.append(_row(data, task, instrument, arms, draws, seed=seed))
        per_seed += _per_seed_rows(data, task, arms, seed=seed, resamples=resamples)
    return {
        "rule": RULE,
        "claimed": any(row["supports_transfer"] for row in rows),
        "sentence": verdict_sentence(rows, arms),
        "arms": arms,
        "rows": rows,
        "per_seed": per_seed,
        "bootstrap": {"seed": seed, "resamples": resamples, "confidence": CONFIDENCE},
        "notes": notes,
    }


# --------------------------------------------------------------------------- output


def _cell(block: dict[str, Any] | None) -> Text:
    if block is None:
        return Text("-")
    low, high = _signed(block["ci_low"]), _signed(block["ci_high"])
    return Text(f"{_signed(block['delta'])}\n[{low}, {high}]")  # Text: brackets are not markup


def _outcome(row: dict[str, Any]) -> Text:
    if row["supports_transfer"]:
        return Text("supports transfer", style="bold green")
    if not row["format_neutral"]:
        return Text("not format-neutral")
    if row["treatment_minus_negative"] is None or row["positive_control"] is None:
        return Text("arm missing")
    return Text(why_not(row))


def verdict_table(verdict: dict[str, Any]) -> Table:
    """Rows of the verdict: each arm's tuned - base (seeds pooled) and the comparison."""
    seeds = "; ".join(
        f"{arm} {', '.join(map(str, found)) or 'missing'}" for arm, found in verdict["arms"].items()
    )
    table = Table(
        title="Transfer verdict: tuned - base accuracy, seeds pooled, 95% CI",
        caption=f"seeds: {seeds}",
    )
    for column in (
        "task", "instrument", "spelling", "negative control", "positive control",
        "spelling - negative", "p", "outcome",
    ):  # fmt: skip
        table.add_column(column)
    for row in verdict["rows"]:
        difference = row["treatment_minus_negative"]
        table.add_row(
            row["task"], row["instrument"],
            _cell(row["treatment"]), _cell(row["negative_control"]),
            _cell(row["positive_control"]), _cell(difference),
            "-" if difference is None else f"{difference['p_value']:.3g}",
            _outcome(row),
        )  # fmt: skip
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m letterwise.eval.verdict", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "results_dir", type=Path, metavar="RESULTS_DIR",
        help="folder of <arm>-seed<k>/eval_position.json runs (arms: " + ", ".join(ARMS) + ")",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=Path, default=None,
        help="where to write the verdict JSON (default: RESULTS_DIR/verdict.json)",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED,
        help="bootstrap random seed (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--resamples", type=int, default=DEFAULT_RESAMPLES,
        help="bootstrap resamples per interval (default: %(default)s)",
    )  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        verdict = verdict_from_dir(args.results_dir, seed=args.seed, resamples=args.resamples)
    except ValueError as error:
        raise SystemExit(f"verdict: {error}") from error
    out = args.out or args.results_dir / "verdict.json"
    write_json(out, verdict)
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # logs and pipes keep whole table lines
    for note in verdict["notes"]:
        console.print(f"note: {note}", markup=False)
    console.print(verdict_table(verdict))
    console.print(verdict["sentence"], markup=False)
    console.print(f"wrote {out}", markup=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
