"""Every report figure renders, fits a 1,000 px page and titles its axes (read back from the
Vega spec that vl-convert compiles from the chart)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from letterwise import report
from letterwise.report import figures
from letterwise.report.loading import pick_reference
from tests.conftest import REPO_ROOT
from tests.test_report import made_up_verdict

PAGE = 1000  # CSS px a reader's page is wide
SCALE = 2  # the figures are rendered at 2x: PNG pixels per CSS pixel (see figures.SCALE)


def made_up_predictions(path: Path) -> Path:
    """Prediction rows as eval_position writes them; the picks are invented for this test."""
    rows = []
    position = [("a", "a", "s"), ("e", "a", "s"), ("r", "t", "s")]
    for i, (expected, base, tuned) in enumerate(position):
        rows.append({"id": f"p{i}", "task": "position",
                     "base": {"choice": {"choice": base, "expected": expected}},
                     "tuned": {"choice": {"choice": tuned, "expected": expected}}})
    for i, (expected, base, tuned) in enumerate([("1", "1", "0"), ("2", "1", "0")]):
        rows.append({"id": f"c{i}", "task": "count",
                     "base": {"choice": {"choice": base, "expected": expected}},
                     "tuned": {"choice": {"choice": tuned, "expected": expected}}})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path  # fmt: skip


@pytest.fixture(scope="module")
def plan(tmp_path_factory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("figures")
    verdict = tmp / "verdict.json"
    verdict.write_text(json.dumps(made_up_verdict()))
    inputs = report.load_inputs(
        loss=[f"reference={REPO_ROOT / 'dvclive/train/plots/metrics/loss.tsv'}"],
        breakdowns=[REPO_ROOT / f"dvclive/{s}/breakdowns.json"
                    for s in ("eval_spelling", "eval_position")],
        predictions=made_up_predictions(tmp / "eval_position.jsonl"),
        verdict=verdict, qwen3_data=tmp / "none", timing=None, replay=None,
    )  # fmt: skip
    grid = REPO_ROOT / "docs/results/grid"
    runs = report.runs_from_exp_show(json.loads((grid / "exp_show.json").read_text()), grid)
    reference = pick_reference(runs)
    report.render(runs, tmp / "report_figures", inputs)  # marks each run's changes
    return figures.figure_plan(runs, reference, inputs)


EXPECTED = {
    "verdict.png", "instruments.png", "deltas.png", "temperature.png", "training_loss.png",
    "by_word_length.png", "by_index_and_count.png", "choices.png",
}  # fmt: skip


def test_every_figure_is_planned(plan):
    assert set(plan) == EXPECTED


def axes_of(node: object, found: list[dict]) -> list[dict]:
    if isinstance(node, dict):
        if isinstance(node.get("axes"), list):
            found.extend(node["axes"])
        for value in node.values():
            axes_of(value, found)
    elif isinstance(node, list):
        for value in node:
            axes_of(value, found)
    return found


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_figure_fits_the_page_and_titles_its_axes(plan, name, tmp_path):
    import vl_convert

    path = tmp_path / name
    figures.save_png(plan[name], path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    # shown at its natural size on a 1,000 px page: no shrinking, so 12 px text stays 12 px
    assert 500 * SCALE <= width <= PAGE * SCALE, width
    assert 250 * SCALE <= height <= 2200 * SCALE, height
    # every axis that shows labels has a title, and both directions have one
    axes = axes_of(vl_convert.vegalite_to_vega(plan[name]), [])
    labelled = [a for a in axes if a.get("labels", True) is not False]
    assert labelled and all(isinstance(a.get("title"), str) and a["title"] for a in labelled), [
        (a.get("scale"), a.get("title")) for a in labelled
    ]
    directions = {a["orient"] in ("left", "right") for a in labelled}
    assert directions == {True, False}, "needs a titled x axis and a titled y axis"
