"""The report's model × recipe × steps section (letterwise.report.axes), on hand-made saved runs
whose expected table cells and figure rows are worked out here from the numbers written."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from letterwise.report import axes
from letterwise.report.loading import load_inputs, load_saved_runs

DEFAULT = {
    "model": "smollm2-135m", "seed": 42,
    "build_dataset": {"arm": "spelling", "replay_share": 0.0},
    "train": {"learning_rate": 0.001, "max_steps": 80, "seed": None,
              "lora": {"r": 16, "target_modules": ["q_proj", "v_proj"]}},
    "eval": {"split": "test"},
}  # fmt: skip


def comparison(base: float, tuned: float, low: float, high: float, fmt: tuple = ()) -> dict:
    section = {
        "base": {"accuracy": base}, "tuned": {"accuracy": tuned},
        "delta": {"delta": tuned - base, "ci_low": low, "ci_high": high, "n": 100},
    }  # fmt: skip
    if fmt:
        section["base"]["in_format_rate"], section["tuned"]["in_format_rate"] = fmt
    return section


def save_run(folder: Path, name: str, changes: dict, spelling: float, cloze: float,
             fmt: tuple = (0.5, 0.25)) -> None:  # fmt: skip
    params = json.loads(json.dumps(DEFAULT))
    for dotted, value in changes.items():
        *path, last = dotted.split(".")
        node = params
        for key in path:
            node = node[key]
        node[last] = value
    run = folder / name
    run.mkdir(parents=True)
    (run / "params.yaml").write_text(yaml.safe_dump(params))
    (run / "eval_spelling.json").write_text(json.dumps(
        {"spelling": comparison(0.0, spelling, spelling - 0.05, spelling + 0.05)}
    ))  # fmt: skip
    position = comparison(0.1, 0.1, -0.05, 0.05, fmt)
    position["cloze"] = comparison(0.2, 0.2 + cloze, cloze - 0.1, cloze + 0.1)
    (run / "eval_position.json").write_text(json.dumps(
        {"position": position, "count": comparison(0.3, 0.2, -0.2, 0.0, fmt)}
    ))  # fmt: skip


def test_settings_group_seeds_and_name_recipes_by_what_changed(tmp_path):
    save_run(tmp_path, "seed42", {}, 0.10, 0.02)
    save_run(tmp_path, "seed1", {"train.seed": 1}, 0.20, 0.06)
    save_run(tmp_path, "steps40", {"train.max_steps": 40}, 0.05, 0.0)
    save_run(tmp_path, "replay50", {"build_dataset.replay_share": 0.5, "eval.split": "validation"},
             0.04, 0.01, fmt=(0.5, 0.45))  # fmt: skip
    save_run(tmp_path, "negative", {"build_dataset.arm": "negative_control"}, 0.0, 0.0)
    runs = load_saved_runs(tmp_path)
    assert len(runs) == 5
    groups = axes.settings(runs, DEFAULT)
    # the negative control is not a treatment setting; the two seeds share one row
    assert set(groups) == {
        ("smollm2-135m", "default", 80, "test"),
        ("smollm2-135m", "default", 40, "test"),
        ("smollm2-135m", "replay=0.5", 80, "validation"),
    }
    assert sorted(r.seed for r in groups[("smollm2-135m", "default", 80, "test")]) == [1, 42]
    table = "\n".join(axes.axes_table(groups))
    # two seeds: mean of +0.10 and +0.20 = +0.150, range +0.100 … +0.200
    assert "+0.150 (seeds +0.100 … +0.200)" in table
    # one seed: the delta with its CI
    assert "+0.050 [+0.000, +0.100]" in table
    assert "0.50 → 0.45" in table and "0.50 → 0.25" in table


def test_tradeoff_and_dose_rows(tmp_path):
    save_run(tmp_path, "seed42", {}, 0.10, 0.02)
    save_run(tmp_path, "steps160", {"train.max_steps": 160}, 0.30, 0.04)
    save_run(tmp_path, "replay50", {"build_dataset.replay_share": 0.5, "eval.split": "validation"},
             0.04, 0.01, fmt=(0.5, 0.45))  # fmt: skip
    groups = axes.settings(load_saved_runs(tmp_path), DEFAULT)
    (row,) = axes.tradeoff_rows(groups)
    # in-format 0.45 of 0.50 on both tasks: 0.9 of the base's kept
    assert abs(row["kept"] - 0.9) < 1e-9 and abs(row["gain"] - 0.04) < 1e-9
    dose = axes.dose_rows(groups, "smollm2-135m")
    assert axes.dose_rows(groups, "gemma3-270m") == []  # no run of that model
    cloze = {r["steps"]: r["delta"] for r in dose
             if r["task"] == "position" and r["instrument"] == "cloze slot"}  # fmt: skip
    assert cloze.keys() == {0, 80, 160}
    assert cloze[0] == 0.0 and abs(cloze[80] - 0.02) < 1e-9 and abs(cloze[160] - 0.04) < 1e-9
    assert all(r["steps"] != 80 or r["seed"] == "42" for r in dose)


def test_one_setting_is_reported_absent_with_the_command(tmp_path):
    save_run(tmp_path, "seed42", {}, 0.10, 0.02)
    text = "\n".join(axes.axes_section(load_saved_runs(tmp_path), DEFAULT, {}, "x"))
    assert "Absent" in text and "python -m letterwise.experiments recipe dose models" in text


def test_recipe_names_each_changed_knob_by_its_own_value(tmp_path):
    save_run(tmp_path, "targets", {"train.lora.target_modules": ["k_proj", "q_proj"]}, 0.1, 0.0)
    save_run(tmp_path, "r32-lr", {"train.lora.r": 32, "train.learning_rate": 0.0003}, 0.1, 0.0)
    labels = {r.name: axes.recipe_label(r, DEFAULT) for r in load_saved_runs(tmp_path)}
    # a LoRA knob is named alone, with its value (not the whole lora section)
    assert labels == {"targets": "targets=k_proj,q_proj", "r32-lr": "lr=0.0003 r=32"}


def test_another_models_verdict_is_found_beside_the_main_one_and_rendered(tmp_path):
    def verdict(difference: float, claimed: bool) -> dict:
        block = {"delta": difference, "ci_low": difference - 0.05, "ci_high": difference + 0.05,
                 "p_value": 0.5}  # fmt: skip
        row = {"task": "position", "instrument": "cloze_calibrated", "format_neutral": True,
               "treatment": block, "negative_control": block, "positive_control": block,
               "treatment_minus_negative": block, "detects_positive_control": False,
               "explained_by": [], "supports_transfer": claimed}  # fmt: skip
        return {"rule": "the rule", "sentence": f"sentence {difference}", "claimed": claimed,
                "rows": [row], "arms": {"spelling": [42], "negative_control": [42]}}  # fmt: skip

    for folder, difference in (("controls", 0.01), ("controls-gemma3-270m", 0.03)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "verdict.json").write_text(json.dumps(verdict(difference, False)))
    (tmp_path / "controls-other").mkdir()  # a folder without a verdict is not a model verdict
    inputs = load_inputs(loss=[], breakdowns=[], predictions=None,
                         verdict=tmp_path / "controls" / "verdict.json",
                         qwen3_data=tmp_path / "none", timing=None, replay=None)  # fmt: skip
    assert inputs.verdict["sentence"] == "sentence 0.01"
    assert list(inputs.model_verdicts) == [tmp_path / "controls-gemma3-270m" / "verdict.json"]
    text = "\n".join(axes.axes_section([], DEFAULT, {}, "x", inputs.model_verdicts))
    # 0.03 with CI 0.03 ± 0.05, written as the report writes signed numbers
    assert "Table 8.1. The verdict's rule (section 1) on gemma3-270m's own arms" in text
    assert "sentence 0.03" in text and "+0.030 [-0.020, +0.080]" in text.replace("−", "-")
    assert "sentence 0.01" not in text  # the main verdict belongs to section 1
    assert "Read with care" not in text
    # a verdict note about a control that kept few replay rows is shown under its table
    flagged = {**verdict(0.03, False), "notes": [
        "negative_control-seed42: trained on 1 of 1000 replay rows (...)", "count: other note"]}
    text = "\n".join(axes.model_verdict_tables({Path("controls-g/verdict.json"): flagged}))
    assert "**Read with care:**\n\n- negative_control-seed42: trained on 1 of 1000" in text
    assert "other note" not in text


def test_future_work_names_a_recipe_only_when_one_reaches_both_goals(tmp_path):
    from letterwise.report.loading import Inputs, Run
    from letterwise.report.outlook import recipe_item

    reference = Run("reference", "HEAD", DEFAULT, {})
    validation = {"build_dataset.replay_share": 0.5, "eval.split": "validation"}
    # in-format 0.45 of 0.50 = 0.9 kept, but the spelling gain's CI is [-0.01, +0.09]
    save_run(tmp_path / "a", "replay50", validation, 0.04, 0.0, fmt=(0.5, 0.45))
    save_run(tmp_path / "a", "default-val", {"eval.split": "validation"}, 0.10, 0.0)
    item = recipe_item(reference, Inputs(axes=load_saved_runs(tmp_path / "a")))
    assert "none of the 2 settings searched on validation does both" in item
    # a gain of 0.08, CI [+0.03, +0.13], at 0.9 kept: this recipe reaches both goals
    save_run(tmp_path / "b", "replay50", validation, 0.08, 0.0, fmt=(0.5, 0.45))
    item = recipe_item(reference, Inputs(axes=load_saved_runs(tmp_path / "b")))
    assert item == (
        "Run the format-keeping recipe (replay=0.5 (80 steps)) on test with its controls."
    )
    assert "tuned on validation" in recipe_item(reference, Inputs())


def dose_verdict(treatment: float, negative: float, claimed: bool) -> dict:
    """A verdict with one format-neutral row (position, calibrated slot) and one other row."""
    def block(delta: float) -> dict:
        return {"delta": delta, "ci_low": delta - 0.04, "ci_high": delta + 0.04, "p_value": 0.3}

    row = {"task": "position", "instrument": "cloze_calibrated", "format_neutral": True,
           "treatment": block(treatment), "negative_control": block(negative),
           "positive_control": block(0.1), "treatment_minus_negative": block(treatment - negative),
           "detects_positive_control": True, "explained_by": ["first_letter"],
           "supports_transfer": claimed}  # fmt: skip
    direct = {**row, "instrument": "direct", "format_neutral": False}
    return {"rule": "r", "sentence": "s", "claimed": claimed, "rows": [direct, row],
            "arms": {"spelling": [42], "negative_control": [42], "positive_control": [42]}}


def test_dose_verdicts_load_by_step_count_and_render_one_row_per_format_neutral_slot(tmp_path):
    from letterwise.report.loading import Inputs, Run
    from letterwise.report.outlook import dose_item

    dose = tmp_path / "dose"
    for name, verdict in (("steps320", dose_verdict(0.25, 0.05, False)),
                          ("steps40", dose_verdict(0.03, 0.01, False)),
                          ("notsteps", dose_verdict(0.9, 0.0, True))):  # fmt: skip
        (dose / name).mkdir(parents=True)
        (dose / name / "verdict.json").write_text(json.dumps(verdict))
    inputs = load_inputs(loss=[], breakdowns=[], predictions=None,
                         verdict=tmp_path / "controls" / "verdict.json",
                         qwen3_data=tmp_path / "none", timing=None, replay=None,
                         dose=dose)  # fmt: skip
    assert sorted(inputs.dose_verdicts) == [40, 320]  # "notsteps" names no step count
    text = "\n".join(axes.dose_verdict_block(inputs.dose_verdicts, 2)).replace("−", "-")
    assert "Table 8.2. Dose-response with the controls" in text
    assert "Transfer claimed at: **no step count**" in text
    # 320 steps: spelling +0.25, negative +0.05, difference +0.20 with CI +0.20 ± 0.04
    assert ("| 320 | 1/1/1 | position | cloze, calibrated | +0.250 | +0.050 "
            "| +0.100 [+0.060, +0.140] | +0.200 [+0.160, +0.240] | yes "
            "| explained by first_letter | **secondary** |") in text  # no primary row here
    # at 40 steps the difference +0.02 [-0.02, +0.06] is not above 0: that is the reason given
    assert "| +0.020 [-0.020, +0.060] | yes | difference not above 0 | **secondary** |" in text
    assert text.index("| 40 |") < text.index("| 320 |")  # ordered by steps
    assert "| direct |" not in text  # only the format-neutral rows
    # one step count is not a dose-response
    assert axes.dose_verdict_block({320: inputs.dose_verdicts[320]}, 2) == []
    # the figure's rows: spelling − negative per step count, format-neutral slots only
    rows = axes.dose_control_rows(inputs.dose_verdicts)
    assert [(r["steps"], r["instrument"], round(r["delta"], 3)) for r in rows] == [
        (40, "cloze, calibrated", 0.02), (320, "cloze, calibrated", 0.2)]
    assert axes.dose_control_rows({320: inputs.dose_verdicts[320]}) == []
    # the main verdict joins at the reference's own step count (80), unless a folder has it
    inputs.verdict, inputs.verdict_path = dose_verdict(0.1, 0.09, False), Path("main.json")
    merged = axes.dose_verdicts_with_reference(inputs, DEFAULT)
    assert sorted(merged) == [40, 80, 320] and merged[80][0] == Path("main.json")

    # future work: the step counts of the saved runs that still lack control arms
    runs = tmp_path / "axes"
    for steps in (40, 160, 320):
        save_run(runs, f"dose-steps{steps}", {"train.max_steps": steps}, 0.1, 0.0)
    reference = Run("reference", "HEAD", DEFAULT, {})
    inputs.axes = load_saved_runs(runs)
    inputs.verdict = None
    assert dose_item(reference, inputs) == (
        "Control arms at 160 steps (the dose-response has them only at 40, 320) and a full "
        "epoch of the token subset.")  # fmt: skip
    inputs.verdict = dose_verdict(0.1, 0.09, False)  # the main verdict: arms at 80 steps
    assert "has them only at 40, 80, 320)" in dose_item(reference, inputs)
    inputs.dose_verdicts[160] = inputs.dose_verdicts[40]
    assert dose_item(reference, inputs).startswith("More seeds per arm at 40, 160, 320 steps")
    assert "dose-response over training steps" in dose_item(reference, Inputs())
