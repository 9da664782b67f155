"""Export the held-out questions as lm-evaluation-harness tasks, scored by letterwise's parsers.

For each task (spelling, position, count) of one split, two lm-eval tasks share one JSONL file:

- `letterwise_<task>_gen` (generate_until): the question as the user message, greedy, stopped
  at the chat end of turn, with each question's own token budget
  (`letterwise.generation.max_new_tokens_for`, non-thinking); the output is parsed by the
  task's own `parse`, so `acc` means what it means in eval_spelling / eval_position.
- `letterwise_<task>_mc` (multiple_choice): the same prompt and choice scoring's candidates
  (letterwise.eval.choice_metrics: 26 letters, "0".."max(9, word length)", the spelling and 4
  near-misses), each written as letterwise.eval.choice scores it: the answer plus the end-of-turn
  marker. lm-eval's `acc` is the raw log-likelihood argmax, like ours. lm-eval moves the prompt's
  trailing newline into every candidate (TemplateLM._encode_pair), which adds the same term to
  all of a question's candidates: same choice, log-likelihoods shifted by that term.

The prompt lm-eval builds is exactly `letterwise.chat.prompt_text(tokenizer, question)`: run it
with the chat template on, non-thinking, no few-shot, no system prompt (README.md in the export
shows the command). `target_delimiter` and `fewshot_delimiter` are empty and there is no
description, so nothing is added around the question or before a candidate. A generated
`utils.py` beside the YAML files holds the hooks: a task class that gives every question its
budget (lm-eval's generation_kwargs are otherwise one per task) and refuses to run without the
chat template, and `process_results`, which calls `score_generation` below.

    python -m letterwise.eval.lm_eval_tasks --dataset data/dataset --split test --out lm_eval_tasks

It reads the JSONL files the build_dataset stage writes beside the HF dataset.
`load_lm_eval_model` and `run_lm_eval` run the exported tasks in-process (tests, benchmark).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from letterwise.eval.choice_metrics import candidate_keys, completion_text
from letterwise.generation import END_OF_TURN, TASKS, max_new_tokens_for
from letterwise.io import atomic_dir, write_jsonl, write_text
from letterwise.tasks import get_task

SPLITS = ("validation", "test")
TAG = "letterwise"
VARIANTS = ("gen", "mc")
DATA_KEYS = (
    "id", "task", "split", "word", "question", "expected", "phrasing", "answer_format",
    "position", "is_last", "letter", "count", "word_length", "freq_band",
)  # fmt: skip


def task_name(task: str, variant: str) -> str:
    """The lm-eval task name of one letterwise task in one variant ("gen" or "mc")."""
    if task not in TASKS or variant not in VARIANTS:
        raise ValueError(f"no lm-eval task for ({task!r}, {variant!r})")
    return f"{TAG}_{task}_{variant}"


def read_split(dataset_dir: Path, split: str) -> list[dict]:
    """Rows of one held-out split, in dataset order, from `<dataset>/jsonl/<split>.jsonl`."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    path = Path(dataset_dir) / "jsonl" / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing; the build_dataset stage writes it (`dvc repro build_dataset`, "
            "or `dvc pull data/dataset`)"
        )
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def select_rows(rows: Sequence[dict], limit: int | None) -> dict[str, list[dict]]:
    """The first `limit` rows of each task in dataset order (None = all): the same questions
    eval_spelling / eval_position take with `eval.max_questions: limit`."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 (or None for all questions), got {limit}")
    selected: dict[str, list[dict]] = {task: [] for task in TASKS}
    for row in rows:
        chosen = selected.get(row["task"])
        if chosen is not None and (limit is None or len(chosen) < limit):
            chosen.append(row)
    empty = [task for task, chosen in selected.items() if not chosen]
    if empty:
        raise ValueError(f"the split has no questions for task(s) {empty}")
    return selected


def budget(row: dict) -> int:
    """The question's generation budget in letterwise's (non-thinking) evaluation."""
    return max_new_tokens_for(row["task"], row["word_length"], thinking=False, thinking_budget=0)


def export_row(row: dict, seed: int = 0) -> dict:
    """One lm-eval document: the question's fields, its budget and its answer candidates.

    The candidates are choice scoring's (letterwise.eval.choice_metrics): the answer keys
    (`choice_keys`, spelling near-misses drawn with `seed`, as eval.seed draws them), each
    written as letterwise scores it (`choices`): the well-formatted answer plus the end-of-turn
    marker, so a candidate is scored as the whole answer.
    """
    keys = candidate_keys(row["task"], row, seed)
    doc = {key: row.get(key) for key in DATA_KEYS}
    doc |= {
        "max_gen_toks": budget(row),
        "choice_keys": keys,
        "choices": [completion_text(row["task"], row, key) + END_OF_TURN for key in keys],
        "gold": keys.index(row["expected"]),
    }
    return doc


def task_config(
    task: str, variant: str, split: str, data_file: Path, max_gen_toks: int
) -> dict[str, Any]:
    """The YAML config of one exported task (the `!function` hooks are added when written)."""
    config: dict[str, Any] = {
        "task": task_name(task, variant),
        "tag": [TAG, f"{TAG}_{variant}"],
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file)}},
        "test_split": "test",
        "doc_to_text": "question",  # a field name: the question verbatim, no Jinja rendering
        "description": "",
        "target_delimiter": "",
        "fewshot_delimiter": "",
        "num_fewshot": 0,
        "metadata": {"version": 1.0, "split": split},
    }
    if variant == "gen":
        config |= {
            "output_type": "generate_until",
            "doc_to_target": "expected",
            # max_gen_toks here is the largest budget; each question gets its own (utils.py).
            "generation_kwargs": {
                "until": [END_OF_TURN],
                "do_sample": False,
                "max_gen_toks": max_gen_toks,
            },
            "metric_list": [
                {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                {"metric": "unparseable", "aggregation": "mean", "higher_is_better": False},
            ],
        }
    else:
        config |= {
            "output_type": "multiple_choice",
            "doc_to_choice": "choices",
            "doc_to_target": "gold",
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        }
    return config


class _Function(str):
    """A `!function module.name` tag in the written YAML (lm-eval resolves it on load)."""


def _dump_yaml(config: dict[str, Any]) -> str:
    dumper = type("LetterwiseDumper", (yaml.SafeDumper,), {})
    dumper.add_representer(_Function, lambda d, v: d.represent_scalar("!function", str(v)))
    return yaml.dump(config, Dumper=dumper, sort_keys=False, allow_unicode=True)


def score_generation(doc: dict, output: str) -> dict[str, int]:
    """lm-eval metrics of one generated answer, by the task's own parser (acc, unparseable)."""
    parsed = get_task(doc["task"]).parse(output)
    return {"acc": int(parsed == doc["expected"]), "unparseable": int(parsed is None)}


UTILS_PY = '''"""lm-evaluation-harness hooks for the letterwise tasks (written by
letterwise.eval.lm_eval_tasks; letterwise must be importable). Scoring is letterwise's own."""

from lm_eval.api.task import ConfigurableTask

try:
    from letterwise.eval.lm_eval_tasks import score_generation
except ModuleNotFoundError as error:
    if error.name != "letterwise":
        raise
    raise ModuleNotFoundError(
        "these tasks score with letterwise's parsers: run lm-eval from the letterwise "
        "repository root as `python -m lm_eval ...` (or `pip install -e .` letterwise)"
    ) from error


class LetterwiseTask(ConfigurableTask):
    """Chat template required; a generate_until request gets its question's own budget."""

    def __init__(self, config=None, **kwargs):
        # The YAML's `class:` key names this class; it is not a TaskConfig field.
        config = {key: value for key, value in (config or {}).items() if key != "class"}
        super().__init__(config=config, **kwargs)

    def construct_requests(self, doc, ctx, **kwargs):
        if not kwargs.get("apply_chat_template"):
            raise ValueError(
                f"{self.config.task}: letterwise questions are chat turns; run lm-eval with "
                "--apply_chat_template (apply_chat_template=True) and enable_thinking=False"
            )
        request = super().construct_requests(doc, ctx, **kwargs)
        if self.OUTPUT_TYPE == "generate_until":
            context, gen_kwargs = request.arguments
            request.arguments = (context, {**gen_kwargs, "max_gen_toks": doc["max_gen_toks"]})
        return request


def process_results(doc, results):
    return score_generation(doc, results[0])
'''

# lm_eval's --model_args for letterwise's setup (what load_lm_eval_model passes).
CLI_MODEL_ARGS = (
    "pretrained=BASE_DIR,peft=ADAPTER_DIR,enable_thinking=False,add_bos_token=False,dtype=float32"
)
README_MD = """# letterwise held-out questions as lm-evaluation-harness tasks

Split `{split}`, {counts}. Written by `python -m letterwise.eval.lm_eval_tasks`.
The data paths in the YAML files are absolute: export again after moving this folder.

    HF_HUB_OFFLINE=1 python -m lm_eval --model hf --include_path {out} --tasks {tag} \\
        --model_args {model_args} \\
        --apply_chat_template --device cpu --batch_size 64 --log_samples --output_path RESULTS_DIR

Run it from the letterwise repository root (utils.py imports letterwise's parsers).
BASE_DIR: the base weights folder (for smollm2-135m, ~/.cache/letterwise/smollm2-135m, made by
`letterwise.modeling.smollm2_cache_dir()`); ADAPTER_DIR: the trained adapter (models/adapter).
Add `tokenizer=...` to the model args when the weights folder has no tokenizer.

The chat template must be on and thinking off: the prompt is then exactly letterwise's
`prompt_text(tokenizer, question, thinking=False)`. `{tag}_gen` tasks generate greedily with
letterwise's per-question budgets and score with letterwise's parsers; `{tag}_mc` tasks score
letterwise's answer candidates by log-likelihood (lm-eval's `acc` = raw log-likelihood argmax).
"""


def export_tasks(
    dataset_dir: Path, split: str, out_dir: Path, limit: int | None = None, seed: int = 0
) -> dict[str, int]:
    """Write the YAML files, JSONL data, utils.py and README.md into `out_dir` (replaced whole).

    Returns the number of questions exported per task.
    """
    selected = select_rows(read_split(dataset_dir, split), limit)
    out_dir = Path(out_dir).resolve()
    with atomic_dir(out_dir) as tmp:
        for task, rows in selected.items():
            docs = [export_row(row, seed) for row in rows]
            data_file = f"{task}.jsonl"
            write_jsonl(Path(tmp) / data_file, docs)
            largest = max(doc["max_gen_toks"] for doc in docs)
            for variant in VARIANTS:
                config = task_config(task, variant, split, out_dir / data_file, largest)
                config = {"class": _Function("utils.LetterwiseTask"), **config}
                if variant == "gen":
                    config["process_results"] = _Function("utils.process_results")
                write_text(Path(tmp) / f"{task_name(task, variant)}.yaml", _dump_yaml(config))
        write_text(Path(tmp) / "utils.py", UTILS_PY)
        counts = {task: len(rows) for task, rows in selected.items()}
        summary = ", ".join(f"{n} {task} questions" for task, n in counts.items())
        write_text(
            Path(tmp) / "README.md",
            README_MD.format(
                split=split, counts=summary, out=out_dir, tag=TAG, model_args=CLI_MODEL_ARGS
            ),
        )
    return counts


def load_lm_eval_model(
    pretrained: str | Path,
    *,
    peft: str | Path | None = None,
    tokenizer: str | Path | None = None,
    batch_size: int = 8,
    device: str = "cpu",
    dtype: str = "float32",
) -> Any:
    """lm-eval's own Hugging Face model (HFLM), set up the way letterwise evaluates.

    `peft` is a LoRA adapter directory that lm-eval applies itself; `tokenizer` is needed when
    the weights directory has none (qwen3-tiny). Thinking off, and no BOS token added: the
    chat-rendered prompt already holds every special token (as letterwise tokenizes it).
    """
    from lm_eval.models.huggingface import HFLM

    return HFLM(
        pretrained=str(pretrained),
        peft=str(peft) if peft is not None else None,
        tokenizer=str(tokenizer) if tokenizer is not None else None,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        enable_thinking=False,
        add_bos_token=False,
    )


def run_lm_eval(
    lm: Any, task_dir: Path, tasks: Sequence[str]
) -> tuple[dict[str, dict], dict[str, dict[str, dict]]]:
    """Run exported tasks in-process with the chat template on and no few-shot examples.

    Returns lm-eval's metrics per task and its logged samples per task, keyed by question id
    (each sample holds the prompt it sent, `arguments`, and the model's answers, `resps`).
    """
    import lm_eval
    from lm_eval.tasks import TaskManager

    output = lm_eval.simple_evaluate(
        model=lm,
        tasks=list(tasks),
        task_manager=TaskManager(include_path=str(task_dir), include_defaults=False),
        apply_chat_template=True,
        num_fewshot=0,
        log_samples=True,
        bootstrap_iters=0,
    )
    samples = {
        name: {sample["doc"]["id"]: sample for sample in task_samples}
        for name, task_samples in output["samples"].items()
    }
    return output["results"], samples


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset",
        type=Path,
        default=Path("data/dataset"),
        help="the build_dataset output folder (reads <dataset>/jsonl/<split>.jsonl; "
        "default: %(default)s)",
    )
    parser.add_argument(
        "--split", choices=SPLITS, default="test", help="held-out split (default: %(default)s)"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="folder to write the tasks into (replaced whole)"
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="the first N questions of each task, as eval.max_questions takes them (default: all)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the spelling near-miss candidates; match eval.seed (default: %(default)s)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    counts = export_tasks(args.dataset, args.split, args.out, args.limit, args.seed)
    names = ", ".join(task_name(task, variant) for task in counts for variant in VARIANTS)
    print(f"wrote {sum(counts.values())} questions ({counts}) as {names} to {args.out}")


if __name__ == "__main__":
    main()
