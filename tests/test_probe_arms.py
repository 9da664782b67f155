"""The study's probe comparison (letterwise.probe.arms) on hand-made probe files whose
selectivities are worked out by hand: per arm and seed, spelling - negative control, the
seed-to-seed row, the reading, and the errors for files that cannot be paired."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from letterwise.probe.__main__ import main
from letterwise.probe.arms import reading, study_probes, summarise_arms

N = 10
LAYERS = ("0", "4")
# letter_count with one counted letter: words 0-4 hold it 0 times, words 5-9 once
COUNT_TRUTH = ["0"] * 5 + ["1"] * 5
CONTROL_TRUTH = ["0"] * N  # every control label is 0
ALL_ONE = ["1"] * N  # a control probe that never says 0: control accuracy 0
PERFECT = COUNT_TRUTH  # accuracy 1.0 -> selectivity 1.0
HALF = ["0"] * N  # right on words 0-4 only: accuracy 0.5 -> selectivity 0.5


def probe_file(count_probe: list[str], count_control: list[str] = ALL_ONE) -> dict:
    """A probe result for N words: letter_count as given at every layer; the other two tasks
    identical in every file (their differences are 0)."""
    fixed = {
        "letter_in_token": (["1" + "0" * 25] * N, ["1" + "0" * 25] * N),
        "letter_position": (["abcdef"] * N, ["abcdef"] * N),
    }
    records = {
        task: {
            "truth": " ".join(truth),
            "control_truth": " ".join(truth),
            "layers": {k: {"probe": " ".join(truth), "control": " ".join(truth)} for k in LAYERS},
        }
        for task, (truth, _) in fixed.items()
    }
    records["letter_count"] = {
        "truth": " ".join(COUNT_TRUTH),
        "control_truth": " ".join(CONTROL_TRUTH),
        "layers": {
            k: {"probe": " ".join(count_probe), "control": " ".join(count_control)} for k in LAYERS
        },
    }
    words = " ".join(f"word{i}" for i in range(N))
    return {"model": "toy", "items": {"words": words, "split": "test"}, "records": records}


def by_layer(rows: list[dict], key: str) -> list[float]:
    return [round(row[key], 6) for row in rows]


def test_spelling_minus_negative_worked_by_hand() -> None:
    summary = summarise_arms(
        {"spelling": {1: probe_file(PERFECT)}, "negative_control": {1: probe_file(HALF)}},
        n_resamples=500,
    )
    count = summary["tasks"]["letter_count"]
    assert count["layers"] == [0, 4]
    assert by_layer(count["arms"]["spelling"], "selectivity") == [1.0, 1.0]
    assert by_layer(count["arms"]["negative_control"], "selectivity") == [0.5, 0.5]
    diff = count["differences"]["spelling - negative_control"]
    assert by_layer(diff, "difference") == [0.5, 0.5]
    # the negative arm's selectivity is the resampled share of words 0-4, so the difference's
    # interval lies strictly between 0 and 1 and holds 0.5
    assert all(0 < row["ci_low"] < 0.5 < row["ci_high"] < 1 for row in diff)
    # two layers: each simultaneous interval is at 97.5%, wider than the 95% one
    assert count["simultaneous_level"] == pytest.approx(0.975)
    assert all(row["simultaneous_low"] <= row["ci_low"] for row in diff)
    assert count["reading"] == "more after spelling training"
    # identical in both arms: the difference is exactly 0, the letters present in both
    in_token = summary["tasks"]["letter_in_token"]
    rows = in_token["differences"]["spelling - negative_control"]
    assert all(row["difference"] == row["ci_low"] == row["ci_high"] == 0 for row in rows)
    assert summary["seeds"] == {"spelling": [1], "negative_control": [1]}


def test_seeds_are_averaged_and_compared() -> None:
    summary = summarise_arms(
        {
            "spelling": {1: probe_file(PERFECT), 2: probe_file(HALF)},
            "negative_control": {1: probe_file(HALF)},
        },
        n_resamples=300,
    )
    count = summary["tasks"]["letter_count"]
    # (1.0 + 0.5) / 2 = 0.75; minus 0.5
    assert by_layer(count["arms"]["spelling"], "selectivity") == [0.75, 0.75]
    diff = count["differences"]["spelling - negative_control"]
    assert by_layer(diff, "difference") == [0.25, 0.25]
    seed_rows = count["seed_to_seed"]["spelling seed 1 - seed 2"]
    assert by_layer(seed_rows, "difference") == [0.5, 0.5]
    # the arms differ by half what the spelling arm's own seeds do
    assert all(row["simultaneous_low"] > 0 for row in diff)
    assert count["reading"] == "within seed-to-seed variation"


def test_readings_by_hand() -> None:
    above = [{"simultaneous_low": 0.1, "simultaneous_high": 0.3}]
    zero = [{"simultaneous_low": -0.1, "simultaneous_high": 0.1}]
    below = [{"simultaneous_low": -0.3, "simultaneous_high": -0.1}]
    assert reading(zero, above, zero) == "absent"
    assert reading(above, above, above) == "more after spelling training"
    assert reading(above, above, below) == "less after spelling training"
    assert reading(above, above, zero) == "present in both arms"
    assert reading(above, zero, zero) == "present, not shown in the negative control"
    # the same selectivity in both arms: the whole pipeline reads "present in both arms"
    same = summarise_arms(
        {"spelling": {1: probe_file(PERFECT)}, "negative_control": {1: probe_file(PERFECT)}},
        n_resamples=200,
    )
    assert same["tasks"]["letter_count"]["reading"] == "present in both arms"
    # a probe no better than its control: absent
    flat = summarise_arms(
        {
            "spelling": {1: probe_file(HALF, HALF)},  # control truth is all 0: control 1.0
            "negative_control": {1: probe_file(HALF, HALF)},
        },
        n_resamples=200,
    )
    assert by_layer(flat["tasks"]["letter_count"]["arms"]["spelling"], "selectivity") == [-0.5] * 2
    assert flat["tasks"]["letter_count"]["reading"] == "absent"


def test_a_difference_no_larger_than_a_reseed_is_not_read_as_a_change() -> None:
    shown = [{"layer": 4, "difference": 0.03, "simultaneous_low": 0.01, "simultaneous_high": 0.05}]
    # one arm's seeds differ by 0.04 at layer 4 (the sign does not matter), 0.01 at layer 8
    reseed = [[{"layer": 4, "difference": -0.04}, {"layer": 8, "difference": 0.01}]]
    assert reading(shown, shown, shown, reseed) == "within seed-to-seed variation"
    # the same gap at another layer only: the shown difference stands
    elsewhere = [[{"layer": 4, "difference": 0.02}, {"layer": 8, "difference": 0.09}]]
    assert reading(shown, shown, shown, elsewhere) == "more after spelling training"
    lower = [
        {**shown[0], "difference": -0.03, "simultaneous_low": -0.05, "simultaneous_high": -0.01}
    ]
    assert reading(shown, shown, lower, reseed) == "within seed-to-seed variation"
    assert reading(shown, shown, lower, elsewhere) == "less after spelling training"


def test_files_that_cannot_be_paired_are_refused() -> None:
    other = probe_file(HALF)
    other["items"]["words"] = "other words"
    with pytest.raises(
        ValueError, match="negative_control-seed1 and spelling-seed1 probed different"
    ):
        summarise_arms({"spelling": {1: probe_file(PERFECT)}, "negative_control": {1: other}})
    relabelled = probe_file(HALF)
    relabelled["records"]["letter_count"]["control_truth"] = " ".join(["1"] * N)
    with pytest.raises(ValueError, match="different letter_count control_truth"):
        summarise_arms({"spelling": {1: probe_file(PERFECT)}, "negative_control": {1: relabelled}})
    with pytest.raises(ValueError, match="negative_control arm.*letterwise.probe study"):
        summarise_arms({"spelling": {1: probe_file(PERFECT)}})


def test_command_writes_the_summary_with_the_base(tmp_path: Path) -> None:
    study = tmp_path / "toy"
    for folder, probe in (("spelling-seed3", PERFECT), ("negative_control-seed2", HALF)):
        (study / folder).mkdir(parents=True)
        (study / folder / "probe.json").write_text(json.dumps(probe_file(probe)))
    # a run made with the probe stage saved the stage's details: its tuned part counts
    (study / "positive_control-seed1").mkdir()
    stage_details = {"model": "toy", "base": probe_file(HALF), "tuned": probe_file(PERFECT)}
    (study / "positive_control-seed1" / "probe.json").write_text(json.dumps(stage_details))
    (study / "validation").mkdir()  # not a run folder: ignored
    base = tmp_path / "base.json"
    base.write_text(json.dumps(probe_file(HALF)))
    assert sorted(study_probes(study)) == ["negative_control", "positive_control", "spelling"]
    assert main(["arms", str(study), "--base", str(base), "--bootstrap", "200"]) == 0
    written = json.loads((study / "probe_arms.json").read_text())
    assert written["seeds"] == {"spelling": [3], "negative_control": [2], "positive_control": [1]}
    assert written["base_file"] == str(base)
    arms = written["tasks"]["letter_count"]["arms"]
    assert by_layer(arms["base"], "selectivity") == [0.5, 0.5]
    assert by_layer(arms["positive_control"], "selectivity") == [1.0, 1.0]  # the tuned part
    with pytest.raises(SystemExit, match="no such file"):
        main(["arms", str(study), "--base", str(tmp_path / "missing.json")])


def test_lens_is_averaged_over_seeds_per_arm() -> None:
    from letterwise.probe.arms import lens_by_arm

    def lens(values: list[float]) -> dict:
        rows = [{"layer": n, "mean_p": v} for n, v in zip((0, 4, 8), values, strict=True)]
        return {"position": {"n": 5, "layers": rows}, "count": {"n": 5, "layers": rows}}

    groups = {
        "spelling": [{"lens": lens([0.0, 0.4, 0.2])}, {"lens": lens([0.0, 0.2, 0.2])}],
        "negative_control": [{"lens": lens([0.1, 0.1, 0.1])}, {}],  # one seed has no lens
    }
    out = lens_by_arm(groups)
    # spelling: means per layer 0.0, 0.3, 0.2 -> peak 0.3 at layer 4, final 0.2, drop 0.1
    assert out["spelling"]["position"] == pytest.approx(
        {"n": 5, "peak_layer": 4, "peak_p": 0.3, "final_layer": 8, "final_p": 0.2, "late_drop": 0.1}
    )
    assert "negative_control" not in out
