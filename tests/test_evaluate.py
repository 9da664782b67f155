"""Evaluation: scoring on fixed outputs (no model), the stage's checks before any model load,
the stage's files from a stubbed model, and (slow) a real run on the qwen3-tiny preset."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import types
from pathlib import Path

import pytest

from letterwise.eval import answering, runner, scoring
from letterwise.tasks import count, position, spelling
from tests.conftest import REPO_ROOT, write_params

GARBAGE = [
    "",
    " ",
    "\x00\x01\x02",
    "<think>never closed",
    "</think>",
    "<|im_end|>",
    "🙂" * 50,
    "a" * 5000,
    "1 2 3 4 5 6 7 8 9 10",
    "b-e-r-r-y-" * 300,
    "The answer is",
    "ＳＴＲＡＷ",
    "\n\n\n",
    "None",
    "-1",
    "3.5",
]


def position_row(i: int, word: str, pos: int, band: str = "high") -> dict:
    return {
        "id": f"test-position-{i:06d}",
        "task": "position",
        "word": word,
        "question": f"What is letter {pos} of '{word}'?",
        "expected": word[pos - 1],
        "position": pos,
        "is_last": pos == len(word),
        "letter": word[pos - 1],
        "count": None,
        "word_length": len(word),
        "freq_band": band,
    }


def spelling_row(i: int, word: str) -> dict:
    return {
        "id": f"test-spelling-{i:06d}",
        "task": "spelling",
        "word": word,
        "question": f"Spell '{word}'.",
        "expected": word,
        "position": None,
        "is_last": False,
        "letter": None,
        "count": None,
        "word_length": len(word),
        "freq_band": "mid",
    }


def count_row(i: int, word: str, letter: str) -> dict:
    n = word.count(letter)
    return {
        "id": f"test-count-{i:06d}",
        "task": "count",
        "word": word,
        "question": f"How many '{letter}'s are in '{word}'?",
        "expected": str(n),
        "position": None,
        "is_last": False,
        "letter": letter,
        "count": n,
        "word_length": len(word),
        "freq_band": "low",
    }


POSITION_ROWS = [
    position_row(0, "berry", 1),
    position_row(1, "apple", 2),
    position_row(2, "straw", 3),
    position_row(3, "melon", 5),
]


# ---------------------------------------------------------------- scoring without a model


def test_base_all_wrong_tuned_three_of_four_right():
    base = [["zzz garbage"], ["x"], [""], ["The answer is q"]]
    tuned = [["b"], ["The 2nd letter is 'p'."], ["a"], ["N."]]
    metrics, predictions = scoring.score_task(
        "position", POSITION_ROWS, {"base": base, "tuned": tuned}, n_samples=1, seed=0
    )
    assert metrics["base"]["accuracy"] == 0.0 and metrics["base"]["n"] == 4
    assert metrics["tuned"]["accuracy"] == 0.75
    assert metrics["base"]["ci_low"] == 0.0 < metrics["base"]["ci_high"]
    assert metrics["tuned"]["ci_low"] < 0.75 < metrics["tuned"]["ci_high"]
    # "zzz garbage" and "" cannot be read as a letter; "x" and "q" are read but wrong
    assert metrics["base"]["unparseable_rate"] == 0.5
    assert metrics["tuned"]["unparseable_rate"] == 0.0
    # in format: a letter, briefly; the unparseable two are not
    assert metrics["base"]["in_format_rate"] == 0.5
    assert metrics["tuned"]["in_format_rate"] == 1.0
    delta = metrics["delta"]
    assert delta["delta"] == pytest.approx(0.75)
    assert delta["p_value"] == pytest.approx(0.25)  # exact McNemar, 3 discordant: 2 * 1/8
    assert (delta["base_only"], delta["tuned_only"], delta["n"]) == (0, 3, 4)
    assert delta["ci_low"] <= 0.75 <= delta["ci_high"]
    assert "majority_vote_accuracy" not in metrics["base"]  # one sample: nothing to vote on

    by_position = metrics["breakdowns"]["position"]
    assert list(by_position) == ["1", "2", "3", "5"]
    assert by_position["3"]["tuned"]["accuracy"] == 0.0  # "a" is not 'r'
    assert by_position["5"]["tuned"]["accuracy"] == 1.0
    assert metrics["breakdowns"]["is_last"]["True"]["tuned"]["n"] == 1
    assert metrics["breakdowns"]["word_length"]["5"]["base"]["n"] == 4
    assert set(metrics["breakdowns"]) == {"word_length", "position", "is_last", "freq_band"}

    assert [p["id"] for p in predictions] == [r["id"] for r in POSITION_ROWS]
    first = predictions[0]
    assert first["base"]["parsed"] == [None] and first["base"]["correct"] is False
    assert first["tuned"] == {
        "outputs": ["b"],
        "parsed": ["b"],
        "in_format": [True],
        "sample_correct": [True],
        "accuracy": 1.0,
        "vote": "b",
        "correct": True,
    }
    assert first["position"] == 1 and first["word_length"] == 5 and first["expected"] == "b"
    json.dumps(predictions)  # JSON-serialisable as written


@pytest.mark.parametrize(
    "task,row",
    [
        ("position", position_row(0, "strawberry", 3)),
        ("count", count_row(0, "strawberry", "r")),
        ("spelling", spelling_row(0, "strawberry")),
    ],
)
def test_garbage_is_unparseable_and_wrong_never_a_crash(task, row):
    outputs = {"base": [GARBAGE], "tuned": [GARBAGE]}
    metrics, predictions = scoring.score_task(task, [row], outputs, n_samples=len(GARBAGE), seed=0)
    for model in ("base", "tuned"):
        assert metrics[model]["accuracy"] == 0.0
        assert metrics[model]["unparseable_rate"] > 0.5
        assert predictions[0][model]["correct"] is False
    assert metrics["delta"]["delta"] == 0.0 and metrics["delta"]["p_value"] == 1.0


def test_spelling_adds_character_scores():
    rows = [spelling_row(0, "berry"), spelling_row(1, "melon")]
    base = [["b e r y"], ["berry melon"]]  # one letter dropped; the word unspelled
    tuned = [["b e r r y"], ["m-e-l-o-n"]]
    metrics, predictions = scoring.score_task(
        "spelling", rows, {"base": base, "tuned": tuned}, n_samples=1, seed=0
    )
    assert predictions[0]["base"]["parsed"] == ["bery"]
    assert predictions[1]["base"]["parsed"] == [None]
    # "bery" vs "berry": b,e,r match then y/r differ -> 3/5; unparseable -> 0
    assert metrics["base"]["char_accuracy"] == pytest.approx((3 / 5 + 0.0) / 2)
    # edit distances 1 and len("melon") = 5
    assert metrics["base"]["mean_edit_distance"] == pytest.approx(3.0)
    assert metrics["tuned"]["char_accuracy"] == 1.0
    assert metrics["tuned"]["mean_edit_distance"] == 0.0
    assert metrics["tuned"]["accuracy"] == 1.0 and metrics["base"]["accuracy"] == 0.0
    assert set(metrics["breakdowns"]) == {"word_length", "freq_band"}


def test_several_samples_give_mean_accuracy_and_majority_vote():
    rows = [count_row(0, "strawberry", "r"), count_row(1, "banana", "a")]
    base = [["3", "2", "2"], ["1", "one", "seven"]]
    tuned = [["3", "three", "2"], ["3", "3", "Three times."]]
    metrics, predictions = scoring.score_task(
        "count", rows, {"base": base, "tuned": tuned}, n_samples=3, seed=0
    )
    assert predictions[0]["base"]["vote"] == "2" and predictions[0]["base"]["correct"] is False
    assert predictions[0]["tuned"]["vote"] == "3" and predictions[0]["tuned"]["correct"] is True
    assert predictions[1]["base"]["vote"] == "1"
    assert metrics["base"]["accuracy"] == pytest.approx((1 / 3 + 0) / 2)
    assert metrics["tuned"]["accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    assert metrics["base"]["majority_vote_accuracy"] == 0.0
    assert metrics["tuned"]["majority_vote_accuracy"] == 1.0
    assert metrics["delta"]["test"] == "sign_flip_permutation"
    assert metrics["delta"]["delta"] == pytest.approx((2 / 3 + 1) / 2 - 1 / 6)
    assert set(metrics["breakdowns"]) == {"word_length", "true_count", "freq_band"}
    assert list(metrics["breakdowns"]["true_count"]) == ["3"]


def test_outputs_must_match_questions():
    with pytest.raises(ValueError, match="expected 4"):
        scoring.score_task(
            "position", POSITION_ROWS, {"base": [["a"]], "tuned": [["a"]] * 4}, n_samples=1, seed=0
        )


def test_stage_metrics_splits_outputs_by_task_in_order(tmp_path):
    params_path = write_params(tmp_path, {"eval": {"max_questions": 2}})
    from letterwise.params import load_params

    params = load_params(params_path)
    questions = {
        "position": POSITION_ROWS[:2],
        "count": [count_row(0, "banana", "a"), count_row(1, "kiwi", "z")],
    }
    outputs = {
        "base": [["b"], ["q"], ["3"], ["1"]],
        "tuned": [["b"], ["p"], ["3"], ["0"]],
    }
    sampling = {"decoding": "greedy", "n_samples": 1, "seed": 0}
    metrics, predictions = scoring.stage_metrics(params, sampling, outputs, questions)
    assert {"mode", "decoding", "sampling", "split", "n_samples", "position", "count"} <= set(
        metrics
    )
    assert metrics["mode"] == "non-thinking" and metrics["split"] == "test"
    assert metrics["sampling"] == sampling
    assert metrics["position"]["base"]["accuracy"] == 0.5
    assert metrics["position"]["tuned"]["accuracy"] == 1.0
    assert metrics["count"]["base"]["accuracy"] == 0.5
    assert metrics["count"]["tuned"]["accuracy"] == 1.0
    assert [p["task"] for p in predictions] == ["position", "position", "count", "count"]

    plots = scoring.plot_points(metrics["count"]["breakdowns"], "count")
    assert set(plots) == {"count_by_word_length", "count_by_true_count"}
    x, points = plots["count_by_true_count"]
    assert x == "true_count"
    assert points == [
        {"true_count": 0, "base": 0.0, "tuned": 1.0, "n": 1},
        {"true_count": 3, "base": 1.0, "tuned": 1.0, "n": 1},
    ]


def test_select_questions_takes_the_first_per_task_in_order():
    rows = [
        {"task": "spelling", "id": "s0"},
        {"task": "position", "id": "p0"},
        {"task": "count", "id": "c0"},
        {"task": "position", "id": "p1"},
        {"task": "count", "id": "c1"},
        {"task": "position", "id": "p2"},
    ]
    chosen = runner.select_questions(rows, ("position", "count"), 2)
    assert [r["id"] for r in chosen["position"]] == ["p0", "p1"]
    assert [r["id"] for r in chosen["count"]] == ["c0", "c1"]
    everything = runner.select_questions(rows, ("position",), None)
    assert [r["id"] for r in everything["position"]] == ["p0", "p1", "p2"]
    with pytest.raises(ValueError, match="no questions"):
        runner.select_questions(rows[:1], ("position",), 5)


def test_write_plots_replaces_the_stage_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stale = tmp_path / "dvclive" / "eval_position" / "plots" / "custom" / "old.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("[]")
    points = [{"word_length": 5, "base": 0.25, "tuned": 0.5, "n": 4}]
    instruments = [{"instrument": "position: choice (base)", "accuracy": 0.5}]
    breakdowns = {"position": {"word_length": {"5": {"base": {"accuracy": 0.25, "n": 4}}}}}
    paths = runner.write_plots(
        "eval_position",
        {"position_by_word_length": ("word_length", points)},
        instruments,
        breakdowns,
    )
    custom = Path("dvclive/eval_position/plots/custom")
    assert paths == [custom / "position_by_word_length.json", custom / "instruments.json"]
    assert json.loads(paths[0].read_text()) == points
    assert json.loads(paths[1].read_text()) == instruments
    saved = json.loads(Path("dvclive/eval_position/breakdowns.json").read_text())
    assert saved == breakdowns
    assert not stale.exists()


# ---------------------------------------------------------------- the stage, before any model


@pytest.fixture
def no_model_loads(monkeypatch):
    """A stand-in letterwise.modeling whose loaders fail the test if called."""
    fake = types.ModuleType("letterwise.modeling")

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the inputs were validated")

    fake.load_base_model = fake.load_tuned_model = fake.load_tokenizer = refuse
    fake.resolve_backend = lambda preset, requested: "transformers"
    fake.read_provenance = lambda adapter_dir: {"model": "smollm2-135m"}
    monkeypatch.setitem(sys.modules, "letterwise.modeling", fake)


def run_eval(stage: str, params_path: Path) -> None:
    module = {"eval_position": "stages.eval_position", "eval_spelling": "stages.eval_spelling"}
    __import__(module[stage], fromlist=["main"]).main(["--params", str(params_path)])


def test_thinking_mode_on_smollm2_fails_before_any_model_load(
    tmp_path, monkeypatch, no_model_loads
):
    monkeypatch.chdir(tmp_path)
    path = write_params(tmp_path, {"model": "smollm2-135m", "eval": {"mode": "thinking"}})
    with pytest.raises(SystemExit) as caught:
        run_eval("eval_position", path)
    message = str(caught.value.code)
    assert "eval.mode" in message and "thinking" in message and "smollm2-135m" in message


def test_invalid_params_fail_naming_the_key(tmp_path, monkeypatch, no_model_loads):
    monkeypatch.chdir(tmp_path)
    path = write_params(tmp_path, {"eval": {"n_samples": 0}})
    with pytest.raises(SystemExit) as caught:
        run_eval("eval_spelling", path)
    assert "eval.n_samples" in str(caught.value.code)


def test_missing_dataset_then_adapter_are_named(tmp_path, monkeypatch, no_model_loads):
    monkeypatch.chdir(tmp_path)
    path = write_params(tmp_path)
    with pytest.raises(SystemExit) as caught:
        run_eval("eval_position", path)
    assert "data/dataset/hf" in str(caught.value.code) and "build_dataset" in str(caught.value.code)

    (tmp_path / "data" / "dataset" / "hf").mkdir(parents=True)
    with pytest.raises(SystemExit) as caught:
        run_eval("eval_position", path)
    assert "models/adapter" in str(caught.value.code) and "train" in str(caught.value.code)


def fake_adapter(directory: Path, provenance: dict | None = None) -> None:
    adapter = directory / "models" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    if provenance is not None:
        (adapter / "letterwise.json").write_text(json.dumps(provenance))


def test_adapter_of_another_model_is_refused(tmp_path, monkeypatch, no_model_loads):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "dataset" / "hf").mkdir(parents=True)
    fake_adapter(tmp_path)
    path = write_params(tmp_path, {"model": "qwen3-tiny"})  # the stand-in says smollm2-135m
    with pytest.raises(SystemExit) as caught:
        run_eval("eval_position", path)
    message = str(caught.value.code)
    assert "'smollm2-135m'" in message and "'qwen3-tiny'" in message


def test_adapter_without_provenance_is_refused_before_loading(tmp_path, monkeypatch):
    """The real letterwise.modeling: an adapter not written by stages.train fails up front."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "dataset" / "hf").mkdir(parents=True)
    fake_adapter(tmp_path)
    path = write_params(tmp_path, {"model": "qwen3-tiny"})
    with pytest.raises(SystemExit) as caught:
        run_eval("eval_spelling", path)
    assert "letterwise.json" in str(caught.value.code)


# ---------------------------------------------------------------- the stage's files


def save_small_dataset(directory: Path, words: list[str]) -> None:
    """A test split in build_dataset's schema, made by the real task modules."""
    from datasets import Dataset, DatasetDict

    from letterwise.data.dataset import dataset_features, example_row

    rng = random.Random(0)
    rows = []
    for task, module in (("spelling", spelling), ("position", position), ("count", count)):
        for word in words:
            for question in module.eval_questions(word, rng, 1):
                rows.append(example_row("test", task, len(rows), word, question, "high"))
    dataset = DatasetDict({"test": Dataset.from_list(rows, features=dataset_features())})
    dataset.save_to_disk(str(directory / "data" / "dataset" / "hf"))


@pytest.mark.slow
def test_stage_writes_metrics_predictions_and_plots(tmp_path, monkeypatch):
    """The whole stage with a stub model that echoes the expected answer for half the words."""
    monkeypatch.chdir(tmp_path)
    words = ["strawberry", "banana", "kitchen", "mountain"]
    save_small_dataset(tmp_path, words)
    fake_adapter(tmp_path)
    # direct generation only: the stub stands in for the generator (choice scoring and
    # spell-first need a real model; the end-to-end test below runs them)
    eval_params = {
        "max_questions": 3, "prompting": ["direct"], "choice_scoring": False, "cloze": [],
    }  # fmt: skip
    path = write_params(tmp_path, {"model": "qwen3-tiny", "eval": eval_params})

    loads = []
    fake = types.ModuleType("letterwise.modeling")
    fake.resolve_backend = lambda preset, requested: "transformers"
    fake.read_provenance = lambda adapter_dir: {"model": "qwen3-tiny", "base_seed": 0}

    def load_base_model(preset, *, backend, seed, max_seq_length):
        assert seed == 0  # the base loads as the adapter's base was loaded in training
        assert max_seq_length >= 2048  # eval's prompts + budgets, not train.max_seq_length
        loads.append(("base", preset.name))
        return "base", None  # (model, tokenizer): the stub generator only needs the name

    def load_tuned_model(adapter_dir, *, backend, max_seq_length):
        assert max_seq_length >= 2048
        loads.append(("tuned", str(adapter_dir)))
        return "tuned", None

    from transformers import AutoTokenizer

    from letterwise.presets import qwen3_tokenizer_dir

    fake.load_base_model, fake.load_tuned_model = load_base_model, load_tuned_model
    fake.load_tokenizer = lambda preset: AutoTokenizer.from_pretrained(str(qwen3_tokenizer_dir()))
    monkeypatch.setitem(sys.modules, "letterwise.modeling", fake)

    def stub_answers(model, tokenizer, rows, params, sampling, description, store=None):
        # tuned: always right; base: right only on the first question of each task
        seen: dict[str, int] = {}
        answers = []
        for row in rows:
            seen[row["task"]] = seen.get(row["task"], 0) + 1
            right = model == "tuned" or seen[row["task"]] == 1
            if row["task"] == "spelling":
                answers.append([" ".join(row["expected"]) if right else "no idea"])
            else:
                answers.append([row["expected"] if right else "??"])
        return answers

    monkeypatch.setattr(answering, "generate_answers", stub_answers)
    run_eval("eval_position", path)

    assert loads == [("base", "qwen3-tiny"), ("tuned", "models/adapter")]
    metrics = json.loads((tmp_path / "metrics" / "details" / "eval_position.json").read_text())
    assert set(metrics) == {"model", "mode", "decoding", "sampling", "split", "n_samples",
                            "position", "count", "seconds", "per_question"}  # fmt: skip
    assert set(metrics["seconds"]["tuned"]) == {"direct"}  # the only instrument asked for
    assert metrics["sampling"]["decoding"] == "greedy" and metrics["n_samples"] == 1
    for task in ("position", "count"):
        assert metrics[task]["base"]["n"] == 3  # max_questions per task
        assert metrics[task]["base"]["accuracy"] == pytest.approx(1 / 3)
        assert metrics[task]["tuned"]["accuracy"] == 1.0
        assert metrics[task]["delta"]["tuned_only"] == 2
        assert metrics[task]["delta"]["p_value"] == pytest.approx(0.5)

    lines = (tmp_path / "data" / "predictions" / "eval_position.jsonl").read_text().splitlines()
    predictions = [json.loads(line) for line in lines]
    assert [p["task"] for p in predictions] == ["position"] * 3 + ["count"] * 3
    assert all(p["tuned"]["correct"] for p in predictions)

    custom = tmp_path / "dvclive" / "eval_position" / "plots" / "custom"
    assert sorted(p.name for p in custom.iterdir()) == [
        "count_by_true_count.json",
        "count_by_word_length.json",
        "instruments.json",
        "position_by_letter_position.json",
        "position_by_word_length.json",
    ]
    points = json.loads((custom / "position_by_word_length.json").read_text())
    assert all({"word_length", "base", "tuned", "n"} == set(p) for p in points)
    bars = json.loads((custom / "instruments.json").read_text())
    assert {"instrument": "count: direct generation (tuned)", "accuracy": 1.0} in bars
    assert len(bars) == 4  # 2 tasks x 1 instrument x 2 models
    breakdowns = json.loads((tmp_path / "dvclive/eval_position/breakdowns.json").read_text())
    assert set(breakdowns["position"]) == {"word_length", "position", "is_last", "freq_band"}
    assert "breakdowns" not in metrics["position"]  # breakdowns go to dvclive/, not metrics/

    # the dvc metrics file: headline numbers only, per task and instrument
    headline = json.loads((tmp_path / "metrics" / "eval_position.json").read_text())
    assert set(headline) == {"position", "count"}
    for task in ("position", "count"):
        direct = headline[task]["direct"]
        assert set(headline[task]) == {"direct"}  # the only instrument asked for
        # worked out by hand: base right on 1 of 3, tuned on 3 of 3, two discordant pairs
        assert direct["base"] == pytest.approx(1 / 3) and direct["tuned"] == 1.0
        assert direct["delta"] == pytest.approx(2 / 3)
        assert direct["delta_low"] <= direct["delta"] <= direct["delta_high"]
        assert set(direct) == {"base", "tuned", "delta", "delta_low", "delta_high",
                               "in_format_tuned"}  # fmt: skip
    # per-question bits for the cross-arm verdict: base right only on each task's first question
    per_question = metrics["per_question"]
    for task in ("position", "count"):
        assert per_question[task]["correct"]["direct"] == {"base": "100", "tuned": "111"}
        assert len(per_question[task]["ids"]) == 3


# ---------------------------------------------------------------- a real model, end to end


def random_adapter(directory: Path, seed: int | None = None) -> None:
    """A real LoRA adapter with random (not identity) weights on qwen3-tiny, plus the
    provenance file stages.train writes beside it (letterwise.modeling.read_provenance)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from letterwise import modeling
    from letterwise.presets import resolve_preset

    model, _ = modeling.load_base_model(resolve_preset("qwen3-tiny"), backend="transformers")
    if seed is not None:
        torch.manual_seed(seed)
    lora = LoraConfig(
        r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    adapter_dir = directory / "models" / "adapter"
    get_peft_model(model, lora).save_pretrained(str(adapter_dir))
    (adapter_dir / modeling.PROVENANCE_FILE).write_text(
        json.dumps({"model": "qwen3-tiny", "base_seed": modeling.QWEN3_TINY_SEED})
    )


@pytest.mark.slow
def test_eval_position_end_to_end_on_qwen3_tiny(tmp_path):
    """Real qwen3-tiny base model, a real (untrained) LoRA adapter, real generation.

    The adapter is made with peft directly, plus the provenance file stages.train writes
    beside it (letterwise.modeling.read_provenance), so this test does not depend on training.
    """

    save_small_dataset(tmp_path, ["strawberry", "banana", "kitchen"])
    random_adapter(tmp_path)
    write_params(
        tmp_path,
        {
            "model": "qwen3-tiny",
            "train": {"backend": "transformers"},
            # every instrument, spell-first and every cloze variant included
            "eval": {
                "max_questions": 2, "batch_size": 4, "prompting": ["direct", "spell_first"],
                "choice_scoring": True,
                "cloze": ["cloze", "cloze_calibrated", "oracle", "two_turn"],
            },  # fmt: skip
        },
    )
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HF_HUB_OFFLINE="1")
    # eval_spelling first: two_turn's first turn is each model's own spelling
    for stage in ("eval_spelling", "eval_position"):
        result = subprocess.run(
            [sys.executable, "-m", f"stages.{stage}"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics" / "details" / "eval_position.json").read_text())
    assert metrics["sampling"]["decoding"] == "greedy"
    for task in ("position", "count"):
        for model_name in ("base", "tuned"):
            summary = metrics[task][model_name]
            assert summary["n"] == 2
            assert 0.0 <= summary["accuracy"] <= 1.0
            assert 0.0 <= summary["unparseable_rate"] <= 1.0
        assert metrics[task]["delta"]["n"] == 2
    lines = (tmp_path / "data" / "predictions" / "eval_position.jsonl").read_text().splitlines()
    predictions = [json.loads(line) for line in lines]
    assert len(predictions) == 4
    # random LoRA weights (init_lora_weights=False) make the tuned model a different model
    assert any(p["base"]["outputs"] != p["tuned"]["outputs"] for p in predictions)
    plots = tmp_path / "dvclive" / "eval_position" / "plots" / "custom"
    assert (plots / "position_by_letter_position.json").is_file()
    assert (plots / "count_by_true_count.json").is_file()

    # every instrument of the default params, side by side, with paired deltas
    for task, candidates in (("position", 26), ("count", None)):
        for instrument in ("spell_first", "choice"):
            section = metrics[task][instrument]
            assert section["delta"]["n"] == 2
            for model_name in ("base", "tuned"):
                assert 0.0 <= section[model_name]["accuracy"] <= 1.0
        choice = metrics[task]["choice"]["base"]
        assert 1.0 <= choice["mean_rank"] <= (candidates or 99)
        if candidates:
            assert choice["baselines"]["uniform_chance"] == pytest.approx(1 / candidates)
        assert 0.0 <= metrics[task]["spell_first"]["tuned"]["spelled_right_rate"] <= 1.0
    for row in predictions:
        for model_name in ("base", "tuned"):
            assert set(row[model_name]) >= {"outputs", "in_format", "spell_first", "choice"}
            record = row[model_name]["choice"]
            assert record["expected"] == row["expected"] and row["expected"] in record["candidates"]
    bars = json.loads((plots / "instruments.json").read_text())
    assert len(bars) == 2 * 7 * 2  # tasks x instruments x models
    spelled = {
        json.loads(line)["word"]: json.loads(line)
        for line in (tmp_path / "data/predictions/eval_spelling.jsonl").read_text().splitlines()
    }
    for task in ("position", "count"):
        bits = metrics["per_question"][task]
        assert bits["ids"] == [p["id"] for p in predictions if p["task"] == task]
        for instrument in ("direct", "spell_first", "choice", "cloze", "cloze_calibrated",
                           "oracle", "two_turn"):  # fmt: skip
            section = metrics[task] if instrument == "direct" else metrics[task][instrument]
            assert set(section["detectors"]) == {"base", "tuned"}
            assert isinstance(section["explained_by"], list)
            for model_name in ("base", "tuned"):
                expected_bits = "".join(
                    "1" if (p[model_name] if instrument == "direct"
                            else p[model_name][instrument])["correct"] else "0"
                    for p in predictions if p["task"] == task
                )  # fmt: skip
                assert bits["correct"][instrument][model_name] == expected_bits
        for row in (p for p in predictions if p["task"] == task):
            # the slot candidates are single tokens: the letters a-z, or the digits 0-9 (no
            # word here holds a letter 10 times); two_turn saw this model's own spelling
            keys = list("abcdefghijklmnopqrstuvwxyz") if task == "position" else list("0123456789")
            assert row["base"]["cloze"]["candidates"] == keys
            assert set(keys) <= set(row["base"]["choice"]["candidates"])
            assert row["word"] in spelled
