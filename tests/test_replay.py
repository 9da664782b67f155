"""Replay turns (format retention): questions with no letter-level content, their place in the
dataset (train split only, the share asked for, pure-spelling outputs unchanged at 0) and their
targets (the base model's own greedy answers, filtered, counted, cached for a resumed run)."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from letterwise.tasks import TASKS
from letterwise.tasks.replay import FAMILIES, contains_letter_content, replay_questions
from tests.conftest import SMALL_DATA, write_params
from tests.test_data_stages import read_jsonl, run_data_stages, tree_digest

# ------------------------------------------------------------------ the questions

# Written apart from the module's guard: anything that asks about letters, spelling, the
# written form or length of words, or looks like the transfer tasks' position/count questions.
LETTER_TALK = re.compile(
    r"letter|spell|character|alphabet|vowel|consonant|syllable|rhym|anagram|palindrome|"
    r"revers|backward|acronym|initial|capitali|uppercase|lowercase|"
    r"\b(?:start|begin|end)s? with|how many|\blong|\bshort|length|\bfirst\b|\blast\b|"
    r"\b\d+(?:st|nd|rd|th)\b",
    re.IGNORECASE,
)
QUOTED_SINGLE_CHARACTER = re.compile(r"['\"`‘’“”][A-Za-z]['\"`‘’“”]")
FORMAT_ASKS = ("number", "yes or no", "one word", "single word", "just the word")


def many_questions() -> list[dict]:
    return [q for seed in range(4) for q in replay_questions(random.Random(seed), 750)]


def test_replay_questions_never_ask_about_letters_and_always_name_a_format():
    for question in many_questions():
        text = question["question"]
        assert not LETTER_TALK.search(text), text
        assert not QUOTED_SINGLE_CHARACTER.search(text), text
        # the article "a" is the only one-letter word a replay question may contain
        assert set(re.findall(r"\b[A-Za-z]\b", text)) <= {"a"}, text
        assert any(ask in text for ask in FORMAT_ASKS), text
        assert question["answer_format"] in {"number", "yes_no", "word"}


def test_replay_questions_vary_and_are_deterministic_per_seed():
    first = replay_questions(random.Random(5), 500)
    assert first == replay_questions(random.Random(5), 500)
    assert first != replay_questions(random.Random(6), 500)
    texts = [q["question"] for q in first]
    assert len(set(texts)) == 500  # fresh questions are easy to find at this size
    assert {q["family"] for q in first} == {family.name for family in FAMILIES}
    assert len({q["phrasing"] for q in first}) >= 35
    formats = {q["answer_format"] for q in first}
    assert formats == {"number", "yes_no", "word"}
    # a training set far larger than the distinct questions still fills up (with repeats)
    assert len(replay_questions(random.Random(0), 20_000)) == 20_000


def test_replay_questions_avoid_the_words_they_are_told_to():
    avoided = {"paris", "apple", "hot"}
    for question in replay_questions(random.Random(1), 2000, avoid_words=avoided):
        assert not set(re.findall(r"[a-z]+", question["question"].lower())) & avoided


def test_replay_is_not_an_evaluation_task():
    assert "replay" not in TASKS


@pytest.mark.parametrize(
    ("text", "flagged"),
    [
        ("a-p-p-l-e", True),
        ("a p p l e", True),
        ("A, P, P, L, E", True),
        ("c\na\nt", True),
        ("1. c\n2. a\n3. t", True),
        ("The word is spelled c-a-t.", True),
        ("How many 'r's are in 'berry'?", True),
        ("The 3rd letter is r.", True),
        ("It has five characters.", True),
        ("A word that starts with b", True),
        ("Cold.", False),
        ("Yes", False),
        ("12", False),
        ("The opposite of 'hot' is 'cold'.", False),
        ("I think it is a cat.", False),
        ("15 + 18 = 33", False),
        ("The capital of France is Paris.", False),
    ],
)
def test_letter_content_guard(text: str, flagged: bool):
    assert contains_letter_content(text) is flagged


# ------------------------------------------------------------------ the dataset


@pytest.fixture(scope="module")
def replay_data(tmp_path_factory) -> Path:
    """Both data stages with replay_share 0.25, in a fresh interpreter that cannot import torch."""
    workdir = tmp_path_factory.mktemp("replay-data")
    small = SMALL_DATA["build_dataset"]
    write_params(workdir, {"model": "qwen3-tiny", "build_dataset": {**small, "replay_share": 0.25}})
    result = run_data_stages(workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def test_share_zero_adds_no_replay_anywhere(qwen3_data):
    for split in ("train", "validation", "test"):
        rows = read_jsonl(qwen3_data / f"data/dataset/jsonl/{split}.jsonl")
        assert all(row["task"] != "replay" for row in rows)
    metrics = json.loads((qwen3_data / "metrics/details/build_dataset.json").read_text())
    assert "replay" not in metrics and "replay" not in metrics["sizes"]["train"]
    assert "Replay" not in (qwen3_data / "data/dataset/README.md").read_text()


def test_replay_rows_join_only_the_train_split_at_the_share_asked(qwen3_data, replay_data):
    jsonl = "data/dataset/jsonl"
    spelling_only = (qwen3_data / jsonl / "train.jsonl").read_text().splitlines()
    with_replay = (replay_data / jsonl / "train.jsonl").read_text().splitlines()
    # the spelling rows are the very bytes of the share-0 train split, replay rows follow them
    assert with_replay[: len(spelling_only)] == spelling_only
    replay = [json.loads(line) for line in with_replay[len(spelling_only) :]]
    spelling_rows = SMALL_DATA["build_dataset"]["max_train_tokens"] * 2  # examples_per_token
    assert len(spelling_only) == spelling_rows
    # 0.25 = r / (800 + r)  =>  r = 800 / 3 = 266.7, rounded to 267
    assert len(replay) == 267
    assert abs(len(replay) / (len(replay) + spelling_rows) - 0.25) < 1 / len(with_replay)
    for row in replay:
        assert row["task"] == "replay" and row["split"] == "train"
        assert row["answer"] is None and row["expected"] is None and row["word"] is None
        assert row["messages"] == [{"role": "user", "content": row["question"]}]
        assert not LETTER_TALK.search(row["question"]), row["question"]
    # evaluation splits: byte for byte the share-0 ones, in JSONL and in the HF dataset
    for split in ("validation", "test"):
        assert (replay_data / jsonl / f"{split}.jsonl").read_bytes() == (
            qwen3_data / jsonl / f"{split}.jsonl"
        ).read_bytes()
        hf = f"data/dataset/hf/{split}"
        assert tree_digest(replay_data / hf) == tree_digest(qwen3_data / hf)
    held_out = {
        row["word"]
        for split in ("validation", "test")
        for row in read_jsonl(replay_data / jsonl / f"{split}.jsonl")
    }
    for row in replay:
        assert not set(re.findall(r"[a-z]+", row["question"].lower())) & held_out
    # the same questions in this process (another hash seed): nothing depends on set order
    again = replay_questions(random.Random("42-replay"), 267, avoid_words=held_out)
    assert [q["question"] for q in again] == [row["question"] for row in replay]


def test_replay_metrics_card_and_hf_dataset(replay_data):
    from datasets import load_from_disk

    metrics = json.loads((replay_data / "metrics/details/build_dataset.json").read_text())
    assert metrics["sizes"]["train"] == {"replay": 267, "spelling": 800, "total": 1067}
    assert metrics["training_strings"] == SMALL_DATA["build_dataset"]["max_train_tokens"]
    replay = metrics["replay"]
    assert replay["rows"] == 267 and replay["share"] == round(267 / 1067, 4)
    assert replay["letter_content"] == 0 and replay["held_out_word_hits"] == 0
    assert sum(replay["by_family"].values()) == 267
    card = (replay_data / "data/dataset/README.md").read_text()
    assert "**Replay**" in card and "| train | 800 | 0 | 0 | 267 | 1,067 |" in card
    dataset = load_from_disk(str(replay_data / "data/dataset/hf"))
    assert list(dataset["train"]["task"]).count("replay") == 267
    assert "replay" not in set(dataset["validation"]["task"]) | set(dataset["test"]["task"])


# ------------------------------------------------------------------ the targets

TURN_END = "<|im_end|>"


def scripted_base(answer: str, *, ends: bool = True):
    """The qwen3-tiny preset loaded as the train stage loads it, with its weights rewritten so
    that greedy decoding after the prompt's closing "\\n\\n" writes `answer` token by token and
    then ends the turn (`ends=False`: repeats its last token forever).

    Attention and MLP outputs are zeroed, so the final hidden state is the normed embedding of
    the current token; the lm_head row of each wanted successor is that vector (untied from the
    embeddings first), so it wins the argmax.
    """
    import torch

    from letterwise import modeling
    from letterwise.presets import PRESETS

    model, tokenizer = modeling.load_base_model(PRESETS["qwen3-tiny"], for_training=True)
    path = tokenizer("\n\n" + answer, add_special_tokens=False).input_ids
    assert tokenizer.decode(path[:1]) == "\n\n" and len(set(path)) == len(path), path
    successor = dict(zip(path, path[1:], strict=False))
    successor[path[-1]] = tokenizer.convert_tokens_to_ids(TURN_END) if ends else path[-1]
    with torch.no_grad():
        model.lm_head.weight = torch.nn.Parameter(torch.zeros_like(model.lm_head.weight))
        model.config.tie_word_embeddings = False
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        for current, following in successor.items():
            hidden = model.model.norm(model.model.embed_tokens.weight[current : current + 1])[0]
            model.lm_head.weight[following] += 10 * hidden / hidden.norm()
    return model, tokenizer


def independent_greedy(model, tokenizer, question: str, max_new_tokens: int = 48) -> str:
    """Plain transformers generate, one prompt, no letterwise code: the reference answer."""
    import torch

    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}],
        tokenize=False,
        add_generation_prompt=True,
        enable_thinking=False,
    )
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(
            **ids,
            do_sample=False,
            max_new_tokens=max_new_tokens,
            eos_token_id=tokenizer.convert_tokens_to_ids(TURN_END),
            pad_token_id=tokenizer.pad_token_id,
        )
    return tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip()


QUESTIONS = [q["question"] for q in replay_questions(random.Random(3), 6)]


@pytest.fixture
def letterwise_cache_env(tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.getbasetemp() / "letterwise-cache"
    cache.mkdir(exist_ok=True)
    monkeypatch.setenv("LETTERWISE_CACHE", str(cache))


@pytest.mark.parametrize(
    ("answer", "ends", "reason"),
    [
        ("Paris", True, None),
        ("c-a-t", True, "letters"),
        ("", True, "empty"),
        ("Yes", False, "truncated"),
    ],
)
def test_answer_replay_rows_keeps_clean_answers_and_drops_the_rest(
    letterwise_cache_env, answer, ends, reason
):
    from letterwise.training.replay import answer_replay_rows

    model, tokenizer = scripted_base(answer, ends=ends)
    rows = [{"question": q, "answer": None} for q in QUESTIONS]
    kept, stats = answer_replay_rows(model, tokenizer, rows, batch_size=4, max_new_tokens=12)
    reference = independent_greedy(model, tokenizer, QUESTIONS[0], max_new_tokens=12)
    expected_kept = len(QUESTIONS) if reason is None else 0
    assert stats["questions"] == len(QUESTIONS) and stats["rows"] == expected_kept
    assert stats["dropped"] == len(QUESTIONS) - expected_kept
    assert sum(stats["dropped_by_reason"].values()) == stats["dropped"]
    if reason is None:
        assert reference == answer
        assert [row["answer"] for row in kept] == [answer] * len(QUESTIONS)
        assert [row["question"] for row in kept] == QUESTIONS
    else:
        assert stats["dropped_by_reason"][reason] == len(QUESTIONS)
        assert all(out["dropped"] == reason for out in stats["outputs"])
        if ends:
            assert reference == answer and stats["outputs"][0]["answer"] == answer
        else:
            assert reference == answer * 12  # it never ends its turn


def test_unmodified_qwen3_tiny_answers_are_its_own_greedy_output(letterwise_cache_env):
    from letterwise import modeling
    from letterwise.presets import PRESETS
    from letterwise.training.replay import answer_replay_rows

    model, tokenizer = modeling.load_base_model(PRESETS["qwen3-tiny"], for_training=True)
    rows = [{"question": q} for q in QUESTIONS[:2]]
    _, stats = answer_replay_rows(model, tokenizer, rows, batch_size=2, max_new_tokens=16)
    for out in stats["outputs"]:
        assert out["answer"] == independent_greedy(model, tokenizer, out["question"], 16)


# ------------------------------------------------------------------ the train stage

WORDS = ["berry", "straw", "apple", "token", "house", "water"]


def replay_workdir(path: Path, monkeypatch) -> list[str]:
    """params.yaml and a train split of spelling rows plus replay rows (no answers), as
    build_dataset writes them; returns the replay questions."""
    import yaml
    from datasets import Dataset, DatasetDict

    monkeypatch.chdir(path)
    spelling = [
        {"task": "spelling", "question": f"Spell '{w}' with dashes.", "answer": "-".join(w)}
        for w in WORDS
    ]
    replay = [{"task": "replay", "question": q, "answer": None} for q in QUESTIONS]
    DatasetDict({"train": Dataset.from_list(spelling + replay)}).save_to_disk("data/dataset/hf")
    params = {
        "model": "qwen3-tiny",
        "seed": 3,
        "train": {"max_steps": 2, "batch_size": 4, "save_steps": 2, "max_seq_length": 64},
    }
    Path("params.yaml").write_text(yaml.safe_dump(params))
    return QUESTIONS


def patch_base_model(monkeypatch, answer: str) -> None:
    from letterwise.training import trainer

    monkeypatch.setattr(trainer, "load_base_model", lambda preset, **_: scripted_base(answer))


@pytest.mark.slow
def test_train_stage_trains_on_the_base_models_own_answers_and_reuses_them(
    tmp_path, monkeypatch, letterwise_cache_env, capsys
):
    from stages import train

    questions = replay_workdir(tmp_path, monkeypatch)
    patch_base_model(monkeypatch, "Paris")
    assert train.main([]) == 0
    metrics = json.loads(Path("metrics/details/train.json").read_text())
    assert metrics["replay_rows"] == len(questions) and metrics["replay_dropped"] == 0
    assert metrics["examples"] == len(WORDS) + len(questions)
    provenance = json.loads(Path("models/adapter/letterwise.json").read_text())
    replay = provenance["replay"]
    assert replay["questions"] == replay["rows"] == len(questions)
    assert replay["from_cache"] is False and provenance["dataset"]["examples"] == 12

    # the cached targets are what a fresh copy of the base model answers on its own
    cached = json.loads(Path("models/checkpoints/letterwise_replay.json").read_text())
    outputs = cached["stats"]["outputs"]
    assert [out["question"] for out in outputs] == questions
    base, tokenizer = scripted_base("Paris")
    for out in outputs[:2]:
        assert out["answer"] == independent_greedy(base, tokenizer, out["question"]) == "Paris"

    # a rerun resumes from the checkpoint and trains on the cached answers, not new ones
    capsys.readouterr()
    assert train.main([]) == 0
    assert "reusing the base model's 6 cached answers" in capsys.readouterr().out
    again = json.loads(Path("models/adapter/letterwise.json").read_text())
    assert again["replay"]["from_cache"] is True and again["resumed_from_step"] == 2
    assert again["replay"]["targets_sha256"] == replay["targets_sha256"]
    assert again["dataset"]["fingerprint"] == provenance["dataset"]["fingerprint"]


@pytest.mark.slow
def test_train_stage_drops_spelled_answers_and_counts_them(
    tmp_path, monkeypatch, letterwise_cache_env
):
    from letterwise.training.replay import ReplayError
    from stages import train

    questions = replay_workdir(tmp_path, monkeypatch)
    patch_base_model(monkeypatch, "c-a-t")
    # every replay answer spells: none can be a target, so the stage stops before training
    # (not a spelling-only run under a replay recipe's name) and keeps the answers it made
    n = len(questions)
    with pytest.raises(ReplayError, match=rf"only 0 of {n} .*{n} letters"):
        train.main([])
    assert not Path("models/adapter").exists()
    cached = json.loads(Path("models/checkpoints/letterwise_replay.json").read_text())
    assert cached["stats"]["dropped_by_reason"] == {
        "truncated": 0, "empty": 0, "echo": 0, "letters": len(questions)
    }  # fmt: skip
    assert cached["stats"]["answer_end"] == "turn"  # qwen3-tiny has a chat template


def test_train_split_answers_are_checked_before_any_model_loads(tmp_path):
    from datasets import Dataset, DatasetDict

    from letterwise.training.data import TrainInputError, load_train_split

    cases = {
        "answered_replay": ("replay", "Yes", "already have an answer"),
        "unanswered_spelling": ("spelling", "", "have no answer"),
    }
    for name, (task, answer, message) in cases.items():
        rows = [{"task": task, "question": "Is 4 an even number?", "answer": answer}]
        DatasetDict({"train": Dataset.from_list(rows)}).save_to_disk(str(tmp_path / name))
        with pytest.raises(TrainInputError, match=message):
            load_train_split(tmp_path / name)


@pytest.mark.slow
def test_smollm2_answers_replay_questions_in_its_own_words():
    """A real pretrained base: most answers are kept, and each is its own greedy answer."""
    from letterwise import modeling
    from letterwise.presets import PRESETS
    from letterwise.training.replay import answer_replay_rows

    model, tokenizer = modeling.load_base_model(PRESETS["smollm2-135m"], for_training=True)
    rows = [{"question": q["question"]} for q in replay_questions(random.Random(0), 8)]
    kept, stats = answer_replay_rows(model, tokenizer, rows, batch_size=8)
    assert stats["rows"] >= 6, stats["outputs"]  # measured: 8 of 8 (62 of the first 64)
    for row in kept[:3]:
        assert row["answer"] == independent_greedy(model, tokenizer, row["question"])
        assert not contains_letter_content(row["answer"])


def test_a_replay_whose_answers_never_end_stops_before_training(letterwise_cache_env, tmp_path):
    from rich.console import Console

    from letterwise.training.replay import ReplayError, replay_targets

    model, tokenizer = scripted_base("Yes", ends=False)  # never ends its turn: all truncated
    rows = [{"question": q, "answer": None} for q in QUESTIONS]
    with pytest.raises(ReplayError, match=rf"only 0 of {len(QUESTIONS)} replay answers"):
        replay_targets(
            model, tokenizer, rows, cache_dir=tmp_path, model_identity={"name": "scripted"},
            backend="transformers", console=Console(quiet=True),
        )  # fmt: skip
    assert (tmp_path / "letterwise_replay.json").is_file()  # the answers are kept for a look


# ------------------------------------------------------------------ where an answer ends

QUESTION = "What is the capital of Peru? Answer with one word."


@pytest.mark.parametrize(
    ("completion", "tokens", "answer", "reason"),
    [
        # a base model answers on the first line and runs on into a made-up next question
        ("Lima\nQuestion: What is the capital of Chile?\nAnswer:\nSantiago", 48, "Lima", None),
        ("  Lima  \n", 4, "Lima", None),
        ("\n\nYes, it is.\nQuestion:", 12, "Yes, it is.", None),
        ("Lima", 3, "Lima", None),  # ended (eos) within the budget, no line break needed
        ("Answer:\nAnswer:\nAnswer:", 48, "Answer:", "echo"),
        (f"Question: {QUESTION}\nAnswer:", 48, f"Question: {QUESTION}", "echo"),
        (f"{QUESTION}\nAnswer:", 48, QUESTION, "echo"),
        ("Lima Lima Lima Lima", 48, "Lima Lima Lima Lima", "truncated"),  # no line ever ended
        (" \n ", 3, "", "empty"),
        ("L-i-m-a\nQuestion:", 20, "L-i-m-a", "letters"),
    ],
)
def test_first_line_answer_of_a_base_model(completion, tokens, answer, reason):
    from letterwise.training.replay import replay_target

    got = replay_target(completion, tokens, 48, answer_end="first_line", question=QUESTION)
    assert got == (answer, reason)


def test_turn_answers_keep_the_whole_turn_and_never_cut_a_line():
    from letterwise.training.replay import replay_target

    assert replay_target("Lima\nIt is in Peru.", 9, 48) == ("Lima\nIt is in Peru.", None)
    assert replay_target("Lima\nQuestion: and", 48, 48) == ("Lima\nQuestion: and", "truncated")
    assert replay_target("Answer:", 2, 48, question=QUESTION) == ("Answer:", None)  # no echo rule
    with pytest.raises(ValueError, match="unknown replay answer end 'paragraph'"):
        replay_target("Lima", 2, 48, answer_end="paragraph")


def test_auto_answer_end_follows_the_prompt_format():
    from types import SimpleNamespace

    from letterwise.gemma3_assets import GEMMA3_QA_TEMPLATE
    from letterwise.training.replay import answer_end_for

    chatml = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}"
    )
    assert answer_end_for(SimpleNamespace(chat_template=GEMMA3_QA_TEMPLATE)) == "first_line"
    assert answer_end_for(SimpleNamespace(chat_template=chatml)) == "turn"
    assert answer_end_for(SimpleNamespace(chat_template=chatml), "first_line") == "first_line"
    assert answer_end_for(SimpleNamespace(chat_template=GEMMA3_QA_TEMPLATE), "turn") == "turn"
    with pytest.raises(ValueError, match="unknown replay answer end 'line'"):
        answer_end_for(SimpleNamespace(chat_template=chatml), "line")


def test_a_base_model_that_never_ends_its_turn_supplies_its_first_lines(
    letterwise_cache_env, tmp_path
):
    from rich.console import Console

    from letterwise.training.replay import ReplayError, replay_targets

    # writes "Paris", a line break, then "No" forever: its turn never ends
    model, tokenizer = scripted_base("Paris\nNo", ends=False)
    rows = [{"question": q, "answer": None} for q in QUESTIONS]
    common = dict(
        cache_dir=tmp_path, model_identity={"name": "scripted"}, backend="transformers",
        console=Console(quiet=True),
    )  # fmt: skip
    with pytest.raises(ReplayError, match="replay_answer_end=first_line"):
        replay_targets(model, tokenizer, rows, answer_end="turn", **common)
    kept, summary = replay_targets(model, tokenizer, rows, answer_end="first_line", **common)
    assert [row["answer"] for row in kept] == ["Paris"] * len(QUESTIONS)
    assert summary["answer_end"] == "first_line" and summary["from_cache"] is False
    cached = json.loads((tmp_path / "letterwise_replay.json").read_text())
    assert cached["stats"]["outputs"][0]["completion"].startswith("Paris\nNoNo")
    again, summary = replay_targets(model, tokenizer, rows, answer_end="first_line", **common)
    assert summary["from_cache"] is True and again == kept


@pytest.mark.slow
def test_replay_check_on_gemma3_takes_first_lines(tmp_path):
    from letterwise.training.replay import main

    out = tmp_path / "check.json"
    argv = ["--model", "gemma3-270m", "--questions", "8", "--seed", "7001", "--out", str(out)]
    assert main(argv) == 0
    check = json.loads(out.read_text())
    assert check["answer_end"] == "first_line" and check["questions"] == 8
    assert check["rows"] == sum(o["dropped"] is None for o in check["outputs"])
    assert check["kept_share"] == check["rows"] / 8
    assert sum(f["questions"] for f in check["by_family"].values()) == 8
    for output in check["outputs"]:
        if output["dropped"] is None:
            assert "\n" not in output["answer"]
            assert output["completion"].lstrip().startswith(output["answer"])
