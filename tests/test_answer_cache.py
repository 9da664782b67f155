"""The answer cache (letterwise.eval.answer_cache): base answers reused across experiments,
killed evaluations resumed batch by batch, and never a stale answer."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from letterwise.eval.answer_cache import AnswerStore, base_identity, folder_digest, tuned_identity
from letterwise.presets import resolve_preset
from tests.conftest import REPO_ROOT, write_params
from tests.test_evaluate import random_adapter, save_small_dataset

WORDS = ["strawberry", "banana", "kitchen", "mountain", "garden", "pencil", "window", "rocket"]


# ---------------------------------------------------------------- the store itself


def test_a_stored_value_is_found_only_under_the_same_context_and_payload(tmp_path):
    store = AnswerStore(tmp_path, {"model": "a", "code": "1"})
    assert store.get({"prompts": ["x"]}) is None
    store.put({"prompts": ["x"]}, [["answer"]])
    assert store.get({"prompts": ["x"]}) == [["answer"]]
    assert (store.hits, store.misses) == (1, 1)
    # any change to the model, the code or the payload is another key
    assert AnswerStore(tmp_path, {"model": "b", "code": "1"}).get({"prompts": ["x"]}) is None
    assert AnswerStore(tmp_path, {"model": "a", "code": "2"}).get({"prompts": ["x"]}) is None
    assert store.get({"prompts": ["x "]}) is None
    # a truncated entry (not possible through put, which is atomic) reads as a miss
    [entry] = [p for p in tmp_path.rglob("*.json")]
    entry.write_text('{"value": [["ans')
    assert store.get({"prompts": ["x"]}) is None


def test_the_fine_tuned_identity_follows_every_adapter_byte(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"\x00" * 64)
    (adapter / "adapter_config.json").write_text("{}")
    base = {"preset": "qwen3-tiny"}
    before = tuned_identity(base, adapter)
    assert tuned_identity(base, adapter) == before
    (adapter / "adapter_model.safetensors").write_bytes(b"\x00" * 63 + b"\x01")
    assert tuned_identity(base, adapter) != before
    assert set(folder_digest(adapter)) == {"adapter_model.safetensors", "adapter_config.json"}


def test_the_base_identity_names_the_weights_and_how_they_load():
    preset = resolve_preset("smollm2-135m")
    identity = base_identity(preset, {"seed": 0, "load_in_4bit": True})
    # the bundled GGUF's content hash: 64 hex digits
    assert re.fullmatch(r"[0-9a-f]{64}", identity["weights"]["gguf_sha256"])
    assert base_identity(preset, {"seed": 0, "load_in_4bit": False}) != identity


# ---------------------------------------------------------------- generation and choice


@pytest.mark.slow
def test_generation_and_choice_batches_are_read_back_instead_of_recomputed(tmp_path):
    from letterwise.eval.choice import run_choice
    from letterwise.generation import Sampling, generate
    from letterwise.modeling import load_base_model

    model, tokenizer = load_base_model(resolve_preset("qwen3-tiny"), backend="transformers")
    prompts = [f"Spell {w}" for w in WORDS[:5]]
    greedy = Sampling("greedy", None, None, None, None, n_samples=1, seed=0)
    store = AnswerStore(tmp_path, {"model": "qwen3-tiny"})
    first = generate(model, tokenizer, prompts, max_new_tokens=6, sampling=greedy,
                     batch_size=2, store=store)  # fmt: skip
    assert (store.hits, store.misses) == (0, 3)  # 5 prompts in batches of 2
    assert len(list(tmp_path.rglob("*.json"))) == 3

    class Refuses:
        """Any use of the model fails: every batch must come from the store."""

        def __getattr__(self, name):
            if name in ("training", "device", "generation_config", "config"):
                return getattr(model, name)
            raise AssertionError(f"the model was used ({name}) although every batch was cached")

        def eval(self):
            return self

        def train(self, mode=True):
            return self

    again = generate(Refuses(), tokenizer, prompts, max_new_tokens=6, sampling=greedy,
                     batch_size=2, store=store)  # fmt: skip
    assert again == first and store.hits == 3
    # another budget is another question: computed, not served from the cache
    generate(model, tokenizer, prompts, max_new_tokens=5, sampling=greedy, batch_size=2,
             store=store)  # fmt: skip
    assert store.misses == 6

    from tests.test_choice import mixed_rows

    rows = mixed_rows()
    scored = run_choice(model, tokenizer, rows, batch_size=2, store=store)
    hits = store.hits
    assert run_choice(Refuses(), tokenizer, rows, batch_size=2, store=store) == scored
    assert store.hits > hits


# ---------------------------------------------------------------- the eval stage


def make_run(directory: Path, *, seed_adapter: int = 0, questions: int = 2) -> None:
    """A qwen3-tiny eval workspace: a small test split and a random LoRA adapter."""
    save_small_dataset(directory, WORDS)
    random_adapter(directory, seed=seed_adapter)
    write_params(
        directory,
        {
            "model": "qwen3-tiny",
            "train": {"backend": "transformers"},
            # generation and choice batches only (the cloze slots add batches of their own)
            "eval": {"max_questions": questions, "batch_size": 1, "choice_scoring": True,
                     "cloze": []},  # fmt: skip
        },
    )


def eval_env(cache: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HF_HUB_OFFLINE="1")
    env["LETTERWISE_CACHE"] = str(cache)  # the answers go to cache/answers
    env.pop("LETTERWISE_ANSWER_CACHE")  # on (the test suite turns it off elsewhere)
    return env


def run_eval(directory: Path, cache: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "stages.eval_position"],
        cwd=directory, env=eval_env(cache), capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def counts(stdout: str) -> dict[str, tuple[int, int] | str]:
    """Per model: (batches computed, batches read) or "all" when every answer was cached."""
    found: dict[str, tuple[int, int] | str] = {}
    for name in ("base", "fine-tuned"):
        if f"{name}: every answer read from the answer cache" in stdout:
            found[name] = "all"
        elif match := re.search(rf"{name}: (\d+) batch\(es\) computed, (\d+) read", stdout):
            found[name] = (int(match[1]), int(match[2]))
    return found


def results(directory: Path) -> tuple[list[dict], dict]:
    predictions = [
        json.loads(line)
        for line in (directory / "data/predictions/eval_position.jsonl").read_text().splitlines()
    ]
    details = json.loads((directory / "metrics/details/eval_position.json").read_text())
    details.pop("seconds")  # wall times: a measurement of the machine
    return predictions, details


def uses_the_cache_linked_from_a_shared_weights_cache(cache: Path) -> None:
    """The test's cache folder shares the tiny model's generated weights (no regeneration)."""
    from letterwise.modeling import cache_root

    cache.mkdir(parents=True, exist_ok=True)
    for entry in cache_root().iterdir():
        if entry.name != "answers" and not (cache / entry.name).exists():
            (cache / entry.name).symlink_to(entry)


@pytest.mark.slow
def test_base_answers_are_reused_and_a_new_adapter_is_evaluated_afresh(tmp_path):
    cache = tmp_path / "cache"
    uses_the_cache_linked_from_a_shared_weights_cache(cache)
    run = tmp_path / "run"
    make_run(run)
    first = run_eval(run, cache)
    # 2 position + 2 count questions, batch size 1: 4 direct batches and 4 choice batches
    assert counts(first) == {"base": (8, 0), "fine-tuned": (8, 0)}
    reference = results(run)

    # the same experiment again: nothing is computed, not even a model load
    again = run_eval(run, cache)
    assert counts(again) == {"base": "all", "fine-tuned": "all"}
    assert results(run) == reference

    # a retrained adapter (other LoRA weights): the base is reused, the tuned model is not
    other = tmp_path / "other"
    make_run(other, seed_adapter=1)
    retrained = run_eval(other, cache)
    assert counts(retrained) == {"base": "all", "fine-tuned": (8, 0)}
    predictions, _ = results(other)
    base_before = [row["base"] for row in reference[0]]
    assert [row["base"] for row in predictions] == base_before
    assert [row["tuned"] for row in predictions] != [row["tuned"] for row in reference[0]]

    # settings are compared as resolved: an explicit 0.7 is Qwen3's recommended non-thinking
    # temperature, the one `temperature: null` stands for; a thinking budget does nothing
    # outside thinking mode. Sampled decoding is a new setting for generation (4 batches
    # computed afresh); choice scoring does not sample, so its 4 batches are read back.
    def eval_params(**changes) -> None:
        eval_section = {"max_questions": 2, "batch_size": 1, "choice_scoring": True,
                        "cloze": []} | changes  # fmt: skip
        write_params(run, {"model": "qwen3-tiny", "train": {"backend": "transformers"},
                           "eval": eval_section})  # fmt: skip

    eval_params(decoding="sampled")
    assert counts(run_eval(run, cache)) == {"base": (4, 4), "fine-tuned": (4, 4)}
    eval_params(decoding="sampled", temperature=0.7, thinking_budget=256)
    assert counts(run_eval(run, cache)) == {"base": "all", "fine-tuned": "all"}
    eval_params(decoding="sampled", temperature=0.6)
    assert counts(run_eval(run, cache)) == {"base": (4, 4), "fine-tuned": (4, 4)}


@pytest.mark.slow
def test_a_killed_eval_resumes_from_its_completed_batches(tmp_path):
    """SIGKILL mid-evaluation; the rerun computes only the batches the first run had not
    finished, and ends with exactly the answers of an uninterrupted run."""
    cache = tmp_path / "cache"
    uses_the_cache_linked_from_a_shared_weights_cache(cache)
    run = tmp_path / "run"
    make_run(run, questions=8)
    answers = cache / "answers"
    process = subprocess.Popen(
        [sys.executable, "-m", "stages.eval_position"],
        cwd=run, env=eval_env(cache), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(answers.rglob("*.json"))) < 3:
        assert process.poll() is None, "the eval finished before it could be killed"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before_kill = len(list(answers.rglob("*.json")))
    assert done_before_kill >= 3
    assert not (run / "metrics" / "eval_position.json").exists()  # the stage did not finish

    resumed = counts(run_eval(run, cache))
    # 8 position + 8 count questions at batch size 1: 16 direct + 16 choice batches per model
    computed, read = resumed["base"]
    assert read == done_before_kill and computed + read == 32  # no question answered twice
    assert resumed["fine-tuned"] == (32, 0)

    # the same evaluation uninterrupted, with a cache of its own
    fresh_cache = tmp_path / "fresh-cache"
    uses_the_cache_linked_from_a_shared_weights_cache(fresh_cache)
    fresh = tmp_path / "fresh"
    make_run(fresh, questions=8)
    run_eval(fresh, fresh_cache)
    assert results(run) == results(fresh)
