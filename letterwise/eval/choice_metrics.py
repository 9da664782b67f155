"""Choice scoring without a model: answer candidates, spelling near-misses, the teacher-forced
letter judgement, per-question records, per-task summaries with chance and prior baselines, and
the paired base-vs-tuned deltas.

Torch-free (plain Python, scipy through letterwise.eval.stats), so everything here is tested on
hand-computed numbers. The model side is letterwise.eval.choice.

Candidates per task (the *keys*; the text a model is scored on is `completion_text`):
- position: the 26 lowercase letters, the dataset's answer key format;
- count: "0" .. str(max(9, word length)), so every possible true count is a candidate;
- spelling: the true word and 4 near-misses (`near_misses`), spelled in the row's answer format.

A question's choice is its unique highest-scoring candidate; a tie at the top is no choice
(None) and so wrong, so a model that scores every candidate alike gets no credit by list order.
"""

from __future__ import annotations

import math
import random
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from letterwise.eval import stats
from letterwise.tasks.common import check_word
from letterwise.tasks.spelling import SPELLING_FORMATS

LETTERS = tuple(string.ascii_lowercase)
# English letters from most to least frequent in running text; breaks ties in the priors.
ENGLISH_LETTER_ORDER = "etaoinshrdlcumwfgypbvkjxqz"
NEAR_MISS_KINDS = ("swap", "substitution", "deletion", "doubling")
TASKS = ("spelling", "position", "count")


@dataclass(frozen=True)
class CandidateScore:
    logprob: float  # sum of the log-probabilities of the candidate's tokens
    n_tokens: int


class Scored(Protocol):
    """What a record needs from one candidate's score (letterwise.eval.choice.CandidateScore)."""

    logprob: float
    n_tokens: int


# ----------------------------------------------------------------------------- candidates


def near_misses(word: str, seed: int) -> list[tuple[str, str]]:
    """Four (kind, misspelling) pairs for `word`: an adjacent swap, a substitution, a deletion and
    a doubled letter, each at a seeded random place. Deterministic for (word, seed).

    All four differ from `word` and from each other by construction: a swap of two different
    letters changes exactly 2 places and a substitution exactly 1 (same length), a deletion is
    one letter shorter and a doubling one longer. A word with no two different adjacent letters
    ("ee", "aaa") has no swap that changes it; it gets a second substitution at another place
    instead (kind "substitution2"), which differs from the first in where it changed the word.
    """
    check_word(word, min_length=2)
    rng = random.Random(f"near-miss:{seed}:{word}")

    def substitute(i: int) -> str:
        return word[:i] + rng.choice([c for c in LETTERS if c != word[i]]) + word[i + 1 :]

    swappable = [i for i in range(len(word) - 1) if word[i] != word[i + 1]]
    first_sub = rng.randrange(len(word))
    if swappable:
        i = rng.choice(swappable)
        first = ("swap", word[:i] + word[i + 1] + word[i] + word[i + 2 :])
    else:
        other = rng.choice([i for i in range(len(word)) if i != first_sub])
        first = ("substitution2", substitute(other))
    deleted = rng.randrange(len(word))
    doubled = rng.randrange(len(word))
    misses = [
        first,
        ("substitution", substitute(first_sub)),
        ("deletion", word[:deleted] + word[deleted + 1 :]),
        ("doubling", word[: doubled + 1] + word[doubled:]),
    ]
    spellings = [word] + [miss for _, miss in misses]
    if len(set(spellings)) != len(spellings):  # cannot happen (see above); guards edits
        raise AssertionError(f"near-misses of {word!r} are not all distinct: {spellings}")
    return misses


def count_candidates(word_length: int) -> list[str]:
    return [str(n) for n in range(max(9, word_length) + 1)]


def candidate_keys(task: str, row: dict, seed: int = 0) -> list[str]:
    """The answer keys a question is scored on, in a fixed order (the true one among them)."""
    if task == "position":
        keys = list(LETTERS)
    elif task == "count":
        keys = count_candidates(len(row["word"]))
    elif task == "spelling":
        keys = [row["word"]] + [miss for _, miss in near_misses(row["word"], seed)]
    else:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if row["expected"] not in keys:
        raise ValueError(f"{task} row {row.get('id')}: answer {row['expected']!r} not a candidate")
    return keys


def completion_text(task: str, row: dict, key: str) -> str:
    """A well-formatted answer with this key: the bare key, or for spelling the word spelled in
    the format the question asks for (the row's answer_format, e.g. "s t r a w")."""
    if task == "spelling":
        return SPELLING_FORMATS[row["answer_format"]].spell(key)
    return key


# ----------------------------------------------------------------------------- teacher forcing


@dataclass(frozen=True)
class TeacherForced:
    """Per letter of one spelled word, given the correct spelling up to that letter."""

    letter_right: tuple[bool, ...]  # the model's top-1 token shows this letter (see below)
    token_exact: tuple[bool, ...]  # its top-1 token is exactly the answer's token
    predicted: tuple[str, ...]  # the top-1 token's text at each letter

    @property
    def fraction(self) -> float:
        return sum(self.letter_right) / len(self.letter_right)

    @property
    def exact_fraction(self) -> float:
        return sum(self.token_exact) / len(self.token_exact)


def judge_letters(
    tokenizer: Any,
    prompt: str,
    candidate: str,
    spelled: str,
    word: str,
    scored_ids: Sequence[int],
    top1: Sequence[int],
) -> TeacherForced:
    """Each letter is judged at the answer token holding it, from the model's top-1 token there
    (given the prompt and the correct answer before that token). Right when the top-1 token's
    letters, ignoring separators, whitespace, digits and case, have this letter at the same
    place as the answer token has it: a predicted " t" or "t" or "T" is right for "t", a
    multi-letter "tr" is judged on its first letter. `token_exact` is the strict variant."""
    letter_chars = [len(prompt) + i for i, ch in enumerate(spelled) if ch.isalpha()]
    if len(letter_chars) != len(word):
        raise ValueError(f"spelled answer {spelled!r} does not show the {len(word)} letters")
    if not candidate.startswith(spelled):
        raise ValueError(f"scored candidate {candidate!r} does not start with {spelled!r}")
    full = prompt + candidate
    encoded = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    first = len(ids) - len(list(scored_ids))
    if ids[first:] != list(scored_ids):
        raise ValueError("teacher forcing: the answer tokenizes differently than it was scored")
    right, exact, predicted = [], [], []
    for letter, char in zip(word, letter_chars, strict=True):
        j = next(j for j in range(first, len(ids)) if offsets[j][0] <= char < offsets[j][1])
        place = sum(ch.isalpha() for ch in full[offsets[j][0] : char])
        top = top1[j - first]
        text = tokenizer.decode([top])
        letters = [ch.lower() for ch in text if ch.isalpha()]
        right.append(place < len(letters) and letters[place] == letter)
        exact.append(top == ids[j])
        predicted.append(text)
    return TeacherForced(tuple(right), tuple(exact), tuple(predicted))


# ----------------------------------------------------------------------------- records


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def log_softmax(values: Sequence[float]) -> list[float]:
    """`values` renormalised as log-probabilities over themselves."""
    total = _logsumexp(values)
    return [v - total for v in values]


def _unique_best(values: Sequence[float]) -> int | None:
    best = max(values)
    winners = [i for i, v in enumerate(values) if v == best]
    return winners[0] if len(winners) == 1 else None


def question_record(
    task: str, row: dict, keys: list[str], scores: Sequence[Scored]
) -> dict[str, Any]:
    """One question's choice-scoring record (JSON-ready)."""
    if len(scores) != len(keys):
        raise ValueError(
            f"{task} row {row.get('id')}: {len(scores)} scores for {len(keys)} candidates"
        )
    logprobs = [float(s.logprob) for s in scores]
    n_tokens = [int(s.n_tokens) for s in scores]
    normalised = [lp / n for lp, n in zip(logprobs, n_tokens, strict=True)]
    truth = keys.index(row["expected"])
    raw_pick, norm_pick = _unique_best(logprobs), _unique_best(normalised)
    record: dict[str, Any] = {
        "task": task,
        "word": row["word"],
        "expected": row["expected"],
        "candidates": keys,
        "logprobs": logprobs,
        "n_tokens": n_tokens,
        "choice": None if raw_pick is None else keys[raw_pick],
        "correct": raw_pick == truth,
        "choice_norm": None if norm_pick is None else keys[norm_pick],
        "correct_norm": norm_pick == truth,
        "rank": 1 + sum(lp > logprobs[truth] for lp in logprobs),
        "p_true": math.exp(logprobs[truth] - _logsumexp(logprobs)),
    }
    if task == "position":
        record["position"], record["is_last"] = row["position"], bool(row["is_last"])
    elif task == "count":
        record["letter"] = row["letter"]
    return record


def choice_records(
    task: str,
    rows: Sequence[dict],
    scores: Sequence[Sequence[Scored]],
    *,
    seed: int = 0,
    teacher_forced: Sequence[Any] | None = None,
) -> list[dict[str, Any]]:
    """Per-question records for one task's rows, given each row's candidate scores in the order
    of `candidate_keys(task, row, seed)`. Spelling rows may add their teacher-forced results
    (letterwise.eval.choice.TeacherForced, one per row)."""
    if len(scores) != len(rows):
        raise ValueError(f"{len(scores)} score lists for {len(rows)} {task} rows")
    if teacher_forced is not None and len(teacher_forced) != len(rows):
        raise ValueError(f"{len(teacher_forced)} teacher-forced results for {len(rows)} rows")
    records = []
    for i, (row, row_scores) in enumerate(zip(rows, scores, strict=True)):
        record = question_record(task, row, candidate_keys(task, row, seed), row_scores)
        if task == "spelling":
            record["near_miss_kinds"] = [kind for kind, _ in near_misses(row["word"], seed)]
            if teacher_forced is not None:
                forced = teacher_forced[i]
                record["teacher_forced"] = forced.fraction
                record["teacher_forced_exact"] = forced.exact_fraction
                record["teacher_forced_tokens"] = list(forced.predicted)
        records.append(record)
    return records


# ----------------------------------------------------------------------------- summaries


def lengths_differ(records: Sequence[dict]) -> bool:
    """Whether any question's candidates differ in token count (then normalising can matter)."""
    return any(len(set(r["n_tokens"])) > 1 for r in records)


def majority_answer_accuracy(records: Sequence[dict]) -> float | None:
    """Accuracy of always giving the most common true answer of these very questions."""
    if not records:
        return None
    return Counter(r["expected"] for r in records).most_common(1)[0][1] / len(records)


def positional_prior(records: Sequence[dict]) -> list[str]:
    """Per position question, the letter a model knowing only where letters tend to sit would
    say: the most common letter at that place ("last" for last-letter questions, else the
    1-indexed position) among the OTHER words of these questions (leave-one-word-out, each word
    counted once), ties broken by English letter frequency; "e" when no other word has that place.
    """
    words = sorted({r["word"] for r in records})

    def letter_at(word: str, record: dict) -> str | None:
        if record["is_last"]:
            return word[-1]
        return word[record["position"] - 1] if record["position"] <= len(word) else None

    rank = {letter: i for i, letter in enumerate(ENGLISH_LETTER_ORDER)}
    guesses = []
    for record in records:
        seen = Counter(
            letter
            for word in words
            if word != record["word"] and (letter := letter_at(word, record)) is not None
        )
        if not seen:
            guesses.append(ENGLISH_LETTER_ORDER[0])
            continue
        guesses.append(min(seen, key=lambda letter: (-seen[letter], rank[letter])))
    return guesses


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize_choice(task: str, records: Sequence[dict], *, seed: int = 0) -> dict[str, Any]:
    """One model's choice-scoring summary for one task.

    accuracy/ci_low/ci_high/n/correct: raw choice (sum of candidate log-probs), Wilson 95% CI;
    normalised: the same for per-token mean log-prob, only when candidates differ in length;
    mean_rank of the true answer (1 = top), mean_p_true (its softmax share among candidates);
    baselines: uniform_chance (mean 1/#candidates), majority_answer (in-sample), and for
    position positional_prior (see `positional_prior`); for spelling the teacher-forced letter
    accuracy (mean per-question share of letters right, bootstrap CI with `seed` when not 0/1),
    its exact-token variant and the share of words with every letter right.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    summary = stats.accuracy_ci([bool(r["correct"]) for r in records])
    if lengths_differ(records):
        summary["normalised"] = stats.accuracy_ci([bool(r["correct_norm"]) for r in records])
    summary["mean_rank"] = _mean([r["rank"] for r in records])
    summary["mean_p_true"] = _mean([r["p_true"] for r in records])
    baselines: dict[str, float | None] = {
        "uniform_chance": _mean([1 / len(r["candidates"]) for r in records]),
    }
    if task != "spelling":  # every spelling question has its own answer: no majority
        baselines["majority_answer"] = majority_answer_accuracy(records)
    if task == "position":
        guesses = positional_prior(records)
        baselines["positional_prior"] = _mean(
            [float(g == r["expected"]) for g, r in zip(guesses, records, strict=True)]
        )
    summary["baselines"] = baselines
    if task == "spelling" and records and "teacher_forced" in records[0]:
        summary["teacher_forced"] = stats.mean_ci([r["teacher_forced"] for r in records], seed=seed)
        summary["teacher_forced_exact"] = _mean([r["teacher_forced_exact"] for r in records])
        summary["teacher_forced_all_letters"] = _mean(
            [float(r["teacher_forced"] == 1.0) for r in records]
        )
    return summary


def choice_delta(
    base: Sequence[dict], tuned: Sequence[dict], *, seed: int
) -> dict[str, dict[str, Any]]:
    """Paired tuned - base deltas on the same questions (letterwise.eval.stats.paired_delta):
    raw choice accuracy (exact McNemar), normalised when lengths differ, the probability mass on
    the true answer and, for spelling, the teacher-forced letter accuracy (sign-flip test)."""
    if len(base) != len(tuned):
        raise ValueError(f"paired records need the same questions: {len(base)} vs {len(tuned)}")
    same = ("word", "expected", "candidates")
    for b, t in zip(base, tuned, strict=True):
        if [b[key] for key in same] != [t[key] for key in same]:
            raise ValueError(f"base and tuned records differ in question order at {b['word']!r}")

    def paired(field: str) -> dict[str, Any]:
        return stats.paired_delta(
            [float(r[field]) for r in base], [float(r[field]) for r in tuned], seed=seed
        )

    deltas = {"raw": paired("correct")}
    if lengths_differ(base) or lengths_differ(tuned):
        deltas["normalised"] = paired("correct_norm")
    deltas["p_true"] = paired("p_true")
    if base and "teacher_forced" in base[0] and "teacher_forced" in tuned[0]:
        deltas["teacher_forced"] = paired("teacher_forced")
    return deltas
