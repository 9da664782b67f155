"""The format-neutral answer slot (letterwise.eval.cloze): stems, calibration, scoring.

- the prompts are checked as text written out by hand;
- a scripted model (tests.test_choice.ScriptedLM: logits are a rule over the visible text)
  that puts its mass on the right letter after the stem is picked right, and contextual
  calibration turns a model with a fixed letter preference into the content-dependent choice;
- on a real small model, the batched slot scores equal a one-candidate-at-a-time forward pass.
"""

from __future__ import annotations

import math

import pytest

from letterwise.data.dataset import example_row
from letterwise.eval.choice_metrics import CandidateScore
from letterwise.eval.cloze import (
    calibrated,
    oracle_question,
    own_spellings,
    placeholder_question,
    prompts_for,
    render,
    run_cloze,
    slot_text,
    stem,
)
from letterwise.modeling import load_base_model, load_tokenizer
from letterwise.presets import PRESETS
from tests.test_choice import PEAK, naive_score, scripted


def position_row(word: str, index: int, *, last: bool = False) -> dict:
    question = {
        "question": f"What is the {'last' if last else 'nth'} letter of '{word}'?",
        "answer": word[index - 1], "expected": word[index - 1], "phrasing": 0,
        "answer_format": "plain", "position": index, "is_last": last,
        "letter": word[index - 1], "count": None,
    }  # fmt: skip
    return example_row("test", "position", index, word, question, "mid")


def count_row(word: str, letter: str) -> dict:
    question = {
        "question": f"How many '{letter}'s are in '{word}'? Answer with a number only.",
        "answer": str(word.count(letter)), "expected": str(word.count(letter)), "phrasing": 1,
        "answer_format": "plain", "position": None, "is_last": False, "letter": letter,
        "count": word.count(letter),
    }  # fmt: skip
    return example_row("test", "count", 0, word, question, "mid")


@pytest.fixture(scope="module")
def qwen_tokenizer():
    return load_tokenizer(PRESETS["qwen3-tiny"])


def test_stems_and_slots_read_as_written_by_hand():
    assert stem(position_row("straw", 3)) == "The 3rd letter of 'straw' is"
    assert stem(position_row("straw", 5, last=True)) == "The last letter of 'straw' is"
    assert stem(position_row("balloon", 1)) == "The 1st letter of 'balloon' is"
    assert stem(count_row("berry", "r")) == (
        "The number of times the letter 'r' appears in 'berry' is"
    )
    assert stem(count_row("berry", "r"), "N/A") == (
        "The number of times the letter 'r' appears in 'N/A' is"
    )
    assert slot_text("r") == " r." and slot_text("10") == " 10."
    assert placeholder_question(count_row("berry", "r")) == (
        "How many 'r's are in 'N/A'? Answer with a number only."
    )
    assert oracle_question(count_row("berry", "r")) == (
        "'berry' is spelled b e r r y.\nHow many 'r's are in 'berry'? Answer with a number only."
    )
    with pytest.raises(ValueError, match="no cloze stem for task 'spelling'"):
        stem({"task": "spelling", "word": "straw"})


def test_two_turn_prompt_holds_the_models_own_spelling(qwen_tokenizer):
    row = count_row("berry", "r")
    spellings = {"berry": ("Spell 'berry'.", "b e r y")}
    (prompt,) = prompts_for("two_turn", qwen_tokenizer, [row], spellings)
    # ChatML, turn by turn, then the non-thinking reply start and the stem
    assert prompt.startswith("<|im_start|>user\nSpell 'berry'.<|im_end|>\n")
    assert "<|im_start|>assistant\nb e r y<|im_end|>\n" in prompt
    assert prompt.endswith(
        "<|im_start|>user\nHow many 'r's are in 'berry'? Answer with a number only.<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
        "The number of times the letter 'r' appears in 'berry' is"
    )
    with pytest.raises(ValueError, match="own spelling of 'straw'"):
        prompts_for("two_turn", qwen_tokenizer, [count_row("straw", "r")], spellings)


def test_own_spellings_take_each_models_first_answer_without_thinking():
    rows = [
        {"task": "spelling", "word": "berry", "question": "Spell 'berry'.",
         "base": {"outputs": ["<think>hm</think>b-e-r-r-y"]}, "tuned": {"outputs": ["b e r y"]}},
        {"task": "spelling", "word": "berry", "question": "Again: 'berry'.",
         "base": {"outputs": ["x"]}, "tuned": {"outputs": ["y"]}},
    ]  # fmt: skip
    assert own_spellings(rows, "base") == {"berry": ("Spell 'berry'.", "b-e-r-r-y")}
    assert own_spellings(rows, "tuned") == {"berry": ("Spell 'berry'.", "b e r y")}


def test_calibration_against_hand_computed_values():
    # two candidates; the content-free question prefers "a" by 7 nats, the real one by only 2:
    # the word moves the model towards "b", so calibration picks "b"
    real = [CandidateScore(math.log(0.8), 2), CandidateScore(math.log(0.8) - 2.0, 2)]
    free = [CandidateScore(-0.5, 2), CandidateScore(-7.5, 2)]
    out = calibrated(real, free)
    # normalised: real (-0.1269, -2.1269), free (-0.000911, -7.000911)
    assert out[0].logprob == pytest.approx(-0.126928 + 0.000911, abs=1e-5)
    assert out[1].logprob == pytest.approx(-2.126928 + 7.000911, abs=1e-5)
    assert [s.n_tokens for s in out] == [2, 2]
    with pytest.raises(ValueError, match="2 candidates vs 1"):
        calibrated(real, free[:1])


def test_scripted_model_that_knows_the_letters_is_picked_right(qwen_tokenizer):
    rows = [position_row("straw", 3), position_row("balloon", 7, last=True), count_row("ab", "b")]
    prompts = prompts_for("cloze", qwen_tokenizer, rows)
    # Qwen3 writes " r" as one token but " 1" as "Ġ" then "1" (digits stand alone)
    script = {prompts[0]: {"Ġr": PEAK}, prompts[1]: {"Ġn": PEAK},
              prompts[2]: {"Ġ": PEAK}, prompts[2] + " ": {"1": PEAK}}  # fmt: skip
    model = scripted(qwen_tokenizer, script)
    records = run_cloze(model, qwen_tokenizer, rows, ["cloze"], batch_size=2)["cloze"]
    assert [r["choice"] for r in records] == ["r", "n", "1"]
    assert all(r["correct"] and r["rank"] == 1 for r in records)
    # letter slots " x." are 2 tokens; number slots " 0." .. " 9." are 3 ("Ġ", digit, ".")
    assert set(records[0]["n_tokens"]) == {2}
    assert records[2]["candidates"] == [str(n) for n in range(10)]
    assert set(records[2]["n_tokens"]) == {3}


def test_calibration_recovers_the_content_dependent_choice(qwen_tokenizer):
    """A model with a fixed preference for "a" (strong without the word, weaker with it):
    the plain slot picks "a" every time, the calibrated slot picks the word's letter "b"."""
    rows = [position_row("abc", 2)]
    (real,) = prompts_for("cloze", qwen_tokenizer, rows)
    (free,) = prompts_for("cloze_calibrated", qwen_tokenizer, rows)
    model = scripted(qwen_tokenizer, {real: {"Ġa": 5.0, "Ġb": 3.0}, free: {"Ġa": 8.0, "Ġb": 1.0}})
    records = run_cloze(model, qwen_tokenizer, rows, ["cloze", "cloze_calibrated"], batch_size=4)
    assert records["cloze"][0]["choice"] == "a" and not records["cloze"][0]["correct"]
    # calibrated: a vs b differ by (5 - 3) - (8 - 1) = -5; b vs any other letter by 3 - 1 = 2
    assert records["cloze_calibrated"][0]["choice"] == "b"
    assert records["cloze_calibrated"][0]["correct"]
    logprobs = dict(zip(records["cloze_calibrated"][0]["candidates"],
                        records["cloze_calibrated"][0]["logprobs"], strict=True))  # fmt: skip
    assert logprobs["b"] - logprobs["a"] == pytest.approx(5.0, abs=1e-4)
    assert logprobs["b"] - logprobs["z"] == pytest.approx(2.0, abs=1e-4)


@pytest.mark.slow  # loads qwen3-tiny and runs every candidate once more, one at a time
def test_slot_scores_equal_one_candidate_at_a_time_on_a_real_model(qwen_tokenizer):
    model, tokenizer = load_base_model(PRESETS["qwen3-tiny"])
    rows = [position_row("straw", 2), count_row("balloon", "l"), position_row("ab", 2, last=True)]
    spellings = {"straw": ("Spell 'straw'.", "s t r a w"), "balloon": ("Spell it.", "b-a-l"),
                 "ab": ("Spell 'ab'.", "a b")}  # fmt: skip
    variants = ["cloze", "oracle", "two_turn"]
    records = run_cloze(model, tokenizer, rows, variants, batch_size=2, spellings=spellings)
    for variant in variants:
        prompts = prompts_for(variant, tokenizer, rows, spellings)
        for prompt, record in zip(prompts, records[variant], strict=True):
            for key, logprob, n_tokens in zip(
                record["candidates"], record["logprobs"], record["n_tokens"], strict=True
            ):
                reference, own = naive_score(model, tokenizer, prompt, slot_text(key))
                assert n_tokens == own, (variant, key)
                assert logprob == pytest.approx(reference, abs=1e-4), (variant, key)


def test_render_is_the_chat_template_plus_the_reply_start(qwen_tokenizer):
    text = render(qwen_tokenizer, [("user", "Hi?")], "The")
    assert text == (
        "<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nThe"
    )
