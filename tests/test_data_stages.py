"""The data stages on the real bundled Qwen3 tokenizer: subset rules, held-out properties,
answers checked independently, determinism, and no torch anywhere in the data path."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from letterwise.presets import qwen3_tokenizer_dir
from tests.conftest import REPO_ROOT, SMALL_DATA, write_params


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def hf_qwen3():
    """transformers' own Qwen3 tokenizer: an independent path from the stages' tokenizers one."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(qwen3_tokenizer_dir()))


def test_token_subset_is_english_letters_only(qwen3_data):
    rows = read_jsonl(qwen3_data / "data/tokens/tokens.jsonl")
    strings = [row["string"] for row in rows]
    assert len(strings) == len(set(strings)), "duplicate strings"
    for row in rows:
        assert row["string"].isascii() and row["string"].isalpha() and row["string"].islower()
        assert len(row["string"]) >= 2 and row["length"] == len(row["string"])
    subset = set(strings)
    assert {"berry", "straw", "the", "hello", "token"} <= subset
    assert not subset & {"a", "i", "x", "123", "café", "<think>", "don't", "im_end", "endoftext"}


def test_token_ids_decode_to_their_string(qwen3_data, hf_qwen3):
    rows = read_jsonl(qwen3_data / "data/tokens/tokens.jsonl")
    by_id = {tid: row["string"] for row in rows for tid in row["token_ids"]}
    assert len(by_id) == sum(len(row["token_ids"]) for row in rows), "an id in two rows"
    for token_id, string in list(by_id.items())[::97]:
        assert hf_qwen3.decode([token_id]).strip().lower() == string
    berry = next(row for row in rows if row["string"] == "berry")
    assert set(berry["variants"]) >= {"berry", " berry"}
    assert berry["rule"] == "bare+leading_space"
    assert hf_qwen3.convert_tokens_to_ids("Ġberry") in berry["token_ids"]


def test_filter_metrics_account_for_every_token(qwen3_data):
    metrics = json.loads((qwen3_data / "metrics/details/filter_tokens.json").read_text())
    assert metrics["vocab_size"] == 151_669
    assert metrics["kept_tokens"] + metrics["dropped_tokens"] == metrics["vocab_size"]
    assert sum(metrics["by_length"].values()) == metrics["kept_strings"]
    assert sum(metrics["by_rule"].values()) == metrics["kept_strings"]
    for reason in ("special", "partial_utf8", "digits", "punctuation", "non_ascii", "too_short"):
        assert metrics["dropped"][reason] > 0, reason
    plot = qwen3_data / "dvclive/filter_tokens/plots/custom/token_lengths.json"
    points = json.loads(plot.read_text())
    assert sum(p["tokens"] for p in points) == metrics["kept_strings"]


def test_held_out_words_never_leak_and_are_multi_token(qwen3_data, hf_qwen3):
    strings = {row["string"] for row in read_jsonl(qwen3_data / "data/tokens/tokens.jsonl")}
    dataset = qwen3_data / "data/dataset/jsonl"
    val_words = {row["word"] for row in read_jsonl(dataset / "validation.jsonl")}
    test_words = {row["word"] for row in read_jsonl(dataset / "test.jsonl")}
    assert len(val_words) == SMALL_DATA["build_dataset"]["validation_words"]
    assert len(test_words) == SMALL_DATA["build_dataset"]["test_words"]
    assert not val_words & test_words
    train_words = {row["word"].lower() for row in read_jsonl(dataset / "train.jsonl")}
    for word in val_words | test_words:
        assert word.lower() not in strings and word.lower() not in train_words
        pieces = [hf_qwen3.convert_tokens_to_string([p]) for p in hf_qwen3.tokenize(word)]
        assert len(pieces) >= 2, word
        assert any(len(p) >= 2 and p.isalpha() for p in pieces), (word, pieces)
    audit = json.loads((qwen3_data / "metrics/details/build_dataset.json").read_text())["leakage"]
    assert audit["leaked_words"] == 0 and audit["multi_token_share"] == 1.0


def test_expected_answers_are_right(qwen3_data):
    rows = read_jsonl(qwen3_data / "data/dataset/jsonl/test.jsonl")
    tasks = {row["task"] for row in rows}
    assert tasks == {"spelling", "position", "count"}
    absent = 0
    for row in rows:
        word = row["word"]
        if row["task"] == "spelling":
            assert row["expected"] == word
        elif row["task"] == "position":
            assert 1 <= row["position"] <= len(word)
            assert row["expected"] == word[row["position"] - 1] == row["letter"]
            if row["is_last"]:
                assert row["position"] == len(word)
                assert any(w in row["question"] for w in ("last", "final", "end"))
        else:
            assert int(row["expected"]) == word.count(row["letter"]) == row["count"]
            absent += row["count"] == 0
        assert f"'{word}'" in row["question"]
        assert row["messages"][0] == {"role": "user", "content": row["question"]}
        assert row["messages"][1] == {"role": "assistant", "content": row["answer"]}
    assert absent > 0, "no absent-letter count questions"


def test_strawberry_answers_from_the_task_modules():
    import random

    from letterwise.tasks import count, position, spelling

    rng = random.Random(0)
    assert spelling.eval_questions("strawberry", rng, 1)[0]["expected"] == "strawberry"
    for question in position.eval_questions("strawberry", rng, 10):
        assert question["expected"] == "strawberry"[question["position"] - 1]
    for question in count.eval_questions("strawberry", rng, 5, absent_rate=0.5):
        assert int(question["expected"]) == "strawberry".count(question["letter"])
    assert count.parse("There are 3 r's in strawberry.") == "3" == str("strawberry".count("r"))
    assert position.parse("The 3rd letter is R.") == "r" == "strawberry"[2]


def test_training_set_is_spelling_only_with_varied_formats(qwen3_data):
    rows = read_jsonl(qwen3_data / "data/dataset/jsonl/train.jsonl")
    assert {row["task"] for row in rows} == {"spelling"}
    assert len({row["answer_format"] for row in rows}) >= 4
    assert len({row["phrasing"] for row in rows}) >= 8
    per_word = {}
    for row in rows:
        per_word.setdefault(row["word"], set()).add((row["phrasing"], row["answer_format"]))
    cap = SMALL_DATA["build_dataset"]["max_train_tokens"]
    assert len(per_word) == cap
    assert all(len(combos) == 2 for combos in per_word.values())  # examples_per_token default


def test_dataset_loads_with_datasets_and_has_a_card(qwen3_data):
    from datasets import load_from_disk
    from huggingface_hub import DatasetCard

    dataset = load_from_disk(str(qwen3_data / "data/dataset/hf"))
    assert set(dataset) == {"train", "validation", "test"}
    assert dataset["test"][0]["messages"][0]["role"] == "user"
    card = DatasetCard.load(qwen3_data / "data/dataset/README.md")
    assert card.data.license == "apache-2.0" and card.data.language == ["en"]
    metrics = json.loads((qwen3_data / "metrics/details/build_dataset.json").read_text())
    assert f"| test | {metrics['sizes']['test']['spelling']:,} |" in card.text


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def run_data_stages(workdir: Path) -> subprocess.CompletedProcess:
    """Both stages in a fresh interpreter where torch and transformers cannot be imported."""
    blocker = (
        "import sys\n"
        # The audit hook sees every real import: importing torch or transformers (which pulls
        # torch in) fails loudly, with a traceback naming the importer.
        "def guard(event, args):\n"
        "    if event == 'import' and args[0].split('.')[0] in ('torch', 'transformers'):\n"
        "        raise ImportError(f'data stages must not import {args[0]}')\n"
        "sys.addaudithook(guard)\n"
        "from stages import filter_tokens, build_dataset\n"
        "filter_tokens.main([]); build_dataset.main([])\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-c", blocker], cwd=workdir, env=env, capture_output=True, text=True
    )


@pytest.mark.slow
def test_data_stages_do_not_import_torch_and_are_deterministic(qwen3_data, tmp_path):
    write_params(tmp_path, {"model": "qwen3-tiny", **SMALL_DATA})
    result = run_data_stages(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for sub in ("data/tokens", "data/dataset"):
        assert tree_digest(tmp_path / sub) == tree_digest(qwen3_data / sub), sub
    assert (tmp_path / "metrics/details/build_dataset.json").read_bytes() == (
        qwen3_data / "metrics/details/build_dataset.json"
    ).read_bytes()


@pytest.mark.slow
def test_another_seed_changes_sampling_but_keeps_the_properties(qwen3_data, tmp_path):
    write_params(tmp_path, {"model": "qwen3-tiny", "seed": 7, **SMALL_DATA})
    (tmp_path / "data").mkdir()
    os.symlink(qwen3_data / "data/tokens", tmp_path / "data/tokens")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        from stages import build_dataset

        build_dataset.main([])
    finally:
        os.chdir(cwd)
    words = {r["word"] for r in read_jsonl(tmp_path / "data/dataset/jsonl/test.jsonl")}
    base_words = {r["word"] for r in read_jsonl(qwen3_data / "data/dataset/jsonl/test.jsonl")}
    assert words != base_words
    audit = json.loads((tmp_path / "metrics/details/build_dataset.json").read_text())["leakage"]
    assert audit["leaked_words"] == 0 and audit["multi_token_share"] == 1.0


def test_too_few_words_fails_clearly_and_keeps_old_outputs(qwen3_data, tmp_path, monkeypatch):
    from stages import build_dataset

    write_params(
        tmp_path, {"model": "qwen3-tiny", "build_dataset": {"word_pool": 1000, "test_words": 5000}}
    )
    (tmp_path / "data").mkdir()
    os.symlink(qwen3_data / "data/tokens", tmp_path / "data/tokens")
    old = tmp_path / "data/dataset"
    old.mkdir()
    (old / "keep.txt").write_text("previous output")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="eligible held-out words"):
        build_dataset.main([])
    assert (old / "keep.txt").read_text() == "previous output"


def test_missing_tokens_names_the_stage_to_run(tmp_path, monkeypatch):
    from stages import build_dataset

    write_params(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="dvc repro filter_tokens"):
        build_dataset.main([])


@pytest.mark.slow
def test_gguf_tokenizer_matches_transformers_conversion():
    """The stages rebuild SmolLM2's tokenizer from GGUF metadata without transformers; it must
    split words exactly as transformers' own GGUF conversion (used by the model stages) does."""
    from transformers import AutoTokenizer
    from wordfreq import top_n_list

    from letterwise.data.vocab import load_vocab_tokenizer
    from letterwise.presets import PRESETS, smollm2_gguf_path

    ours = load_vocab_tokenizer(PRESETS["smollm2-135m"])
    path = smollm2_gguf_path()
    theirs = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    words = top_n_list("en", 3000)
    texts = words + [" " + w for w in words[:500]] + ["Spell 'strawberry' letter by letter."]
    for text in texts:
        assert ours.encode(text, add_special_tokens=False).ids == theirs.encode(
            text, add_special_tokens=False
        ), text
    assert len(ours.get_vocab()) == len(theirs)
