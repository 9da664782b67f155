"""How the answer cache builds its keys, without a model (fast): everything that can change an
answer must change the key, so a retrained adapter, another decoding setting, another mode or
edited answer code never reuses stale answers. The slow end-to-end checks are in
tests/test_answer_cache.py.

Three levels are checked: the model-and-code context of each store (answer_cache.eval_stores),
the whole-evaluation request (runner.answer_settings) and one generation batch's payload
(generation.generate, through a store that already holds every batch).
"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import pytest
import torch

from letterwise.eval import answer_cache
from letterwise.eval.answer_cache import SWITCH_ENV, code_fingerprint, eval_stores
from letterwise.eval.runner import answer_settings
from letterwise.generation import Sampling, generate
from letterwise.modeling import load_tokenizer
from letterwise.params import load_params
from letterwise.presets import resolve_preset
from tests.conftest import write_params

# ---------------------------------------------------------------- model and code: eval_stores


@pytest.fixture
def stores_setup(tmp_path, monkeypatch):
    """A local base-model folder (a custom preset: no weights to convert), an adapter folder and
    the answer cache switched on in tmp_path. Returns a function giving (base key, tuned key)."""
    monkeypatch.setenv(SWITCH_ENV, "on")
    monkeypatch.setenv("LETTERWISE_CACHE", str(tmp_path / "cache"))
    base_dir = tmp_path / "base-model"
    base_dir.mkdir()
    (base_dir / "model.safetensors").write_bytes(b"\x01" * 32)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"\x00" * 64)
    (adapter / "adapter_config.json").write_text('{"r": 8}')
    preset = resolve_preset(str(base_dir))

    def keys(load_options: dict | None = None) -> tuple[str, str]:
        stores = eval_stores(preset, load_options or {}, adapter, "transformers")
        assert stores["base"].root == tmp_path / "cache" / "answers"
        return stores["base"].context_key, stores["tuned"].context_key

    keys.base_dir, keys.adapter = base_dir, adapter  # type: ignore[attr-defined]
    return keys


def test_the_tuned_store_is_keyed_by_the_adapter_bytes(stores_setup):
    base, tuned = stores_setup()
    assert base != tuned
    assert stores_setup() == (base, tuned)  # the same files: the same keys
    (stores_setup.adapter / "adapter_model.safetensors").write_bytes(b"\x00" * 63 + b"\x02")
    base_after, tuned_after = stores_setup()
    assert base_after == base  # the base model's answers stay reusable
    assert tuned_after != tuned  # a retrained adapter is evaluated afresh
    (stores_setup.adapter / "adapter_config.json").write_text('{"r": 16}')
    assert stores_setup()[1] not in (tuned, tuned_after)


def test_the_base_weights_and_their_load_options_key_both_stores(stores_setup):
    base, tuned = stores_setup()
    assert stores_setup({"load_in_4bit": True}) != (base, tuned)
    (stores_setup.base_dir / "model.safetensors").write_bytes(b"\x01" * 33)  # another size
    base_after, tuned_after = stores_setup()
    assert base_after != base and tuned_after != tuned


def test_the_answer_code_keys_both_stores(stores_setup, monkeypatch):
    base, tuned = stores_setup()
    edited = dict(code_fingerprint())
    edited["eval/instruments.py"] = "0" * 64
    monkeypatch.setattr(answer_cache, "code_fingerprint", lambda: edited)
    base_after, tuned_after = stores_setup()
    assert base_after != base and tuned_after != tuned


def test_the_code_fingerprint_covers_the_files_that_shape_answers(tmp_path):
    package = Path(answer_cache.__file__).resolve().parents[1]
    # prompts and chat rendering, budgets and decoding, the instruments, the answer parsers
    shaping = {
        "chat.py",
        "generation.py",
        "eval/choice.py",
        "eval/instruments.py",
        "eval/runner.py",
        "tasks/count.py",
        "tasks/position.py",
        "tasks/spell_first.py",
        "tasks/spelling.py",
    }
    copy = tmp_path / "letterwise"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = code_fingerprint(copy)
    assert shaping <= set(before)
    for name in sorted(shaping):
        path = copy / name
        path.write_text(path.read_text() + "\n# an edit\n")
        after = code_fingerprint(copy)
        assert after[name] != before[name], name
        before = after


# ---------------------------------------------------------------- the request: answer_settings


def settings(tmp_path: Path, **eval_params) -> dict:
    path = write_params(tmp_path, {"model": "qwen3-tiny", "eval": eval_params})
    return answer_settings(load_params(path))


def test_every_setting_that_shapes_answers_changes_the_request(tmp_path):
    default = settings(tmp_path, decoding="greedy")
    variants = {
        "sampled": settings(tmp_path, decoding="sampled"),
        "temperature": settings(tmp_path, decoding="sampled", temperature=1.0),
        "top_p": settings(tmp_path, decoding="sampled", top_p=0.5),
        "seed": settings(tmp_path, decoding="sampled", seed=3),
        "mode": settings(tmp_path, decoding="greedy", mode="thinking"),
        "batch_size": settings(tmp_path, decoding="greedy", batch_size=7),
        "choice_scoring": settings(tmp_path, decoding="greedy", choice_scoring=True),
        "prompting": settings(tmp_path, decoding="greedy", prompting=["direct", "spell_first"]),
    }
    seen = {json.dumps(default, sort_keys=True)}
    for name, variant in variants.items():
        text = json.dumps(variant, sort_keys=True)
        assert text not in seen, f"eval.{name} does not change the answer cache's request"
        seen.add(text)
    assert default["mode"] == "non-thinking" and variants["mode"]["mode"] == "thinking"
    # null means Qwen3's recommended non-thinking temperature, 0.7: the same setting, same key
    assert settings(tmp_path, decoding="sampled", temperature=0.7) == variants["sampled"]


# ---------------------------------------------------------------- one batch: generate's payload


class HoldsEveryBatch:
    """An answer store that already holds every batch (one canned answer per prompt and sample)
    and records the payloads it was asked for, so generate never needs the model."""

    def __init__(self, n_samples: int):
        self.n_samples = n_samples
        self.asked: list[dict] = []

    def get(self, payload: dict) -> list[list[str]]:
        self.asked.append(payload)
        return [[f"answer to {p}"] * self.n_samples for p in payload["prompts"]]

    def put(self, payload: dict, value: list) -> None:
        raise AssertionError("every batch was held: nothing should be computed or stored")


class NoModel:
    """What generate reads of a model before it looks in the store; anything else fails."""

    training = False
    device = torch.device("cpu")
    generation_config = None

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self

    def __call__(self, *args, **kwargs):
        raise AssertionError("the model ran although every batch was in the store")


@functools.cache
def qwen3_tokenizer():
    return load_tokenizer(resolve_preset("qwen3-tiny"))


def batch_payloads(sampling: Sampling, prompts: list[str], budget: int = 6) -> list[str]:
    tokenizer = qwen3_tokenizer()
    store = HoldsEveryBatch(sampling.n_samples)
    answers = generate(NoModel(), tokenizer, prompts, max_new_tokens=budget, sampling=sampling,
                       batch_size=2, store=store)  # fmt: skip
    assert answers == [[f"answer to {p}"] * sampling.n_samples for p in prompts]
    return [json.dumps(payload, sort_keys=True) for payload in store.asked]


def test_a_batch_key_names_its_sampling_prompts_and_budget():
    prompts = ["Spell cat", "Spell dog", "Spell owl"]
    greedy = Sampling("greedy", None, None, None, None, n_samples=1, seed=0)
    sampled = Sampling("sampled", 0.7, 0.8, 20, 0.0, n_samples=1, seed=0)
    keys = {
        "greedy": batch_payloads(greedy, prompts),
        "sampled": batch_payloads(sampled, prompts),
        "temperature": batch_payloads(Sampling("sampled", 1.0, 0.8, 20, 0.0, 1, 0), prompts),
        "top_k": batch_payloads(Sampling("sampled", 0.7, 0.8, 5, 0.0, 1, 0), prompts),
        "seed": batch_payloads(Sampling("sampled", 0.7, 0.8, 20, 0.0, 1, 1), prompts),
        "n_samples": batch_payloads(Sampling("sampled", 0.7, 0.8, 20, 0.0, 2, 0), prompts),
        "budget": batch_payloads(greedy, prompts, budget=7),
    }
    assert len(keys["greedy"]) == 2  # 3 prompts in batches of 2
    assert batch_payloads(greedy, prompts) == keys["greedy"]  # the same batch: the same key
    for name, payloads in keys.items():
        others = {p for other, ps in keys.items() if other != name for p in ps}
        assert not others & set(payloads), f"a change of {name} reuses a cached batch"
    # another prompt: its batch gets a new key, the untouched batch keeps its own
    edited = batch_payloads(greedy, ["Spell cat", "Spell dog", "Spell emu"])
    assert len(set(edited) & set(keys["greedy"])) == 1
