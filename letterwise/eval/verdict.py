"""The transfer verdict over the control arms, with three outcomes per task: `transfer`,
`equivalent` or `inconclusive` (with the minimum detectable effect and the n it would take).

    python -m letterwise.eval.verdict docs/results/controls            # writes .../verdict.json
    python -m letterwise.eval.verdict DIR --outcome accuracy --instrument cloze_calibrated

Reads DIR/<arm>-seed<k>/eval_position.json ("per_question": per task the question ids, every
instrument's per-question 0/1 bits ("correct") and, in newer runs, the probability of the
right candidate ("scores"), and every strategy detector's bits). The rule and its numbers (the
primary instrument and outcome, the margin share, alpha, power) come from params.yaml's
`verdict` section, written before the numbers (docs/experiment_reproduction.md section 2c);
flags override them for a re-analysis, and the verdict records which plan it applied.

The rule, per task, on the pre-registered primary instrument (RULE holds the full text):
- the instrument *sees the positive control* when the positive_control arm's tuned - base has
  its 95% interval above 0 and no strategy detector explains it;
- `transfer`: it sees the positive control, spelling - negative_control has its 95% interval
  above 0, and no detector explains that difference;
- `equivalent` (two one-sided tests at alpha): the 90% interval of spelling - negative lies
  inside +-margin, margin = margin_share x the positive control's habit-free effect (its
  tuned - base on the questions every detector gets wrong);
- otherwise `inconclusive`, with the minimum detectable effect at this n and the n it would
  take to detect an effect the size of the margin.

Intervals come from a two-level bootstrap over seeds and questions (`hierarchical_delta`), one
set of question draws per task shared by every arm, instrument and question subset (a subset's
statistic is the mean over the drawn questions that fall in it). Torch-free: numpy and scipy.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text
from scipy.stats import norm

from letterwise.eval.detectors import STRATEGIES
from letterwise.eval.stats import CONFIDENCE, paired_delta
from letterwise.io import write_json
from letterwise.tasks.replay import MIN_KEPT_SHARE

TREATMENT = "spelling"
NEGATIVE = "negative_control"
POSITIVE = "positive_control"
ARMS = (TREATMENT, NEGATIVE, POSITIVE)
TASKS = ("position", "count")
FORMAT_NEUTRAL = ("cloze", "cloze_calibrated")
INSTRUMENT_ORDER = (
    "direct", "choice", "cloze", "cloze_calibrated", "oracle", "two_turn", "spell_first"
)  # fmt: skip
OUTCOMES = ("accuracy", "probability")
# which questions the rule is applied to: all of them (detectors then test whether a habit
# explains a gain), or only those every detector gets wrong (no habit can score there, so the
# whole comparison is habit-free by construction; the second study's plan)
QUESTION_SETS = ("all", "habit_free")
DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0
RESULTS_FILE = "eval_position.json"
TRANSFER, EQUIVALENT, INCONCLUSIVE = "transfer", "equivalent", "inconclusive"


@dataclass(frozen=True)
class Plan:
    """The pre-registered numbers of the rule (params.yaml `verdict`)."""

    primary_instrument: str = "cloze_calibrated"
    # one outcome for every task, or one per task ({"position": ..., "count": ...}): a measure
    # that cannot move on one task (batch-calibrated count probabilities sit at 1/10) need not
    # cost the other task its power
    primary_outcome: str | dict[str, str] = field(
        default_factory=lambda: {"position": "probability", "count": "accuracy"}
    )
    margin_share: float = 0.5
    alpha: float = 0.05
    power: float = 0.8
    questions: str = "all"

    def __post_init__(self) -> None:
        if self.questions not in QUESTION_SETS:
            raise ValueError(
                f"questions {self.questions!r}: expected one of {', '.join(QUESTION_SETS)}"
            )
        if self.primary_instrument not in FORMAT_NEUTRAL:
            raise ValueError(
                f"primary instrument {self.primary_instrument!r} is not format-neutral "
                f"({', '.join(FORMAT_NEUTRAL)})"
            )
        if isinstance(self.primary_outcome, dict):
            if set(self.primary_outcome) != set(TASKS):
                raise ValueError(
                    f"primary_outcome per task must name exactly {', '.join(TASKS)}, got "
                    f"{', '.join(sorted(self.primary_outcome)) or 'none'}"
                )
            chosen = list(self.primary_outcome.values())
        else:
            chosen = [self.primary_outcome]
        for outcome in chosen:
            if outcome not in OUTCOMES:
                raise ValueError(f"outcome {outcome!r}: expected one of {OUTCOMES}")
        if not 0 < self.margin_share <= 1:
            raise ValueError(f"margin_share must be in (0, 1], got {self.margin_share}")
        if not 0 < self.alpha < 0.5:
            raise ValueError(f"alpha must be in (0, 0.5), got {self.alpha}")
        if not 0.5 <= self.power < 1:
            raise ValueError(f"power must be in [0.5, 1), got {self.power}")

    def outcome_for(self, task: str) -> str:
        """The primary outcome measure of `task` (a task outside TASKS gets the first one's)."""
        if isinstance(self.primary_outcome, str):
            return self.primary_outcome
        return self.primary_outcome.get(task, self.primary_outcome[TASKS[0]])

    @property
    def outcome_text(self) -> str:
        if isinstance(self.primary_outcome, str):
            return self.primary_outcome
        return ", ".join(f"{task}: {self.primary_outcome[task]}" for task in TASKS)

    @property
    def z_two_sided(self) -> float:
        return float(norm.ppf(1 - self.alpha / 2))

    @property
    def z_power(self) -> float:
        return float(norm.ppf(self.power))

    def as_dict(self) -> dict[str, Any]:
        return {
            "primary_instrument": self.primary_instrument,
            "primary_outcome": (
                self.primary_outcome
                if isinstance(self.primary_outcome, str)
                else dict(self.primary_outcome)
            ),
            "margin_share": self.margin_share,
            "alpha": self.alpha,
            "power": self.power,
            "questions": self.questions,
        }


def plan_from_params(path: str | Path = "params.yaml", **overrides: Any) -> Plan:
    """The plan in params.yaml's `verdict` section (validated by letterwise.params), with
    `overrides` (None values ignored) on top."""
    from letterwise.params import load_params

    section = load_params(path).verdict
    values = {
        "primary_instrument": section.primary_instrument,
        "primary_outcome": section.primary_outcome,
        "margin_share": section.margin_share,
        "alpha": section.alpha,
        "power": section.power,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Plan(**values)


def rule_text(plan: Plan) -> str:
    confidence = round(100 * (1 - plan.alpha))
    tost = round(100 * (1 - 2 * plan.alpha))
    return (
        f"Per task (position, count), on the pre-registered primary instrument "
        f"{plan.primary_instrument} and outcome {plan.outcome_text} (per question: "
        "accuracy = 0/1 right; probability = the calibrated probability of the right "
        "candidate), the outcome is one of three. The instrument sees the positive control "
        "when the positive_control arm's tuned-minus-base delta, seeds pooled, has its "
        f"{confidence}% interval above 0 and no strategy detector explains it (a detector "
        "explains an effect whose full interval is above 0 when the effect recomputed on the "
        "questions that strategy gets wrong no longer is). TRANSFER: the instrument sees the "
        "positive control, spelling minus negative_control (difference of the arms' "
        f"tuned-minus-base deltas) has its {confidence}% interval above 0, and no detector "
        f"explains it. EQUIVALENT (two one-sided tests at alpha={plan.alpha}): the {tost}% "
        "interval of spelling minus negative_control lies inside +-margin, where margin = "
        f"{plan.margin_share} x the positive control's habit-free effect (its tuned-minus-base "
        "delta on the questions every detector gets wrong), which must itself be above 0. "
        "Otherwise INCONCLUSIVE, reported with the minimum detectable effect at this n "
        f"((z_{{1-alpha/2}} + z_{{power={plan.power}}}) x the bootstrap standard error) and the "
        "n it would take to detect an effect the size of the margin. Intervals: percentile "
        "intervals of a two-level bootstrap (seeds within each arm, then questions; one set of "
        "question draws per task shared by every arm, instrument and subset). Other "
        "instruments are reported but decide nothing; if an arm is missing nothing is decided."
        + (
            " Applied only to the habit-free questions (every strategy detector wrong), so no "
            "detector can explain an effect and every effect, the positive control's included, "
            "is habit-free."
            if plan.questions == "habit_free"
            else ""
        )
    )


RULE = rule_text(Plan())
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
    resample the same questions; a subset's columns of them resample that subset."""
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if n_questions < 1:
        raise ValueError("no questions to bootstrap")
    return _draw_counts(np.random.default_rng(seed), resamples, n_questions)


def _arm_statistic(
    rng: np.random.Generator, differences: np.ndarray, question_counts: np.ndarray
) -> np.ndarray:
    """Per resample: mean over drawn seeds and drawn questions of an arm's tuned - base (NaN
    for a resample that drew none of a subset's questions)."""
    resamples, _ = question_counts.shape
    n_seeds = differences.shape[0]
    seed_counts = _draw_counts(rng, resamples, n_seeds)
    per_seed = question_counts @ differences.T  # (resamples, seeds): sum over drawn questions
    drawn = question_counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        # whole-number sums for 0/1 scores, divided once: equal true means give equal floats,
        # so a zero difference stays exactly 0 (no +1e-17 that would read as "above 0")
        return np.einsum("rs,rs->r", seed_counts, per_seed) / (n_seeds * drawn)


def hierarchical_delta(
    treatment: Any,
    control: Any | None = None,
    *,
    seed: int | Sequence[int] = DEFAULT_SEED,
    resamples: int = DEFAULT_RESAMPLES,
    question_counts: np.ndarray | None = None,
    confidence: float = CONFIDENCE,
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

    `question_counts` (from `question_draws`, or a subset's columns of them) shares one set of
    question draws between calls; then `seed` drives only the seed draws. Resamples that drew
    none of the questions are left out.

    Returns delta (point estimate), ci_low/ci_high (percentile interval at `confidence`),
    se (the resamples' standard deviation), p_value (two-sided: 2 * min(share <= 0,
    share >= 0), floored at 1/resamples, at most 1), n_questions, n_seeds (per arm) and, with
    `return_resamples`, the resampled statistics.
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
    statistics = _arm_statistic(rng, arms[0], question_counts)
    point = float(arms[0].mean())
    if control is not None:
        statistics = statistics - _arm_statistic(rng, arms[1], question_counts)
        point -= float(arms[1].mean())
    statistics = statistics[np.isfinite(statistics)]
    if statistics.size == 0:
        raise ValueError("no resample drew any of the questions")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(statistics, [tail, 100 - tail])
    share_low = float(np.mean(statistics <= 0))
    share_high = float(np.mean(statistics >= 0))
    p_value = min(1.0, max(1.0 / statistics.size, 2 * min(share_low, share_high)))
    result: dict[str, Any] = {
        "delta": point,
        "ci_low": float(low),
        "ci_high": float(high),
        "se": float(np.std(statistics, ddof=1)) if statistics.size > 1 else 0.0,
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


def _probabilities(value: Any, length: int, where: str) -> np.ndarray:
    if not isinstance(value, list):
        raise ValueError(f"{where}: expected a list of probabilities, got {type(value).__name__}")
    if len(value) != length:
        raise ValueError(f"{where}: {len(value)} scores for {length} questions")
    array = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(array)) or np.any(array < 0) or np.any(array > 1):
        raise ValueError(f"{where}: scores must be probabilities in [0, 1]")
    return array


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
        degenerate = _degenerate_replay(folder)
        if degenerate:
            notes.append(degenerate)
    return runs, notes


def _degenerate_replay(folder: Path) -> str | None:
    """A note when the run's train.json shows it kept under MIN_KEPT_SHARE of its replay rows:
    such an arm trained on a few rows, not on its recipe (a control that barely moved)."""
    path = folder / "train.json"
    if not path.is_file():
        return None
    train = json.loads(path.read_text())
    kept, dropped = int(train.get("replay_rows") or 0), int(train.get("replay_dropped") or 0)
    if kept + dropped == 0 or kept >= MIN_KEPT_SHARE * (kept + dropped):
        return None
    return (
        f"{folder.name}: trained on {kept} of {kept + dropped} replay rows (the base model's "
        "other answers were dropped): not its arm's recipe, so differences against it are not "
        "controlled ones"
    )


@dataclass
class TaskData:
    """One task's questions across all runs, validated and as arrays."""

    ids: list[str]
    instruments: list[str]
    strategies: dict[str, np.ndarray]  # strategy -> (questions,) 1 = strategy right
    base: dict[tuple[str, int, str], np.ndarray]  # (arm, seed, instrument) -> scores
    tuned: dict[tuple[str, int, str], np.ndarray]
    duplicates: dict[str, str]  # strategy dropped -> the identical one kept

    def differences(self, arm: str, seeds: list[int], instrument: str) -> np.ndarray:
        keys = [(arm, seed, instrument) for seed in seeds]
        return np.stack([self.tuned[k].astype(float) - self.base[k] for k in keys])

    def restricted(self, keep: np.ndarray) -> TaskData:
        """The same runs on the questions `keep` only, with no detectors left: the questions
        were chosen by them (Plan.questions == "habit_free")."""
        return TaskData(
            [self.ids[i] for i in keep], self.instruments, {},
            {key: scores[keep] for key, scores in self.base.items()},
            {key: scores[keep] for key, scores in self.tuned.items()},
            dict(self.duplicates),
        )  # fmt: skip

    def habit_free(self) -> np.ndarray:
        """Indexes of the questions every strategy gets wrong."""
        if not self.strategies:
            return np.arange(len(self.ids))
        right = np.any(np.stack(list(self.strategies.values())) == 1, axis=0)
        return np.flatnonzero(~right)


def _instrument_key(name: str) -> tuple[int, str]:
    order = INSTRUMENT_ORDER.index(name) if name in INSTRUMENT_ORDER else len(INSTRUMENT_ORDER)
    return order, name


def _strategy_key(task: str, name: str) -> tuple[int, str]:
    known = STRATEGIES.get(task, ()) + tuple(n for names in STRATEGIES.values() for n in names)
    return (known.index(name) if name in known else len(known)), name


def load_task(runs: list[Run], task: str, outcome: str = "accuracy") -> TaskData:
    """Validate one task across runs: the same ids in the same order and the same strategy bits
    everywhere, scores of the right length (bits 0/1 for accuracy, probabilities in [0, 1]).
    Instruments may differ between runs; each instrument pools the runs that have it. Two
    strategies right on exactly the same questions are one strategy (e.g. "one" and a
    majority answer of "1"): the later in the detectors' order is dropped, and noted."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome {outcome!r}: expected one of {OUTCOMES}")
    source = "correct" if outcome == "accuracy" else "scores"
    first = runs[0]
    reference = first.per_question[task]
    ids = reference.get("ids")
    if not isinstance(ids, list) or not ids:
        raise ValueError(f"{first.name}: {task} has no question ids")
    instruments = sorted(
        {name for run in runs for name in run.per_question[task].get(source) or {}},
        key=_instrument_key,
    )
    if not instruments and outcome == "probability":
        raise ValueError(
            f"{task}: no run holds per-question probabilities ('scores'); these runs hold only "
            "0/1 bits: use --outcome accuracy"
        )
    strategy_names = sorted(
        reference.get("strategy_right") or {}, key=lambda n: _strategy_key(task, n)
    )
    data = TaskData(ids, instruments, {}, {}, {}, {})
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
        measured = entry.get(source) or {}
        strategies = entry.get("strategy_right") or {}
        if sorted(strategies) != sorted(strategy_names):
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
        read = _bits if outcome == "accuracy" else _probabilities
        for instrument in [name for name in instruments if name in measured]:
            for model, store in (("base", data.base), ("tuned", data.tuned)):
                where = f"{run.name} {task} {instrument} {model}"
                pair = measured[instrument]
                if not isinstance(pair, dict) or model not in pair:
                    raise ValueError(f"{where}: missing")
                store[run.arm, run.seed, instrument] = read(pair[model], len(ids), where)
    for name in list(data.strategies):
        same = next(
            (kept for kept in data.strategies if kept != name
             and np.array_equal(data.strategies[kept], data.strategies[name])),
            None,
        )  # fmt: skip
        if same is not None and _strategy_key(task, same) < _strategy_key(task, name):
            data.duplicates[name] = same
    for name in data.duplicates:
        del data.strategies[name]
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


# --------------------------------------------------------------------------- the rows


def _stream(seed: int, *labels: str) -> list[int]:
    # one random stream per label (task, instrument, arm) for the seed draws, so adding a row
    # or an instrument never moves another's numbers; the question draws are one per task
    return [seed, zlib.crc32("/".join(labels).encode())]


def _interval(result: dict[str, Any], with_p: bool = False) -> dict[str, Any]:
    keys = ["delta", "ci_low", "ci_high", "se", "n_questions", "n_seeds"]
    if with_p:
        keys.append("p_value")
    return {k: result[k] for k in keys}


class _RowMaker:
    """The rows of one task: every interval on the task's one set of question draws."""

    def __init__(self, data: TaskData, task: str, plan: Plan, *, seed: int, resamples: int):
        self.data, self.task, self.plan, self.seed = data, task, plan, seed
        self.draws = question_draws(len(data.ids), seed=_stream(seed, task), resamples=resamples)
        self.confidence = 1 - plan.alpha

    def delta(
        self, treatment: np.ndarray, control: np.ndarray | None, labels: tuple[str, ...],
        subset: np.ndarray | None = None, confidence: float | None = None,
    ) -> dict[str, Any] | None:  # fmt: skip
        if subset is not None:
            if subset.size == 0:
                return None
            treatment = treatment[:, subset]
            control = None if control is None else control[:, subset]
        counts = self.draws if subset is None else self.draws[:, subset]
        return hierarchical_delta(
            treatment, control, seed=_stream(self.seed, self.task, *labels),
            question_counts=counts, confidence=confidence or self.confidence,
        )  # fmt: skip

    def explained(
        self, treatment: np.ndarray, control: np.ndarray | None, full: dict[str, Any],
        labels: tuple[str, ...],
    ) -> tuple[dict[str, Any], list[str]]:  # fmt: skip
        """Per strategy the effect on the questions it gets wrong; which strategies explain
        `full` (only when full's interval is above 0)."""
        strategies: dict[str, Any] = {}
        explained_by: list[str] = []
        for name, right in self.data.strategies.items():
            wrong = np.flatnonzero(right == 0)
            if wrong.size == 0:
                strategies[name] = {"n_wrong": 0}
                if full["ci_low"] > 0:
                    explained_by.append(name)
                continue
            result = self.delta(treatment, control, (*labels, name), subset=wrong)
            strategies[name] = {"n_wrong": int(wrong.size), **_interval(result, True)}
            if full["ci_low"] > 0 and result["ci_low"] <= 0:
                explained_by.append(name)
        return strategies, explained_by

    def row(self, instrument: str, arms: dict[str, list[int]]) -> dict[str, Any]:
        data, plan = self.data, self.plan
        arms = {
            arm: [s for s in seeds if (arm, s, instrument) in data.base]
            for arm, seeds in arms.items()
        }
        row: dict[str, Any] = {
            "task": self.task, "instrument": instrument,
            "format_neutral": instrument in FORMAT_NEUTRAL,
            "primary": instrument == plan.primary_instrument,
            "outcome_measure": plan.outcome_for(self.task), "seeds": arms,
        }  # fmt: skip
        diffs = {arm: data.differences(arm, s, instrument) for arm, s in arms.items() if s}
        missing = [arm for arm in ARMS if arm not in diffs]
        row["not_measured"] = missing
        for arm, key in ((TREATMENT, "treatment"), (NEGATIVE, "negative_control"),
                         (POSITIVE, "positive_control")):  # fmt: skip
            row[key] = None
            if arm in diffs:
                row[key] = _interval(self.delta(diffs[arm], None, (instrument, arm)))
        # the positive control, with the detectors applied to it too
        row["positive_control_strategies"], row["positive_control_explained_by"] = {}, []
        row["positive_control_habit_free"] = None
        if POSITIVE in diffs:
            full = self.delta(diffs[POSITIVE], None, (instrument, POSITIVE))
            row["positive_control_strategies"], row["positive_control_explained_by"] = (
                self.explained(diffs[POSITIVE], None, full, (instrument, POSITIVE))
            )
            free = self.delta(
                diffs[POSITIVE], None, (instrument, POSITIVE, "habit_free"),
                subset=data.habit_free(),
            )  # fmt: skip
            row["positive_control_habit_free"] = None if free is None else _interval(free)
        positive = row["positive_control"]
        row["detects_positive_control"] = bool(
            positive and positive["ci_low"] > 0 and not row["positive_control_explained_by"]
        )
        row["treatment_minus_negative"] = None
        row["treatment_minus_negative_tost"] = None
        row["strategies"], row["explained_by"] = {}, []
        if TREATMENT in diffs and NEGATIVE in diffs:
            labels = (instrument, "difference")
            full = self.delta(diffs[TREATMENT], diffs[NEGATIVE], labels)
            row["treatment_minus_negative"] = _interval(full, with_p=True)
            tost = self.delta(
                diffs[TREATMENT], diffs[NEGATIVE], labels, confidence=1 - 2 * plan.alpha
            )
            row["treatment_minus_negative_tost"] = _interval(tost)
            row["strategies"], row["explained_by"] = self.explained(
                diffs[TREATMENT], diffs[NEGATIVE], full, labels
            )
        difference = row["treatment_minus_negative"]
        row["supports_transfer"] = bool(
            row["format_neutral"]
            and not missing
            and row["detects_positive_control"]
            and difference is not None
            and difference["ci_low"] > 0
            and not row["explained_by"]
        )
        row.update(decide(row, plan))
        return row


def decide(row: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """The row's outcome (transfer / equivalent / inconclusive), margin, MDE and n needed."""
    difference = row["treatment_minus_negative"]
    tost = row["treatment_minus_negative_tost"]
    free = row["positive_control_habit_free"]
    margin = None
    if row["detects_positive_control"] and free is not None and free["delta"] > 0:
        margin = plan.margin_share * free["delta"]
    decided: dict[str, Any] = {"margin": margin, "mde": None, "n_for_margin": None}
    if difference is None:
        decided |= {
            "outcome": INCONCLUSIVE,
            "reason": "not measured: " + ", ".join(row["not_measured"]),
        }
        return decided
    n = difference["n_questions"]
    se = difference["se"]
    decided["mde"] = (plan.z_two_sided + plan.z_power) * se
    if margin is not None and decided["mde"] > 0:
        # standard errors shrink as 1/sqrt(n) at a fixed number of seeds
        decided["n_for_margin"] = math.ceil(n * (decided["mde"] / margin) ** 2)
    if row["supports_transfer"]:
        decided |= {
            "outcome": TRANSFER,
            "reason": "above 0, positive control seen, no detector explains it",
        }
    elif margin is not None and -margin < tost["ci_low"] and tost["ci_high"] < margin:
        decided |= {
            "outcome": EQUIVALENT,
            "reason": f"{round(100 * (1 - 2 * plan.alpha))}% interval inside +-{margin:.3f}",
        }
    else:
        decided |= {"outcome": INCONCLUSIVE, "reason": why_not(row)}
    return decided


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
                    base.tolist(), tuned.tolist(), seed=seed, n_resamples=resamples
                )
                rows.append({
                    "arm": arm, "seed": run_seed, "task": task, "instrument": instrument,
                    "base": float(base.mean()), "tuned": float(tuned.mean()),
                    "delta": result["delta"], "ci_low": result["ci_low"],
                    "ci_high": result["ci_high"], "p_value": result["p_value"],
                    "test": result["test"], "n": result["n"],
                })  # fmt: skip
    return rows


# --------------------------------------------------------------------------- words


def _signed(value: float) -> str:
    return f"{value:+.3f}".replace("-", "\u2212")


def _with_ci(block: dict[str, Any] | None) -> str:
    if block is None:
        return "not measured"
    return f"{_signed(block['delta'])} [{_signed(block['ci_low'])}, {_signed(block['ci_high'])}]"


def why_not(row: dict[str, Any]) -> str:
    """Why a row does not support transfer ("" when it does); never raises on a row whose arms
    lack the instrument."""
    if row.get("not_measured"):
        return "not measured in " + ", ".join(row["not_measured"])
    reasons = []
    if not row["format_neutral"]:
        reasons.append("not format-neutral")
    if not row["detects_positive_control"]:
        explained = row.get("positive_control_explained_by") or []
        if explained:
            reasons.append(f"positive control explained by {', '.join(explained)}")
        else:
            reasons.append("positive control not detected")
    difference = row["treatment_minus_negative"]
    if difference["ci_low"] <= 0:
        reasons.append("difference not above 0")
    elif row["explained_by"]:
        reasons.append(f"explained by {', '.join(row['explained_by'])}")
    return "; ".join(reasons)


def _task_sentence(outcome: dict[str, Any]) -> str:
    row = outcome["row"]
    task, instrument = outcome["task"], outcome["instrument"]
    if row is None:
        return f"{task}: inconclusive ({instrument} was not measured)"
    difference = _with_ci(row["treatment_minus_negative"])
    head = f"{task}: {outcome['outcome']} (spelling minus negative control {difference} on {instrument}, {row['outcome_measure']}"
    margin = row["margin"]
    if outcome["outcome"] == TRANSFER:
        return head + "; positive control seen, no detector explains the gain)"
    if outcome["outcome"] == EQUIVALENT:
        tost = row["treatment_minus_negative_tost"]
        habit = ""
        if row["explained_by"]:
            habit = f"; the part above 0 is explained by {', '.join(row['explained_by'])}"
        return (
            head + f"; its 90% interval [{_signed(tost['ci_low'])}, {_signed(tost['ci_high'])}]"
            f" lies inside the margin \u00b1{margin:.3f}{habit})"
        )
    parts = [row["reason"]]
    if margin is None:
        parts.append("no margin: the instrument sees no positive control that no detector explains")
    else:
        parts.append(f"margin \u00b1{margin:.3f}")
    if row["mde"] is not None:
        parts.append(
            f"minimum detectable effect {row['mde']:.3f} at n = {row['treatment_minus_negative']['n_questions']}"
        )
    if row["n_for_margin"] is not None:
        parts.append(f"about {row['n_for_margin']:,} questions to detect the margin")
    return head + "; " + "; ".join(parts) + ")"


def verdict_sentence(outcomes: list[dict[str, Any]], arms: dict[str, list[int]]) -> str:
    """One sentence from the numbers: the outcome per task, never "no transfer" for an
    inconclusive result."""
    missing = [arm for arm in ARMS if not arms.get(arm)]
    if missing:
        names, verb = missing[-1], "arm is"
        if len(missing) > 1:
            names, verb = f"{', '.join(missing[:-1])} and {missing[-1]}", "arms are"
        return (
            f"Inconclusive: the {names} {verb}"
            " missing (no <arm>-seed<k> run with per-question results), so the verdict rule "
            "cannot be applied."
        )
    if not outcomes:
        return "Inconclusive: the results hold no position or count task."
    sentence = "; ".join(_task_sentence(o) for o in outcomes) + "."
    return sentence[0].upper() + sentence[1:]


def verdict_from_dir(
    path: str | Path,
    *,
    plan: Plan | None = None,
    seed: int = DEFAULT_SEED,
    resamples: int = DEFAULT_RESAMPLES,
) -> dict[str, Any]:
    """The verdict (the verdict.json content) for a results folder of
    <arm>-seed<k>/eval_position.json runs under `plan` (default: Plan(), the committed
    params.yaml's values). Raises ValueError on inconsistent inputs."""
    plan = plan or Plan()
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
    outcomes: list[dict[str, Any]] = []
    loaded = {task: load_task(runs, task, plan.outcome_for(task)) for task in _tasks(runs)}
    habit_free = {task: int(data.habit_free().size) for task, data in loaded.items()}
    if plan.questions == "habit_free":
        for task, data in loaded.items():
            if not habit_free[task]:
                raise ValueError(f"{task}: no question that every strategy detector gets wrong")
            notes.append(
                f"{task}: the rule is applied to the {habit_free[task]} of {len(data.ids)} "
                f"questions every detector ({', '.join(data.strategies) or 'none'}) gets wrong"
            )
        loaded = {task: data.restricted(data.habit_free()) for task, data in loaded.items()}
    for task, data in loaded.items():
        for dropped, kept in data.duplicates.items():
            notes.append(
                f"{task}: strategy {dropped} is right on exactly the questions {kept} is; counted once, as {kept}"
            )
        maker = _RowMaker(data, task, plan, seed=seed, resamples=resamples)
        task_rows = [maker.row(instrument, arms) for instrument in data.instruments]
        rows += task_rows
        per_seed += _per_seed_rows(data, task, arms, seed=seed, resamples=resamples)
        if task in TASKS:
            primary = next((r for r in task_rows if r["primary"]), None)
            outcomes.append({
                "task": task, "instrument": plan.primary_instrument,
                "outcome": INCONCLUSIVE if primary is None else primary["outcome"],
                "row": primary, "habit_free_questions": habit_free[task],
            })  # fmt: skip
    return {
        "rule": rule_text(plan),
        "plan": plan.as_dict(),
        "claimed": any(o["outcome"] == TRANSFER for o in outcomes),
        "outcomes": {
            o["task"]: {k: v for k, v in o.items() if k != "row"}
            | (
                {}
                if o["row"] is None
                else {
                    key: o["row"][key]
                    for key in (
                        "treatment_minus_negative",
                        "treatment_minus_negative_tost",
                        "margin",
                        "mde",
                        "n_for_margin",
                        "reason",
                        "positive_control",
                        "positive_control_habit_free",
                        "detects_positive_control",
                    )
                }
            )  # fmt: skip
            for o in outcomes
        },
        "sentence": verdict_sentence(outcomes, arms),
        "arms": arms,
        "rows": rows,
        "per_seed": per_seed,
        "bootstrap": {"seed": seed, "resamples": resamples, "confidence": 1 - plan.alpha},
        "notes": notes,
    }


# --------------------------------------------------------------------------- output


def _cell(block: dict[str, Any] | None) -> Text:
    if block is None:
        return Text("-")
    low, high = _signed(block["ci_low"]), _signed(block["ci_high"])
    return Text(f"{_signed(block['delta'])}\n[{low}, {high}]")  # Text: brackets are not markup


def _outcome(row: dict[str, Any]) -> Text:
    if not row["primary"]:
        return Text(f"secondary: {why_not(row) or 'supports transfer'}")
    style = {TRANSFER: "bold green", EQUIVALENT: "bold blue"}.get(row["outcome"], "bold")
    return Text(f"{row['outcome']}: {row['reason']}", style=style)


def verdict_table(verdict: dict[str, Any]) -> Table:
    """Rows of the verdict: each arm's tuned - base (seeds pooled) and the comparison."""
    seeds = "; ".join(
        f"{arm} {', '.join(map(str, found)) or 'missing'}" for arm, found in verdict["arms"].items()
    )
    plan = verdict.get("plan") or Plan().as_dict()
    table = Table(
        title=f"Transfer verdict ({plan['primary_outcome']}): tuned - base, seeds pooled, "
        f"{round(100 * (1 - plan['alpha']))}% CI",
        caption=f"seeds: {seeds}; primary instrument {plan['primary_instrument']}",
    )
    for column in (
        "task", "instrument", "spelling", "negative control", "positive control",
        "spelling - negative", "margin", "MDE", "outcome",
    ):  # fmt: skip
        table.add_column(column)
    for row in verdict["rows"]:
        table.add_row(
            row["task"], row["instrument"],
            _cell(row["treatment"]), _cell(row["negative_control"]),
            _cell(row["positive_control"]), _cell(row["treatment_minus_negative"]),
            "-" if row["margin"] is None else f"\u00b1{row['margin']:.3f}",
            "-" if row["mde"] is None else f"{row['mde']:.3f}",
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
        "--params", type=Path, default=Path("params.yaml"),
        help="params file whose `verdict` section is the plan (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--instrument", choices=FORMAT_NEUTRAL, default=None,
        help="override the plan's primary instrument (a re-analysis; recorded in the JSON)",
    )  # fmt: skip
    parser.add_argument(
        "--outcome", choices=OUTCOMES, default=None,
        help="override the plan's primary outcome (accuracy for runs with only 0/1 bits)",
    )  # fmt: skip
    parser.add_argument(
        "--margin-share", type=float, default=None,
        help="override the plan's margin as a share of the habit-free positive-control effect",
    )  # fmt: skip
    parser.add_argument(
        "--questions", choices=QUESTION_SETS, default=None,
        help="apply the rule to all questions (params.yaml's plan) or only the habit-free ones "
        "(every detector wrong: the second study's plan)",
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
        plan = plan_from_params(
            args.params, primary_instrument=args.instrument, primary_outcome=args.outcome,
            margin_share=args.margin_share, questions=args.questions,
        )  # fmt: skip
        verdict = verdict_from_dir(
            args.results_dir, plan=plan, seed=args.seed, resamples=args.resamples
        )
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
