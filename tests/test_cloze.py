"""The format-neutral answer slot (letterwise.eval.cloze, .slots, .stems): stems, batch
calibration, stem averaging, slot scoring and the stem-selection rule.

- stems and prompts are checked as text written out by hand;
- a scripted model (tests.test_choice.ScriptedLM: logits are a rule over the visible text)
  that puts its mass on the right letter after each stem is picked right, whatever the stem;
- batch calibration and the stem rule are checked on numbers worked out by hand;
- on a real small model, the batched slot scores equal a one-candidate-at-a-time forward pass.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from letterwise.data.dataset import example_row
from letterwise.eval.choice_metrics import log_softmax
from letterwise.eval.cloze import (
    CANDIDATE_STEMS,
    STEMS,
    average_over_stems,
    batch_calibrated,
    ends_in_lead_in,
    oracle_question,
    own_spellings,
    render,
    run_cloze,
    stem,
    turns_for,
)
from letterwise.eval.slots import SlotTokenError, encode_slots
from letterwise.eval.stems import choose_stems, habit_share
from letterwise.modeling import load_base_model, load_tokenizer
from letterwise.presets import PRESETS
from tests.test_choice import PEAK, naive_score, scripted

REPO_ROOT = Path(__file__).resolve().parent.parent


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


def test_stems_read_as_written_by_hand():
    assert stem(position_row("straw", 3), "In '{word}', the {place} letter is") == (
        "In 'straw', the 3rd letter is"
    )
    assert stem(position_row("straw", 5, last=True), "{Place} letter:") == "Last letter:"
    assert stem(position_row("balloon", 1), "{Place} letter:") == "1st letter:"
    assert stem(count_row("berry", "r"), "Number of '{letter}'s:") == "Number of 'r's:"
    assert oracle_question(count_row("berry", "r")) == (
        "'berry' is spelled b e r r y.\nHow many 'r's are in 'berry'? Answer with a number only."
    )
    with pytest.raises(ValueError, match="no cloze stem for task 'spelling'"):
        stem({"task": "spelling", "word": "straw"}, "Answer:")


def test_no_scored_stem_ends_in_the_spelling_answers_lead_in():
    # the training answers read "'straw' is spelled s t r a w"
    assert ends_in_lead_in("The {place} letter of '{word}' is")
    assert not ends_in_lead_in("In '{word}', the {place} letter is")
    for task, stems in STEMS.items():
        assert len(stems) >= 3, task
        assert not any(ends_in_lead_in(t) for t in stems), task
        assert set(stems) <= set(CANDIDATE_STEMS[task])


def test_the_scored_stems_are_the_committed_validation_choice():
    committed = json.loads((REPO_ROOT / "docs/results/stems/validation.json").read_text())
    assert committed["split"] == "validation"
    for task, stems in STEMS.items():
        assert list(stems) == committed["choice"][task]["chosen"], task


def test_stem_rule_on_hand_made_shares():
    shares = {"A '{word}' is": 0.05, "B": 0.10, "C": 0.29, "D": 0.31, "E": 0.02, "F": 0.60}
    picked = choose_stems("position", shares, max_share=0.30, n_stems=3)
    assert picked["excluded_lead_in"] == ["A '{word}' is"]
    assert picked["qualifying"] == ["E", "B", "C"]
    assert picked["chosen"] == ["E", "B", "C"] and picked["filled_below_rule"] == []
    picked = choose_stems("count", {"X": 0.9, "Y": 0.2, "Z": 0.95}, max_share=0.30, n_stems=3)
    assert picked["chosen"] == ["Y", "X", "Z"] and picked["filled_below_rule"] == ["X", "Z"]


def test_habit_share_by_hand():
    rows = [position_row("straw", 3), position_row("abc", 2), position_row("tree", 1)]
    assert habit_share("position", rows, ["s", "a", "x"]) == pytest.approx(2 / 3)
    counts = [count_row("berry", "r"), count_row("ab", "z"), count_row("ab", "a")]
    assert habit_share("count", counts, ["1", "1", None]) == pytest.approx(2 / 3)


def test_two_turn_turns_hold_the_models_own_spelling():
    row = count_row("berry", "r")
    spellings = {"berry": ("Spell 'berry'.", "b e r y")}
    assert turns_for("two_turn", row, spellings) == [
        ("user", "Spell 'berry'."), ("assistant", "b e r y"), ("user", row["question"])
    ]  # fmt: skip
    with pytest.raises(ValueError, match="own spelling of 'straw'"):
        turns_for("two_turn", count_row("straw", "r"), spellings)


def test_own_spellings_take_each_models_first_answer_without_thinking():
    rows = [
        {"task": "spelling", "word": "berry", "question": "Spell 'berry'.",
         "base": {"outputs": ["<think>hm</think>b-e-r-r-y"]}, "tuned": {"outputs": ["b e r y"]}},
        {"task": "spelling", "word": "berry", "question": "Again: 'berry'.",
         "base": {"outputs": ["x"]}, "tuned": {"outputs": ["y"]}},
    ]  # fmt: skip
    assert own_spellings(rows, "base") == {"berry": ("Spell 'berry'.", "b-e-r-r-y")}
    assert own_spellings(rows, "tuned") == {"berry": ("Spell 'berry'.", "b e r y")}


def test_batch_calibration_by_hand():
    # three questions about the 2nd letter, one stem, two candidates (a, b), normalised
    # probabilities (0.9, 0.1), (0.6, 0.4), (0.3, 0.7)
    rows = [position_row("abc", 2), position_row("bad", 2), position_row("cab", 2)]
    probs = [(0.9, 0.1), (0.6, 0.4), (0.3, 0.7)]
    scores = [[[math.log(p) for p in pair]] for pair in probs]
    out = batch_calibrated(rows, scores)
    # question 0 against the mean of questions 1 and 2: a 0.45, b 0.55
    assert out[0][0][0] == pytest.approx(math.log(0.9) - math.log(0.45))
    assert out[0][0][1] == pytest.approx(math.log(0.1) - math.log(0.55))
    # question 2 against questions 0 and 1: a 0.75, b 0.25
    assert out[2][0][1] == pytest.approx(math.log(0.7) - math.log(0.25))
    # a question alone in its index group is calibrated against the task's others
    lone = rows + [position_row("abcd", 4, last=True)]
    out = batch_calibrated(lone, scores + [[[math.log(0.5), math.log(0.5)]]])
    assert out[3][0][0] == pytest.approx(math.log(0.5) - math.log((0.9 + 0.6 + 0.3) / 3))


def test_a_fixed_preference_is_calibrated_away():
    # every question prefers "a" by the same amount: calibrated, every candidate ties at 0
    rows = [position_row("abc", 2), position_row("bad", 2), position_row("cab", 2)]
    same = [[log_softmax([3.0, 1.0])] for _ in rows]
    for question in batch_calibrated(rows, same):
        assert question[0] == pytest.approx([0.0, 0.0], abs=1e-12)


def test_stem_average_by_hand():
    averaged = average_over_stems([[-1.0, -2.0], [-3.0, -0.5], [-2.0, -0.5]])
    assert [s.logprob for s in averaged] == pytest.approx([-2.0, -1.0])


def test_scripted_model_that_knows_the_letters_is_picked_right_after_every_stem(qwen_tokenizer):
    rows = [position_row("straw", 3), position_row("balloon", 7, last=True), count_row("ab", "b")]
    script: dict[str, dict[str, float]] = {}
    for row, letter in zip(rows, ["r", "n", None], strict=True):
        prompt = render(qwen_tokenizer, turns_for("cloze", row))
        for template in STEMS[row["task"]]:
            text = prompt + stem(row, template)
            if letter:
                script[text] = {f"\u0120{letter}": PEAK}
            else:  # Qwen3 writes " 1" as "Ġ" then "1" (digits stand alone)
                script[text + " "] = {"1": PEAK}
    model = scripted(qwen_tokenizer, script)
    records = run_cloze(model, qwen_tokenizer, rows, ["cloze"], batch_size=2)["cloze"]
    assert [r["choice"] for r in records] == ["r", "n", "1"]
    assert all(r["correct"] and r["rank"] == 1 for r in records)
    assert records[2]["candidates"] == [str(n) for n in range(10)]
    assert all(len(r["stem_logprobs"]) == 3 for r in records)
    assert records[0]["p_true"] > 0.99


def test_a_candidate_of_two_tokens_is_a_clear_error(qwen_tokenizer):
    with pytest.raises(SlotTokenError, match="candidate ' 1' is 0 tokens after the shared context"):
        encode_slots(qwen_tokenizer, ["Q:"], [["The count is"]], [[" 1", " 10"]])


@pytest.mark.slow  # loads qwen3-tiny and runs every candidate once more, one at a time
def test_slot_scores_equal_one_candidate_at_a_time_on_a_real_model():
    model, tokenizer = load_base_model(PRESETS["qwen3-tiny"])
    rows = [position_row("straw", 2), count_row("balloon", "l"), position_row("ab", 2, last=True)]
    spellings = {"straw": ("Spell 'straw'.", "s t r a w"), "balloon": ("Spell it.", "b-a-l"),
                 "ab": ("Spell 'ab'.", "a b")}  # fmt: skip
    variants = ["cloze", "oracle", "two_turn"]
    records = run_cloze(model, tokenizer, rows, variants, batch_size=2, spellings=spellings)
    for variant in variants:
        for row, record in zip(rows, records[variant], strict=True):
            prompt = render(tokenizer, turns_for(variant, row, spellings))
            for s, template in enumerate(STEMS[row["task"]]):
                # the naive score of " 3" holds the shared " " too: compare normalised scores
                naive = [
                    naive_score(model, tokenizer, prompt + stem(row, template), f" {key}")[0]
                    for key in record["candidates"]
                ]
                assert record["stem_logprobs"][s] == pytest.approx(log_softmax(naive), abs=2e-4)
