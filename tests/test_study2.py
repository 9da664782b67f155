"""Each follow-up study tests on words no earlier study scored (docs/results/study2, study3).

Read from the committed plans and the committed per-question records, not from the code that
drew the words: the first study's test words are those in its runs' prediction records.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import yaml

FIRST = Path("docs/results/study")
SECOND = Path("docs/results/study2")
THIRD = Path("docs/results/study3")
MODEL = "smollm2-135m"


def plan(folder: Path) -> dict:
    return yaml.safe_load((folder / "plan.yaml").read_text())


def scored_words(run: Path) -> set[str]:
    words = set()
    for name in ("predictions_eval_position.jsonl.gz", "predictions_eval_spelling.jsonl.gz"):
        path = run / name
        if path.is_file():
            with gzip.open(path, "rt") as lines:
                words |= {json.loads(line)["word"] for line in lines}
    return words


def runs(folder: Path) -> list[Path]:
    return sorted(
        p for p in (folder / MODEL).glob("*-seed*") if (p / "eval_position.json").is_file()
    )


def test_the_second_plan_skips_past_every_word_the_first_one_held_out():
    # the held-out pool is shuffled once; validation takes its first words, test the next ones
    first, second = plan(FIRST)["n"], plan(SECOND)["n"]
    first_end = first["build_dataset.validation_words"] + first["build_dataset.test_words"]
    assert second["build_dataset.validation_words"] >= first_end == 1400
    assert second["eval.max_questions"] == second["build_dataset.test_words"] == 1000
    # the same recipe and code as the first study's SmolLM2 runs
    assert plan(SECOND)["recipe"]["train.max_steps"] == plan(FIRST)["recipe"]["train.max_steps"]
    commits = {(run / "COMMIT").read_text().strip() for run in runs(FIRST)}
    assert commits == {plan(SECOND)["code_commit"]}


def assert_scores_only_fresh_words(study: Path, earlier: set[str]) -> None:
    """Every committed run of `study` scored its 1,000 test words, none of them in `earlier`."""
    committed = runs(study)
    if not committed:
        pytest.skip(f"no {study.name} run committed yet")
    for run in committed:
        words = scored_words(run)
        assert len(words) == 1000, run
        assert not words & earlier, f"{run}: {sorted(words & earlier)[:5]}"


def test_no_second_study_run_scored_a_word_the_first_study_scored():
    first_words = set().union(*(scored_words(run) for run in runs(FIRST)))
    assert len(first_words) == 1000  # the first study's 1,000 test words, every run the same
    assert_scores_only_fresh_words(SECOND, first_words)


def test_the_third_plan_skips_past_every_word_the_second_one_held_out():
    second, third = plan(SECOND)["n"], plan(THIRD)["n"]
    second_end = second["build_dataset.validation_words"] + second["build_dataset.test_words"]
    assert third["build_dataset.validation_words"] >= second_end == 2400
    assert third["eval.max_questions"] == third["build_dataset.test_words"] == 1000
    # the recipe the count search saw the positive control at, at the same code
    search = yaml.safe_load(Path("docs/results/count_recipe/plan.yaml").read_text())
    assert plan(THIRD)["recipe"]["train.max_steps"] == search["recipe"]["train.max_steps"] == 1500
    assert plan(THIRD)["code_commit"] == search["code_commit"] == plan(SECOND)["code_commit"]


def test_no_third_study_run_scored_a_word_an_earlier_study_scored():
    earlier = set().union(*(scored_words(run) for run in runs(FIRST) + runs(SECOND)))
    assert len(earlier) == 2000  # 1,000 test words per earlier study, disjoint
    assert_scores_only_fresh_words(THIRD, earlier)
