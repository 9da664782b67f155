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
