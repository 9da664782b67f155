"""Roofline benchmark: this machine's fp32 matmul throughput at the model's own shapes, and what
the training step and each eval instrument achieve against it.

    python -m letterwise.bench                     # default preset -> docs/results/bench/<cpu>.json
    python -m letterwise.bench --train-steps 4 --questions 8
    python -m letterwise.bench --code-dir /tmp/old     # the same bench on an older checkout

In one run, on the threads the pipeline uses (params.train.threads; null = torch's default, all
cores):

(a) matmul: torch fp32 `linear` at the model's shapes (tokens x hidden @ hidden x out for the
    attention projections, the MLP and the LM head), GFLOP/s each and for the model's mix (one
    layer's projections + the LM head, total FLOPs over total time): the reference figure.
(b) train: real LoRA training steps (letterwise.training: sft_dataset, add_lora, build_trainer,
    the trainer the train stage uses) on rows of the default training data, built offline in a
    temporary directory with the library's own filter_tokens/build_dataset functions. FLOPs are
    counted from the model's shapes and each batch's real token counts, prompt and answer apart
    (formula in the JSON, `train_step_flops`), as achieved FLOP/s and a share of (a).
(c) eval: questions/s for direct generation, choice scoring and the cloze slot on the first
    `--questions` held-out position/count questions, through the eval's own functions; FLOPs are
    counted per forward pass from the real (unpadded) tokens the model is fed and the logits it
    computes (`eval_forward_flops`).

Timings on a shared machine are noisy: the JSON records os.getloadavg() before and after.
`--code-dir` runs this same file against another checkout's `letterwise` (e.g.
`git worktree add /tmp/old 763ec74`), using only functions both have, for a before/after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

TRAIN_STEP_FORMULA = (
    "T = real tokens (prompt + answer, padding excluded), A = answer tokens (the positions the "
    "loss reads), n_r = real length of row r; per layer: P = linear params of the layer "
    "(q,k,v,o,gate,up,down), R = LoRA params of the layer (r*(in+out) per adapted module), "
    "qd = heads*head_dim. forward = 2*L*(P+R)*T + 2*hidden*vocab*A + 2*L*qd*sum(n_r*(n_r+1)) "
    "(causal QK^T and AV, n_r*(n_r+1)/2 query-key pairs, 4*qd each); backward (LoRA: frozen "
    "weights get no weight gradient) = "
    "2*L*P*T (activation grads) + 4*L*R*T (LoRA activation + weight grads) + 2*hidden*vocab*A "
    "+ 2 * attention forward. Useful work only: padding and logits no loss reads are not counted."
)
EVAL_FORMULA = (
    "per model forward call: k_r = real new tokens of row r (attention mask 1), m_r = real keys "
    "visible (cache + new); 2*L*(P+R)*sum(k_r) + 4*L*qd*sum(k_r*(m_r - (k_r-1)/2)) + "
    "2*hidden*vocab*(logit positions computed on real tokens). R = 0 for the base model."
)


# ----------------------------------------------------------------------------- FLOP counting


@dataclass(frozen=True)
class ModelShape:
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    lora_r: int = 0
    lora_targets: tuple[str, ...] = ()

    def module_dims(self) -> dict[str, tuple[int, int]]:
        """(in, out) of every linear of one layer."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return {
            "q_proj": (self.hidden, q),
            "k_proj": (self.hidden, kv),
            "v_proj": (self.hidden, kv),
            "o_proj": (q, self.hidden),
            "gate_proj": (self.hidden, self.intermediate),
            "up_proj": (self.hidden, self.intermediate),
            "down_proj": (self.intermediate, self.hidden),
        }

    @property
    def layer_params(self) -> int:
        return sum(i * o for i, o in self.module_dims().values())

    @property
    def lora_params(self) -> int:
        dims = self.module_dims()
        return sum(self.lora_r * sum(dims[name]) for name in self.lora_targets if name in dims)

    @property
    def query_dim(self) -> int:
        return self.heads * self.head_dim


def shape_of(config: Any, lora_r: int = 0, lora_targets: Sequence[str] = ()) -> ModelShape:
    """A transformers config's shapes (Llama/Qwen3/Gemma3-style decoder)."""
    config = getattr(config, "text_config", config)
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return ModelShape(
        layers=config.num_hidden_layers,
        hidden=config.hidden_size,
        intermediate=config.intermediate_size,
        heads=heads,
        kv_heads=getattr(config, "num_key_value_heads", None) or heads,
        head_dim=head_dim,
        vocab=config.vocab_size,
        lora_r=lora_r,
        lora_targets=tuple(lora_targets),
    )


def train_step_flops(shape: ModelShape, rows: Sequence[tuple[int, int]]) -> dict[str, int]:
    """Useful FLOPs of one LoRA training step over rows of (prompt tokens, answer tokens)."""
    tokens = sum(p + a for p, a in rows)
    answers = sum(a for _, a in rows)
    L, P, R = shape.layers, shape.layer_params, shape.lora_params
    head = 2 * shape.hidden * shape.vocab * answers
    attention = 2 * L * shape.query_dim * sum((p + a) * (p + a + 1) for p, a in rows)
    forward = 2 * L * (P + R) * tokens + head + attention
    backward = 2 * L * P * tokens + 4 * L * R * tokens + head + 2 * attention
    return {
        "forward": forward,
        "backward": backward,
        "total": forward + backward,
        "tokens": tokens,
        "answer_tokens": answers,
        "prompt_tokens": tokens - answers,
    }


def forward_call_flops(
    shape: ModelShape, new_tokens: Sequence[int], keys: Sequence[int], logit_positions: int
) -> int:
    """Useful FLOPs of one forward call: per row its real new tokens and real keys visible."""
    L = shape.layers
    linear = 2 * L * (shape.layer_params + shape.lora_params) * sum(new_tokens)
    attention = sum(
        4 * L * shape.query_dim * k * m - 2 * L * shape.query_dim * k * (k - 1)
        for k, m in zip(new_tokens, keys, strict=True)
    )
    return linear + attention + 2 * shape.hidden * shape.vocab * logit_positions


# ----------------------------------------------------------------------------- the machine


def cpu_info() -> dict[str, Any]:
    model, flags = platform.processor() or "unknown", set()
    try:
        text = Path("/proc/cpuinfo").read_text()
        found = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        model = found.group(1).strip() if found else model
        found = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
        flags = set(found.group(1).split()) if found else set()
    except OSError:
        pass
    return {
        "model": model,
        "cores": os.cpu_count(),
        "avx2": "avx2" in flags,
        "fma": "fma" in flags,
        "avx512": sorted(f for f in flags if f.startswith("avx512")),
        "amx": sorted(f for f in flags if f.startswith("amx")),
    }


def cpu_slug(model: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-") or "unknown-cpu"


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def git_commit(code_dir: Path) -> str | None:
    try:
        return subprocess.run(
            ["git", "-C", str(code_dir), "rev-parse", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


# ----------------------------------------------------------------------------- (a) matmul


def _time(fn, min_seconds: float) -> float:
    """Seconds per call (median of repeated timed blocks) after warm-up."""
    for _ in range(2):
        fn()
    times: list[float] = []
    spent = 0.0
    while spent < min_seconds or len(times) < 3:
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        times.append(elapsed)
        spent += elapsed
    return sorted(times)[len(times) // 2]


def bench_matmul(shape: ModelShape, tokens: Sequence[int], min_seconds: float) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    out: dict[str, Any] = {"tokens": list(tokens), "shapes": [], "mix": {}}
    dims = {**shape.module_dims(), "lm_head": (shape.hidden, shape.vocab)}
    for t in tokens:
        total_flops, total_seconds = 0.0, 0.0
        for name, (i, o) in dims.items():
            x, w = torch.randn(t, i), torch.randn(o, i)
            seconds = _time(lambda x=x, w=w: F.linear(x, w), min_seconds)
            flops = 2 * t * i * o
            out["shapes"].append({
                "name": name, "tokens": t, "in": i, "out": o,
                "seconds": seconds, "gflops": flops / seconds / 1e9,
            })
            total_flops += flops
            total_seconds += seconds
        out["mix"][str(t)] = total_flops / total_seconds / 1e9
    out["peak_gflops"] = max(s["gflops"] for s in out["shapes"])
    return out


# ----------------------------------------------------------------------------- data


def build_rows(params: Any, workdir: Path) -> dict[str, list[dict]]:
    """The dataset splits as build_dataset makes them, built in `workdir` (filter_tokens first)."""
    from rich.console import Console

    from letterwise.data.dataset import build
    from letterwise.data.tokens import filter_vocabulary
    from letterwise.data.vocab import load_vocab_tokenizer, vocabulary
    from letterwise.io import write_jsonl
    from letterwise.presets import resolve_preset

    tokenizer = load_vocab_tokenizer(resolve_preset(params.model))
    rows, _ = filter_vocabulary(vocabulary(tokenizer), params.filter_tokens)
    here = Path.cwd()
    os.chdir(workdir)  # the stages read and write data/ relative to the repository root
    try:
        write_jsonl(Path("data/tokens/tokens.jsonl"), rows)
        splits, _ = build(params, Console(quiet=True))
    finally:
        os.chdir(here)
    return splits


# ----------------------------------------------------------------------------- (b) train


def bench_train(params: Any, splits: dict, steps: int, warmup: int, workdir: Path) -> dict:
    import torch

    from letterwise.modeling import QWEN3_TINY_SEED, load_base_model, resolve_backend
    from letterwise.presets import resolve_preset
    from letterwise.training.data import sft_dataset, split_replay
    from letterwise.training.trainer import add_lora, build_trainer

    preset = resolve_preset(params.model)
    backend = resolve_backend(preset, params.train.backend)
    total_steps = steps + warmup
    train = params.train.model_copy(update={"max_steps": total_steps, "save_steps": 10**6})
    params = params.model_copy(update={"train": train})
    model, tokenizer = load_base_model(
        preset, backend=backend, for_training=True, load_in_4bit=train.load_in_4bit,
        seed=QWEN3_TINY_SEED, max_seq_length=train.max_seq_length,
    )
    answered, _ = split_replay_rows(splits["train"], split_replay)
    pairs = sft_dataset(tokenizer, answered[: total_steps * train.batch_size])
    model = add_lora(model, params, backend)
    lora = params.train.lora
    shape = shape_of(model.config, lora.r, lora.target_modules)
    from transformers import TrainerCallback

    batches: list[dict] = []
    step_times: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            step_times.append(time.perf_counter() - self.start)

    trainer = build_trainer(
        model, tokenizer, pairs, params, backend=backend,
        checkpoint_dir=workdir / "checkpoints", callbacks=[StepTimer()],
    )
    collate = trainer.data_collator

    def recording_collator(examples):
        batch = collate(examples)
        labels = batch["labels"]
        mask = batch.get("attention_mask")
        real = (mask.sum(1) if mask is not None else (labels != -100).sum(1) * 0 + labels.shape[1])
        answer = (labels != -100).sum(1)
        counts = zip(real.tolist(), answer.tolist(), strict=True)
        batches.append({
            "rows": int(labels.shape[0]),
            "padded_length": int(labels.shape[1]),
            "per_row": [(int(n - a), int(a)) for n, a in counts],
        })
        return batch

    trainer.data_collator = recording_collator
    from transformers.trainer_utils import SaveStrategy

    trainer.args.save_strategy = SaveStrategy.NO  # no checkpoint writes in the timed steps
    torch.manual_seed(0)
    trainer.train()
    timed = list(zip(batches[warmup:total_steps], step_times[warmup:total_steps], strict=True))
    flops = [train_step_flops(shape, b["per_row"]) for b, _ in timed]
    seconds = sum(t for _, t in timed)
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return {
        "trainer": type(trainer).__name__,
        "backend": backend,
        "batch_size": train.batch_size,
        "steps_timed": len(timed),
        "warmup_steps": warmup,
        "seconds_per_step": seconds / max(len(timed), 1),
        "step_seconds": [round(t, 4) for _, t in timed],
        "prompt_tokens_per_step": sum(f["prompt_tokens"] for f in flops) / max(len(flops), 1),
        "answer_tokens_per_step": sum(f["answer_tokens"] for f in flops) / max(len(flops), 1),
        "padded_tokens_per_step": sum(b["rows"] * b["padded_length"] for b, _ in timed)
        / max(len(timed), 1),
        "gflop_per_step": sum(f["total"] for f in flops) / max(len(flops), 1) / 1e9,
        "achieved_gflops": sum(f["total"] for f in flops) / seconds / 1e9 if seconds else None,
        "losses": losses,
        "shape": asdict(shape),
        "formula": TRAIN_STEP_FORMULA,
    }


def split_replay_rows(rows: list[dict], split_replay: Any) -> tuple[list[dict], list[dict]]:
    """split_replay wants a Dataset (columns by name); the splits here are lists of dicts."""
    from datasets import Dataset

    columns = {key: [row.get(key) for row in rows] for key in ("question", "answer", "task")}
    return split_replay(Dataset.from_dict(columns))


# ----------------------------------------------------------------------------- (c) eval


class ForwardCounter:
    """A forward hook adding up each call's useful FLOPs (real tokens, computed logits)."""

    def __init__(self, shape: ModelShape) -> None:
        self.shape, self.flops, self.calls = shape, 0, 0

    def __call__(self, module, args, kwargs, output) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            return
        mask = kwargs.get("attention_mask")
        rows, new = ids.shape
        if mask is None:
            new_real, keys = [new] * rows, [new] * rows
        else:
            new_real = mask[:, -new:].sum(1).tolist()
            keys = mask.sum(1).tolist()
        logits = getattr(output, "logits", None)
        kept = 0
        if logits is not None:
            width = logits.shape[1] if logits.dim() == 3 else 1
            kept = (
                int(mask[:, -width:].sum()) if mask is not None and logits.dim() == 3
                else logits.shape[0] * width
            )
        self.flops += forward_call_flops(self.shape, new_real, keys, kept)
        self.calls += 1


def bench_eval(params: Any, splits: dict, questions: int, repeats: int) -> dict:
    from letterwise.eval.answering import generate_answers
    from letterwise.eval.choice import run_choice
    from letterwise.eval.cloze import run_cloze
    from letterwise.generation import sampling_for
    from letterwise.modeling import QWEN3_TINY_SEED, load_base_model, resolve_backend
    from letterwise.presets import resolve_preset

    preset = resolve_preset(params.model)
    backend = resolve_backend(preset, params.train.backend)
    model, tokenizer = load_base_model(preset, backend=backend, seed=QWEN3_TINY_SEED)
    rows = [r for r in splits[params.eval.split] if r["task"] == "position"][:questions] + [
        r for r in splits[params.eval.split] if r["task"] == "count"
    ][:questions]
    shape = shape_of(model.config)
    counter = ForwardCounter(shape)
    handle = model.register_forward_hook(counter, with_kwargs=True)
    batch = params.eval.batch_size
    instruments = {
        "direct": lambda: generate_answers(
            model, tokenizer, rows, params, sampling_for(params.eval), "bench direct"
        ),
        "choice": lambda: run_choice(
            model, tokenizer, rows, batch_size=batch, thinking=False, seed=params.eval.seed
        ),
        "cloze": lambda: run_cloze(model, tokenizer, rows, ["cloze"], batch_size=batch),
    }
    out: dict[str, Any] = {"questions": len(rows), "formula": EVAL_FORMULA}
    try:
        for name, fn in instruments.items():
            fn()  # warm-up (and the FLOP count of one pass)
            counter.flops, counter.calls = 0, 0
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            seconds = min(times)
            flops = counter.flops / repeats
            out[name] = {
                "seconds": seconds,
                "seconds_all": [round(t, 3) for t in times],
                "questions_per_second": len(rows) / seconds,
                "forward_calls": counter.calls // repeats,
                "gflop": flops / 1e9,
                "achieved_gflops": flops / seconds / 1e9,
            }
    finally:
        handle.remove()
    return out


# ----------------------------------------------------------------------------- the run


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    import yaml
    from datasets.utils.logging import disable_progress_bar
    from rich.console import Console
    from rich.table import Table

    from letterwise.params import parse_params

    disable_progress_bar()
    console = Console()
    code_dir = Path(args.code_dir or Path(__file__).resolve().parents[1])
    raw = yaml.safe_load(Path(args.params or code_dir / "params.yaml").read_text())
    if args.model:
        raw["model"] = args.model
    params = parse_params(raw)
    if params.train.threads:
        torch.set_num_threads(params.train.threads)
    result: dict[str, Any] = {
        "format": 1,
        "cpu": cpu_info(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "model": params.model,
        "code_dir": str(code_dir),
        "code_commit": git_commit(code_dir),
        "letterwise_package": str(Path(sys.modules["letterwise"].__file__).parent),
        "load_average_start": load_average(),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "note": "load_average_* is os.getloadavg() (1, 5, 15 min): above the thread count, "
        "other work shared the cores and every figure here is lower than a quiet machine's",
    }
    with tempfile.TemporaryDirectory(prefix="letterwise-bench-") as tmp:
        workdir = Path(tmp)
        with console.status("building the dataset (filter_tokens + build_dataset, offline)"):
            splits = build_rows(params, workdir)
        with console.status("training steps"):
            result["train"] = bench_train(params, splits, args.train_steps, args.warmup, workdir)
        shape = ModelShape(**{**result["train"]["shape"], "lora_targets": ()})
        train_tokens = round(result["train"]["padded_tokens_per_step"])
        with console.status("matmul throughput"):
            result["matmul"] = bench_matmul(shape, [train_tokens, 64], args.matmul_seconds)
        if args.questions > 0:
            with console.status("eval instruments"):
                result["eval"] = bench_eval(params, splits, args.questions, args.repeats)
    reference = result["matmul"]["mix"][str(train_tokens)]
    result["reference_gflops"] = reference
    result["reference"] = f"matmul mix at {train_tokens} tokens (one layer's projections + LM head)"
    shares = {"train": result["train"]["achieved_gflops"] / reference}
    for name in ("direct", "choice", "cloze"):
        if name in result.get("eval", {}):
            shares[name] = result["eval"][name]["achieved_gflops"] / reference
    result["shares"] = shares
    result["load_average_end"] = load_average()

    table = Table(title=f"letterwise bench: {params.model} on {result['cpu']['model']}, "
                  f"{result['threads']} threads, load {result['load_average_start']}")
    for column in ("what", "figure", "GFLOP/s", "share of matmul"):
        table.add_column(column, justify="left" if column == "what" else "right")
    table.add_row("matmul mix", f"{train_tokens} tokens", f"{reference:.1f}", "1.00")
    table.add_row("matmul peak", "best shape", f"{result['matmul']['peak_gflops']:.1f}", "")
    t = result["train"]
    table.add_row("train step", f"{t['seconds_per_step']:.2f} s/step",
                  f"{t['achieved_gflops']:.1f}", f"{shares['train']:.2f}")
    for name in ("direct", "choice", "cloze"):
        if name in result.get("eval", {}):
            e = result["eval"][name]
            table.add_row(name, f"{e['questions_per_second']:.2f} q/s",
                          f"{e['achieved_gflops']:.1f}", f"{shares[name]:.2f}")
    console.print(table)
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m letterwise.bench", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", help="JSON path (default docs/results/bench/<cpu-slug>.json)")
    parser.add_argument("--params", help="params.yaml to read (default: the code dir's)")
    parser.add_argument("--model", help="override params.model (e.g. qwen3-tiny)")
    parser.add_argument("--train-steps", type=int, default=6, help="training steps timed")
    parser.add_argument("--warmup", type=int, default=2, help="training steps run untimed first")
    parser.add_argument("--questions", type=int, default=16,
                        help="held-out questions per task (position, count); 0 skips the eval")
    parser.add_argument("--repeats", type=int, default=2,
                        help="timed passes per eval instrument (the fastest counts)")
    parser.add_argument("--matmul-seconds", type=float, default=0.3,
                        help="minimum seconds timed per matmul shape")
    parser.add_argument("--code-dir",
                        help="run against this checkout's letterwise package (a before/after)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    here = Path(__file__).resolve().parents[1]
    if args.code_dir and Path(args.code_dir).resolve() != here and not os.environ.get(
        "LETTERWISE_BENCH_CHILD"
    ):
        # this file, with the other checkout's package first on the path
        code = Path(args.code_dir).resolve()
        argv_child = list(argv if argv is not None else sys.argv[1:])
        if not args.out:  # beside this checkout's own, named by the other's commit
            slug = cpu_slug(cpu_info()["model"])
            commit = (git_commit(code) or "unknown")[:7]
            argv_child += ["--out", str(default_out(here).with_name(f"{slug}-{commit}.json"))]
        launcher = (
            "import runpy, sys; sys.path.insert(0, sys.argv[1]); "
            "sys.argv = [sys.argv[2]] + sys.argv[3:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')"
        )
        env = {**os.environ, "LETTERWISE_BENCH_CHILD": "1"}
        sys.exit(subprocess.call(
            [sys.executable, "-c", launcher, str(code), __file__, *argv_child], cwd=code, env=env
        ))
    from letterwise.io import hub_offline_by_default

    hub_offline_by_default()
    result = run(args)
    out = Path(args.out) if args.out else default_out(here)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


def default_out(root: Path) -> Path:
    return root / "docs" / "results" / "bench" / f"{cpu_slug(cpu_info()['model'])}.json"


if __name__ == "__main__":
    main()
