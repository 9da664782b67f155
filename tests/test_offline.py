"""Quiet and offline: stages keep the Hugging Face Hub off unless they push, and saving an
adapter (every training checkpoint) asks the Hub nothing, online or offline."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from letterwise.io import HUB_OFFLINE_VARS, hub_offline_by_default
from tests.conftest import REPO_ROOT, write_params

HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what train writes as smollm2's base model
LOOKUP_WARNINGS = ("Unable to fetch remote file", "Could not find a config file")

# --------------------------------------------------------------------------- stage entry points

# Runs a stage as `python -m stages.<stage>` would, then reports the Hub settings it left.
STAGE_PROBE = """
import json, os, runpy, sys
stage, *sys.argv[1:] = sys.argv[1:]
sys.argv[0] = stage
try:
    runpy.run_module(f"stages.{stage}", run_name="__main__")
except BaseException:  # a stage with no inputs stops early; its settings are made by then
    pass
hub = sys.modules.get("huggingface_hub.constants")
print("PROBE " + json.dumps({
    "env": {name: os.environ.get(name) for name in NAMES},
    "hub_offline": None if hub is None else hub.HF_HUB_OFFLINE,
    "torch": "torch" in sys.modules,
}))
""".replace("NAMES", repr(HUB_OFFLINE_VARS))


def probe_stage(workdir: Path, stage: str, *args: str, **env_extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in (*HUB_OFFLINE_VARS, "HF_TOKEN")}
    env.update(PYTHONPATH=str(REPO_ROOT), **env_extra)
    result = subprocess.run(
        [sys.executable, "-c", STAGE_PROBE, stage, *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("PROBE ")]
    assert lines, result.stdout[-2000:] + result.stderr[-2000:]
    return json.loads(lines[-1].removeprefix("PROBE "))


OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


@pytest.mark.parametrize(
    "stage", ["filter_tokens", "build_dataset", "train", "eval_spelling", "eval_position", "probe"]
)
@pytest.mark.slow
def test_every_stage_runs_with_the_hub_offline(stage, tmp_path):
    # an environment with no offline setting at all: the stage must set it itself
    report = probe_stage(tmp_path, stage, "--params", "missing.yaml")
    assert report["env"] == OFFLINE
    # huggingface_hub reads the setting once, at import: if a stage imported it, it is offline
    assert report["hub_offline"] in (None, True)
    if stage in ("filter_tokens", "build_dataset"):
        assert not report["torch"]


def test_publish_without_a_push_is_offline(tmp_path):
    write_params(tmp_path)  # the repo's params: no publish.repo_id
    report = probe_stage(tmp_path, "publish", HF_TOKEN="hf_not_a_real_token")
    assert report["env"] == OFFLINE


def test_publish_that_pushes_stays_online(tmp_path):
    write_params(tmp_path, {"publish": {"repo_id": "someone/letterwise-test"}})
    report = probe_stage(tmp_path, "publish", HF_TOKEN="hf_not_a_real_token")
    assert report["env"] == dict.fromkeys(HUB_OFFLINE_VARS)
    assert report["hub_offline"] in (None, False)


def test_an_explicit_online_setting_is_kept(tmp_path):
    report = probe_stage(tmp_path, "train", "--params", "missing.yaml", HF_HUB_OFFLINE="0")
    assert report["env"] == {
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": None,
        "HF_DATASETS_OFFLINE": None,
    }


def test_helper_also_turns_off_an_already_imported_huggingface_hub(monkeypatch):
    from huggingface_hub import constants

    for name in HUB_OFFLINE_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    hub_offline_by_default()
    assert {name: os.environ.get(name) for name in HUB_OFFLINE_VARS} == OFFLINE
    assert constants.HF_HUB_OFFLINE is True


# --------------------------------------------------------------------------- adapter saves


def tiny_model():
    """A one-layer Qwen3 small enough to build in a blink (no preset, no cache)."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
    )
    return Qwen3ForCausalLM(config)


@pytest.fixture
def hub_reachable_but_watched(monkeypatch):
    """Online as far as every library can tell, but any connection attempt is refused and
    recorded (name lookups included), so a Hub request shows up whatever its outcome."""
    from huggingface_hub import constants

    for name in HUB_OFFLINE_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    attempts: list[str] = []

    def refuse_lookup(host, *args, **kwargs):
        attempts.append(f"getaddrinfo {host}")
        raise OSError("network disabled in this test")

    def refuse_connect(self, address):
        attempts.append(f"connect {address}")
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse_lookup)
    monkeypatch.setattr(socket.socket, "connect", refuse_connect)
    return attempts


def save_and_watch(save, directory: Path) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        save(str(directory))
    return [str(w.message) for w in caught]


def lora_on_a_hub_base(target_modules=None):
    from letterwise.params import parse_params
    from letterwise.training import trainer as training

    lora = {"r": 2, "alpha": 4, **({"target_modules": target_modules} if target_modules else {})}
    params = parse_params({"model": "qwen3-tiny", "train": {"lora": lora}})
    model = training.add_lora(tiny_model(), params, "transformers")
    # what run_training does for smollm2: a Hub id, not a local path, in adapter_config.json
    model.peft_config["default"].base_model_name_or_path = HUB_ID
    return model


def test_the_watch_sees_peft_s_own_hub_lookup(hub_reachable_but_watched, tmp_path):
    """Control: the unpinned peft save (save_embedding_layers="auto") does ask the Hub here."""
    from peft import PeftModel

    model = lora_on_a_hub_base()
    messages = save_and_watch(lambda d: PeftModel.save_pretrained(model, d), tmp_path / "auto")
    assert hub_reachable_but_watched, "peft made no Hub request: the watch would miss one"
    assert any(text in m for m in messages for text in LOOKUP_WARNINGS), messages


def test_adapter_saves_ask_the_hub_nothing(hub_reachable_but_watched, tmp_path):
    from safetensors import safe_open

    model = lora_on_a_hub_base()
    messages = save_and_watch(model.save_pretrained, tmp_path / "adapter")
    assert hub_reachable_but_watched == []
    assert not [m for m in messages if any(text in m for text in LOOKUP_WARNINGS)], messages
    with safe_open(str(tmp_path / "adapter" / "adapter_model.safetensors"), "pt") as weights:
        keys = list(weights.keys())
    # 1 layer x 7 target modules x (A, B): the LoRA matrices only, no embedding copy
    assert len(keys) == 14 and all("lora_" in key for key in keys), keys
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == HUB_ID


def test_adapter_saves_are_quiet_offline_too(monkeypatch, tmp_path):
    """Offline, peft skips the request but still warned that it could not check, per save."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = lora_on_a_hub_base()
    messages = save_and_watch(model.save_pretrained, tmp_path / "adapter")
    assert not [m for m in messages if any(text in m for text in LOOKUP_WARNINGS)], messages


def test_embeddings_are_saved_exactly_when_trained():
    from peft import LoraConfig, get_peft_model

    from letterwise.training.trainer import embeddings_trained

    assert embeddings_trained(lora_on_a_hub_base()) is False
    targeted = get_peft_model(
        tiny_model(), LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "embed_tokens"])
    )
    assert embeddings_trained(targeted) is True
    fully_trained = get_peft_model(
        tiny_model(), LoraConfig(r=2, target_modules=["q_proj"], modules_to_save=["lm_head"])
    )
    assert embeddings_trained(fully_trained) is True
