"""The train stage on qwen3-tiny: outputs, the completion-only loss mask, checkpoint resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from datasets import Dataset, DatasetDict
from rich.console import Console

from letterwise import modeling
from letterwise.params import parse_params
from letterwise.presets import PRESETS
from letterwise.training import checkpoints, data
from letterwise.training import trainer as training
from stages import train

REPO = Path(__file__).resolve().parents[1]
WORDS = ["berry", "straw", "apple", "token", "spell", "letter", "count", "house", "water", "quick"]
FORMATS = [
    ("Spell '{w}'.", " "),
    ('How do you spell "{w}"? Separate the letters with dashes.', "-"),
    ("Write the letters of {w}, separated by commas.", ", "),
]


@pytest.fixture(scope="session")
def letterwise_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One converted-weights cache per test session, shared by the modeling and train tests."""
    cache = tmp_path_factory.getbasetemp() / "letterwise-cache"
    cache.mkdir(exist_ok=True)
    return cache


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, letterwise_cache: Path) -> Path:
    """A pipeline checkout in miniature: params.yaml and data/dataset/hf in a temp dir."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LETTERWISE_CACHE", str(letterwise_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rows = [
        {"question": phrase.format(w=word), "answer": sep.join(word), "token": word}
        for word in WORDS
        for phrase, sep in FORMATS
    ]
    DatasetDict({"train": Dataset.from_list(rows)}).save_to_disk("data/dataset/hf")
    write_params()
    return tmp_path


def write_params(path: Path = Path("params.yaml"), **train_overrides) -> dict:
    params = {
        "model": "qwen3-tiny",
        "seed": 3,
        "train": {
            "max_steps": 6,
            "batch_size": 4,
            "save_steps": 3,
            "learning_rate": 1e-3,
            "max_seq_length": 64,
            "lora": {"r": 4, "alpha": 8},
            **train_overrides,
        },
    }
    path.write_text(yaml.safe_dump(params))
    return params


def loss_steps(live_dir: Path = Path("dvclive/train")) -> list[int]:
    lines = (live_dir / "plots/metrics/loss.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    return [int(line.split("\t")[header.index("step")]) for line in lines[1:]]


@pytest.mark.slow
def test_train_stage_writes_adapter_curves_and_metrics(workdir: Path, capsys) -> None:
    assert train.main([]) == 0
    adapter = Path("models/adapter")
    for name in (
        "adapter_model.safetensors",
        "adapter_config.json",
        "letterwise.json",
        "tokenizer_config.json",
    ):
        assert (adapter / name).is_file(), name
    provenance = json.loads((adapter / "letterwise.json").read_text())
    assert provenance["preset"] == "qwen3-tiny" and provenance["backend"] == "transformers"
    assert provenance["final_step"] == 6 and provenance["resumed_from_step"] is None
    assert provenance["train_params"]["lora"]["r"] == 4
    assert provenance["dataset"]["examples"] == len(WORDS) * len(FORMATS)
    assert provenance["trainable_params"] > 0
    assert {"torch", "transformers", "peft", "trl"} <= set(provenance["versions"])

    metrics = json.loads(Path("metrics/details/train.json").read_text())
    assert metrics["steps"] == 6 and metrics["examples"] == len(WORDS) * len(FORMATS)
    assert metrics["final_loss"] == provenance["final_loss"] > 0
    assert metrics["trainable_params"] == provenance["trainable_params"]
    assert metrics["train_seconds"] > 0
    # the dvc metrics file: the headline numbers a run is compared by
    headline = json.loads(Path("metrics/train.json").read_text())
    assert set(headline) == {"final_loss", "steps", "train_seconds", "examples"}
    assert headline["steps"] == 6 and headline["final_loss"] == metrics["final_loss"]
    assert loss_steps() == [1, 2, 3, 4, 5, 6]
    assert Path("dvclive/train/plots/metrics/learning_rate.tsv").is_file()
    assert "train" in capsys.readouterr().out  # the rich summary table

    # the adapter loads back on its base and changes the model's output
    tuned, tokenizer = modeling.load_tuned_model(adapter)
    base, _ = modeling.load_base_model(PRESETS["qwen3-tiny"])
    batch = tokenizer(["<|im_start|>user\nSpell 'berry'.<|im_end|>\n"], return_tensors="pt")
    with torch.no_grad():
        assert not torch.equal(tuned(**batch).logits, base(**batch).logits)
    assert not tuned.training

    # same params and data again: resumes from the final checkpoint, nothing left to do
    from safetensors.torch import load_file

    first_weights = load_file(adapter / "adapter_model.safetensors")
    assert train.main([]) == 0
    assert "resuming from models/checkpoints/checkpoint-6" in capsys.readouterr().out
    again = json.loads((adapter / "letterwise.json").read_text())
    assert again["final_step"] == 6 and again["resumed_from_step"] == 6
    assert again["final_loss"] == provenance["final_loss"]
    assert loss_steps() == [1, 2, 3, 4, 5, 6]  # the curve is replayed, not duplicated
    reused = load_file(adapter / "adapter_model.safetensors")
    assert reused.keys() == first_weights.keys()
    assert all(torch.equal(reused[k], first_weights[k]) for k in reused)


def check_loss_mask(preset_name: str, prompt_end: str) -> None:
    """Collate two rendered examples and check prompt/answer/padding labels token by token."""
    params = parse_params(yaml.safe_load(Path("params.yaml").read_text()))
    model, tokenizer = modeling.load_base_model(PRESETS[preset_name], for_training=True)
    rows = Dataset.from_dict(
        {
            "question": ["Spell 'berry'.", "How do you spell 'strawberry'? Use dashes."],
            "answer": ["b e r r y", "s-t-r-a-w-b-e-r-r-y"],
        }
    )
    pairs = data.sft_dataset(tokenizer, rows)
    prompt, completion = pairs[0]["prompt"], pairs[0]["completion"]
    assert prompt.endswith(prompt_end)
    assert completion == "b e r r y<|im_end|>"  # one end-of-turn token, nothing after it

    model = training.add_lora(model, params, "transformers")
    trainer = training.build_trainer(
        model, tokenizer, pairs, params, backend="transformers", checkpoint_dir=Path("ckpt")
    )
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    for row in range(2):
        prompt, completion = pairs[row]["prompt"], pairs[row]["completion"]
        ids, labels = batch["input_ids"][row], batch["labels"][row]
        n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        n_real = int(batch["attention_mask"][row].sum())
        assert tokenizer.decode(ids[:n_prompt]) == prompt
        assert (labels[:n_prompt] == -100).all()  # prompt, think block included: no loss
        assert torch.equal(labels[n_prompt:n_real], ids[n_prompt:n_real])  # answer: loss
        assert tokenizer.decode(labels[n_prompt:n_real]) == completion
        assert (labels[n_real:] == -100).all()  # padding: no loss
    assert batch["input_ids"].shape[0] == 2


def test_completion_only_loss_mask(workdir: Path) -> None:
    # Qwen3 non-thinking: the empty think block belongs to the prompt, not to the loss
    check_loss_mask("qwen3-tiny", "<|im_start|>assistant\n<think>\n\n</think>\n\n")


@pytest.mark.slow
def test_completion_only_loss_mask_smollm2(workdir: Path) -> None:
    check_loss_mask("smollm2-135m", "<|im_start|>assistant\n")


def test_prepare_checkpoints(tmp_path: Path) -> None:
    console = Console(file=open(os.devnull, "w"))
    ckpt = tmp_path / "checkpoints"
    assert checkpoints.prepare_checkpoints(ckpt, "run-a", console) is None  # nothing yet
    for step, complete in ((2, True), (4, True), (6, False)):  # 6 was killed mid-save
        folder = ckpt / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            elapsed = json.dumps({"train_seconds": step * 1.5})
            (folder / checkpoints.ELAPSED_FILE).write_text(elapsed)
    assert checkpoints.prepare_checkpoints(ckpt, "run-a", console) == ckpt / "checkpoint-4"
    assert not (ckpt / "checkpoint-6").exists()
    assert checkpoints.elapsed_at(ckpt / "checkpoint-4") == 6.0
    assert checkpoints.prepare_checkpoints(ckpt, "run-b", console) is None  # other params: cleared
    assert not any(ckpt.glob("checkpoint-*"))
    assert json.loads((ckpt / checkpoints.RUN_KEY_FILE).read_text()) == {"run_key": "run-b"}


def test_run_key_tracks_what_changes_the_result() -> None:
    base = parse_params({"model": "qwen3-tiny"})
    key = checkpoints.run_key(base, "data-1", "transformers")
    assert checkpoints.run_key(base, "data-2", "transformers") != key
    assert checkpoints.run_key(base, "data-1", "unsloth") != key
    rank_8 = parse_params({"model": "qwen3-tiny", "train": {"lora": {"r": 8}}})
    assert checkpoints.run_key(rank_8, "data-1", "transformers") != key
    for harmless in ({"threads": 1}, {"save_steps": 7}):
        changed = parse_params({"model": "qwen3-tiny", "train": harmless})
        assert checkpoints.run_key(changed, "data-1", "transformers") == key


def test_fails_fast_before_loading_a_model(workdir: Path, monkeypatch, capsys) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the inputs were checked")

    monkeypatch.setattr(training, "load_base_model", refuse)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    Path("params.yaml").write_text(yaml.safe_dump({"model": "qwen3-4b"}))
    assert train.main([]) == 1
    assert "needs a CUDA GPU" in capsys.readouterr().out

    write_params()
    assert train.main(["--dataset", "data/missing"]) == 1
    assert "dvc repro build_dataset" in capsys.readouterr().out

    DatasetDict({"train": Dataset.from_dict({"question": ["q"]})}).save_to_disk("data/bad")
    assert train.main(["--dataset", "data/bad"]) == 1
    assert "answer" in capsys.readouterr().out

    Path("params.yaml").write_text(yaml.safe_dump({"model": "qwen3-tiny", "train": {"lr": 1}}))
    assert train.main([]) == 1
    assert "train.lr" in capsys.readouterr().out


@pytest.mark.slow
def test_killed_training_resumes_from_its_checkpoint(workdir: Path) -> None:
    max_steps = 40
    write_params(max_steps=max_steps, save_steps=2)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "stages.train"]
    checkpoint_dir = Path("models/checkpoints")

    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not checkpoints.complete_checkpoints(checkpoint_dir):
        assert first.poll() is None, (
            f"train exited before its first checkpoint: {first.stderr.read()}"
        )
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    resume_step = checkpoints.step_of(checkpoints.complete_checkpoints(checkpoint_dir)[-1])
    assert resume_step < max_steps, "the first run finished before it could be killed"
    assert not Path("models/adapter").exists()  # nothing half-written

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    assert f"resuming from models/checkpoints/checkpoint-{resume_step}" in second.stdout
    provenance = json.loads(Path("models/adapter/letterwise.json").read_text())
    assert provenance["resumed_from_step"] == resume_step
    assert provenance["final_step"] == max_steps
    state = json.loads((checkpoint_dir / f"checkpoint-{max_steps}/trainer_state.json").read_text())
    assert state["global_step"] == max_steps
    assert loss_steps() == list(range(1, max_steps + 1))


def loss_curve(live_dir: Path = Path("dvclive/train")) -> list[float]:
    lines = (live_dir / "plots/metrics/loss.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    return [float(line.split("\t")[header.index("loss")]) for line in lines[1:]]


@pytest.mark.slow
def test_training_lowers_the_loss_on_a_set_it_can_overfit(workdir: Path) -> None:
    """Two spellings seen again and again: a trainer that learns anything drives their loss
    down. A broken loss mask, a frozen adapter or a zero learning rate would not."""
    rows = [
        {"question": "Spell 'berry'.", "answer": "b e r r y", "token": "berry"},
        {"question": "Spell 'straw'.", "answer": "s t r a w", "token": "straw"},
    ]
    DatasetDict({"train": Dataset.from_list(rows)}).save_to_disk("data/dataset/hf.new")
    os.replace("data/dataset/hf", "data/dataset/hf.old")
    os.replace("data/dataset/hf.new", "data/dataset/hf")
    write_params(
        max_steps=30, batch_size=2, save_steps=30, learning_rate=1e-2, warmup_ratio=0.0,
        lora={"r": 8, "alpha": 16},
    )  # fmt: skip
    assert train.main([]) == 0
    losses = loss_curve()
    assert len(losses) == 30
    # The random tiny Qwen3 starts near ln(vocab) ~ 11.9 nats and its LoRA (no lm_head) fits
    # slowly; 30 steps measured ~1.1 nats lower. Stuck or diverging training stays >= first.
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - 0.5, f"loss {first:.3f} -> {last:.3f}: training did not fit 2 examples"
    assert all(loss == loss for loss in losses), "NaN loss"
