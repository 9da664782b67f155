"""The dataset: spelling training rows over the token strings, held-out evaluation words and
questions.

Training data is spelling only, over the English-only token strings from `filter_tokens`.
Evaluation words are real English words (wordfreq) that the tokenizer splits into >= 2 tokens,
at least one a multi-letter alphabetic token, and that never appear (case-insensitively) as a
token string; `leakage_audit` re-checks both properties on the built rows. Torch-free.

With `build_dataset.replay_share` > 0 the train split also gets replay rows (task "replay"):
short-answer questions with no letter-level content whose answers are left empty here and
filled in by the train stage with the base model's own greedy answers (format retention).

`build_dataset.arm` picks what the train split teaches; the held-out splits are identical in
every arm (their own random streams), so arms differ only in training:
- spelling (the treatment): the spelling rows above;
- negative_control: `control_rows` replay turns only (no letter-level content): the same
  recipe and steps with no spelling, so "any LoRA fine-tuning" is measured apart from spelling;
- positive_control: `control_rows` position and count questions (with their answers) about the
  training strings, never a held-out word: every instrument must see this arm's gain on the
  held-out words before it may call a verdict.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import random
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.progress import track

from letterwise.data.vocab import load_vocab_tokenizer, stripped_pieces, word_pieces
from letterwise.params import BuildDatasetParams, Params
from letterwise.presets import resolve_preset
from letterwise.tasks import count, position, replay, spelling

TOKENS_FILE = Path("data/tokens/tokens.jsonl")
EVAL_SPLITS = ("validation", "test")


# Zipf frequency (log10 of occurrences per billion words) bands for the breakdowns.
FREQ_BANDS = ((5.0, "high"), (4.0, "mid"), (3.0, "low"), (float("-inf"), "rare"))


def frequency_band(zipf: float) -> str:
    return next(name for floor, name in FREQ_BANDS if zipf >= floor)


def read_token_strings(path: Path = TOKENS_FILE) -> list[str]:
    if not path.exists():
        raise SystemExit(f"build_dataset: {path} is missing; run `dvc repro filter_tokens` first")
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line)["string"] for line in handle]


def is_multi_token_word(pieces: list[str]) -> bool:
    """>= 2 tokens, at least one of them made of >= 2 letters."""
    return len(pieces) >= 2 and any(len(p) >= 2 and p.isascii() and p.isalpha() for p in pieces)


def candidate_words(params: BuildDatasetParams) -> list[str]:
    """Lowercase ASCII words from wordfreq's top list, in frequency order."""
    from wordfreq import top_n_list

    words = []
    for word in top_n_list("en", params.word_pool):
        if word.isascii() and word.isalpha() and word.islower():
            if params.min_word_length <= len(word) <= params.max_word_length:
                words.append(word)
    return words


def held_out_words(
    tokenizer, training_strings: set[str], params: BuildDatasetParams, rng: random.Random
) -> dict[str, list[str]]:
    """Eligible English words, shuffled with the seed and split into validation and test."""
    eligible = []
    for word in track(
        candidate_words(params), description="scanning English words", transient=True
    ):
        if word in training_strings:
            continue  # a whole-word token: the model would have trained on it
        if is_multi_token_word(word_pieces(tokenizer, word)):
            eligible.append(word)
    needed = params.validation_words + params.test_words
    if len(eligible) < needed:
        raise SystemExit(
            f"build_dataset: only {len(eligible)} eligible held-out words, but "
            f"build_dataset.validation_words + test_words = {needed}; lower them or raise "
            f"build_dataset.word_pool ({params.word_pool})"
        )
    rng.shuffle(eligible)
    # Kept in shuffled order: eval.max_questions takes a prefix, which must not be alphabetical.
    return {
        "validation": eligible[: params.validation_words],
        "test": eligible[params.validation_words : needed],
    }


def example_row(
    split: str, task: str, index: int, word: str, question: dict, band: str | None
) -> dict:
    return {
        "id": f"{split}-{task}-{index:06d}",
        "task": task,
        "split": split,
        "word": word,
        "question": question["question"],
        "answer": question["answer"],
        "expected": question["expected"],
        "phrasing": question["phrasing"],
        "answer_format": question["answer_format"],
        "position": question.get("position"),
        "is_last": bool(question.get("is_last", False)),
        "letter": question.get("letter"),
        "count": question.get("count"),
        "word_length": len(word),
        "freq_band": band,
        "boundary": None,
        "messages": [
            {"role": "user", "content": question["question"]},
            {"role": "assistant", "content": question["answer"]},
        ],
    }


def training_rows(strings: list[str], params: BuildDatasetParams, rng: random.Random) -> list[dict]:
    chosen = strings
    if params.max_train_tokens is not None and params.max_train_tokens < len(strings):
        chosen = sorted(rng.sample(strings, params.max_train_tokens))
    rows = []
    for string in track(chosen, description="spelling training examples", transient=True):
        for question in spelling.training_examples(string, rng, params.examples_per_token):
            rows.append(example_row("train", "spelling", len(rows), string, question, None))
    return rows


def positive_control_rows(
    strings: list[str], n: int, params: BuildDatasetParams, rng: random.Random
) -> list[dict]:
    """`n` train rows alternating position and count questions (with answers, in the eval
    phrasings) about training strings drawn without replacement while they last."""
    pool: list[str] = []
    rows: list[dict] = []
    for index in range(n):
        pool = pool or rng.sample(strings, len(strings))
        string = pool.pop()
        if index % 2 == 0:
            task, question = position.TASK, position.eval_questions(string, rng, 1)[0]
        else:
            task = count.TASK
            question = count.eval_questions(string, rng, 1, absent_rate=params.count_absent_rate)[0]
        rows.append(example_row("train", task, index, string, question, None))
    return rows


def train_split(
    strings: list[str], params: Params, held_out: set[str]
) -> list[dict]:
    """The train split of `params.build_dataset.arm` (module docstring)."""
    settings = params.build_dataset
    if settings.arm == "negative_control":
        return replay_rows(settings.control_rows, random.Random(f"{params.seed}-replay"), held_out)
    if settings.arm == "positive_control":
        rng = random.Random(f"{params.seed}-positive-control")
        return positive_control_rows(strings, settings.control_rows, settings, rng)
    rows = training_rows(strings, settings, random.Random(f"{params.seed}-train"))
    if settings.replay_share > 0:  # its own stream: the spelling rows stay exactly as without
        n_replay = replay_count(len(rows), settings.replay_share)
        rows += replay_rows(n_replay, random.Random(f"{params.seed}-replay"), held_out)
    return rows


def replay_count(spelling_rows: int, share: float) -> int:
    """Replay rows to add so that replay / (spelling + replay) is `share` (rounded)."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"replay_share must be in [0, 1), got {share}")
    return round(share * spelling_rows / (1.0 - share))


def replay_rows(n: int, rng: random.Random, held_out: set[str]) -> list[dict]:
    """`n` train rows of task "replay": a question with no letter-level content and no answer
    yet (the train stage asks the base model). Questions never use a held-out word."""
    rows = []
    for index, question in enumerate(replay.replay_questions(rng, n, avoid_words=held_out)):
        rows.append(
            {
                "id": f"train-replay-{index:06d}",
                "task": replay.TASK,
                "split": "train",
                "word": None,
                "question": question["question"],
                "answer": None,  # the base model's greedy answer, filled in by the train stage
                "expected": None,
                "phrasing": question["phrasing"],
                "answer_format": question["answer_format"],
                "position": None,
                "is_last": False,
                "letter": None,
                "count": None,
                "word_length": None,
                "freq_band": None,
                "boundary": None,
                "messages": [{"role": "user", "content": question["question"]}],
            }
        )
    return rows


def replay_metrics(rows: list[dict], held_out: set[str]) -> dict:
    """Counts for metrics/build_dataset.json, re-checking on the written rows that no replay
    question asks about letters or uses a held-out word."""
    train_total = len(rows)
    replays = [row for row in rows if row["task"] == replay.TASK]
    lettered = [r["question"] for r in replays if replay.contains_letter_content(r["question"])]
    held_out_hits = [
        r["question"]
        for r in replays
        if set(re.findall(r"[a-z]+", r["question"].lower())) & held_out
    ]
    if lettered or held_out_hits:
        raise SystemExit(
            f"build_dataset: replay audit failed: {len(lettered)} questions with letter-level "
            f"content {lettered[:3]}, {len(held_out_hits)} using held-out words "
            f"{held_out_hits[:3]}"
        )
    return {
        "rows": len(replays),
        "share": round(len(replays) / train_total, 4) if train_total else 0.0,
        "distinct_questions": len({r["question"] for r in replays}),
        "by_family": dict(
            sorted(Counter(replay.family_of(r["phrasing"]) for r in replays).items())
        ),
        "letter_content": len(lettered),
        "held_out_word_hits": len(held_out_hits),
    }


BOUNDARIES = ("inside", "edge", "one_token", "across_tokens", "absent")


def token_boundary(row: dict, word_pieces: list[str] | None) -> str | None:
    """Where the asked letter sits among the word's tokens. Position: "inside" a token (not
    its first or last character) or at an "edge" (a one-letter token is all edge). Count:
    every occurrence in "one_token", "across_tokens", or "absent". None without pieces or
    for spelling, or when the pieces do not spell the word (a tokenizer that rewrites it)."""
    if word_pieces is None or "".join(word_pieces) != row["word"] or row["task"] == "spelling":
        return None
    owner = [(i, j, len(piece)) for i, piece in enumerate(word_pieces) for j in range(len(piece))]
    if row["task"] == "position":
        _, j, length = owner[row["position"] - 1]
        return "edge" if j in (0, length - 1) else "inside"
    tokens = {owner[k][0] for k, letter in enumerate(row["word"]) if letter == row["letter"]}
    if not tokens:
        return "absent"
    return "one_token" if len(tokens) == 1 else "across_tokens"


def evaluation_rows(
    split: str,
    words: list[str],
    params: BuildDatasetParams,
    rng: random.Random,
    pieces: Callable[[str], list[str] | None] = lambda word: None,
) -> list[dict]:
    """Spelling, position and count rows for each word; `pieces(word)` (the tokenizer's
    pieces) gives each position/count row its token `boundary`."""
    from wordfreq import zipf_frequency

    per_task: dict[str, list[dict]] = {"spelling": [], "position": [], "count": []}
    multiples = 0  # count questions so far whose answer is >= 2
    for word in words:
        band = frequency_band(zipf_frequency(word, "en"))
        asked = len(per_task["count"]) + params.count_questions_per_word
        # the split keeps at least count_multiple_share of its count questions at answer >= 2
        # (words without a repeated letter are made up for by the next ones that have one)
        owed = math.ceil(params.count_multiple_share * asked - 1e-9) - multiples
        questions = {
            "spelling": spelling.eval_questions(word, rng, 1),
            "position": position.eval_questions(word, rng, params.position_questions_per_word),
            "count": count.eval_questions(
                word, rng, params.count_questions_per_word,
                absent_rate=params.count_absent_rate, multiple=max(owed, 0),
            ),
        }  # fmt: skip
        multiples += sum(q["count"] >= 2 for q in questions["count"])
        for task, task_questions in questions.items():
            for question in task_questions:
                rows = per_task[task]
                row = example_row(split, task, len(rows), word, question, band)
                row["boundary"] = token_boundary(row, pieces(word))
                rows.append(row)
    return [row for task in ("spelling", "position", "count") for row in per_task[task]]


def leakage_audit(tokenizer, training_strings: set[str], splits: dict[str, list[dict]]) -> dict:
    """Recheck the held-out properties on the rows actually written, the train rows included:
    no held-out word is a training string, and no train row is about a held-out word."""
    words = sorted({row["word"] for split in EVAL_SPLITS for row in splits[split]})
    lowered_training = {s.lower() for s in training_strings}
    leaked = [w for w in words if w.lower() in lowered_training]
    lowered_words = {w.lower() for w in words}
    # replay rows have no word (None); every other train row names the string it is about
    in_train = [row for row in splits["train"] if (row.get("word") or "").lower() in lowered_words]
    multi = [w for w in words if is_multi_token_word(word_pieces(tokenizer, w))]
    overlap = set(r["word"] for r in splits["validation"]) & set(r["word"] for r in splits["test"])
    audit = {
        "held_out_words": len(words),
        "leaked_words": len(leaked),
        "multi_token_share": len(multi) / len(words) if words else 0.0,
        "validation_test_overlap": len(overlap),
        "train_rows_with_held_out_words": len(in_train),
        "mean_tokens_per_word": round(
            sum(len(word_pieces(tokenizer, w)) for w in words) / max(len(words), 1), 3
        ),
    }
    problems = []
    if leaked:
        problems.append(f"{len(leaked)} held-out words are training strings: {leaked[:10]}")
    if len(multi) != len(words):
        problems.append(f"{len(words) - len(multi)} held-out words are not multi-token words")
    if overlap:
        problems.append(f"{len(overlap)} words are in both validation and test")
    if in_train:
        named = sorted({row["word"] for row in in_train})
        problems.append(
            f"{len(in_train)} train rows are about held-out words {named[:10]} "
            f"(first row id {in_train[0]['id']}); held-out words must never be trained on"
        )
    if problems:
        raise SystemExit("build_dataset: leakage audit failed: " + "; ".join(problems))
    return audit


def fingerprint(rows: list[dict]) -> str:
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def dataset_features():
    from datasets import Features, Value

    text = Value("string")
    return Features(
        {
            "id": text,
            "task": text,
            "split": text,
            "word": text,
            "question": text,
            "answer": text,
            "expected": text,
            "phrasing": Value("int32"),
            "answer_format": text,
            "position": Value("int32"),
            "is_last": Value("bool"),
            "letter": text,
            "count": Value("int32"),
            "word_length": Value("int32"),
            "freq_band": text,
            "boundary": text,
            "messages": [{"role": text, "content": text}],
        }
    )


def sizes(splits: dict[str, list[dict]]) -> dict[str, dict[str, int]]:
    return {
        name: dict(sorted(Counter(row["task"] for row in rows).items())) | {"total": len(rows)}
        for name, rows in splits.items()
    }


def build(params: Params, console: Console) -> tuple[dict[str, list[dict]], dict]:
    preset = resolve_preset(params.model)
    strings = read_token_strings()
    with console.status(f"loading the {preset.name} tokenizer"):
        tokenizer = load_vocab_tokenizer(preset)
    training_strings = set(strings)
    # Independent streams, so changing the size of one split does not reshuffle another.
    words = held_out_words(
        tokenizer, training_strings, params.build_dataset, random.Random(f"{params.seed}-words")
    )
    held_out = {word for split in EVAL_SPLITS for word in words[split]}
    splits = {"train": train_split(strings, params, held_out)}
    share = params.build_dataset.replay_share
    for split in EVAL_SPLITS:
        rng = random.Random(f"{params.seed}-{split}")
        splits[split] = evaluation_rows(
            split, words[split], params.build_dataset, rng,
            functools.partial(stripped_pieces, tokenizer),
        )  # fmt: skip
    audit = leakage_audit(tokenizer, training_strings, splits)
    metrics = {
        "model": preset.name,
        "arm": params.build_dataset.arm,
        "sizes": sizes(splits),
        "training_strings": len(
            {row["word"] for row in splits["train"] if row["task"] == spelling.TASK}
        ),
        "token_subset_strings": len(strings),
        "leakage": audit,
        "freq_bands": {
            split: dict(
                sorted(
                    Counter(
                        r["freq_band"] for r in splits[split] if r["task"] == "spelling"
                    ).items()
                )
            )
            for split in EVAL_SPLITS
        },
    }
    if share > 0 or params.build_dataset.arm == "negative_control":
        metrics["replay"] = replay_metrics(splits["train"], held_out)
    return splits, metrics
