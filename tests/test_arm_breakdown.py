"""Accuracy per study arm by true count and token boundary, on hand-written run folders whose
bins and accuracies are worked out here by hand."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from letterwise.eval.arm_breakdown import main, study_breakdown

# a made-up tokenizer: apple = app|le, berry = ber|ry
PIECES = {"apple": ["app", "le"], "berry": ["ber", "ry"]}

# position questions: apple p@2 (inside "app"), apple a@1 (edge), berry r@3 (last of "ber":
# edge), berry e@2 (inside "ber")
POSITION = [("apple", 2), ("apple", 1), ("berry", 3), ("berry", 2)]
# count questions: berry r = 2 (one r in "ber", one in "ry": across tokens), apple p = 2 (both in
# "app": one token), apple z = 0 (absent), berry b = 1 (one token)
COUNT = [("berry", "r", 2), ("apple", "p", 2), ("apple", "z", 0), ("berry", "b", 1)]
COMMITTED_BINS = {
    "position": {"inside": 2, "edge": 2},
    "count": {"one_token": 2, "across_tokens": 1, "absent": 1},
}


def write_run(folder: Path, position: dict[str, str], count: dict[str, str]) -> None:
    """One run: the questions above and the primary instrument's bits (base, tuned)."""
    folder.mkdir(parents=True)
    rows = [
        {"id": f"test-position-{i}", "task": "position", "word": w, "position": p,
         "letter": w[p - 1], "count": None}
        for i, (w, p) in enumerate(POSITION)
    ] + [
        {"id": f"test-count-{i}", "task": "count", "word": w, "letter": letter, "count": n,
         "position": None}
        for i, (w, letter, n) in enumerate(COUNT)
    ]  # fmt: skip
    with gzip.open(folder / "predictions_eval_position.jsonl.gz", "wt") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)
    results = {"model": "made-up", "per_question": {}}
    for task, bits in (("position", position), ("count", count)):
        ids = [row["id"] for row in rows if row["task"] == task]
        results["per_question"][task] = {"ids": ids, "correct": {"cloze_calibrated": bits}}
        sizes = {name: {"n": n, "accuracy": 0.0} for name, n in COMMITTED_BINS[task].items()}
        results[task] = {
            "cloze_calibrated": {"detectors": {"base": {"accuracy_by_boundary": sizes}}}
        }
    (folder / "eval_position.json").write_text(json.dumps(results))


def study(tmp_path: Path) -> Path:
    write_run(tmp_path / "spelling-seed1", {"base": "0011", "tuned": "1010"},
              {"base": "0010", "tuned": "1100"})  # fmt: skip
    write_run(tmp_path / "spelling-seed2", {"base": "0011", "tuned": "1000"},
              {"base": "0010", "tuned": "1110"})  # fmt: skip
    write_run(tmp_path / "negative_control-seed1", {"base": "0011", "tuned": "0101"},
              {"base": "0010", "tuned": "0001"})  # fmt: skip
    return tmp_path


def cell(result: dict, task: str, name: str) -> dict:
    return result["tasks"][task][name]["cloze_calibrated"]


def test_bins_and_accuracies_per_arm_seeds_pooled(tmp_path):
    result = study_breakdown(study(tmp_path), PIECES.get, resamples=200)
    assert result["seeds"] == {"spelling": [1, 2], "negative_control": [1], "positive_control": []}
    sizes = {task: {name: e["n_questions"] for name, e in bins.items()}
             for task, bins in result["tasks"].items()}  # fmt: skip
    assert sizes == {
        "position": {"inside": 2, "edge": 2},
        "count": {"count 0": 1, "count 1": 1, "count >= 2": 2, "one_token": 2,
                  "across_tokens": 1},
    }  # fmt: skip
    # position inside = questions 0 and 3. spelling: seed 1 right on 0, seed 2 right on 0 -> 2
    # of 4 = 0.5; negative: right on 3 -> 0.5; base: right on 3 -> 0.5; difference 0
    inside = cell(result, "position", "inside")
    assert inside["spelling"]["delta"] == pytest.approx(0.5)
    assert inside["negative_control"]["delta"] == pytest.approx(0.5)
    assert inside["base"]["delta"] == pytest.approx(0.5)
    assert inside["spelling_minus_negative"]["delta"] == pytest.approx(0.0)
    assert "positive_control" not in inside
    # edge = questions 1 and 2: spelling right once in 4 (seed 1 on 2) = 0.25; negative on 1 = 0.5
    edge = cell(result, "position", "edge")
    assert edge["spelling"]["delta"] == pytest.approx(0.25)
    assert edge["spelling_minus_negative"]["delta"] == pytest.approx(-0.25)
    # count >= 2 = questions 0 and 1: both seeds of spelling right on both; negative on neither
    multiple = cell(result, "count", "count >= 2")
    assert multiple["spelling"]["delta"] == pytest.approx(1.0)
    assert multiple["negative_control"]["delta"] == pytest.approx(0.0)
    assert multiple["spelling_minus_negative"]["delta"] == pytest.approx(1.0)
    assert multiple["spelling_minus_negative"]["ci_low"] == pytest.approx(1.0)
    # count 0 = question 2 (z in apple): spelling right only in seed 2 -> 0.5; base right -> 1
    zero = cell(result, "count", "count 0")
    assert zero["spelling"]["delta"] == pytest.approx(0.5)
    assert zero["base"]["delta"] == pytest.approx(1.0)
    # one token = questions 1 and 3: spelling right on 1 in both seeds -> 0.5; negative on 3 -> 0.5
    assert cell(result, "count", "one_token")["spelling"]["delta"] == pytest.approx(0.5)
    assert cell(result, "count", "across_tokens")["spelling"]["delta"] == pytest.approx(1.0)


def test_a_tokenizer_that_is_not_the_runs_is_an_error(tmp_path):
    # every word one token: no letter inside-vs-edge split matches the committed bin sizes
    with pytest.raises(ValueError, match="tokenizer is not the run's"):
        study_breakdown(study(tmp_path), lambda word: [word], resamples=50)


def test_the_cli_writes_the_json_and_names_a_missing_question(tmp_path, monkeypatch):
    folder = study(tmp_path)
    monkeypatch.setattr("letterwise.eval.arm_breakdown.tokenizer_pieces", lambda model: PIECES.get)
    assert main([str(folder), "--resamples", "50"]) == 0
    written = json.loads((folder / "breakdown.json").read_text())
    assert written["tasks"]["count"]["count >= 2"]["n_questions"] == 2
    predictions = folder / "negative_control-seed1" / "predictions_eval_position.jsonl.gz"
    with gzip.open(predictions, "rt") as handle:
        kept = [line for line in handle if "test-count-3" not in line]
    with gzip.open(predictions, "wt") as handle:
        handle.writelines(kept)
    with pytest.raises(SystemExit, match=r"no row for count question 'test-count-3'"):
        main([str(folder), "--resamples", "50"])
