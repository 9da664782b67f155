"""Benchmark: letterwise's own evaluation vs lm-evaluation-harness on the same questions.

Both sides answer the same held-out questions (the exported tasks of
letterwise.eval.lm_eval_tasks) with the same model (base + LoRA adapter), on the same machine,
with the same batch size: greedy generation (letterwise.generation.generate vs lm-eval's
generate_until) and choice scoring (letterwise.eval.choice.score_candidates vs lm-eval's
multiple_choice). Model loading is not timed; everything from the rendered questions to the
per-question answers is. The report gives questions/s each way, the ratio, and how many
per-question results agree.

    .venv/bin/python scripts/bench_lm_eval.py --questions 8 --batch-size 16 --out bench/lm_eval.json

This is a measurement, not a test: nothing here asserts a speed. Other jobs on the machine slow
both sides; the load average is recorded with the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; never reach the Hub
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from letterwise import modeling  # noqa: E402
from letterwise.chat import prompt_text  # noqa: E402
from letterwise.eval import lm_eval_tasks  # noqa: E402
from letterwise.eval.choice import score_candidates  # noqa: E402
from letterwise.generation import TASKS, Sampling, generate  # noqa: E402
from letterwise.io import write_json, write_jsonl  # noqa: E402
from letterwise.presets import resolve_preset  # noqa: E402

PRESET = "smollm2-135m"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--questions", type=int, default=8, help="questions per task (default: %(default)s)"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=16,
        help="batch size, the same for both harnesses (default: %(default)s)",
    )
    parser.add_argument(
        "--dataset",
        type=Path,
        default=Path("data/dataset"),
        help="build_dataset output whose test split to use; when it is not built, questions "
        "are made from common English words (default: %(default)s)",
    )
    parser.add_argument(
        "--adapter",
        type=Path,
        default=Path("models/adapter"),
        help="LoRA adapter of smollm2-135m; when missing, a random seeded LoRA adapter is made "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: all)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for words and questions")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    return parser


def question_rows(dataset: Path, per_task: int, seed: int) -> tuple[list[dict], str]:
    """The first `per_task` test questions of each task, and where they came from."""
    if (dataset / "jsonl" / "test.jsonl").is_file():
        selected = lm_eval_tasks.select_rows(lm_eval_tasks.read_split(dataset, "test"), per_task)
        return [row for task in TASKS for row in selected[task]], f"{dataset} (test split)"
    from wordfreq import top_n_list

    from letterwise.data.dataset import example_row
    from letterwise.tasks import get_task

    rng = random.Random(seed)
    pool = [w for w in top_n_list("en", 5000) if w.isascii() and w.isalpha() and 4 <= len(w) <= 12]
    words = rng.sample(pool, per_task)
    rows = [
        example_row("test", task, i, word, get_task(task).eval_questions(word, rng, 1)[0], None)
        for task in TASKS
        for i, word in enumerate(words)
    ]
    return rows, "generated from common English words (no built dataset)"


def adapter_dir(requested: Path, scratch: Path, seed: int) -> tuple[Path, str]:
    if (requested / "adapter_config.json").is_file():
        return requested, str(requested)
    from peft import LoraConfig, get_peft_model

    model, _ = modeling.load_base_model(resolve_preset(PRESET), backend="transformers")
    torch.manual_seed(seed)
    # The shape params.yaml trains (r=16 on every projection), random and non-zero.
    lora = LoraConfig(
        r=16,
        lora_alpha=32,
        target_modules=[
            "down_proj",
            "gate_proj",
            "k_proj",
            "o_proj",
            "q_proj",
            "up_proj",
            "v_proj",
        ],
        init_lora_weights=False,
    )
    made = scratch / "adapter"
    get_peft_model(model, lora).save_pretrained(str(made))
    (made / modeling.PROVENANCE_FILE).write_text(json.dumps({"model": PRESET}))
    return made, "random seeded LoRA (r=16, all projections): no trained adapter here"


def timed(fn: Any) -> tuple[Any, dict[str, float]]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, {"seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu}


def warm_up(model: Any, tokenizer: Any) -> None:
    """One small forward pass: first calls pay one-off costs that are not throughput."""
    ids = tokenizer("warm up", return_tensors="pt").input_ids.to(model.device)
    with torch.inference_mode():
        model(input_ids=ids)


def run_lm_eval_side(
    task_dir: Path, adapter: Path, batch_size: int, n: int
) -> tuple[dict, dict[str, dict]]:
    lm = lm_eval_tasks.load_lm_eval_model(
        modeling.smollm2_cache_dir(), peft=adapter, batch_size=batch_size
    )
    warm_up(lm.model, lm.tokenizer)
    results: dict[str, dict] = {}
    samples: dict[str, dict] = {}
    for variant in ("gen", "mc"):
        (_, found), times = timed(
            lambda v=variant: lm_eval_tasks.run_lm_eval(lm, task_dir, [f"letterwise_{v}"])
        )
        samples |= found
        results[variant] = {**times, "questions_per_s": n / times["seconds"]}
    return results, samples


def run_letterwise_side(
    rows: list[dict], docs: dict[str, dict], adapter: Path, batch_size: int
) -> tuple[dict, list[str], list[list[float]]]:
    model, tokenizer = modeling.load_tuned_model(adapter, backend="transformers")
    warm_up(model, tokenizer)
    greedy = Sampling("greedy", None, None, None, None, n_samples=1, seed=0)

    def generation() -> list[list[str]]:
        prompts = [prompt_text(tokenizer, row["question"], thinking=False) for row in rows]
        budgets = [docs[row["id"]]["max_gen_toks"] for row in rows]
        return generate(
            model,
            tokenizer,
            prompts,
            max_new_tokens=budgets,
            sampling=greedy,
            batch_size=batch_size,
        )

    def choice() -> list[list[Any]]:
        prompts = [prompt_text(tokenizer, row["question"], thinking=False) for row in rows]
        candidates = [docs[row["id"]]["choices"] for row in rows]
        return score_candidates(model, tokenizer, prompts, candidates, batch_size=batch_size)

    texts, gen_times = timed(generation)
    scores, choice_times = timed(choice)
    n = len(rows)
    results = {
        "gen": {**gen_times, "questions_per_s": n / gen_times["seconds"]},
        "mc": {**choice_times, "questions_per_s": n / choice_times["seconds"]},
    }
    logprobs = [[score.logprob for score in question] for question in scores]
    return results, [sample[0] for sample in texts], logprobs


def argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.questions < 1 or args.batch_size < 1:
        raise SystemExit("--questions and --batch-size must be >= 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    console = Console(width=max(Console().width, 110))
    with tempfile.TemporaryDirectory(prefix="bench-lm-eval-") as scratch_name:
        scratch = Path(scratch_name)
        rows, source = question_rows(args.dataset, args.questions, args.seed)
        write_jsonl(scratch / "dataset" / "jsonl" / "test.jsonl", rows)
        task_dir = scratch / "tasks"
        lm_eval_tasks.export_tasks(scratch / "dataset", "test", task_dir, seed=args.seed)
        docs = {
            doc["id"]: doc
            for task in TASKS
            for doc in map(json.loads, (task_dir / f"{task}.jsonl").read_text().splitlines())
        }
        adapter, adapter_source = adapter_dir(args.adapter, scratch, args.seed)
        theirs, samples = run_lm_eval_side(task_dir, adapter, args.batch_size, len(rows))
        ours, texts, logprobs = run_letterwise_side(rows, docs, adapter, args.batch_size)

    same_text = [
        samples[f"letterwise_{row['task']}_gen"][row["id"]]["resps"][0][0] == text
        for row, text in zip(rows, texts, strict=True)
    ]
    same_choice = [
        argmax([resp[0][0] for resp in samples[f"letterwise_{row['task']}_mc"][row["id"]]["resps"]])
        == argmax(lps)
        for row, lps in zip(rows, logprobs, strict=True)
    ]
    result: dict[str, Any] = {
        "preset": PRESET,
        "adapter": adapter_source,
        "questions": source,
        "questions_per_task": args.questions,
        "questions_total": len(rows),
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "letterwise": ours,
        "lm_eval": theirs,
        "speedup": {v: ours[v]["questions_per_s"] / theirs[v]["questions_per_s"] for v in ours},
        "identical_generations": sum(same_text) / len(same_text),
        "identical_choices": sum(same_choice) / len(same_choice),
        "load_average_1min_at_end": os.getloadavg()[0],
    }
    load = result["load_average_1min_at_end"]
    table = Table(
        title=f"letterwise vs lm-eval: {PRESET} + adapter, {len(rows)} questions, batch "
        f"{args.batch_size}, {result['threads']} threads, load average {load:.1f}"
    )
    for column in ("instrument", "letterwise q/s", "lm-eval q/s", "ratio", "agree"):
        table.add_column(column, justify="right")
    for variant, label, agree in (
        ("gen", "greedy generation", result["identical_generations"]),
        ("mc", "choice scoring", result["identical_choices"]),
    ):
        table.add_row(
            label,
            f"{ours[variant]['questions_per_s']:.3f}",
            f"{theirs[variant]['questions_per_s']:.3f}",
            f"{result['speedup'][variant]:.2f}x",
            f"{agree:.0%}",
        )
    console.print(table)
    console.print(f"questions: {source}; adapter: {adapter_source}")
    if args.out is not None:
        write_json(args.out, result)
        console.print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
