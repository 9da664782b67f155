"""The positive control is visible where the spelling-only adapter is not (qwen3-tiny, slow).

Both arms run the real stages (build_dataset -> train -> eval_position) on the random-weight
qwen3-tiny preset, with one training recipe, one seed and the same held-out test questions;
only `build_dataset.arm` differs. The instrument is direct generation on count questions
("How many 'r's are in 'strawberry'? Answer with a number only.").

What each model does there, and why:
- base: a random-weight model never emits a number (it generates filler until its token budget
  runs out), so it gets no count right: base accuracy is 0.
- positive_control: it trains on position and count questions about training strings, each
  answered by a bare letter or number. A 2-layer random model cannot learn to count in 20
  steps, but it does learn the answer format and the prior: a bare "1", the most common answer.
  The split keeps 40% of count questions at answer >= 2 (count_multiple_share) and asks a
  quarter of the rest about an absent letter (answer 0), so about 1 - 0.4 - 0.6 x 0.25 = 0.45
  of them have answer 1. Held-out count questions answered "1" are right exactly there, so
  tuned - base is large and its 95% CI lies above 0.
- spelling: the same recipe on spelling rows ("Spell 'straw'." -> "s t r a w") never teaches a
  bare number, so the tuned model still answers no count question in the number format and
  its delta stays at 0.

So this is the smallest end-to-end check that the positive-control arm reaches the evaluation
(its rows are built, trained on and change the held-out answers) and that an instrument can tell
it apart from the treatment; it is not evidence of letter knowledge: the gain is a learned
prior, which is exactly what the strategy detectors are for on real models.

Recipe (found by running it): learning rate 3e-3, 20 steps of 8 rows, control_rows 160 (each
control row seen once), 30 count questions. At 1e-3 and 30 steps the prior was only partly
learned for some seeds (training seed 1: delta +0.33, some answers empty); at 3e-3 and 20 steps
every tuned answer was "1" for training seeds 1, 2 and 42, while the spelling arm (seeds 2, 42)
answered no count question with a number.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import SMALL_DATA, deep_update, write_params
from tests.test_train import loss_curve

# One recipe for both arms: only build_dataset.arm differs.
RECIPE = {
    "model": "qwen3-tiny",
    "seed": 42,
    "build_dataset": {"control_rows": 160},  # = max_steps x batch_size: each row seen once
    "train": {
        "backend": "transformers",
        "seed": 42,
        "learning_rate": 3e-3,
        "max_steps": 20,
        "batch_size": 8,
        "save_steps": 20,
        "max_seq_length": 96,
    },
    "eval": {
        "split": "test",
        "max_questions": 30,
        "batch_size": 32,
        "prompting": ["direct"],  # the instrument under test; the others add minutes
        "choice_scoring": False,
        "cloze": [],
    },
}
TRAIN_TASKS = {"positive_control": {"position", "count"}, "spelling": {"spelling"}}


def run_arm(arm: str, directory: Path, tokens: Path, monkeypatch) -> dict:
    """build_dataset -> train -> eval_position for one arm in `directory`, on the token subset
    filter_tokens wrote for the qwen3_data fixture; returns metrics/details/eval_position.json."""
    from stages import build_dataset, eval_position, train

    directory.mkdir()
    shutil.copytree(tokens, directory / "data" / "tokens")
    arm_params = deep_update(deep_update(RECIPE, SMALL_DATA), {"build_dataset": {"arm": arm}})
    write_params(directory, arm_params)
    monkeypatch.chdir(directory)
    build_dataset.main([])
    train_rows = Path("data/dataset/jsonl/train.jsonl").read_text().splitlines()
    assert {json.loads(line)["task"] for line in train_rows} == TRAIN_TASKS[arm]
    assert train.main([]) == 0
    # the recipe trains either arm: its loss falls (a dead adapter would make "no gain" trivial)
    losses = loss_curve(directory / "dvclive" / "train")
    assert len(losses) == RECIPE["train"]["max_steps"]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.05, f"{arm}: loss did not fall"
    eval_position.main([])
    return json.loads(Path("metrics/details/eval_position.json").read_text())


@pytest.mark.slow
def test_positive_control_gains_on_count_where_spelling_does_not(qwen3_data, tmp_path, monkeypatch):
    tokens = qwen3_data / "data" / "tokens"
    results = {arm: run_arm(arm, tmp_path / arm, tokens, monkeypatch) for arm in TRAIN_TASKS}
    count = {arm: metrics["count"] for arm, metrics in results.items()}
    for arm, section in count.items():
        print(
            f"{arm}: count direct base {section['base']['accuracy']:.3f} "
            f"tuned {section['tuned']['accuracy']:.3f} delta {section['delta']['delta']:+.3f} "
            f"[{section['delta']['ci_low']:+.3f}, {section['delta']['ci_high']:+.3f}] "
            f"in-format tuned {section['tuned']['in_format_rate']:.2f}"
        )
        assert section["delta"]["n"] == RECIPE["eval"]["max_questions"]
        # the same base model and questions in both arms: a random model emits no number
        assert section["base"]["in_format_rate"] <= 0.1
        assert section["base"]["accuracy"] <= 0.05

    # the share of count questions a model that always answers "1" gets right (about 0.45)
    lines = (tmp_path / "positive_control/data/predictions/eval_position.jsonl").read_text()
    rows = [json.loads(line) for line in lines.splitlines()]
    expected = [row["expected"] for row in rows if row["task"] == "count"]
    ones = expected.count("1") / len(expected)
    print(f"count questions whose answer is 1: {ones:.2f}")

    positive = count["positive_control"]
    # it answers in the count format (a bare number) nearly always ...
    assert positive["tuned"]["in_format_rate"] >= 0.8
    # ... and the learned prior is right on a large share: well above 0, CI above 0. 0.2 is
    # under half of the "always 1" share, so a partly learned prior still passes.
    assert ones >= 0.35
    assert positive["delta"]["delta"] >= 0.2
    assert positive["delta"]["ci_low"] > 0.0

    spelling = count["spelling"]
    # the spelling adapter never answers with a bare number: no count gain at all (one lucky
    # parse at most), far below the positive control's
    assert spelling["tuned"]["in_format_rate"] <= 0.1
    assert spelling["delta"]["delta"] <= 0.05
    assert spelling["delta"]["ci_low"] <= 0.0
    assert positive["delta"]["delta"] - spelling["delta"]["delta"] >= 0.15
