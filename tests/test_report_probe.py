"""The report's probe subsection and figures, on a hand-written probe details file."""

from __future__ import annotations

import json

import pytest

from letterwise.report.common import Figures
from letterwise.report.loading import load_inputs
from letterwise.report.probe import (
    check_probe,
    lens_rows,
    probe_lines,
    selectivity_chart,
    selectivity_rows,
)

TASKS = ("letter_in_token", "letter_position", "letter_count")


def layer(n: int, selectivity: float) -> dict:
    return {"layer": n, "selectivity": selectivity, "selectivity_ci_low": selectivity - 0.02,
            "selectivity_ci_high": selectivity + 0.02}  # fmt: skip


def model_block(values: dict[str, list[float]]) -> dict:
    probes = {}
    for task, (at0, at2) in values.items():
        best = max([layer(0, at0), layer(2, at2)], key=lambda r: r["selectivity"])
        probes[task] = {"layers": [layer(0, at0), layer(2, at2)], "best": best}
    lens = {"count": {"n": 5, "layers": [
        {"layer": 0, "mean_p": 0.01, "p_ci_low": 0.0, "p_ci_high": 0.02},
        {"layer": 2, "mean_p": 0.30, "p_ci_low": 0.2, "p_ci_high": 0.4}]}}  # fmt: skip
    return {"probes": probes, "lens": lens, "settings": {"layers": [0, 2], "split": "test"},
            "items": {"fit": 16, "n_words": 10, "split": "test"}}  # fmt: skip


DETAILS = {
    "model": "qwen3-tiny",
    "base": model_block({"letter_in_token": [-0.1, 0.2], "letter_position": [0.0, 0.1],
                         "letter_count": [0.05, 0.15]}),  # fmt: skip
    "tuned": model_block({"letter_in_token": [-0.1, 0.3], "letter_position": [0.0, 0.1],
                          "letter_count": [0.05, 0.12]}),  # fmt: skip
    "tuned_minus_base": {
        "letter_in_token": [{"layer": 0, "difference": 0.0, "ci_low": 0.0, "ci_high": 0.0},
                            {"layer": 2, "difference": 0.1, "ci_low": 0.04, "ci_high": 0.16}],
    },  # fmt: skip
}


def test_rows_have_one_point_per_task_model_and_layer():
    rows = selectivity_rows(DETAILS)
    assert len(rows) == 3 * 2 * 2
    tuned_token = [r for r in rows if r["model"] == "tuned" and r["layer"] == 2
                   and r["task"] == "letter in token (F1)"]  # fmt: skip
    assert len(tuned_token) == 1
    assert [tuned_token[0][k] for k in ("selectivity", "low", "high")] == pytest.approx(
        [0.3, 0.28, 0.32]
    )
    lens = lens_rows(DETAILS)
    assert [(r["model"], r["layer"], r["mean_p"]) for r in lens] == [
        ("base", 0, 0.01), ("base", 2, 0.30), ("tuned", 0, 0.01), ("tuned", 2, 0.30)
    ]  # fmt: skip
    spec = selectivity_chart(rows)
    assert spec["facet"]["column"]["sort"] == [
        "letter in token (F1)", "letter at position", "letter count"]  # fmt: skip


def test_section_quotes_the_best_layers_and_the_largest_change():
    figures = Figures("figs", {"probe_selectivity.png": {}, "probe_lens.png": {}})
    text = "\n".join(probe_lines(DETAILS, json_path := "metrics/details/probe.json", figures))
    assert json_path in text and "fitted on 16 training-vocabulary strings" in text
    # letter in token: base best at layer 2 (+0.200), tuned at layer 2 (+0.300),
    # the largest tuned - base change +0.100 at layer 2; no change rows for the other probes
    row = (
        "| letter in token (mean F1 over 26 letters) | layer 2, +0.200 [+0.180, +0.220] | "
        "layer 2, +0.300 [+0.280, +0.320] | layer 2, +0.100 [+0.040, +0.160] |"
    )
    assert row in text
    assert "| layer 2, +0.120 [+0.100, +0.140] | not measured |" in text
    assert "Figure 1." in text and "Figure 2." in text and "n = ? position, 5 count" in text
    assert "spelling − negative control, per layer" in text


def test_absent_or_broken_probe_results_are_said_not_crashed(tmp_path):
    absent = "\n".join(probe_lines(None, tmp_path / "none.json", Figures("f", {})))
    assert "Absent: no probe results" in absent and "dvc repro probe" in absent
    with pytest.raises(ValueError, match=r"no tuned\.probes\.letter_in_token\.layers"):
        check_probe({"base": DETAILS["base"]}, tmp_path / "p.json")
    broken = tmp_path / "probe.json"
    broken.write_text(json.dumps({"base": DETAILS["base"]}))
    with pytest.raises(SystemExit, match="probe.json: no tuned"):
        load_inputs(loss=[], breakdowns=[], predictions=None, verdict=tmp_path / "v.json",
                    qwen3_data=tmp_path, timing=None, replay=None, probe=broken)  # fmt: skip


# --------------------------------------------------------------------------- the study's arms


def arm_layers(values: list[float]) -> list[dict]:
    return [{"layer": n, "selectivity": v, "ci_low": v - 0.03, "ci_high": v + 0.03}
            for n, v in zip((0, 4), values, strict=True)]  # fmt: skip


def diff_layers(values: list[float]) -> list[dict]:
    return [{"layer": n, "difference": v, "ci_low": v - 0.02, "ci_high": v + 0.02}
            for n, v in zip((0, 4), values, strict=True)]  # fmt: skip


def arms_summary(seed_rows: bool) -> dict:
    def task(reading: str, spelling_minus: list[float]) -> dict:
        return {
            "layers": [0, 4], "simultaneous_level": 0.975, "reading": reading,
            "arms": {"base": arm_layers([0.0, 0.1]), "spelling": arm_layers([0.0, 0.2]),
                     "negative_control": arm_layers([0.0, 0.15])},
            "differences": {"spelling - negative_control": diff_layers(spelling_minus)},
            "seed_to_seed": (
                {"negative_control seed 2 - seed 3": diff_layers([0.0, -0.01])} if seed_rows
                else {}
            ),
        }  # fmt: skip

    lens = {"spelling": {"position": {"n": 5, "peak_layer": 4, "peak_p": 0.3, "final_layer": 8,
                                      "final_p": 0.2, "late_drop": 0.1}}}  # fmt: skip
    return {
        "model": "toy", "n_words": 10, "split": "test", "lens": lens,
        "seeds": {"spelling": [3], "negative_control": [2, 3]},
        "tasks": {"letter_count": task("present in both arms", [0.0, 0.01]),
                  "letter_in_token": task("more after spelling training", [0.0, 0.05]),
                  "letter_position": task("more after spelling training", [0.0, -0.06])},
    }  # fmt: skip


def test_study_probe_table_reads_the_arms_against_the_output_verdict():
    from letterwise.report.probe import (
        arm_rows,
        arms_difference_chart,
        difference_rows,
        study_probe_lines,
    )  # fmt: skip

    summary = arms_summary(seed_rows=True)
    verdicts = {"toy": ("v.json", {"outcomes": {"position": {"outcome": "inconclusive"},
                                                "count": {"outcome": "equivalent"}}})}  # fmt: skip
    plan = {"study_probe_toy.png": {}, "study_probe_difference_toy.png": {}}
    text = "\n".join(study_probe_lines({"toy": ("s/toy/probe_arms.json", summary)}, verdicts,
                                       Figures("f", plan)))  # fmt: skip
    # position: more in the states, output inconclusive -> present but unused; its largest
    # difference is the one of largest size (-0.06 at layer 4), the seed row's -0.01
    assert (
        "| letter at position 1-5 and last (accuracy) | present but unused (more in the states, "
        "output inconclusive) | layer 4, -0.060 [-0.080, -0.040] | not run | "
        "negative_control seed 2 - seed 3: layer 4, -0.010 [-0.030, +0.010] |"
    ) in text
    # letter in token has no output task: the reading as it is
    assert "| letter in token (mean F1 over 26 letters) | more after spelling training |" in text
    count_row = "| count of a letter, 0/1/2/3+ (accuracy) | present in both arms (output equivalent)"  # noqa: E501
    assert count_row in text
    # probe rows in the probe order, whatever the summary's order
    assert text.index("letter in token") < text.index("letter at position") < text.index(
        "count of a letter, 0/1")
    assert "Figure 1." in text and "Figure 2." in text and "(grey) one arm's seed" in text
    assert "97.5% each" in text
    assert "| spelling | 5 | 0.300 (4) → 0.200, 0.100 | – |" in text
    rows = arm_rows(summary)
    assert len(rows) == 3 * 3 * 2  # tasks x arms x layers
    diffs = difference_rows(summary)
    assert sorted({r["model"] for r in diffs}) == ["seed to seed", "spelling − negative"]
    spec = arms_difference_chart(diffs)
    scale = spec["spec"]["layer"][-1]["encoding"]["color"]["scale"]
    assert scale["domain"] == ["spelling − negative", "seed to seed"]


def test_study_probe_section_without_seeds_or_summaries():
    from letterwise.report.probe import study_probe_lines

    plan = {"study_probe_difference_toy.png": {}}
    text = "\n".join(study_probe_lines({"toy": ("p", arms_summary(seed_rows=False))}, {},
                                       Figures("f", plan)))  # fmt: skip
    assert "one seed per arm" in text and "what seeds alone move is not measured yet" in text
    assert "(output" not in text  # no verdict: the readings alone
    absent = "\n".join(study_probe_lines({}, {}, Figures("f", {})))
    assert "Absent: no study probe comparison" in absent and "letterwise.probe arms" in absent


def test_a_broken_arms_summary_is_refused(tmp_path):
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "probe_arms.json").write_text(json.dumps({"tasks": {"x": {}}}))
    with pytest.raises(SystemExit, match="not a probe arms summary"):
        load_inputs(loss=[], breakdowns=[], predictions=None, verdict=tmp_path / "v.json",
                    qwen3_data=tmp_path, timing=None, replay=None, study=tmp_path)  # fmt: skip
