"""Choice scoring (letterwise.eval.choice, letterwise.eval.choice_metrics).

Three kinds of check:
- a scripted model whose next-token logits are a rule over the text it can see (through the
  attention mask and the KV cache), so every score is known in closed form: it proves the right
  candidate wins and that padding, masks, positions and the repeated cache line up;
- equality with a naive reference (one full forward of prompt + candidate, no cache, no batch)
  on real small models: SmolLM2-135M (pretrained) and qwen3-tiny;
- near-miss properties and summary numbers worked out by hand.
"""

from __future__ import annotations

import copy
import math
import random
from string import ascii_lowercase
from types import SimpleNamespace

import pytest
import torch

from letterwise.chat import prompt_text
from letterwise.data.dataset import example_row
from letterwise.eval import stats
from letterwise.eval.choice import (
    CandidateScore,
    answer_suffix,
    run_choice,
    score_candidates,
    teacher_forced,
)
from letterwise.eval.choice_metrics import (
    NEAR_MISS_KINDS,
    candidate_keys,
    choice_delta,
    choice_records,
    completion_text,
    count_candidates,
    near_misses,
    positional_prior,
    summarize_choice,
)
from letterwise.modeling import load_base_model, load_tokenizer
from letterwise.presets import PRESETS
from letterwise.tasks import count, position, spelling

EOT = "<|im_end|>"
PEAK = 20.0  # a confident scripted model: P(peaked token) = 1 - 3e-4 over Qwen3's vocabulary


def dataset_rows(task: str, word: str, n: int = 1, seed: int = 0) -> list[dict]:
    module = {"position": position, "count": count, "spelling": spelling}[task]
    questions = module.eval_questions(word, random.Random(seed), n)
    return [example_row("test", task, i, word, q, "mid") for i, q in enumerate(questions)]


def mixed_rows() -> list[dict]:
    rows = []
    for word in ("straw", "ee", "balloon"):
        for task in ("position", "count", "spelling"):
            rows += dataset_rows(task, word, seed=len(rows))
    return rows


# ----------------------------------------------------------------------------- scripted model


class HistoryCache:
    """Stands in for a KV cache: every row's tokens so far (padding included)."""

    def __init__(self, rows: list[list[int]]):
        self.rows = rows

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.rows = [list(self.rows[i]) for i in indices.tolist()]


class ScriptedLM(torch.nn.Module):
    """Next-token logits = next_logits(the tokens this position may attend to).

    What a position sees is worked out from the cache rows plus the new tokens, filtered by the
    attention mask the caller passes, so wrong padding, masks or cache rows give wrong scores.
    Position ids must count the visible tokens (as for an unpadded sequence), or it fails.
    """

    def __init__(self, vocab_size: int, next_logits):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives the module a device
        self.vocab_size, self.next_logits = vocab_size, next_logits

    def forward(
        self,
        input_ids,
        attention_mask,
        position_ids=None,
        past_key_values=None,
        use_cache=False,
        logits_to_keep=0,
        **_,
    ):
        batch, width = input_ids.shape
        past = past_key_values.rows if past_key_values is not None else [[]] * batch
        assert len(past) == batch, "cache rows do not match the batch"
        keep = range(width - logits_to_keep if logits_to_keep else 0, width)
        logits = torch.zeros(batch, len(keep), self.vocab_size)
        rows = []
        for b in range(batch):
            tokens = past[b] + input_ids[b].tolist()
            assert len(tokens) == attention_mask.shape[1], "mask does not cover cache + input"
            visible: list[int] = []
            for t, (token, seen) in enumerate(zip(tokens, attention_mask[b].tolist(), strict=True)):
                if not seen:
                    continue
                visible.append(token)
                column = t - len(past[b])
                if column < 0:
                    continue
                if position_ids is not None:
                    assert int(position_ids[b, column]) == len(visible) - 1, "wrong position id"
                if column in keep:
                    logits[b, column - keep.start] = self.next_logits(visible)
            rows.append(tokens)
        return SimpleNamespace(logits=logits, past_key_values=HistoryCache(rows))


def scripted(tokenizer, script: dict[str, dict[str, float]]) -> ScriptedLM:
    """A model that, after exactly the text `key`, gives the tokens in script[key] those logits
    (all others 0); after any other text every logit is 0 (uniform)."""
    table = {}
    for text, logits in script.items():
        ids = {tokenizer.convert_tokens_to_ids(token): value for token, value in logits.items()}
        assert all(isinstance(i, int) for i in ids), f"not single tokens: {list(logits)}"
        table[text] = ids
    vocab = len(tokenizer)

    def next_logits(visible: list[int]) -> torch.Tensor:
        logits = torch.zeros(vocab)
        for token, value in table.get(tokenizer.decode(visible), {}).items():
            logits[token] = value
        return logits

    return ScriptedLM(vocab, next_logits)


@pytest.fixture(scope="module")
def qwen_tokenizer():
    return load_tokenizer(PRESETS["qwen3-tiny"])


def peaked(vocab: int, peak: float = PEAK) -> tuple[float, float]:
    """log-probs of the peaked token and of any other under logits (peak, 0, 0, ...)."""
    total = math.log(math.exp(peak) + vocab - 1)
    return peak - total, -total


def test_answer_suffix_is_the_end_of_turn_marker(qwen_tokenizer):
    assert answer_suffix(qwen_tokenizer) == EOT
    assert answer_suffix(load_tokenizer(PRESETS["smollm2-135m"])) == EOT


def test_scripted_model_that_knows_the_letters_picks_them(qwen_tokenizer):
    # prompts of different lengths, 2 questions a batch: left padding and cache rows must line up
    rows = [
        *dataset_rows("position", "straw", seed=1),
        *dataset_rows("position", "ab", seed=2),
        *dataset_rows("position", "balloon", seed=3),
    ]
    script = {}
    for row in rows:
        prompt = prompt_text(qwen_tokenizer, row["question"])
        script[prompt] = {row["expected"]: PEAK}
        script[prompt + row["expected"]] = {EOT: PEAK}
    model = scripted(qwen_tokenizer, script)
    records = run_choice(model, qwen_tokenizer, rows, batch_size=2)

    vocab = len(qwen_tokenizer)
    hit, miss = peaked(vocab)
    right = 2 * hit  # the letter, then the end of turn, both peaked
    wrong = miss - math.log(vocab)  # an unpeaked letter, then a uniform next token
    for row, record in zip(rows, records, strict=True):
        assert record["task"] == "position" and record["candidates"] == list(ascii_lowercase)
        assert record["choice"] == row["expected"] and record["correct"] and record["rank"] == 1
        assert record["n_tokens"] == [2] * 26
        truth = record["candidates"].index(row["expected"])
        for i, logprob in enumerate(record["logprobs"]):
            assert logprob == pytest.approx(right if i == truth else wrong, abs=1e-4)
        p_true = 1 / (1 + 25 * math.exp(wrong - right))
        assert record["p_true"] == pytest.approx(p_true, rel=1e-4)


def test_end_of_turn_lets_10_beat_its_own_prefix_1(qwen_tokenizer):
    row = {
        "id": "x", "task": "count", "word": "aaaaaaaaaa", "expected": "10", "letter": "a",
        "question": "How many 'a's are in 'aaaaaaaaaa'? Answer with a number only.",
    }  # fmt: skip
    prompt = prompt_text(qwen_tokenizer, row["question"])
    model = scripted(
        qwen_tokenizer, {prompt: {"1": PEAK}, prompt + "1": {"0": PEAK}, prompt + "10": {EOT: PEAK}}
    )
    [record] = run_choice(model, qwen_tokenizer, [row], batch_size=4)
    vocab = len(qwen_tokenizer)
    hit, miss = peaked(vocab)
    assert record["candidates"] == [str(n) for n in range(11)]
    assert record["n_tokens"] == [2] * 10 + [3]  # "10" is two tokens, then the end of turn
    expected = {"10": 3 * hit, "1": hit + miss}  # "1" then not "0": the turn ends too early
    for key, logprob in zip(record["candidates"], record["logprobs"], strict=True):
        assert logprob == pytest.approx(expected.get(key, miss - math.log(vocab)), abs=1e-4)
    assert record["choice"] == record["choice_norm"] == "10" and record["correct_norm"]

    # Without the end-of-turn marker a prefix can never lose: this is why candidates carry it.
    [[one, ten]] = score_candidates(model, qwen_tokenizer, [prompt], [["1", "10"]], batch_size=1)
    assert one.logprob == pytest.approx(hit, abs=1e-4) and one.n_tokens == 1
    assert ten.logprob == pytest.approx(2 * hit, abs=1e-4) and one.logprob > ten.logprob


def test_teacher_forced_letters_on_a_scripted_speller(qwen_tokenizer):
    row = dataset_rows("spelling", "straw")[0]
    prompt = prompt_text(qwen_tokenizer, row["question"])
    assert row["answer"] == "s t r a w"
    # top-1 after each correct prefix: right, right, wrong, a merged "ab", capital "W"
    predictions = {"": "s", "s": "Ġt", "s t": "Ġx", "s t r": "Ġab", "s t r a": "W"}
    model = scripted(qwen_tokenizer, {prompt + k: {v: PEAK} for k, v in predictions.items()})
    [forced] = teacher_forced(model, qwen_tokenizer, [prompt], ["straw"], batch_size=1)
    assert forced.letter_right == (True, True, False, True, True)
    assert forced.token_exact == (True, True, False, False, False)
    assert forced.predicted == ("s", " t", " x", " ab", "W")
    assert forced.fraction == pytest.approx(0.8) and forced.exact_fraction == pytest.approx(0.4)

    [record] = run_choice(model, qwen_tokenizer, [row], batch_size=1, seed=3)
    assert record["teacher_forced"] == pytest.approx(0.8)
    assert record["teacher_forced_exact"] == pytest.approx(0.4)
    assert record["candidates"][0] == "straw" and len(record["candidates"]) == 5
    assert record["near_miss_kinds"] == list(NEAR_MISS_KINDS)


# ----------------------------------------------------------------------------- real models


def naive_score(model, tokenizer, prompt: str, candidate: str) -> tuple[float, int]:
    """Reference: one full forward of prompt + candidate; sum the log-probs of the joined
    tokens after the longest prefix they share with the prompt's own tokens."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    ids = tokenizer(prompt + candidate, add_special_tokens=False).input_ids
    shared = 0
    while shared < len(prompt_ids) and prompt_ids[shared] == ids[shared]:
        shared += 1
    own = len(ids) - shared
    with torch.no_grad():  # the whole sequence goes through; the head runs where it is read
        logits = model(torch.tensor([ids]), logits_to_keep=own + 1).logits[0, :-1]
    logprobs = logits.float().log_softmax(-1)
    return sum(float(logprobs[k, ids[shared + k]]) for k in range(own)), own


def reference_questions(
    tokenizer, rows: list[dict], letters: int = 26
) -> tuple[list[str], list[list[str]]]:
    """Each row's prompt and candidates as run_choice scores them (position questions: the first
    `letters` letters and the true one), plus two questions on tokenization edge cases."""
    suffix = answer_suffix(tokenizer)
    prompts = [prompt_text(tokenizer, row["question"]) for row in rows]
    candidates = []
    for row in rows:
        keys = candidate_keys(row["task"], row)
        if row["task"] == "position":
            keys = [k for i, k in enumerate(keys) if i < letters or k == row["expected"]]
        candidates.append([completion_text(row["task"], row, k) + suffix for k in keys])
    # letters with and without a leading space (different tokens), and across-boundary merges:
    # "straw" + "berry" re-tokenizes the prompt's last token as "strawberry"
    prompts += [prompts[0], "The word is straw"]
    candidates += [["e" + suffix, " e" + suffix, "E" + suffix], ["berry", " hat"]]
    return prompts, candidates


def assert_matches_naive(model, tokenizer, prompts, candidates, batch_sizes):
    naive = [[naive_score(model, tokenizer, p, c) for c in cands] for p, cands in
             zip(prompts, candidates, strict=True)]  # fmt: skip
    for batch_size in batch_sizes:
        scores = score_candidates(model, tokenizer, prompts, candidates, batch_size=batch_size)
        for cands, row_scores, row_naive in zip(candidates, scores, naive, strict=True):
            assert len(row_scores) == len(cands)
            for cand, score, (logprob, n_tokens) in zip(cands, row_scores, row_naive, strict=True):
                assert isinstance(score, CandidateScore)
                assert score.n_tokens == n_tokens, cand
                assert score.logprob == pytest.approx(logprob, abs=1e-4), cand
    return scores


@pytest.fixture(scope="module")
def smollm2():
    return load_base_model(PRESETS["smollm2-135m"])


@pytest.fixture(scope="module")
def qwen3_tiny():
    return load_base_model(PRESETS["qwen3-tiny"])


@pytest.mark.slow  # ~8 s on a free core, minutes when the CPU is oversubscribed
def test_batched_scores_equal_naive_ones_on_smollm2(smollm2):
    model, tokenizer = smollm2
    rows = [
        *dataset_rows("position", "straw", seed=4),
        *dataset_rows("count", "strawberry", seed=5),
        *dataset_rows("spelling", "ee"),
    ]
    prompts, candidates = reference_questions(tokenizer, rows, letters=6)  # naive costs time
    scores = assert_matches_naive(model, tokenizer, prompts, candidates, batch_sizes=[3])
    e, space_e, capital_e = scores[-2]
    assert e.logprob != pytest.approx(space_e.logprob)  # different tokens, different scores
    assert [s.n_tokens for s in scores[-1]] == [1, 1]  # "Ġstrawberry"; "Ġhat"
    assert [s.n_tokens for s in scores[1]][9:] == [2, 3]  # "9" + end of turn, "1" "0" + end
    assert len({s.n_tokens for s in scores[2]}) == 3  # "e e", "e", "e e e" (+ end of turn)


@pytest.mark.slow
def test_batched_scores_equal_naive_ones_on_qwen3_tiny(qwen3_tiny):
    model, tokenizer = qwen3_tiny
    prompts, candidates = reference_questions(tokenizer, mixed_rows(), letters=8)
    assert_matches_naive(model, tokenizer, prompts, candidates, batch_sizes=[1, 4, 64])


@pytest.mark.slow
def test_scores_through_a_lora_adapter_equal_naive_ones(qwen3_tiny):
    # the tuned model in eval is a PeftModel: cache, positions and masks must pass through it
    from peft import LoraConfig, get_peft_model

    model, tokenizer = qwen3_tiny
    torch.manual_seed(0)
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    tuned = get_peft_model(copy.deepcopy(model), config).eval()
    rows = [*dataset_rows("position", "straw"), *dataset_rows("spelling", "balloon")]
    prompts, candidates = reference_questions(tokenizer, rows, letters=4)
    tuned_scores = assert_matches_naive(tuned, tokenizer, prompts, candidates, batch_sizes=[4])
    base_scores = score_candidates(model, tokenizer, prompts, candidates, batch_size=4)
    assert tuned_scores[0][0].logprob != pytest.approx(base_scores[0][0].logprob, abs=1e-3)


@pytest.mark.slow
def test_run_choice_records_follow_the_rows(qwen3_tiny):
    model, tokenizer = qwen3_tiny
    rows = mixed_rows()
    records = run_choice(model, tokenizer, rows, batch_size=4)
    prompts, candidates = reference_questions(tokenizer, rows)
    scores = score_candidates(
        model, tokenizer, prompts[: len(rows)], candidates[: len(rows)], batch_size=2
    )
    for row, record, row_scores in zip(rows, records, scores, strict=True):
        assert record["task"] == row["task"] and record["word"] == row["word"]
        assert record["candidates"] == candidate_keys(row["task"], row)
        assert record["logprobs"] == pytest.approx([s.logprob for s in row_scores], abs=1e-4)
        assert 0.0 < record["p_true"] < 1.0 and 1 <= record["rank"] <= len(record["candidates"])
        assert ("teacher_forced" in record) == (row["task"] == "spelling")
    spelling_row = next(row for row in rows if row["task"] == "spelling")
    [seeded] = run_choice(model, tokenizer, [spelling_row], batch_size=1, seed=7)
    assert seeded["candidates"] == candidate_keys("spelling", spelling_row, seed=7)


def test_candidate_errors_are_named(qwen3_tiny):
    model, tokenizer = qwen3_tiny
    with pytest.raises(ValueError, match="adds no tokens"):
        score_candidates(model, tokenizer, ["Question:"], [["a", ""]], batch_size=1)
    with pytest.raises(ValueError, match="candidate lists"):
        score_candidates(model, tokenizer, ["a", "b"], [["c"]], batch_size=1)
    with pytest.raises(ValueError, match="unknown task"):
        run_choice(model, tokenizer, [{**mixed_rows()[0], "task": "rhyme"}], batch_size=1)


# ----------------------------------------------------------------------------- candidates


@pytest.mark.parametrize("word", ["ee", "aaa", "ab", "aab", "at", "straw", "balloon", "bookkeeper"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_near_misses_are_distinct_and_of_their_kind(word, seed):
    misses = near_misses(word, seed)
    assert near_misses(word, seed) == misses  # deterministic
    spellings = [word] + [m for _, m in misses]
    assert len(set(spellings)) == 5
    for kind, miss in misses:
        assert set(miss) <= set("abcdefghijklmnopqrstuvwxyz")
        differ = [i for i in range(min(len(word), len(miss))) if word[i] != miss[i]]
        if kind == "swap":
            i = differ[0]
            assert differ == [i, i + 1] and miss[i] == word[i + 1] and miss[i + 1] == word[i]
        elif kind.startswith("substitution"):
            assert len(miss) == len(word) and len(differ) == 1
        elif kind == "deletion":
            assert any(word[:i] + word[i + 1 :] == miss for i in range(len(word)))
        else:  # doubling: one letter written twice
            assert kind == "doubling" and any(
                word[: i + 1] + word[i:] == miss for i in range(len(word))
            )
    kinds = [kind for kind, _ in misses]
    # a swap needs two different adjacent letters; otherwise a second substitution
    has_swap = any(a != b for a, b in zip(word, word[1:], strict=False))
    expected_first = "swap" if has_swap else "substitution2"
    assert kinds == [expected_first, "substitution", "deletion", "doubling"]


def test_near_misses_vary_with_the_seed():
    assert len({tuple(near_misses("bookkeeper", seed)) for seed in range(10)}) > 1


def test_candidate_keys_per_task():
    assert count_candidates(4) == [str(n) for n in range(10)]
    assert count_candidates(12) == [str(n) for n in range(13)]
    row = dataset_rows("count", "strawberry")[0]
    assert candidate_keys("count", row) == [str(n) for n in range(11)]
    assert candidate_keys("position", dataset_rows("position", "ab")[0]) == list(
        "abcdefghijklmnopqrstuvwxyz"
    )
    spelled = dataset_rows("spelling", "straw")[0]
    assert completion_text("spelling", spelled, "staw") == "s t a w"
    with pytest.raises(ValueError, match="not a candidate"):
        candidate_keys("count", {**row, "expected": "42"})


# ----------------------------------------------------------------------------- summaries


def record(task: str, word: str, expected: str, keys: list[str], logprobs, n_tokens=None, **row):
    n_tokens = n_tokens or [1] * len(keys)
    scores = [CandidateScore(lp, n) for lp, n in zip(logprobs, n_tokens, strict=True)]
    base_row = {"word": word, "expected": expected, "position": 1, "is_last": False, "letter": "a"}
    [made] = choice_records(task, [{**base_row, **row}], [scores])
    assert made["candidates"] == keys
    return made


def test_records_and_summary_against_hand_computed_values():
    keys = [str(n) for n in range(10)]
    low = math.log(1e-9)
    # p over candidates 0, 1, 2: 0.5/0.3/0.2 (the rest ~0); token counts 1, 2, 2, 1, ...
    # per token: log(.5) = -0.693, log(.3)/2 = -0.602, log(.2)/2 = -0.805: "1" is the best
    lp = [math.log(0.5), math.log(0.3), math.log(0.2)] + [low] * 7
    n = [1, 2, 2] + [1] * 7
    r1 = record("count", "ab", "0", keys, lp, n)  # true is top: rank 1, p 0.5
    r2 = record("count", "ab", "1", keys, lp, n)  # rank 2, p 0.3
    r3 = record("count", "ab", "2", keys, lp, n)  # rank 3, p 0.2
    tie = [0.0, 0.0] + [low] * 8
    r4 = record("count", "ab", "1", keys, tie)  # tied at the top: no choice
    assert (r1["choice"], r1["correct"], r1["rank"]) == ("0", True, 1)
    assert (r2["choice"], r2["correct"], r2["rank"]) == ("0", False, 2)
    assert (r2["choice_norm"], r2["correct_norm"]) == ("1", True)
    assert not r1["correct_norm"] and r3["rank"] == 3 and not r3["correct_norm"]
    assert (r4["choice"], r4["correct"], r4["rank"]) == (None, False, 1)
    assert r1["p_true"] == pytest.approx(0.5, abs=1e-7)
    assert r2["p_true"] == pytest.approx(0.3, abs=1e-7)
    assert r4["p_true"] == pytest.approx(0.5, abs=1e-7)

    summary = summarize_choice("count", [r1, r2, r3, r4])
    assert summary["accuracy"] == 0.25 and summary["n"] == 4 and summary["correct"] == 1
    assert summary["ci_low"] == pytest.approx(stats.accuracy_ci([1, 0, 0, 0])["ci_low"])
    assert summary["normalised"]["accuracy"] == 0.25  # r2 only
    assert summary["mean_rank"] == pytest.approx((1 + 2 + 3 + 1) / 4)
    assert summary["mean_p_true"] == pytest.approx((0.5 + 0.3 + 0.2 + 0.5) / 4, abs=1e-7)
    # expected answers 0, 1, 2, 1: always "1" is right 2 of 4 times
    assert summary["baselines"] == {"uniform_chance": 0.1, "majority_answer": 0.5}


def test_positional_prior_leaves_the_word_out():
    letters = list("abcdefghijklmnopqrstuvwxyz")
    flat = [0.0] * 26
    questions = [  # (word, position, is_last, expected)
        ("cat", 1, False, "c"),  # others' 1st letters: c (cow, cab), d, b -> "c": right
        ("cow", 1, False, "c"),  # c (cat, cab), d, b -> "c": right
        ("dog", 1, False, "d"),  # c, c, c, b -> "c": wrong
        ("cab", 1, False, "c"),  # c, c, d, b -> "c": right
        ("bee", 3, True, "e"),  # last letters t, w, g, b: a tie, English order t first: wrong
        ("cat", 3, False, "t"),  # 3rd letters w, g, b, e: a tie, e first: wrong
    ]
    records = [
        record("position", w, e, letters, flat, position=p, is_last=last)
        for w, p, last, e in questions
    ]
    assert positional_prior(records) == ["c", "c", "c", "c", "t", "e"]
    baselines = summarize_choice("position", records)["baselines"]
    assert baselines["positional_prior"] == pytest.approx(3 / 6)
    assert baselines["majority_answer"] == pytest.approx(3 / 6)  # "c"
    assert baselines["uniform_chance"] == pytest.approx(1 / 26)
    assert summarize_choice("position", records)["accuracy"] == 0.0  # all tied: no choice


def test_spelling_summary_and_paired_delta():
    def spelled(word: str, right: bool, forced: float) -> dict:
        keys = [word] + [m for _, m in near_misses(word, 0)]
        lp = [0.0, -1.0, -1.0, -1.0, -1.0] if right else [-1.0, 0.0, -1.0, -1.0, -1.0]
        made = record("spelling", word, word, keys, lp, n_tokens=[2, 2, 2, 1, 3])
        return {**made, "teacher_forced": forced, "teacher_forced_exact": forced / 2}

    base = [spelled("straw", False, 0.4), spelled("ee", False, 0.5), spelled("cat", True, 1.0)]
    tuned = [spelled("straw", True, 1.0), spelled("ee", True, 1.0), spelled("cat", True, 1.0)]
    summary = summarize_choice("spelling", base)
    assert summary["accuracy"] == pytest.approx(1 / 3)
    assert summary["baselines"] == {"uniform_chance": pytest.approx(0.2)}
    assert summary["teacher_forced"]["accuracy"] == pytest.approx((0.4 + 0.5 + 1.0) / 3)
    assert summary["teacher_forced_exact"] == pytest.approx((0.2 + 0.25 + 0.5) / 3)
    assert summary["teacher_forced_all_letters"] == pytest.approx(1 / 3)

    delta = choice_delta(base, tuned, seed=0)
    raw = delta["raw"]
    assert raw["delta"] == pytest.approx(2 / 3) and raw["test"] == "mcnemar_exact"
    assert (raw["base_only"], raw["tuned_only"], raw["both"]) == (0, 2, 1)
    assert raw["p_value"] == pytest.approx(0.5)  # two-sided exact: 2 * (1/2)**2
    assert delta["teacher_forced"]["delta"] == pytest.approx((0.6 + 0.5 + 0.0) / 3)
    assert set(delta) == {"raw", "normalised", "p_true", "teacher_forced"}
    with pytest.raises(ValueError, match="question order"):
        choice_delta(base, list(reversed(tuned)), seed=0)
