"""The study runner (letterwise.study): the runs a plan asks for, in order, with the phase's
settings winning, and committed runs skipped."""

from __future__ import annotations

import pytest
import yaml

from letterwise import study

PLAN = """
recipe:
  train.max_steps: 320
  other: prose, not a setting
n:
  build_dataset.test_words: 1000
  eval.max_questions: 1000
confirm:
  arms: [positive_control]
  seeds: [1]
  eval.max_questions: 400
arms: [spelling, negative_control]
seeds:
  modela: [1, 2]
  modelb: [7]
"""


@pytest.fixture
def plan(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN)
    return study.load_plan(path)


def test_the_test_phase_runs_whole_seeds_in_order(plan):
    runs = study.planned_runs(plan, "test")
    assert [(r.model, r.seed, r.arm) for r in runs] == [
        ("modela", 1, "spelling"),
        ("modela", 1, "negative_control"),
        ("modela", 2, "spelling"),
        ("modela", 2, "negative_control"),
        ("modelb", 7, "spelling"),
        ("modelb", 7, "negative_control"),
    ]
    first = runs[0]
    assert first.name == "study-modela-spelling-s1"
    assert str(first.folder) == "docs/results/study/modela/spelling-seed1"
    assert first.command() == [
        "dvc", "exp", "run", "-n", "study-modela-spelling-s1",
        "-S", "model=modela", "-S", "build_dataset.arm=spelling", "-S", "train.seed=1",
        "-S", "train.max_steps=320", "-S", "build_dataset.test_words=1000",
        "-S", "eval.max_questions=1000", "-S", "eval.split=test",
    ]  # fmt: skip


def test_the_confirm_phase_is_on_validation_and_its_n_wins(plan):
    runs = study.planned_runs(plan, "confirm", ["modelb"])
    assert len(runs) == 1
    [run] = runs
    settings = dict(run.settings)
    assert settings["eval.max_questions"] == 400  # the confirm section's, not n's 1000
    assert settings["eval.split"] == "validation"
    assert settings["build_dataset.arm"] == "positive_control" and settings["train.seed"] == 1
    # the fixture recipe trains 320 steps: a confirm folder is named by its step count
    assert str(run.folder) == "docs/results/study/modelb/validation/steps320/positive_control-seed1"
    assert run.command().count("-S") == len(settings) == 7


def test_unknown_models_and_phases_and_missing_sections_are_named(plan, tmp_path):
    with pytest.raises(study.PlanError, match="no model modelc"):
        study.planned_runs(plan, "test", ["modelc"])
    with pytest.raises(study.PlanError, match="unknown phase 'train'"):
        study.planned_runs(plan, "train")
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump({k: v for k, v in plan.items() if k != "seeds"}))
    with pytest.raises(study.PlanError, match="no `seeds` section"):
        study.load_plan(broken)
    # a plan without a confirm phase (the second study) loads; only its confirm phase is refused
    no_confirm = tmp_path / "no_confirm.yaml"
    no_confirm.write_text(yaml.safe_dump({k: v for k, v in plan.items() if k != "confirm"}))
    loaded = study.load_plan(no_confirm)
    assert len(study.planned_runs(loaded, "test", ["modelb"])) == len(
        study.planned_runs(plan, "test", ["modelb"])
    )
    with pytest.raises(study.PlanError, match="no `confirm` phase"):
        study.planned_runs(loaded, "confirm")


def test_a_plan_names_its_own_results_folder_and_experiment_prefix(plan):
    second = {**plan, "results_dir": "docs/results/study2", "prefix": "study2"}
    [run, *_] = study.planned_runs(second, "test", ["modelb"])
    assert str(run.folder).startswith("docs/results/study2/modelb/")
    assert run.name.startswith("study2-modelb-")
    # the first study's names and folders are unchanged
    [first, *_] = study.planned_runs(plan, "test", ["modelb"])
    assert str(first.folder).startswith("docs/results/study/modelb/")
    assert first.name.startswith("study-modelb-")


def test_a_run_counts_as_committed_only_with_every_file(plan, tmp_path):
    run = study.planned_runs(plan, "test")[0]
    folder = tmp_path / run.folder
    folder.mkdir(parents=True)
    names = ["eval_position.json", "eval_spelling.json", "train.json", "COMMIT", "timing.json"]
    for name in names[:-1]:
        (folder / name).write_text("{}")
    assert not study.is_complete(run, tmp_path)  # a run killed before its timing was written
    (folder / names[-1]).write_text("{}")
    assert study.is_complete(run, tmp_path)


def test_the_committed_plan_parses():
    plan = study.load_plan()
    runs = study.planned_runs(plan, "test")
    assert {r.arm for r in runs} == {"spelling", "negative_control", "positive_control"}
    assert all(dict(r.settings)["eval.max_questions"] >= 1000 for r in runs)


def test_compute_spent_sums_every_committed_timing_per_phase(plan, tmp_path):
    def timing(folder: str, seconds: float) -> None:
        path = tmp_path / "docs/results/study" / folder / "timing.json"
        path.parent.mkdir(parents=True)
        path.write_text(f'{{"wall_seconds": {seconds}}}')

    timing("modela/spelling-seed1", 1800)  # 30 min
    timing("modela/negative_control-seed1", 2700)  # 45 min
    timing("modela/validation/steps320/positive_control-seed1", 600)  # 10 min
    timing("modela/validation/steps500/positive_control-seed1", 1200)  # 20 min
    extra = tmp_path / "docs/results/study/modela/validation/steps500/positive_control-seed1"
    (extra / "timing.json").write_text('{"wall_seconds": 1200, "earlier_attempts_seconds": 300}')
    timing("modela/superseded/spelling-seed1-at-abc1234", 900)  # 15 min, redone: not a study run
    spent = study.compute_spent(plan, tmp_path)
    assert spent["modela"]["test"] == {"runs": 2, "minutes": 75.0, "planned": 4}
    assert spent["modela"]["confirm"] == {"runs": 2, "minutes": 35.0}  # 10 + 20 + 5 failed
    assert spent["modela"]["superseded"] == {"runs": 1, "minutes": 15.0}
    assert spent["modelb"]["test"] == {"runs": 0, "minutes": 0.0, "planned": 2}


def test_a_resumed_study_runs_at_the_commit_of_its_committed_runs(plan, tmp_path):
    # modela's runs in order: spelling s1, negative s1, spelling s2, negative s2
    runs = study.planned_runs(plan, "test", ["modela"])
    assert study.study_commit(plan, runs[1], tmp_path) is None  # nothing committed: HEAD
    names = ["eval_position.json", "eval_spelling.json", "train.json", "timing.json"]

    def commit_run(run, sha: str) -> None:
        folder = tmp_path / run.folder
        folder.mkdir(parents=True)
        for name in names:
            (folder / name).write_text("{}")
        (folder / "COMMIT").write_text(sha + "\n")

    commit_run(runs[0], "a" * 40)
    assert study.study_commit(plan, runs[1], tmp_path) == "a" * 40  # the model's commit
    assert study.study_commit(plan, runs[2], tmp_path) == "a" * 40
    # an arm moved to other code (--at) stays there; the other arm stays on its own
    commit_run(runs[1], "b" * 40)
    assert study.study_commit(plan, runs[3], tmp_path) == "b" * 40
    assert study.study_commit(plan, runs[2], tmp_path) == "a" * 40
    commit_run(runs[2], "c" * 40)  # spelling s1 at a, spelling s2 at c
    with pytest.raises(study.PlanError, match="modela spelling test runs are committed at several"):
        study.study_commit(plan, runs[0], tmp_path)
    other = study.planned_runs(plan, "test", ["modelb"])
    assert study.study_commit(plan, other[0], tmp_path) is None  # another model: its own


def test_an_arm_with_no_runs_cannot_choose_among_its_models_commits(plan, tmp_path):
    runs = study.planned_runs(plan, "test", ["modela"])
    for run, sha in ((runs[0], "a"), (runs[2], "c")):  # spelling s1 at a, spelling s2 at c
        folder = tmp_path / run.folder
        folder.mkdir(parents=True)
        for name in ("eval_position.json", "eval_spelling.json", "train.json", "timing.json"):
            (folder / name).write_text("{}")
        (folder / "COMMIT").write_text(sha * 40 + "\n")
    with pytest.raises(study.PlanError, match="modela test runs are committed at several"):
        study.study_commit(plan, runs[1], tmp_path)  # negative s1: a or c?


def test_run_can_be_limited_to_some_arms(tmp_path, monkeypatch, capsys):
    (tmp_path / "docs/results/study").mkdir(parents=True)
    (tmp_path / "docs/results/study/plan.yaml").write_text(PLAN)
    monkeypatch.chdir(tmp_path)
    assert study.main(["run", "--model", "modela", "--arm", "negative_control", "--dry-run"]) == 0
    commands = capsys.readouterr().out.splitlines()
    # modela's two seeds, the negative control only
    assert [c.split(" -n ")[1].split()[0] for c in commands] == [
        "study-modela-negative_control-s1", "study-modela-negative_control-s2",
    ]  # fmt: skip
    with pytest.raises(study.PlanError, match="no arm placebo"):
        study.main(["run", "--arm", "placebo", "--dry-run"])
