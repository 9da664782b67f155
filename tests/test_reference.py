"""The committed reference run: dvc.lock and metrics/ in git are the default run of this very
code and these params, and the default run reproduces them from a clean clone.

The fast test reads only files: every stage in dvc.lock was run with today's params.yaml and
today's code (a change to a stage's code or params that does not refresh the reference fails
here). The slow test is the reproduction itself: a clean clone, `dvc repro`, and
`dvc metrics diff` against the committed numbers, which must be empty except for wall times.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.test_pipeline import dvc, fresh_clone

STAGES = (
    "filter_tokens", "build_dataset", "train", "eval_spelling", "eval_position", "probe", "publish",
)  # fmt: skip


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def lock() -> dict:
    return yaml.safe_load((REPO_ROOT / "dvc.lock").read_text())


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = value
    return flat


def test_reference_lock_is_this_code_and_these_params():
    stages = lock()["stages"]
    assert set(stages) == set(STAGES), "dvc.lock lacks stages: commit a complete default run"
    params = flatten(yaml.safe_load((REPO_ROOT / "params.yaml").read_text()))
    stale = []
    for name, stage in stages.items():
        for key, value in flatten(stage.get("params", {}).get("params.yaml", {})).items():
            if params.get(key) != value:
                stale.append(
                    f"{name}: param {key} = {value!r} in dvc.lock, {params.get(key)!r} now"
                )
        for dep in stage["deps"]:
            path = REPO_ROOT / dep["path"]
            # code files are in git; data deps (data/, models/, predictions) are DVC outputs
            if path.suffix == ".py" and md5(path) != dep["md5"]:
                stale.append(f"{name}: {dep['path']} changed since the reference run")
    assert not stale, (
        "the committed reference run is stale; rerun `dvc repro` and commit dvc.lock and "
        "metrics/ with the change:\n" + "\n".join(stale)
    )


def test_reference_metrics_are_committed_and_match_the_lock():
    stages = lock()["stages"]
    for name in STAGES:
        outs = {out["path"]: out["md5"] for out in stages[name].get("outs", [])}
        for relative in (f"metrics/{name}.json", f"metrics/details/{name}.json"):
            path = REPO_ROOT / relative
            assert path.is_file(), f"{relative} is not committed"
            if relative in outs:
                assert md5(path) == outs[relative], f"{relative} != dvc.lock"
    evals = json.loads((REPO_ROOT / "metrics/details/eval_position.json").read_text())
    assert evals["model"] == "smollm2-135m" and evals["split"] == "test"


# Wall times are measurements of the machine, not of the model: they may differ between two
# runs of the same code and params. So may the byte sizes publish reports for the files that
# embed them (letterwise.json, metrics/train.json) or the loading environment
# (tokenizer_config.json records local_files_only): measured 1 byte apart; bounded here.
TIMING_KEYS = ("seconds", "train_seconds", "seconds_per_step", "questions_per_second")
SIZE_SECTIONS = ("files", "sizes")
SIZE_SLACK_BYTES = 64


def is_incidental(path: str, metric: str, change: dict) -> bool:
    parts = metric.split(".")
    if any(part in TIMING_KEYS for part in parts):
        return True
    return (
        path.endswith("publish.json")
        and parts[0] in SIZE_SECTIONS
        and abs(change.get("diff") or SIZE_SLACK_BYTES + 1) <= SIZE_SLACK_BYTES
    )


@pytest.mark.slow
@pytest.mark.reproduction
def test_default_run_reproduces_the_committed_metrics(tmp_path):
    clone = fresh_clone(tmp_path / "clone")
    started = time.perf_counter()
    dvc(clone, "repro")
    seconds = time.perf_counter() - started
    diff = json.loads(dvc(clone, "metrics", "diff", "--json").stdout or "{}")
    moved = {
        f"{path}:{metric}": change
        for path, metrics in diff.items()
        for metric, change in metrics.items()
        if not is_incidental(path, metric, change)
    }
    # the full results behind the headline metrics, compared the same way
    for name in STAGES:
        committed = flatten(json.loads((REPO_ROOT / f"metrics/details/{name}.json").read_text()))
        fresh = flatten(json.loads((clone / f"metrics/details/{name}.json").read_text()))
        for metric in sorted(set(committed) | set(fresh)):
            old, new = committed.get(metric), fresh.get(metric)
            if old == new:
                continue
            change = {"old": old, "new": new}
            if isinstance(old, int | float) and isinstance(new, int | float):
                change["diff"] = new - old
            if not is_incidental(f"{name}.json", metric, change):
                moved[f"metrics/details/{name}.json:{metric}"] = change
    print(f"\ndefault dvc repro from a clean clone: {seconds:.0f} s")
    assert not moved, f"the default run moved committed numbers: {moved}"


# README's "answer so far" rows: (task, start of the instrument label) -> where the numbers live
README_ROWS = {
    ("spelling", "direct generation"): ("eval_spelling", "spelling", None),
    ("position", "direct generation"): ("eval_position", "position", None),
    ("position", "cloze slot, calibrated"): ("eval_position", "position", "cloze_calibrated"),
    ("position", "cloze slot"): ("eval_position", "position", "cloze"),
    ("count", "direct generation"): ("eval_position", "count", None),
    ("count", "cloze slot, calibrated"): ("eval_position", "count", "cloze_calibrated"),
    ("count", "cloze slot"): ("eval_position", "count", "cloze"),
}


def readme_rows() -> list[list[str]]:
    text = (REPO_ROOT / "README.md").read_text()
    section = text[text.index("## The answer so far") :]
    section = section[: section.index("\n## ", 3)]
    return [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| ") and not line.startswith("| task")
    ]


def test_readme_numbers_are_the_committed_reference():
    rows = readme_rows()
    assert len(rows) == len(README_ROWS)
    for task, label, base, tuned, delta, p in rows:
        key = next(k for k in README_ROWS if k[0] == task and label.startswith(k[1]))
        stage, task_key, instrument = README_ROWS[key]
        # the details file holds every number the README quotes (p is not a headline column)
        details = json.loads((REPO_ROOT / "metrics/details" / f"{stage}.json").read_text())
        section = details[task_key] if instrument is None else details[task_key][instrument]
        d = section["delta"]
        assert base == f"{section['base']['accuracy']:.3f}", (task, label)
        assert tuned == f"{section['tuned']['accuracy']:.3f}", (task, label)
        assert delta == f"{d['delta']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]", (
            task,
            label,
        )
        assert p == ("< 0.001" if d["p_value"] < 0.001 else f"{d['p_value']:.3f}"), (task, label)


# Result folders whose tables docs/experiment_reproduction.md quotes.
QUOTED_RESULTS = ("metrics", "docs/results/every-instrument")


REPLAY_RUNS = ("docs/results/replay/val-replay0", "docs/results/replay/val-replay25")
# Section 10: dose-response, the second model family and the recipe search.
AXES_TABLES = (
    (
        "docs/results/axes/dose-steps40",
        "docs/results/controls/spelling-seed42",
        "docs/results/axes/dose-steps160",
        "docs/results/axes/dose-steps320",
    ),
    ("docs/results/axes/models-gemma3-270m",),
    (
        "docs/results/axes/recipe-default",
        "docs/results/axes/recipe-replay50",
        "docs/results/axes/recipe-lr3e-4",
        "docs/results/axes/recipe-attention-only",
    ),
)


@pytest.mark.parametrize(
    "arguments",
    [("--metrics", f) for f in QUOTED_RESULTS]
    + [("--compare", *REPLAY_RUNS)]
    + [("--compare", *folders) for folders in AXES_TABLES],
)
def test_reproduction_guide_quotes_the_committed_result_tables(arguments):
    import subprocess
    import sys

    folder = " ".join(arguments[1:])
    tables = subprocess.run(
        [sys.executable, "scripts/results_table.py", *arguments],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    guide = (REPO_ROOT / "docs/experiment_reproduction.md").read_text()
    missing = [line for line in tables.splitlines() if line.strip() and line not in guide]
    assert not missing, f"docs/experiment_reproduction.md does not quote {folder}: {missing[:3]}"


VERDICTS = sorted(
    p.relative_to(REPO_ROOT) for p in REPO_ROOT.glob("docs/results/controls*/verdict.json")
)


@pytest.mark.parametrize("path", VERDICTS, ids=str)
def test_reproduction_guide_quotes_the_committed_verdict(path):
    """Section 9 of the guide carries the verdict table as the report renders it from
    docs/results/controls/verdict.json, section 10 another model's (so a recomputed verdict
    must be quoted again)."""
    from letterwise.report.tables import verdict_table

    verdict = json.loads((REPO_ROOT / path).read_text())
    guide = (REPO_ROOT / "docs/experiment_reproduction.md").read_text()
    missing = [line for line in verdict_table(verdict) if line not in guide]
    assert not missing, f"the guide does not quote verdict.json: {missing[:2]}"
    assert " ".join(verdict["sentence"].split()) in " ".join(guide.split())


def test_readme_verdict_paragraph_quotes_the_committed_verdict():
    """README's verdict paragraph: the seed count and the numbers it names (calibrated and plain
    position slot, spelling minus the negative control; the positive control's calibrated gain)
    are verdict.json's."""
    from letterwise.numbers import ci

    verdict = json.loads((REPO_ROOT / "docs/results/controls/verdict.json").read_text())
    rows = {(r["task"], r["instrument"]): r for r in verdict["rows"]}
    readme = " ".join((REPO_ROOT / "README.md").read_text().replace("\u2212", "-").split())
    seeds = min(len(found) for found in verdict["arms"].values())
    assert f"{['no', 'one', 'two', 'three', 'four'][seeds]} training seeds per arm" in readme
    expected = [
        ci(rows["position", "cloze_calibrated"]["positive_control"], sign=True),
        ci(rows["position", "cloze_calibrated"]["treatment_minus_negative"], sign=True),
        ci(rows["position", "cloze"]["treatment_minus_negative"], sign=True),
    ]
    # the longest dose-response run with its arms: the calibrated slots' numbers it names
    dose = sorted(REPO_ROOT.glob("docs/results/dose/steps*/verdict.json"),
                  key=lambda p: int(p.parent.name.removeprefix("steps")))  # fmt: skip
    if dose:
        dose_rows = json.loads(dose[-1].read_text())["rows"]
        longest = {(r["task"], r["instrument"]): r for r in dose_rows}
        expected += [
            ci(longest[task, "cloze_calibrated"][key], sign=True)
            for task in ("position", "count")
            for key in ("positive_control", "treatment_minus_negative")
        ]
    missing = [text for text in expected if text.replace("\u2212", "-") not in readme]
    assert not missing, f"README's verdict paragraph does not quote verdict.json: {missing}"


STUDY_VERDICTS = sorted(
    p.relative_to(REPO_ROOT) for p in REPO_ROOT.glob("docs/results/study/*/verdict.json")
)


@pytest.mark.parametrize("path", STUDY_VERDICTS, ids=str)
def test_readme_quotes_each_study_verdict(path):
    """README's study paragraphs name, per task, the outcome, spelling minus the negative
    control with its interval, and the minimum detectable effect that verdict.json holds (so a
    verdict recomputed after a run lands must be quoted again)."""
    from letterwise.numbers import ci

    outcomes = json.loads((REPO_ROOT / path).read_text())["outcomes"]
    readme = " ".join((REPO_ROOT / "README.md").read_text().replace("\u2212", "-").split())
    expected = []
    for outcome in outcomes.values():
        expected += [
            ci(outcome["treatment_minus_negative"], sign=True).replace("\u2212", "-"),
            f"{outcome['mde']:.3f}",
        ]
        if outcome.get("margin") is not None:
            expected.append(f"±{outcome['margin']:.3f}")
    missing = [text for text in expected if text not in readme]
    assert not missing, f"README does not quote {path}: {missing}"


def test_reproduction_guide_quotes_the_dose_response_with_the_controls():
    """Section 10 carries the verdict's format-neutral rows at every step count as the report's
    dose table renders them: docs/results/dose/steps<N>/verdict.json beside the default
    step count's docs/results/controls/verdict.json."""
    from letterwise.report.axes import dose_verdict_table

    dose = {
        int(p.parent.name.removeprefix("steps")): (p, json.loads(p.read_text()))
        for p in sorted(REPO_ROOT.glob("docs/results/dose/steps*/verdict.json"))
    }
    if not dose:
        pytest.skip("no dose-response verdicts committed")
    steps = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())["train"]["max_steps"]
    main = REPO_ROOT / "docs/results/controls/verdict.json"
    dose.setdefault(steps, (main, json.loads(main.read_text())))
    guide = (REPO_ROOT / "docs/experiment_reproduction.md").read_text()
    missing = [line for line in dose_verdict_table(dose) if line not in guide]
    assert not missing, f"the guide does not quote the dose verdicts: {missing[:2]}"
