"""Benchmark: eval throughput of the batched engine vs one-at-a-time `model.generate`.

Both sides answer the same questions (spelling, position and count questions about real
English words) with greedy decoding and the same per-question token budgets; the report gives
questions/s each way, the speed-up, and the share of questions whose outputs are identical.

    .venv/bin/python scripts/bench_generation.py --out bench/generation.json

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
from transformers import GenerationConfig  # noqa: E402

from letterwise.chat import prompt_text  # noqa: E402
from letterwise.generation import (  # noqa: E402
    Sampling,
    generate,
    max_new_tokens_for,
    reuses_cache,
    stop_token_ids,
)
from letterwise.io import write_json  # noqa: E402

TASK_NAMES = ("spelling", "position", "count")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--preset", default="smollm2-135m", help="model preset (default: %(default)s)"
    )
    parser.add_argument(
        "--questions", type=int, default=64, help="questions in total, split over the 3 tasks"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        nargs="+",
        default=[64],
        help="batch size(s) for the batched engine; several values are each timed",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: all)"
    )
    parser.add_argument(
        "--baseline-threads",
        type=int,
        default=None,
        help="torch CPU threads for the one-at-a-time run (default: as --threads); one-prompt "
        "decoding can be faster on fewer threads, so compare against its best setting",
    )
    parser.add_argument(
        "--reuse-cache",
        choices=("auto", "on", "off"),
        default="auto",
        help="the engine's shared-prefix / finished-row savings (auto: on for CPU); 'off' "
        "measures plain batched generate() (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for picking words and questions")
    parser.add_argument(
        "--skip-sequential",
        action="store_true",
        help="time only the batched engine (no speed-up or identical-output share)",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    return parser


def load_model(preset_name: str) -> tuple[Any, Any]:
    """Prefer the project loader; fall back to loading the bundled SmolLM2 GGUF directly."""
    try:
        from letterwise.modeling import load_base_model
    except ImportError:
        load_base_model = None
    if load_base_model is not None:
        from letterwise.presets import resolve_preset

        model, tokenizer = load_base_model(resolve_preset(preset_name))
        return model.eval(), tokenizer
    if preset_name != "smollm2-135m":
        raise SystemExit(
            f"letterwise.modeling is not available; only smollm2-135m can load ({preset_name!r})"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from letterwise.presets import smollm2_gguf_path

    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    return model.eval(), tokenizer


def benchmark_words(n: int, rng: random.Random) -> list[str]:
    """Common English words of 4-12 letters, shuffled reproducibly."""
    from wordfreq import top_n_list

    pool = [w for w in top_n_list("en", 5000) if w.isascii() and w.isalpha() and 4 <= len(w) <= 12]
    return rng.sample(pool, n)


def benchmark_questions(total: int, seed: int) -> list[dict]:
    """`total` questions cycling spelling/position/count, one word each, from the task modules."""
    from letterwise.tasks import get_task

    rng = random.Random(seed)
    rows = []
    for word in benchmark_words(total, rng):
        task = TASK_NAMES[len(rows) % len(TASK_NAMES)]
        record = get_task(task).eval_questions(word, rng, 1)[0]
        rows.append({"task": task, "word": word, "question": record["question"]})
    return rows


def one_at_a_time(model: Any, tokenizer: Any, prompts: list[str], budgets: list[int]) -> list[str]:
    """The baseline: a plain `model.generate` per question, no padding, same greedy settings."""
    eos_ids = stop_token_ids(tokenizer, model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
    outputs = []
    with torch.inference_mode():
        for prompt, budget in zip(prompts, budgets, strict=True):
            input_ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
            config = GenerationConfig(
                do_sample=False,
                max_new_tokens=budget,
                eos_token_id=eos_ids,
                pad_token_id=pad_id,
                temperature=1.0,
                top_p=1.0,
                top_k=50,
            )
            out = model.generate(
                input_ids=input_ids.to(model.device),
                attention_mask=torch.ones_like(input_ids).to(model.device),
                generation_config=config,
            )
            outputs.append(tokenizer.decode(out[0, input_ids.shape[1] :], skip_special_tokens=True))
    return outputs


def timed(fn: Any) -> tuple[Any, dict[str, float]]:
    """Wall-clock seconds, and this process's CPU seconds (less sensitive to other jobs' load)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, {"seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu}


def rates(questions: int, times: dict[str, float]) -> dict[str, float]:
    return {
        "questions_per_s": questions / times["seconds"],
        "questions_per_cpu_s": questions / times["cpu_seconds"],
    }


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.questions < 1 or any(b < 1 for b in args.batch_size):
        raise SystemExit("--questions and --batch-size must be >= 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    console = Console(width=max(Console().width, 110))

    model, tokenizer = load_model(args.preset)
    rows = benchmark_questions(args.questions, args.seed)
    prompts = [prompt_text(tokenizer, row["question"], thinking=False) for row in rows]
    budgets = [
        max_new_tokens_for(row["task"], len(row["word"]), thinking=False, thinking_budget=0)
        for row in rows
    ]
    greedy = Sampling("greedy", None, None, None, None, n_samples=1, seed=0)
    reuse_cache = {"auto": None, "on": True, "off": False}[args.reuse_cache]
    prompt_tokens = [len(tokenizer(p, add_special_tokens=False).input_ids) for p in prompts]

    # Warm-up: first calls pay one-off costs (allocator, kernel selection) that are not throughput.
    generate(model, tokenizer, prompts[:4], max_new_tokens=8, sampling=greedy, batch_size=4)
    one_at_a_time(model, tokenizer, prompts[:1], [8])

    batched_runs = []
    batched_outputs: list[list[str]] = []  # per run: one greedy completion per question
    for batch_size in args.batch_size:
        outputs, times = timed(
            lambda bs=batch_size: generate(
                model,
                tokenizer,
                prompts,
                max_new_tokens=budgets,
                sampling=greedy,
                batch_size=bs,
                reuse_cache=reuse_cache,
            )
        )
        batched_outputs.append([sample[0] for sample in outputs])
        batched_runs.append({"batch_size": batch_size, **times, **rates(len(prompts), times)})

    result: dict[str, Any] = {
        "preset": args.preset,
        "device": str(model.device),
        "threads": torch.get_num_threads(),
        "reuse_cache": reuses_cache(model) if reuse_cache is None else reuse_cache,
        "questions": len(prompts),
        "tasks": {t: sum(r["task"] == t for r in rows) for t in TASK_NAMES},
        "mean_prompt_tokens": sum(prompt_tokens) / len(prompt_tokens),
        "max_new_tokens": {"min": min(budgets), "max": max(budgets)},
        "batched": batched_runs,
        # Other jobs on the machine slow every timing; the load average says how busy it was.
        "load_average_1min_at_end": os.getloadavg()[0],
    }
    if not args.skip_sequential:
        batched_threads = torch.get_num_threads()
        if args.baseline_threads is not None:
            torch.set_num_threads(args.baseline_threads)
        result["baseline_threads"] = torch.get_num_threads()
        sequential, times = timed(lambda: one_at_a_time(model, tokenizer, prompts, budgets))
        torch.set_num_threads(batched_threads)
        result["one_at_a_time"] = seq = {**times, **rates(len(prompts), times)}
        for run, outputs in zip(batched_runs, batched_outputs, strict=True):
            run["speedup"] = run["questions_per_s"] / seq["questions_per_s"]
            run["cpu_speedup"] = run["questions_per_cpu_s"] / seq["questions_per_cpu_s"]
            same = [a == b for a, b in zip(outputs, sequential, strict=True)]
            run["identical_share"] = sum(same) / len(same)
            run["differing_examples"] = [
                {"question": rows[i]["question"], "batched": outputs[i], "one_at_a_time": b}
                for i, b in enumerate(sequential)
                if not same[i]
            ][:5]

    threads = f"{result['threads']} threads"
    if result.get("baseline_threads", result["threads"]) != result["threads"]:
        threads += f" ({result['baseline_threads']} for one-at-a-time)"
    threads += ", cache reuse " + ("on" if result["reuse_cache"] else "off")
    table = Table(title=f"generation throughput: {args.preset}, {len(prompts)} questions, "
                  f"{threads}, {result['device']}")  # fmt: skip
    columns = ("engine", "batch", "wall s", "q/s", "speed-up", "CPU s", "CPU speed-up", "identical")
    for column in columns:
        table.add_column(column, justify="right")
    runs = []
    if "one_at_a_time" in result:
        baseline = {"batch_size": 1, **result["one_at_a_time"], "speedup": 1.0, "cpu_speedup": 1.0}
        runs.append(("one-at-a-time", baseline))
    for name, run in runs + [("batched", run) for run in batched_runs]:
        table.add_row(
            name, str(run["batch_size"]), f"{run['seconds']:.1f}", f"{run['questions_per_s']:.3f}",
            f"{run['speedup']:.1f}x" if "speedup" in run else "-", f"{run['cpu_seconds']:.1f}",
            f"{run['cpu_speedup']:.1f}x" if "cpu_speedup" in run else "-",
            f"{run['identical_share']:.1%}" if "identical_share" in run else "-",
        )  # fmt: skip
    console.print(table)
    console.print(
        "speed-up: questions/s over one-at-a-time; CPU: per CPU-second (less sensitive to other "
        "jobs); identical: greedy outputs equal to one-at-a-time's"
    )
    if args.out is not None:
        write_json(args.out, result)
        console.print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
