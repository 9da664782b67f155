"""Per-arm coupling over a study's run folders, on hand-written folders whose tables are
counted here by hand."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from letterwise.eval.arm_coupling import main, study_coupling

WORDS = ["apple", "berry", "cider", "dates"]


def write_run(folder: Path, spelled: dict[str, tuple[bool, bool]], cloze: dict[str, str]) -> None:
    """One run: a spelling question per word ((base, tuned) right), one position question per
    word, and the cloze bits (base, tuned) per question in WORDS order."""
    folder.mkdir(parents=True)
    spelling = [
        {"id": f"test-spelling-{i}", "task": "spelling", "word": w,
         "base": {"correct": spelled[w][0]}, "tuned": {"correct": spelled[w][1]}}
        for i, w in enumerate(WORDS)
    ]  # fmt: skip
    position = [{"id": f"test-position-{i}", "task": "position", "word": w}
                for i, w in enumerate(WORDS)]  # fmt: skip
    for name, rows in (("spelling", spelling), ("position", position)):
        with gzip.open(folder / f"predictions_eval_{name}.jsonl.gz", "wt") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in rows)
    per_question = {"position": {"ids": [r["id"] for r in position], "correct": {"cloze": cloze}}}
    (folder / "eval_position.json").write_text(json.dumps({"per_question": per_question}))


def test_tables_pool_seeds_per_arm_and_give_the_base_once(tmp_path):
    # base spells apple and berry right; the tuned spelling models spell apple, berry, cider
    spelled = {"apple": (True, True), "berry": (True, True), "cider": (False, True),
               "dates": (False, False)}  # fmt: skip
    write_run(tmp_path / "spelling-seed1", spelled, {"base": "1000", "tuned": "1100"})
    write_run(tmp_path / "spelling-seed2", spelled, {"base": "1000", "tuned": "1010"})
    write_run(tmp_path / "negative_control-seed1", spelled, {"base": "1000", "tuned": "0001"})
    (tmp_path / "validation").mkdir()  # not a run folder: noted, skipped
    result = study_coupling(tmp_path)
    assert result["seeds"] == {"spelling": [1, 2], "negative_control": [1]}
    # spelling arm, 2 seeds x 4 words: spelled right = apple, berry, cider in both seeds (6);
    # of those answered right: seed 1 apple, berry; seed 2 apple, cider -> 4 of 6.
    # spelled wrong: dates twice, never answered right -> 0 of 2.
    tuned = result["coupling"]["spelling"]["position"]["cloze"]
    assert (tuned["n_spelled_right"], tuned["n_spelled_wrong"]) == (6, 2)
    assert tuned["p_right_given_spelled_right"] == pytest.approx(4 / 6)
    assert tuned["p_right_given_spelled_wrong"] == 0.0
    # negative control: only dates answered right, and dates is spelled wrong
    negative = result["coupling"]["negative_control"]["position"]["cloze"]
    assert negative["p_right_given_spelled_right"] == 0.0
    assert negative["p_right_given_spelled_wrong"] == 1.0
    # base, once (not once per run): apple, berry spelled right, apple answered right
    base = result["coupling"]["base"]["position"]["cloze"]
    assert (base["n_spelled_right"], base["n_spelled_wrong"]) == (2, 2)
    assert base["p_right_given_spelled_right"] == 0.5
    assert any("validation" in note for note in result["notes"])


def test_the_cli_writes_the_json_and_a_broken_folder_gets_a_clear_error(tmp_path, capsys):
    spelled = {w: (False, True) for w in WORDS}
    write_run(tmp_path / "spelling-seed1", spelled, {"base": "0000", "tuned": "1111"})
    assert main([str(tmp_path)]) == 0
    written = json.loads((tmp_path / "coupling.json").read_text())
    assert written["coupling"]["spelling"]["position"]["cloze"]["n"] == 4
    write_run(tmp_path / "positive_control-seed1", spelled, {"base": "0000", "tuned": "11"})
    with pytest.raises(SystemExit, match=r"positive_control-seed1.*bit string of 4 questions"):
        main([str(tmp_path)])
    (tmp_path / "positive_control-seed1" / "predictions_eval_spelling.jsonl.gz").unlink()
    with pytest.raises(SystemExit, match=r"predictions_eval_spelling.jsonl.gz: missing"):
        main([str(tmp_path)])
