"""Coupling per study arm: is a word's position/count question answered right more often when
the model spells that word right? The CPU analogue of "thinking helps only if the spelling is
right": if spelling training transfers through the spelling, the tuned model's use gap
P(right | spelled right) - P(right | spelled wrong) should grow in the spelling arm and not in
the negative control.

Reads, for every DIR/<arm>-seed<k>/ run folder of a study (letterwise.eval.verdict.find_runs):
predictions_eval_spelling.jsonl.gz (each spelling question's word and whether base and tuned
spelled it right), predictions_eval_position.jsonl.gz (each position/count question's word) and
eval_position.json's per-question right/wrong bits per instrument. Each question is paired with
its word's spelling question (letterwise.eval.coupling.join_by_word) and the 2x2 table of
letterwise.eval.coupling is built per arm, task, instrument and model side, seeds pooled: one
row per (seed, question). The base model is the same in every arm, so its table is given once
(from the first run read). Questions of one word, and one word across seeds, are not
independent, so the intervals are somewhat optimistic; the counts are exact.

    python -m letterwise.eval.arm_coupling docs/results/study/smollm2-135m
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from letterwise.eval.coupling import coupling_table, join_by_word
from letterwise.eval.verdict import ARMS, TASKS, Run, find_runs
from letterwise.io import write_json

SPELLING_FILE = "predictions_eval_spelling.jsonl.gz"
POSITION_FILE = "predictions_eval_position.jsonl.gz"
SIDES = ("base", "tuned")


def read_jsonl_gz(path: Path) -> list[dict]:
    if not path.is_file():
        raise ValueError(f"{path}: missing (the run folder must hold both evals' predictions)")
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def spelling_rows(rows: list[dict], where: str) -> list[dict]:
    """Spelling prediction rows reduced to what join_by_word and the table need."""
    out = []
    for row in rows:
        if row.get("task") != "spelling":
            continue
        for side in SIDES:
            if not isinstance((row.get(side) or {}).get("correct"), bool):
                raise ValueError(f"{where}: spelling row {row.get('id')!r} has no {side}.correct")
        correct = {side: row[side]["correct"] for side in SIDES}
        out.append({"task": "spelling", "word": row["word"], **correct})
    if not out:
        raise ValueError(f"{where}: no spelling rows")
    return out


def run_pairs(folder: Path, run: Run) -> dict[tuple[str, str, str], list[tuple[bool, bool]]]:
    """(task, instrument, side) -> [(spelled right, answered right)] for one run folder."""
    spelled = spelling_rows(read_jsonl_gz(folder / SPELLING_FILE), str(folder / SPELLING_FILE))
    words = {row["id"]: row.get("word") for row in read_jsonl_gz(folder / POSITION_FILE)}
    pairs: dict[tuple[str, str, str], list[tuple[bool, bool]]] = {}
    for task in TASKS:
        entry = run.per_question.get(task)
        if not entry:
            continue
        ids = entry["ids"]
        missing = [i for i in ids if not words.get(i)]
        if missing:
            raise ValueError(f"{folder}: {len(missing)} {task} question(s) without a word, e.g. "
                             f"{missing[0]!r}")  # fmt: skip
        questions = [{"task": task, "word": words[i], "index": k} for k, i in enumerate(ids)]
        joined = join_by_word(spelled, questions)
        for instrument, sides in sorted(entry.get("correct", {}).items()):
            for side in SIDES:
                bits = sides.get(side)
                if not isinstance(bits, str) or len(bits) != len(ids) or bits.strip("01"):
                    raise ValueError(
                        f"{folder}: per_question.{task}.correct.{instrument}.{side} must be a "
                        f"bit string of {len(ids)} questions"
                    )
                pairs[task, instrument, side] = [
                    (spell[side], bits[question["index"]] == "1") for spell, question in joined
                ]
    return pairs


def study_coupling(results_dir: str | Path) -> dict[str, Any]:
    """Per arm, task and instrument: the tuned model's coupling table (seeds pooled), and the
    base model's once."""
    results_dir = Path(results_dir)
    runs, notes = find_runs(results_dir)
    if not runs:
        raise ValueError(f"{results_dir}: no <arm>-seed<k> run folders with results")
    pooled: dict[tuple[str, str, str, str], list[tuple[bool, bool]]] = {}
    seeds: dict[str, list[int]] = {}
    ordered = sorted(runs, key=lambda r: (ARMS.index(r.arm), r.seed))
    for run in ordered:
        seeds.setdefault(run.arm, []).append(run.seed)
        for (task, instrument, side), rows in run_pairs(results_dir / run.name, run).items():
            if side == "base" and run is not ordered[0]:
                continue
            arm = "base" if side == "base" else run.arm
            pooled.setdefault((arm, task, instrument, side), []).extend(rows)
    tables: dict[str, dict[str, dict[str, Any]]] = {}
    for (arm, task, instrument, _side), rows in sorted(pooled.items()):
        tables.setdefault(arm, {}).setdefault(task, {})[instrument] = coupling_table(
            [spelled for spelled, _ in rows], [answered for _, answered in rows]
        )
    return {"results_dir": str(results_dir), "seeds": seeds, "notes": notes, "coupling": tables}


def _ci(table: dict[str, Any], key: str) -> str:
    value = table.get(key)
    if value is None:
        return "-"
    return f"{value:.3f} [{table[key + '_ci_low']:.3f}, {table[key + '_ci_high']:.3f}]"


def coupling_rich_table(result: dict[str, Any]) -> Table:
    table = Table(title=f"coupling per arm: {result['results_dir']}")
    for column in ("arm", "task", "instrument", "spelled right/wrong"):
        table.add_column(column)
    for column in ("P(right | spelled right) [95%]", "P(right | spelled wrong) [95%]"):
        table.add_column(column, no_wrap=True)
    table.add_column("odds ratio")
    for arm, tasks in result["coupling"].items():
        for task, instruments in tasks.items():
            for instrument, t in instruments.items():
                ratio = "-" if t.get("odds_ratio") is None else f"{t['odds_ratio']:.2f}"
                table.add_row(
                    arm, task, instrument, f"{t['n_spelled_right']} / {t['n_spelled_wrong']}",
                    _ci(t, "p_right_given_spelled_right"), _ci(t, "p_right_given_spelled_wrong"),
                    ratio,
                )  # fmt: skip
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m letterwise.eval.arm_coupling",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("results_dir", help="a study's model folder of <arm>-seed<k>/ runs")
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON to write (default: RESULTS_DIR/coupling.json)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = study_coupling(args.results_dir)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    out = args.out or Path(args.results_dir) / "coupling.json"
    write_json(out, result)
    console = Console()
    console.print(coupling_rich_table(result))
    for note in result["notes"]:
        console.print(f"[dim]{note}[/]")
    console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
