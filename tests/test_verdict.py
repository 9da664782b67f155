"""letterwise/eval/verdict.py on synthetic per-question bit strings.

Expected values are worked out by hand from the fixture's construction (counts of questions
gained), by brute-force enumeration of every bootstrap resample on tiny inputs, or by
scipy.stats.bootstrap; never read back from the module's constants.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from letterwise.eval.stats import paired_delta
from letterwise.eval.verdict import Plan, hierarchical_delta, verdict_from_dir

REPO_ROOT = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------- fixture helper

N = 200
Q = np.arange(N)
BASE = Q % 5 == 0  # base model right on 40 of 200 questions
FIRST_LETTER = Q < 50  # the first-letter strategy is right on questions 0..49
POSITIONAL_PRIOR = (Q >= 50) & (Q < 90)  # right on 50..89
SPELLING_GAIN = BASE | (Q % 5 == 1) | (Q % 5 == 2)  # +80 questions: delta 0.4
NEGATIVE_GAIN = BASE | (Q % 10 == 1)  # +20 questions: delta 0.1
POSITIVE_GAIN = np.ones(N, dtype=bool)  # +160 questions: delta 0.8
SEEDS = (1, 2, 3)
# the fixtures score 0/1 bits on the plain slot
PLAN = Plan(primary_instrument="cloze", primary_outcome="accuracy")


def bits(values: np.ndarray) -> str:
    return "".join("1" if v else "0" for v in values)


def write_run(
    root: Path,
    arm: str,
    seed: int,
    tuned: dict[str, np.ndarray],
    *,
    ids: list[str] | None = None,
    strategies: dict[str, np.ndarray] | None = None,
) -> Path:
    """root/<arm>-seed<seed>/eval_position.json with per-question results on `position`."""
    if strategies is None:
        strategies = {"first_letter": FIRST_LETTER, "positional_prior": POSITIONAL_PRIOR}
    per_question = {
        "position": {
            "ids": ids or [f"test-position-{i:06d}" for i in range(N)],
            "correct": {
                name: {"base": bits(BASE), "tuned": bits(values)} for name, values in tuned.items()
            },
            "strategy_right": {name: bits(values) for name, values in strategies.items()},
        }
    }
    folder = root / f"{arm}-seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "eval_position.json"
    path.write_text(json.dumps({"position": {"direct": {}}, "per_question": per_question}))
    return path


def write_arms(root: Path, arms: dict[str, dict[str, np.ndarray]], **kwargs) -> Path:
    """Three seeds per arm, every seed with the same tuned bits."""
    for arm, tuned in arms.items():
        for seed in SEEDS:
            write_run(root, arm, seed, tuned, **kwargs)
    return root


def row(verdict: dict, instrument: str, task: str = "position") -> dict:
    (found,) = [r for r in verdict["rows"] if r["task"] == task and r["instrument"] == instrument]
    return found


# --------------------------------------------------------------------------- the rule


def test_transfer_claimed_when_all_three_conditions_hold(tmp_path):
    write_arms(
        tmp_path,
        {
            "spelling": {"cloze": SPELLING_GAIN},
            "negative_control": {"cloze": NEGATIVE_GAIN},
            "positive_control": {"cloze": POSITIVE_GAIN},
        },
    )
    verdict = verdict_from_dir(tmp_path, plan=PLAN)
    cloze = row(verdict, "cloze")
    assert verdict["arms"] == {
        "spelling": [1, 2, 3],
        "negative_control": [1, 2, 3],
        "positive_control": [1, 2, 3],
    }
    # by hand: +80, +20 and +160 questions of 200
    assert cloze["treatment"]["delta"] == pytest.approx(0.4)
    assert cloze["negative_control"]["delta"] == pytest.approx(0.1)
    assert cloze["positive_control"]["delta"] == pytest.approx(0.8)
    assert cloze["treatment_minus_negative"]["delta"] == pytest.approx(0.3)
    assert cloze["treatment_minus_negative"]["ci_low"] > 0
    assert cloze["detects_positive_control"] is True
    # first_letter is wrong on questions 50..199 (150): spelling gains 60 there, the negative
    # control 15, so the difference there is 45/150
    first_letter = cloze["strategies"]["first_letter"]
    assert first_letter["n_wrong"] == 150
    assert first_letter["delta"] == pytest.approx(45 / 150)
    assert cloze["explained_by"] == []
    assert cloze["supports_transfer"] is True
    assert verdict["claimed"] is True
    assert verdict["sentence"].startswith(
        "Position: transfer (spelling minus negative control +0.300 ["
    )
    assert "negative control" in verdict["sentence"]


def test_not_claimed_when_the_positive_control_is_not_detected(tmp_path):
    write_arms(
        tmp_path,
        {
            "spelling": {"cloze": SPELLING_GAIN},
            "negative_control": {"cloze": NEGATIVE_GAIN},
            "positive_control": {"cloze": BASE},  # the positive control gains nothing here
        },
    )
    verdict = verdict_from_dir(tmp_path, plan=PLAN)
    cloze = row(verdict, "cloze")
    assert cloze["positive_control"]["delta"] == 0
    assert cloze["positive_control"]["ci_low"] == 0  # every resample of all-zero deltas is 0
    assert cloze["detects_positive_control"] is False
    assert cloze["treatment_minus_negative"]["ci_low"] > 0  # (b) alone does not make a claim
    assert cloze["supports_transfer"] is False
    assert verdict["claimed"] is False
    assert verdict["sentence"].startswith("Position: inconclusive")
    assert "No transfer" not in verdict["sentence"]
    assert "positive control not detected" in verdict["sentence"]


def test_not_claimed_when_a_strategy_explains_the_gain(tmp_path):
    # the spelling arm gains only on questions where the first letter is the right answer
    first_letter_only = BASE | FIRST_LETTER
    write_arms(
        tmp_path,
        {
            "spelling": {"cloze": first_letter_only},
            "negative_control": {"cloze": BASE},
            "positive_control": {"cloze": POSITIVE_GAIN},
        },
    )
    verdict = verdict_from_dir(tmp_path, plan=PLAN)
    cloze = row(verdict, "cloze")
    # overall: 40 of questions 0..49 gained (10 of them were already right): 40/200
    assert cloze["treatment_minus_negative"]["delta"] == pytest.approx(0.2)
    assert cloze["treatment_minus_negative"]["ci_low"] > 0
    assert cloze["detects_positive_control"] is True
    # on the 150 questions first_letter gets wrong nobody gains: exactly 0, interval [0, 0]
    first_letter = cloze["strategies"]["first_letter"]
    assert first_letter["delta"] == 0 and first_letter["ci_low"] == 0
    # positional_prior is wrong on 0..49 too, where the gain is: it does not explain it
    assert cloze["strategies"]["positional_prior"]["ci_low"] > 0
    assert cloze["explained_by"] == ["first_letter"]
    assert cloze["supports_transfer"] is False
    assert verdict["claimed"] is False
    assert "explained by first_letter" in verdict["sentence"]


def test_a_strategy_right_on_every_question_explains_the_gain(tmp_path):
    everywhere = {"always": np.ones(N, dtype=bool)}
    write_arms(
        tmp_path,
        {
            "spelling": {"cloze": SPELLING_GAIN},
            "negative_control": {"cloze": NEGATIVE_GAIN},
            "positive_control": {"cloze": POSITIVE_GAIN},
        },
        strategies=everywhere,
    )
    verdict = verdict_from_dir(tmp_path, plan=PLAN)
    cloze = row(verdict, "cloze")
    assert cloze["strategies"]["always"] == {"n_wrong": 0}
    assert cloze["explained_by"] == ["always"]
    assert verdict["claimed"] is False


def test_a_non_format_neutral_instrument_never_supports_a_claim(tmp_path):
    write_arms(
        tmp_path,
        {
            # direct and choice pass every numeric condition, cloze misses the positive control
            "spelling": {"direct": SPELLING_GAIN, "choice": SPELLING_GAIN, "cloze": SPELLING_GAIN},
            "negative_control": {
                "direct": NEGATIVE_GAIN, "choice": NEGATIVE_GAIN, "cloze": NEGATIVE_GAIN,
            },
            "positive_control": {"direct": POSITIVE_GAIN, "choice": POSITIVE_GAIN, "cloze": BASE},
        },
    )  # fmt: skip
    verdict = verdict_from_dir(tmp_path, plan=PLAN)
    for instrument in ("direct", "choice"):
        passing = row(verdict, instrument)
        assert passing["format_neutral"] is False
        assert passing["detects_positive_control"] is True
        assert passing["treatment_minus_negative"]["ci_low"] > 0
        assert passing["explained_by"] == []
        assert passing["supports_transfer"] is False
    assert row(verdict, "cloze")["format_neutral"] is True
    assert verdict["claimed"] is False
    # the sentence speaks only of the format-neutral instrument
    assert "on cloze" in verdict["sentence"]
    assert "direct" not in verdict["sentence"] and "choice" not in verdict["sentence"]


def test_without_a_format_neutral_instrument_the_sentence_says_so(tmp_path):
    write_arms(
        tmp_path,
        {
            "spelling": {"direct": SPELLING_GAIN},
            "negative_control": {"direct": NEGATIVE_GAIN},
            "positive_control": {"direct": POSITIVE_GAIN},
        },
    )
    verdict = verdict_from_dir(tmp_path, plan=PLAN)
    assert verdict["claimed"] is False
    assert verdict["outcomes"]["position"]["outcome"] == "inconclusive"
    assert "cloze was not measured" in verdict["sentence"]


def test_a_missing_arm_means_no_claim_and_the_sentence_names_it(tmp_path):
    write_arms(
        tmp_path,
        {"spelling": {"cloze": SPELLING_GAIN}, "positive_control": {"cloze": POSITIVE_GAIN}},
    )
    verdict = verdict_from_dir(tmp_path, plan=PLAN)
    cloze = row(verdict, "cloze")
    assert verdict["arms"]["negative_control"] == []
    assert cloze["negative_control"] is None
    assert cloze["treatment_minus_negative"] is None
    assert cloze["treatment"]["delta"] == pytest.approx(0.4)  # what exists is still reported
    assert verdict["claimed"] is False
    assert "negative_control" in verdict["sentence"] and "missing" in verdict["sentence"]


def test_per_seed_rows_use_the_ordinary_paired_delta(tmp_path):
    write_arms(
        tmp_path,
        {
            "spelling": {"cloze": SPELLING_GAIN},
            "negative_control": {"cloze": NEGATIVE_GAIN},
            "positive_control": {"cloze": POSITIVE_GAIN},
        },
    )
    verdict = verdict_from_dir(tmp_path, seed=7, resamples=500, plan=PLAN)
    assert len(verdict["per_seed"]) == 9  # 3 arms x 3 seeds x 1 task x 1 instrument
    (spelling_2,) = [r for r in verdict["per_seed"] if r["arm"] == "spelling" and r["seed"] == 2]
    assert spelling_2["base"] == pytest.approx(40 / 200)
    assert spelling_2["tuned"] == pytest.approx(120 / 200)
    assert spelling_2["delta"] == pytest.approx(0.4)
    expected = paired_delta(BASE.tolist(), SPELLING_GAIN.tolist(), seed=7, n_resamples=500)
    assert (spelling_2["ci_low"], spelling_2["ci_high"]) == (
        expected["ci_low"],
        expected["ci_high"],
    )


# --------------------------------------------------------------------------- the bootstrap


def exact_distribution(arms: list[np.ndarray]) -> dict[Fraction, Fraction]:
    """Every two-level resample, enumerated: seeds with replacement within each arm, then one
    shared draw of question indices; statistic = arm 0's mean minus arm 1's (if any)."""
    n = arms[0].shape[1]
    seed_draws = [list(itertools.product(range(a.shape[0]), repeat=a.shape[0])) for a in arms]
    outcomes: Counter = Counter()
    for questions in itertools.product(range(n), repeat=n):
        for seeds in itertools.product(*seed_draws):
            means = [
                Fraction(int(sum(arm[s, q] for s in drawn for q in questions)), len(drawn) * n)
                for arm, drawn in zip(arms, seeds, strict=True)
            ]
            outcomes[means[0] - sum(means[1:])] += 1
    total = sum(outcomes.values())
    return {value: Fraction(count, total) for value, count in outcomes.items()}


def test_two_level_bootstrap_matches_brute_force_enumeration():
    treatment = np.array([[1, 0, 0], [1, 1, 0]])  # two seeds that disagree on question 1
    control = np.array([[1, 0, 0]])  # correlated with the treatment on question 0
    exact = exact_distribution([treatment, control])  # 3^3 x 2^2 x 1 = 108 resamples
    resamples = 200_000
    result = hierarchical_delta(
        treatment, control, seed=3, resamples=resamples, return_resamples=True
    )
    drawn = Counter(np.round(result["resamples"] * 6).astype(int))  # values are multiples of 1/6
    for value, probability in exact.items():
        share = drawn[int(value * 6)] / resamples
        assert share == pytest.approx(float(probability), abs=0.005), value
    assert sum(drawn[int(v * 6)] for v in exact) == resamples  # nothing outside the support
    assert result["delta"] == pytest.approx(1 / 6)  # (3/6 - 1/3)


def test_one_seed_per_arm_is_the_paired_question_bootstrap_of_scipy():
    rng = np.random.default_rng(11)
    n = 80
    base = rng.random(n) < 0.4
    tuned = base | (rng.random(n) < 0.25)
    control_base = rng.random(n) < 0.4
    control_tuned = control_base | (rng.random(n) < 0.1)
    resamples = 20_000

    def difference(tb, tt, cb, ct, axis=-1):
        return (tt.astype(float) - tb).mean(axis) - (ct.astype(float) - cb).mean(axis)

    reference = scipy_stats.bootstrap(
        (base, tuned, control_base, control_tuned),
        difference,
        paired=True,
        vectorized=True,
        n_resamples=resamples,
        method="percentile",
        rng=np.random.default_rng(0),
    ).confidence_interval
    ours = hierarchical_delta(
        tuned.astype(float) - base, control_tuned.astype(float) - control_base,
        seed=1, resamples=resamples,
    )  # fmt: skip
    # two Monte Carlo estimates of the same quantiles on a 1/80 grid
    assert ours["ci_low"] == pytest.approx(reference.low, abs=0.015)
    assert ours["ci_high"] == pytest.approx(reference.high, abs=0.015)
    assert ours["delta"] == pytest.approx(difference(base, tuned, control_base, control_tuned))


def test_p_value_matches_the_exact_bootstrap_tail_and_is_floored():
    # one seed, deltas [1, 1, 0]: the mean is <= 0 only when all 3 draws hit question 2,
    # probability (1/3)^3, so p = 2/27
    result = hierarchical_delta(np.array([1, 1, 0]), seed=5, resamples=200_000)
    assert result["p_value"] == pytest.approx(2 / 27, abs=0.004)
    # every resample above 0: the share at or below 0 is 0 and p is floored at 1/resamples
    floored = hierarchical_delta(np.array([1, 1, 1]), seed=5, resamples=2000)
    assert floored["p_value"] == pytest.approx(1 / 2000)
    assert (floored["ci_low"], floored["ci_high"]) == (1.0, 1.0)


def test_the_interval_widens_when_seeds_disagree():
    pattern = (Q % 10 < 3).astype(float)  # +0.3 on every seed
    agree = np.stack([pattern] * 3)
    # the same pooled mean (0.3) from seeds at 0.0, 0.3 and 0.6
    disagree = np.stack([np.zeros(N), pattern, (Q % 10 < 6).astype(float)])
    assert agree.mean() == pytest.approx(disagree.mean())
    narrow = hierarchical_delta(agree, seed=4)
    wide = hierarchical_delta(disagree, seed=4)
    assert wide["ci_high"] - wide["ci_low"] > 1.5 * (narrow["ci_high"] - narrow["ci_low"])
    # identical seeds add nothing: the same as one seed on the same question draws
    one_seed = hierarchical_delta(pattern, seed=4)
    assert (narrow["ci_low"], narrow["ci_high"]) == (one_seed["ci_low"], one_seed["ci_high"])


def test_a_zero_difference_stays_exactly_zero():
    # both arms: three identical seeds, the same questions. Each resample's mean is a sum of
    # whole numbers divided once, so both arms give the same float and the difference is 0,
    # not +-1e-17 that would read as an interval above 0
    pattern = (Q % 3 == 0).astype(float) - (Q % 7 == 0)
    arm = np.stack([pattern] * 3)
    result = hierarchical_delta(arm, arm.copy(), seed=2, return_resamples=True)
    assert np.all(result["resamples"] == 0)
    assert (result["delta"], result["ci_low"], result["ci_high"]) == (0, 0, 0)
    assert result["p_value"] == 1.0


def test_same_seed_same_output_different_seed_different_resamples(tmp_path):
    data = np.stack([(Q % 4 == 0).astype(float) - (Q % 9 == 0), (Q % 3 == 0).astype(float)])
    first = hierarchical_delta(data, seed=1, return_resamples=True)
    again = hierarchical_delta(data, seed=1, return_resamples=True)
    other = hierarchical_delta(data, seed=2, return_resamples=True)
    assert np.array_equal(first["resamples"], again["resamples"])
    assert not np.array_equal(first["resamples"], other["resamples"])

    write_arms(
        tmp_path,
        {
            "spelling": {"cloze": SPELLING_GAIN},
            "negative_control": {"cloze": NEGATIVE_GAIN},
            "positive_control": {"cloze": POSITIVE_GAIN},
        },
    )
    assert verdict_from_dir(tmp_path, seed=1, plan=PLAN) == verdict_from_dir(
        tmp_path, seed=1, plan=PLAN
    )
    bounds = [
        (r["ci_low"], r["ci_high"])
        for v in (
            verdict_from_dir(tmp_path, seed=1, plan=PLAN),
            verdict_from_dir(tmp_path, seed=2, plan=PLAN),
        )
        for r in (row(v, "cloze")["treatment"], row(v, "cloze")["treatment_minus_negative"])
    ]
    assert bounds[:2] != bounds[2:]


# --------------------------------------------------------------------------- inputs


def test_mismatched_question_ids_are_an_error_naming_the_runs(tmp_path):
    write_arms(
        tmp_path,
        {
            "spelling": {"cloze": SPELLING_GAIN},
            "negative_control": {"cloze": NEGATIVE_GAIN},
        },
    )
    shuffled = [f"test-position-{i:06d}" for i in range(N)]
    shuffled[5], shuffled[6] = shuffled[6], shuffled[5]
    write_run(tmp_path, "positive_control", 1, {"cloze": POSITIVE_GAIN}, ids=shuffled)
    with pytest.raises(ValueError, match="negative_control-seed1 and positive_control-seed1"):
        verdict_from_dir(tmp_path, plan=PLAN)


@pytest.mark.parametrize(
    ("tuned", "message"),
    [("1" * (N - 1), "199 bits for 200 questions"), ("2" * N, "only '0' and '1'")],
)
def test_bad_bit_strings_are_an_error(tmp_path, tuned, message):
    path = write_run(tmp_path, "spelling", 1, {"cloze": SPELLING_GAIN})
    data = json.loads(path.read_text())
    data["per_question"]["position"]["correct"]["cloze"]["tuned"] = tuned
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        verdict_from_dir(tmp_path, plan=PLAN)


def test_runs_without_per_question_results_are_skipped_with_a_note(tmp_path):
    write_arms(
        tmp_path,
        {
            "spelling": {"cloze": SPELLING_GAIN},
            "negative_control": {"cloze": NEGATIVE_GAIN},
            "positive_control": {"cloze": POSITIVE_GAIN},
        },
    )
    old = tmp_path / "spelling-seed9"
    old.mkdir()
    (old / "eval_position.json").write_text(json.dumps({"position": {"direct": {}}}))
    verdict = verdict_from_dir(tmp_path, plan=PLAN)
    assert verdict["arms"]["spelling"] == [1, 2, 3]
    assert any("spelling-seed9" in note and "per_question" in note for note in verdict["notes"])


def test_cli_writes_the_verdict_and_exits_0(tmp_path):
    results = tmp_path / "controls"
    write_arms(
        results,
        {
            "spelling": {"cloze": SPELLING_GAIN, "direct": BASE},
            "negative_control": {"cloze": NEGATIVE_GAIN, "direct": BASE},
            "positive_control": {"cloze": POSITIVE_GAIN, "direct": POSITIVE_GAIN},
        },
    )
    # -X importtime lists every module imported: the CLI runs torch-free
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "letterwise.eval.verdict", str(results),
         "--resamples", "300", "--seed", "3", "--instrument", "cloze", "--outcome", "accuracy"],
        cwd=REPO_ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert "letterwise.eval.verdict" in imported or "letterwise.eval.stats" in imported
    assert "torch" not in imported
    written = json.loads((results / "verdict.json").read_text())
    assert written["claimed"] is True
    assert written["bootstrap"]["resamples"] == 300
    assert " ".join(written["sentence"].split()) in " ".join(done.stdout.split())
    assert {r["instrument"] for r in written["rows"]} == {"cloze", "direct"}


def test_an_instrument_pools_only_the_runs_that_measured_it(tmp_path):
    # seed 1 of every arm measured cloze and choice; seed 2 only cloze (as the seed runs do)
    for arm, gain in (("spelling", SPELLING_GAIN), ("negative_control", NEGATIVE_GAIN),
                      ("positive_control", POSITIVE_GAIN)):  # fmt: skip
        write_run(tmp_path, arm, 1, {"cloze": gain, "choice": gain})
        write_run(tmp_path, arm, 2, {"cloze": gain})
    verdict = verdict_from_dir(tmp_path, plan=PLAN)
    assert row(verdict, "cloze")["seeds"]["spelling"] == [1, 2]
    assert row(verdict, "choice")["seeds"]["spelling"] == [1]
    # by hand: the same +80 of 200 in every run that has the instrument
    assert row(verdict, "choice")["treatment"]["delta"] == pytest.approx(0.4)
    assert {(r["arm"], r["seed"]) for r in verdict["per_seed"] if r["instrument"] == "choice"} == {
        ("spelling", 1),
        ("negative_control", 1),
        ("positive_control", 1),
    }


def test_a_run_that_kept_few_replay_rows_is_flagged(tmp_path):
    from letterwise.eval.verdict import find_runs

    write_run(tmp_path, "negative_control", 1, {"cloze": BASE})
    write_run(tmp_path, "negative_control", 2, {"cloze": BASE})
    write_run(tmp_path, "spelling", 1, {"cloze": SPELLING_GAIN})
    # seed 1 kept 1 of 1,000 replay rows (as Gemma's base did); seed 2 kept 600 of 1,000;
    # the spelling arm has no replay at all
    (tmp_path / "negative_control-seed1" / "train.json").write_text(
        json.dumps({"replay_rows": 1, "replay_dropped": 999})
    )
    (tmp_path / "negative_control-seed2" / "train.json").write_text(
        json.dumps({"replay_rows": 600, "replay_dropped": 400})
    )
    (tmp_path / "spelling-seed1" / "train.json").write_text(
        json.dumps({"replay_rows": 0, "replay_dropped": 0})
    )
    runs, notes = find_runs(tmp_path)
    assert len(runs) == 3  # flagged, not dropped: the numbers stay re-analysable
    assert notes == [
        "negative_control-seed1: trained on 1 of 1000 replay rows (the base model's other "
        "answers were dropped): not its arm's recipe, so differences against it are not "
        "controlled ones"
    ]
