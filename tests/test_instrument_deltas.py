"""Every instrument's base-vs-tuned delta on hand-made records: a tuned model that answers more
questions right gets a POSITIVE delta, a worse one a negative delta, and the p-value comes from
the test the data calls for (exact McNemar for one 0/1 score per question, a sign-flip
permutation test for fractions). Deltas are formed in four places, all covered here:
letterwise.eval.scoring.score_task (direct generation), letterwise.eval.instruments
score_spell_first and score_choice, and letterwise.eval.choice_metrics.choice_delta.

Expected numbers are worked out by hand in the comments; exact binomial p-values are computed
with scipy.stats.binomtest here, independently of letterwise.eval.stats.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from scipy.stats import binomtest

from letterwise.eval.choice_metrics import LETTERS, choice_delta, choice_records
from letterwise.eval.instruments import score_choice, score_spell_first
from letterwise.eval.scoring import score_task

WORD = "straw"


def mcnemar(base_only: int, tuned_only: int) -> float:
    """Two-sided exact McNemar p: the discordant pairs against a fair coin."""
    return binomtest(tuned_only, base_only + tuned_only, 0.5).pvalue


def counts(delta: dict) -> tuple[int, int, int, int]:
    return delta["base_only"], delta["tuned_only"], delta["both"], delta["neither"]


def position_rows(letters: str) -> list[dict]:
    """One position question per letter of `letters`, all about WORD."""
    return [
        {
            "id": f"test-position-{i:06d}",
            "task": "position",
            "word": WORD,
            "expected": letter,
            "position": WORD.index(letter) + 1,
            "is_last": WORD.index(letter) == len(WORD) - 1,
            "letter": None,
        }
        for i, letter in enumerate(letters)
    ]


# Six questions. Base is right on the first only; tuned on the first five; both miss the last.
# So base_only = 0, tuned_only = 4, both = 1, neither = 1; accuracy 1/6 vs 5/6; delta +4/6.
ROWS = position_rows("strawt")
BASE_RIGHT = [True, False, False, False, False, False]
TUNED_RIGHT = [True, True, True, True, True, False]


# ---------------------------------------------------------------- direct generation (scoring.py)


def direct_outputs(rows: list[dict], right: list[bool]) -> list[list[str]]:
    # "z" is in no question's answer: a wrong but parseable answer
    return [[row["expected"] if ok else "z"] for row, ok in zip(rows, right, strict=True)]


def test_direct_delta_is_tuned_minus_base():
    outputs = {"base": direct_outputs(ROWS, BASE_RIGHT), "tuned": direct_outputs(ROWS, TUNED_RIGHT)}
    metrics, predictions = score_task("position", ROWS, outputs, n_samples=1, seed=0)
    assert metrics["base"]["accuracy"] == pytest.approx(1 / 6)
    assert metrics["tuned"]["accuracy"] == pytest.approx(5 / 6)
    delta = metrics["delta"]
    assert delta["delta"] == pytest.approx(4 / 6)
    assert counts(delta) == (0, 4, 1, 1)
    assert delta["test"] == "mcnemar_exact"
    assert delta["p_value"] == pytest.approx(mcnemar(0, 4))  # 2 * (1/2)**4 = 0.125
    assert [p["tuned"]["correct"] for p in predictions] == TUNED_RIGHT


def test_direct_delta_is_negative_when_tuned_is_worse():
    outputs = {"base": direct_outputs(ROWS, TUNED_RIGHT), "tuned": direct_outputs(ROWS, BASE_RIGHT)}
    delta = score_task("position", ROWS, outputs, n_samples=1, seed=0)[0]["delta"]
    assert delta["delta"] == pytest.approx(-4 / 6)
    assert (delta["base_only"], delta["tuned_only"]) == (4, 0)
    assert delta["ci_high"] < 0  # every discordant question favours base


# ---------------------------------------------------------------- spell-first (instruments.py)


def spell_first_output(row: dict, right: bool) -> str:
    """A spell-first answer: the spelling, then an answer line (right, or the absent "z")."""
    return f"{' '.join(WORD)}\nAnswer: {row['expected'] if right else 'z'}"


def test_spell_first_delta_is_tuned_minus_base():
    outputs = {
        model: [[spell_first_output(row, ok)] for row, ok in zip(ROWS, right, strict=True)]
        for model, right in (("base", BASE_RIGHT), ("tuned", TUNED_RIGHT))
    }
    metrics, scored = score_spell_first("position", ROWS, outputs, seed=0)
    assert metrics["base"]["accuracy"] == pytest.approx(1 / 6)
    assert metrics["tuned"]["accuracy"] == pytest.approx(5 / 6)
    assert metrics["tuned"]["spelled_right_rate"] == 1.0
    delta = metrics["delta"]
    assert delta["delta"] == pytest.approx(4 / 6)
    assert counts(delta) == (0, 4, 1, 1)
    assert delta["test"] == "mcnemar_exact"
    assert delta["p_value"] == pytest.approx(mcnemar(0, 4))
    assert [r["correct"] for r in scored["tuned"]] == TUNED_RIGHT
    assert [r["correct"] for r in scored["base"]] == BASE_RIGHT


def test_spell_first_delta_on_several_samples_uses_the_sign_flip_test():
    rows = ROWS[:4]
    # right samples out of 3 per question: base 1, 0, 2, 1; tuned 3, 2, 2, 3
    # per-question differences 2/3, 2/3, 0, 2/3: delta = 2/4; three non-zero differences, all
    # positive: 2 of the 2**3 sign patterns are as extreme, p = 0.25 (exact enumeration)
    rights = {"base": [1, 0, 2, 1], "tuned": [3, 2, 2, 3]}
    outputs = {
        model: [
            [spell_first_output(row, k < n_right) for k in range(3)]
            for row, n_right in zip(rows, rights[model], strict=True)
        ]
        for model in rights
    }
    delta = score_spell_first("position", rows, outputs, seed=0)[0]["delta"]
    assert delta["test"] == "sign_flip_permutation"
    assert delta["delta"] == pytest.approx(0.5)
    assert delta["p_value"] == pytest.approx(0.25)
    assert (delta["base_only"], delta["tuned_only"]) == (0, 3)


def test_spell_first_delta_is_negative_when_tuned_is_worse():
    outputs = {
        model: [[spell_first_output(row, ok)] for row, ok in zip(ROWS, right, strict=True)]
        for model, right in (("base", TUNED_RIGHT), ("tuned", BASE_RIGHT))
    }
    delta = score_spell_first("position", ROWS, outputs, seed=0)[0]["delta"]
    assert delta["delta"] == pytest.approx(-4 / 6)
    assert (delta["base_only"], delta["tuned_only"]) == (4, 0)


# ---------------------------------------------------------------- choice scoring


def scores(logprobs: list[float], n_tokens: list[int] | None = None) -> list[SimpleNamespace]:
    """Candidate scores as letterwise.eval.choice hands them over (logprob, n_tokens)."""
    lengths = n_tokens or [1] * len(logprobs)
    return [
        SimpleNamespace(logprob=lp, n_tokens=n) for lp, n in zip(logprobs, lengths, strict=True)
    ]


def position_records(rows: list[dict], right: list[bool], mass: float) -> list[dict]:
    """Choice records: when right, the true letter gets log-prob log(mass) and 'z' less; when
    wrong, 'z' gets the most. Either way the true letter's share of the mass is known."""
    made = []
    for row, ok in zip(rows, right, strict=True):
        logprobs = [-20.0] * len(LETTERS)
        truth, z = LETTERS.index(row["expected"]), LETTERS.index("z")
        logprobs[truth], logprobs[z] = (-0.1, -3.0) if ok else (-3.0, -0.1)
        logprobs[truth] += mass  # shifts the truth's probability, never the pick
        made.append(scores(logprobs))
    return choice_records("position", rows, made)


def test_choice_delta_is_tuned_minus_base_on_position():
    records = {
        "base": position_records(ROWS, BASE_RIGHT, mass=0.0),
        "tuned": position_records(ROWS, TUNED_RIGHT, mass=0.0),
    }
    metrics, returned, teacher_forced = score_choice("position", records, seed=0)
    assert teacher_forced is None and returned is records
    assert metrics["base"]["accuracy"] == pytest.approx(1 / 6)
    assert metrics["tuned"]["accuracy"] == pytest.approx(5 / 6)
    delta = metrics["delta"]
    assert delta["delta"] == pytest.approx(4 / 6)
    assert counts(delta) == (0, 4, 1, 1)
    assert delta["test"] == "mcnemar_exact"
    assert delta["p_value"] == pytest.approx(mcnemar(0, 4))
    assert "delta_normalised" not in metrics  # every candidate is one token long

    worse = score_choice("position", {"base": records["tuned"], "tuned": records["base"]}, seed=0)
    assert worse[0]["delta"]["delta"] == pytest.approx(-4 / 6)


def test_choice_delta_normalised_follows_the_same_order():
    # two-token candidates for some letters: normalising can matter, so it gets its own delta
    def records(right: list[bool]) -> list[dict]:
        made = []
        for row, ok in zip(ROWS, right, strict=True):
            logprobs = [-20.0] * len(LETTERS)
            truth, z = LETTERS.index(row["expected"]), LETTERS.index("z")
            logprobs[truth], logprobs[z] = (-0.2, -3.0) if ok else (-3.0, -0.2)
            n_tokens = [2 if letter == "q" else 1 for letter in LETTERS]
            made.append(scores(logprobs, n_tokens))
        return choice_records("position", ROWS, made)

    metrics = score_choice("position", {"base": records(BASE_RIGHT), "tuned": records(TUNED_RIGHT)},
                           seed=0)[0]  # fmt: skip
    # per token, the truth still wins exactly where it wins in total (q is never the best)
    assert metrics["delta_normalised"]["delta"] == pytest.approx(4 / 6)
    assert metrics["delta_normalised"]["tuned_only"] == 4


def spelling_records(words: list[str], right: list[bool], forced: list[float]) -> list[dict]:
    """Spelling choice records: the word (candidate 0) or its first near-miss scores best; each
    word's teacher-forced letter share is given."""
    rows = [{"id": f"test-spelling-{i:06d}", "task": "spelling", "word": w, "expected": w,
             "answer_format": "spaced"} for i, w in enumerate(words)]  # fmt: skip
    made = [
        scores([0.0, -1.0, -1.0, -1.0, -1.0] if ok else [-1.0, 0.0, -1.0, -1.0, -1.0])
        for ok in right
    ]
    teacher = [SimpleNamespace(fraction=f, exact_fraction=f, predicted=("x",)) for f in forced]
    return choice_records("spelling", rows, made, teacher_forced=teacher)


def test_choice_and_teacher_forced_deltas_on_spelling():
    words = ["straw", "berry", "kitchen"]
    base = spelling_records(words, [True, False, False], [0.2, 0.4, 0.6])
    tuned = spelling_records(words, [True, True, True], [0.6, 0.8, 1.0])
    metrics, _, teacher_forced = score_choice("spelling", {"base": base, "tuned": tuned}, seed=0)
    # raw choice: base 1/3, tuned 3/3; tuned_only = 2, p = 2 * (1/2)**2 = 0.5
    assert metrics["delta"]["delta"] == pytest.approx(2 / 3)
    assert metrics["delta"]["p_value"] == pytest.approx(mcnemar(0, 2))
    # teacher forced: +0.4 on each of 3 words; all 3 signs positive: p = 2/8 (exact)
    assert teacher_forced["base"]["accuracy"] == pytest.approx(0.4)
    assert teacher_forced["tuned"]["accuracy"] == pytest.approx(0.8)
    assert teacher_forced["delta"]["delta"] == pytest.approx(0.4)
    assert teacher_forced["delta"]["test"] == "sign_flip_permutation"
    assert teacher_forced["delta"]["p_value"] == pytest.approx(0.25)
    assert teacher_forced["delta"]["tuned_only"] == 3


def test_choice_delta_puts_base_first_in_every_field():
    base = position_records(ROWS, BASE_RIGHT, mass=-1.0)  # less mass on the true letter
    tuned = position_records(ROWS, TUNED_RIGHT, mass=0.0)
    deltas = choice_delta(base, tuned, seed=0)
    assert deltas["raw"]["delta"] == pytest.approx(4 / 6)
    assert deltas["raw"]["tuned_only"] == 4 and deltas["raw"]["base_only"] == 0
    # tuned gives the truth more probability on every question: a positive p_true delta
    base_p = [r["p_true"] for r in base]
    tuned_p = [r["p_true"] for r in tuned]
    assert all(t > b for b, t in zip(base_p, tuned_p, strict=True))
    assert deltas["p_true"]["delta"] == pytest.approx(sum(tuned_p) / 6 - sum(base_p) / 6)
    assert deltas["p_true"]["delta"] > 0 and deltas["p_true"]["tuned_only"] == 6
