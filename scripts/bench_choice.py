"""Benchmark: questions/s of choice scoring vs direct generation on the same questions.

Position and count questions about real English words (half each) are answered two ways by the
same model: greedy direct generation with the eval's token budgets
(letterwise.eval.answering.prompts_and_budgets -> letterwise.generation.generate) and choice
scoring of every candidate answer (letterwise.eval.choice.run_choice). Reports wall-clock and
process-CPU questions/s and each instrument's accuracy on these questions.

    .venv/bin/python scripts/bench_choice.py --questions 64 --out bench/choice.json

This is a measurement, not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the default preset is bundled; never reach the Hub
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from letterwise.data.dataset import example_row  # noqa: E402
from letterwise.eval.answering import prompts_and_budgets  # noqa: E402
from letterwise.eval.choice import run_choice  # noqa: E402
from letterwise.generation import Sampling, generate  # noqa: E402
from letterwise.io import write_json  # noqa: E402
from letterwise.modeling import load_base_model  # noqa: E402
from letterwise.params import Params, load_params  # noqa: E402
from letterwise.presets import resolve_preset  # noqa: E402
from letterwise.tasks import get_task  # noqa: E402

TASKS = ("position", "count")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--preset", default="smollm2-135m", help="model preset (default: %(default)s)"
    )
    parser.add_argument(
        "--questions",
        type=int,
        default=64,
        help="questions in total, alternating position and count (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="questions per batch for both instruments (default: eval.batch_size of --params)",
    )
    parser.add_argument(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        help="params.yaml whose eval section gives the mode and token budgets; the built-in "
        "defaults when the file does not exist (default: %(default)s)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for picking words and questions")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    return parser


def benchmark_rows(total: int, seed: int) -> list[dict]:
    """Dataset-shaped position/count rows, one common English word (4-12 letters) each."""
    from wordfreq import top_n_list

    rng = random.Random(seed)
    pool = [w for w in top_n_list("en", 5000) if w.isascii() and w.isalpha() and 4 <= len(w) <= 12]
    rows = []
    for i, word in enumerate(rng.sample(pool, total)):
        task = TASKS[i % len(TASKS)]
        question = get_task(task).eval_questions(word, rng, 1)[0]
        rows.append(example_row("bench", task, i, word, question, None))
    return rows


def timed(fn: Any) -> tuple[Any, dict[str, float]]:
    """Wall-clock seconds, and this process's CPU seconds (less sensitive to other jobs' load)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, {"seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu}


def summary(rows: list[dict], right: list[bool], times: dict[str, float]) -> dict[str, Any]:
    by_task = {
        task: [r for row, r in zip(rows, right, strict=True) if row["task"] == task]
        for task in TASKS
    }
    return {
        **times,
        "questions_per_s": len(rows) / times["seconds"],
        "questions_per_cpu_s": len(rows) / times["cpu_seconds"],
        "accuracy": sum(right) / len(right),
        "accuracy_by_task": {task: sum(r) / len(r) for task, r in by_task.items() if r},
    }


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    params = load_params(args.params) if args.params.exists() else Params()
    batch_size = args.batch_size or params.eval.batch_size
    if args.questions < 1 or batch_size < 1:
        raise SystemExit("--questions and --batch-size must be >= 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    model, tokenizer = load_base_model(resolve_preset(args.preset))
    rows = benchmark_rows(args.questions, args.seed)
    prompts, budgets = prompts_and_budgets(tokenizer, rows, params)
    greedy = Sampling("greedy", None, None, None, None, n_samples=1, seed=0)
    thinking = params.eval.mode == "thinking"

    # Warm-up: first calls pay one-off costs (allocator, kernel selection) that are not throughput.
    generate(model, tokenizer, prompts[:2], max_new_tokens=4, sampling=greedy, batch_size=2)
    run_choice(model, tokenizer, rows[:2], batch_size=2)

    outputs, generation_times = timed(
        lambda: generate(
            model,
            tokenizer,
            prompts,
            max_new_tokens=budgets,
            sampling=greedy,
            batch_size=batch_size,
            description="direct generation",
        )
    )
    records, choice_times = timed(
        lambda: run_choice(model, tokenizer, rows, batch_size=batch_size, thinking=thinking)
    )
    generated_right = [
        get_task(row["task"]).is_correct(samples[0], row["expected"])
        for row, samples in zip(rows, outputs, strict=True)
    ]
    result = {
        "preset": args.preset,
        "questions": len(rows),
        "batch_size": batch_size,
        "torch_threads": torch.get_num_threads(),
        "device": str(model.device),
        "mode": params.eval.mode,
        "generation": summary(rows, generated_right, generation_times),
        "choice": summary(rows, [bool(r["correct"]) for r in records], choice_times),
    }
    result["choice_speedup_wall"] = (
        result["choice"]["questions_per_s"] / result["generation"]["questions_per_s"]
    )

    table = Table(title=f"{args.preset}: {len(rows)} position/count questions, batch {batch_size}")
    columns = ("instrument", "seconds", "CPU s", "questions/s", "questions/CPU s", "accuracy")
    columns += tuple(f"{task} acc." for task in TASKS)
    for column in columns:
        table.add_column(column, justify="left" if column == "instrument" else "right")
    for name in ("generation", "choice"):
        part = result[name]
        table.add_row(
            "direct (greedy)" if name == "generation" else "choice",
            f"{part['seconds']:.1f}",
            f"{part['cpu_seconds']:.1f}",
            f"{part['questions_per_s']:.2f}",
            f"{part['questions_per_cpu_s']:.2f}",
            f"{part['accuracy']:.2f}",
            *(f"{part['accuracy_by_task'].get(task, 0.0):.2f}" for task in TASKS),
        )
    Console(width=max(Console().width, 120)).print(table)
    if args.out:
        write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
