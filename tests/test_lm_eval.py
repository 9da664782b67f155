"""An independent harness agrees: the held-out questions exported as lm-evaluation-harness tasks
(letterwise.eval.lm_eval_tasks) give the same per-question results in lm-eval as in letterwise.

The end-to-end test runs lm-eval's own Hugging Face backend in-process on SmolLM2-135M with a
LoRA adapter applied by lm-eval itself (its `peft=` argument) and compares, question by
question: the prompt sent, the greedy text generated, the score of that text, the candidate
chosen by log-likelihood and the log-likelihoods themselves.
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

import pytest

from letterwise.data.dataset import example_row
from letterwise.eval import lm_eval_tasks
from letterwise.io import write_jsonl
from letterwise.tasks import get_task

TASKS = ("spelling", "position", "count")
# Two word lengths (6 and 8 letters), so budgets differ between questions, yet lm-eval (which
# batches only questions with equal generation settings) still fills batches.
WORDS = ("banana", "pocket", "garden", "umbrella", "elephant", "triangle")
LETTERS = string.ascii_lowercase
END = "<|im_end|>"
BATCH_SIZE = 8


def write_dataset(root: Path, words: tuple[str, ...] = WORDS, seed: int = 0) -> list[dict]:
    """A held-out split laid out as build_dataset writes it: <root>/jsonl/test.jsonl."""
    rng = random.Random(seed)
    rows = []
    for task in TASKS:
        for i, word in enumerate(words):
            question = get_task(task).eval_questions(word, rng, 1)[0]
            rows.append(example_row("test", task, i, word, question, "mid"))
    write_jsonl(root / "jsonl" / "test.jsonl", rows)
    return rows


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def load_tasks(task_dir: Path) -> dict:
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(task_dir), include_defaults=False)
    return manager.load(["letterwise"])["tasks"]


# ----------------------------------------------------------------------------- export


def test_selection_takes_each_tasks_first_questions_in_dataset_order():
    from letterwise.eval.runner import select_questions

    rows = [
        {"id": "s0", "task": "spelling"},
        {"id": "p0", "task": "position"},
        {"id": "s1", "task": "spelling"},
        {"id": "c0", "task": "count"},
        {"id": "p1", "task": "position"},
        {"id": "s2", "task": "spelling"},
    ]
    selected = lm_eval_tasks.select_rows(rows, 2)
    assert {task: [r["id"] for r in chosen] for task, chosen in selected.items()} == {
        "spelling": ["s0", "s1"],
        "position": ["p0", "p1"],
        "count": ["c0"],
    }
    assert selected == select_questions(rows, TASKS, 2)  # what eval.max_questions takes
    assert [r["id"] for r in lm_eval_tasks.select_rows(rows, None)["spelling"]] == [
        "s0",
        "s1",
        "s2",
    ]
    with pytest.raises(ValueError, match="limit must be >= 1"):
        lm_eval_tasks.select_rows(rows, 0)
    with pytest.raises(ValueError, match="no questions for task"):
        lm_eval_tasks.select_rows(rows[:3], None)


def test_exported_documents_carry_our_budgets_and_candidates(tmp_path):
    rows = write_dataset(tmp_path / "dataset")
    counts = lm_eval_tasks.export_tasks(tmp_path / "dataset", "test", tmp_path / "tasks", limit=4)
    assert counts == {"spelling": 4, "position": 4, "count": 4}
    docs = {task: read_jsonl(tmp_path / "tasks" / f"{task}.jsonl") for task in TASKS}
    for task in TASKS:
        expected_ids = [row["id"] for row in rows if row["task"] == task][:4]
        assert [doc["id"] for doc in docs[task]] == expected_ids
    banana = {task: docs[task][0] for task in TASKS}  # WORDS[0]: 6 letters
    umbrella = {task: docs[task][3] for task in TASKS}  # WORDS[3]: 8 letters
    # Budgets: the answer plus 16 tokens of slack; spelling needs ~2 tokens a letter.
    assert [banana[t]["max_gen_toks"] for t in TASKS] == [12 + 16, 6 + 16, 6 + 16]
    assert [umbrella[t]["max_gen_toks"] for t in TASKS] == [16 + 16, 8 + 16, 8 + 16]
    position = banana["position"]
    assert position["choices"] == [letter + END for letter in LETTERS]
    assert position["choice_keys"][position["gold"]] == position["expected"]
    assert position["choices"][position["gold"]] == position["expected"] + END
    count = banana["count"]
    assert count["choices"] == [str(n) + END for n in range(10)]  # 0..max(9, 6)
    assert count["gold"] == int(count["expected"])
    spelling = banana["spelling"]
    assert spelling["choices"][0] == "b a n a n a" + END and spelling["gold"] == 0
    assert len(set(spelling["choices"])) == 5  # the word and 4 distinct near-misses
    assert all(c.endswith(END) and len(c) >= len("b a n a n" + END) for c in spelling["choices"])


def test_count_candidates_reach_the_word_length():
    rng = random.Random(1)
    question = get_task("count").eval_questions("strawberries", rng, 1)[0]
    doc = lm_eval_tasks.export_row(example_row("test", "count", 0, "strawberries", question, None))
    assert doc["choice_keys"] == [str(n) for n in range(13)]  # 12 letters: 0..12


def test_lm_eval_loads_the_tasks_as_configured(tmp_path):
    write_dataset(tmp_path / "dataset")
    lm_eval_tasks.export_tasks(tmp_path / "dataset", "test", tmp_path / "tasks")
    tasks = load_tasks(tmp_path / "tasks")
    assert sorted(tasks) == sorted(f"letterwise_{t}_{v}" for t in TASKS for v in ("gen", "mc"))
    for name, task in tasks.items():
        config = task.config
        assert len(task.eval_docs) == len(WORDS)
        assert (config.target_delimiter, config.fewshot_delimiter) == ("", "")
        assert not config.description and config.num_fewshot == 0
        if name.endswith("_gen"):
            assert config.output_type == "generate_until"
            assert config.generation_kwargs["until"] == [END]
            assert config.generation_kwargs["do_sample"] is False
        else:
            assert config.output_type == "multiple_choice"


def test_generated_answers_are_scored_by_our_parsers():
    score = lm_eval_tasks.score_generation
    position = {"task": "position", "expected": "r"}
    assert score(position, "The 3rd letter of 'strawberry' is 'r'.") == {
        "acc": 1,
        "unparseable": 0,
    }
    assert score(position, "S") == {"acc": 0, "unparseable": 0}
    assert score(position, "I cannot tell.") == {"acc": 0, "unparseable": 1}
    assert score({"task": "count", "expected": "3"}, "There are three r's.")["acc"] == 1
    spelling = {"task": "spelling", "expected": "banana"}
    assert score(spelling, "b-a-n-a-n-a") == {"acc": 1, "unparseable": 0}
    assert score(spelling, "banana") == {"acc": 0, "unparseable": 1}  # not spelled out


def test_prompts_lm_eval_builds_are_ours_qwen3(tmp_path):
    """lm-eval's own HF model class renders the chat template (qwen3-tiny: seconds): with
    enable_thinking=False the prompt is letterwise's non-thinking prompt, tokenized alike."""
    from letterwise.chat import prompt_text
    from letterwise.modeling import load_tokenizer, qwen3_tiny_cache_dir
    from letterwise.presets import qwen3_tokenizer_dir, resolve_preset

    rows = write_dataset(tmp_path / "dataset", WORDS[:2])
    lm_eval_tasks.export_tasks(tmp_path / "dataset", "test", tmp_path / "tasks")
    lm = lm_eval_tasks.load_lm_eval_model(qwen3_tiny_cache_dir(), tokenizer=qwen3_tokenizer_dir())
    tokenizer = load_tokenizer(resolve_preset("qwen3-tiny"))
    tasks = load_tasks(tmp_path / "tasks")
    questions = {row["id"]: row["question"] for row in rows}
    for name, task in tasks.items():
        task.build_all_requests(apply_chat_template=True, chat_template=lm.apply_chat_template)
        assert task.instances
        for instance in task.instances:
            doc = instance.doc
            prompt = prompt_text(tokenizer, questions[doc["id"]], thinking=False)
            context = instance.arguments[0]
            assert context == prompt
            # Written out independently of prompt_text: one user turn, empty thinking block.
            assert context == (
                f"<|im_start|>user\n{questions[doc['id']]}<|im_end|>\n"
                "<|im_start|>assistant\n<think>\n\n</think>\n\n"
            )
            ids, _ = lm.tok_batch_encode([context])
            assert ids[0].tolist() == tokenizer(prompt, add_special_tokens=False)["input_ids"]
            if name.endswith("_gen"):
                assert instance.arguments[1]["max_gen_toks"] == doc["max_gen_toks"]
            else:  # candidates follow the prompt with nothing in between
                assert instance.arguments[1] == doc["choices"][instance.idx]


def test_running_without_the_chat_template_is_refused(tmp_path):
    write_dataset(tmp_path / "dataset", WORDS[:1])
    lm_eval_tasks.export_tasks(tmp_path / "dataset", "test", tmp_path / "tasks")
    task = load_tasks(tmp_path / "tasks")["letterwise_position_gen"]
    with pytest.raises(ValueError, match="--apply_chat_template"):
        task.build_all_requests(apply_chat_template=False)


def test_command_line_exports_and_names_missing_inputs(tmp_path, capsys):
    write_dataset(tmp_path / "dataset", WORDS[:3])
    out = tmp_path / "tasks"
    lm_eval_tasks.main(["--dataset", str(tmp_path / "dataset"), "--out", str(out), "--limit", "2"])
    assert "6 questions" in capsys.readouterr().out
    written = sorted(path.name for path in out.iterdir())
    assert written == sorted(
        ["README.md", "utils.py"]
        + [f"{task}.jsonl" for task in TASKS]
        + [f"letterwise_{task}_{v}.yaml" for task in TASKS for v in ("gen", "mc")]
    )
    assert all(len(read_jsonl(out / f"{task}.jsonl")) == 2 for task in TASKS)
    with pytest.raises(FileNotFoundError, match="validation.jsonl is missing"):
        lm_eval_tasks.main(
            ["--dataset", str(tmp_path / "dataset"), "--split", "validation", "--out", str(out)]
        )
    parser = lm_eval_tasks.build_parser()
    assert all(action.help for action in parser._actions)


# ----------------------------------------------------------------------------- agreement


@pytest.fixture(scope="module")
def smollm2_adapter(tmp_path_factory) -> Path:
    """A LoRA adapter on SmolLM2-135M made with peft directly (random, non-zero LoRA weights, so
    it changes the model's scores), with the provenance file stages.train writes beside it."""
    import torch
    from peft import LoraConfig, get_peft_model

    from letterwise import modeling
    from letterwise.presets import resolve_preset

    model, _ = modeling.load_base_model(resolve_preset("smollm2-135m"), backend="transformers")
    torch.manual_seed(0)
    lora = LoraConfig(
        r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    adapter_dir = tmp_path_factory.mktemp("smollm2-adapter")
    get_peft_model(model, lora).save_pretrained(str(adapter_dir))
    (adapter_dir / modeling.PROVENANCE_FILE).write_text(json.dumps({"model": "smollm2-135m"}))
    return adapter_dir


@pytest.mark.slow
def test_lm_eval_agrees_with_letterwise_question_by_question(tmp_path, smollm2_adapter):
    """SmolLM2-135M + adapter, 6 questions per task: greedy generation and choice scoring.

    Slow: RUNTIME on the 2-core CPU machine; lm-eval's own passes are most of it (it
    computes a full-vocabulary log-softmax over every position of every candidate row).
    """
    import torch

    from letterwise.chat import prompt_text
    from letterwise.eval.choice import run_choice, score_candidates
    from letterwise.generation import Sampling, generate
    from letterwise.modeling import load_tuned_model, smollm2_cache_dir

    rows = write_dataset(tmp_path / "dataset")
    lm_eval_tasks.export_tasks(tmp_path / "dataset", "test", tmp_path / "tasks")
    lm = lm_eval_tasks.load_lm_eval_model(
        smollm2_cache_dir(), peft=smollm2_adapter, batch_size=BATCH_SIZE
    )
    _, samples = lm_eval_tasks.run_lm_eval(lm, tmp_path / "tasks", ["letterwise"])
    del lm

    model, tokenizer = load_tuned_model(smollm2_adapter, backend="transformers")
    prompts = [prompt_text(tokenizer, row["question"], thinking=False) for row in rows]
    budgets = [(2 if r["task"] == "spelling" else 1) * len(r["word"]) + 16 for r in rows]
    greedy = Sampling("greedy", None, None, None, None, n_samples=1, seed=0)
    texts = generate(
        model, tokenizer, prompts, max_new_tokens=budgets, sampling=greedy, batch_size=BATCH_SIZE
    )
    for row, prompt, budget, (text,) in zip(rows, prompts, budgets, texts, strict=True):
        sample = samples[f"letterwise_{row['task']}_gen"][row["id"]]
        ((context, gen_kwargs),) = sample["arguments"]
        assert context == prompt
        assert gen_kwargs["max_gen_toks"] == budget
        assert sample["resps"][0][0] == text, row["id"]
        parsed = get_task(row["task"]).parse(text)
        assert sample["acc"] == int(parsed == row["expected"])
        assert sample["unparseable"] == int(parsed is None)

    records = run_choice(model, tokenizer, rows, batch_size=BATCH_SIZE, seed=0)
    lm_eval_lls = []
    for row, prompt, record in zip(rows, prompts, records, strict=True):
        sample = samples[f"letterwise_{row['task']}_mc"][row["id"]]
        keys = sample["doc"]["choice_keys"]
        assert keys == record["candidates"]
        candidates = [(" ".join(key) if row["task"] == "spelling" else key) + END for key in keys]
        assert [tuple(arguments) for arguments in sample["arguments"]] == [
            (prompt, candidate) for candidate in candidates
        ]
        lls = [float(resp[0][0]) for resp in sample["resps"]]  # per candidate: [(ll, greedy)]
        lm_eval_lls.append(lls)
        assert keys[max(range(len(lls)), key=lls.__getitem__)] == record["choice"], row["id"]
        assert sample["acc"] == int(record["correct"])
        # lm-eval scores the prompt's trailing newline with each candidate: one constant term.
        shift = [ours - theirs for ours, theirs in zip(lls, record["logprobs"], strict=True)]
        assert max(shift) - min(shift) < 1e-4, row["id"]

    # The values themselves: our scorer on lm-eval's own split of prompt and candidate.
    heads = [prompt.rstrip() for prompt in prompts]
    moved = [
        [prompt[len(head) :] + candidate for candidate in sample_choices]
        for prompt, head, sample_choices in zip(
            prompts,
            heads,
            [samples[f"letterwise_{r['task']}_mc"][r["id"]]["doc"]["choices"] for r in rows],
            strict=True,
        )
    ]
    scores = score_candidates(model, tokenizer, heads, moved, batch_size=BATCH_SIZE)
    for row, question_scores, lls in zip(rows, scores, lm_eval_lls, strict=True):
        ours = [score.logprob for score in question_scores]
        # float32 sums over up to 11 tokens, computed in differently shaped batches.
        assert max(abs(a - b) for a, b in zip(ours, lls, strict=True)) < 2e-4, row["id"]

    # lm-eval applied the adapter: without it our scores are clearly different.
    with torch.inference_mode(), model.disable_adapter():
        base = score_candidates(model, tokenizer, heads[:3], moved[:3], batch_size=BATCH_SIZE)
    for question_scores, lls in zip(base, lm_eval_lls[:3], strict=True):
        assert max(abs(s.logprob - ll) for s, ll in zip(question_scores, lls, strict=True)) > 1e-2
