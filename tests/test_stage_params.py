"""The stage-rerun matrix: changing one params section reruns exactly the stages that declare
it and the stages downstream of them, as docs/experiment_reproduction.md's table says.

Runs `dvc status` against the committed reference dvc.lock in a fresh copy (no outputs needed,
nothing is run), one section at a time.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.test_pipeline import dvc, fresh_clone, set_params

ORDER = (
    "filter_tokens", "build_dataset", "train", "eval_spelling", "eval_position", "probe", "publish",
)  # fmt: skip
EVALS = ("eval_spelling", "eval_position", "publish")
# One valid new value per params section, and the stages that must rerun: worked out from what
# each stage's code reads and the pipeline's order, not from dvc.yaml.
CHANGES = {
    "model": ({"model": "qwen3-4b"}, ORDER),
    "seed": ({"seed": 7}, ORDER[1:]),
    "filter_tokens": ({"filter_tokens": {"min_length": 3}}, ORDER),
    "build_dataset": ({"build_dataset": {"test_words": 150}}, ORDER[1:]),
    "train": ({"train": {"max_steps": 40}}, ORDER[2:]),
    "eval": ({"eval": {"max_questions": 100}}, EVALS),
    "publish": ({"publish": {"load_back_questions": 4}}, ("publish",)),
    "probe": ({"probe": {"words": 100}}, ("probe",)),
}
# The docs table's row for each section ("`train.*`" -> "train, eval_spelling, ...").
DOC_ROWS = {
    "model": "`model=...`",
    "filter_tokens": "`filter_tokens.*`",
    "seed": "`seed=...`, `build_dataset.*`",
    "build_dataset": "`seed=...`, `build_dataset.*`",
    "train": "`train.*`",
    "eval": "`eval.*`",
    "publish": "`publish.*`",
    "probe": "`probe.*`",
}


def downstream(stages: set[str]) -> set[str]:
    """The stages whose deps are (inside) the outputs of the given ones, transitively."""
    spec = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]

    def outs(name: str) -> list[str]:
        return [next(iter(o)) if isinstance(o, dict) else o for k in ("outs", "metrics")
                for o in spec[name].get(k, [])]  # fmt: skip

    found = set(stages)
    while True:
        more = {
            name
            for name, stage in spec.items()
            if name not in found
            and any(
                dep == out or dep.startswith(out + "/") or out.startswith(dep + "/")
                for dep in stage.get("deps", [])
                for source in found
                for out in outs(source)
            )
        }
        if not more:
            return found
        found |= more


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    return fresh_clone(tmp_path_factory.mktemp("matrix") / "clone")


@pytest.mark.parametrize("section", list(CHANGES))
def test_changing_a_params_section_reruns_exactly_its_stages(clone, section):
    original = (clone / "params.yaml").read_text()
    change, expected = CHANGES[section]
    try:
        set_params(clone, change)
        status = json.loads(dvc(clone, "status", "--json").stdout)
    finally:
        (clone / "params.yaml").write_text(original)
    readers = {
        stage
        for stage, entries in status.items()
        for entry in entries
        if isinstance(entry, dict) and "params.yaml" in entry.get("changed deps", {})
    }
    assert readers, f"no stage declares {section}"
    assert sorted(downstream(readers), key=ORDER.index) == list(expected)

    docs = (REPO_ROOT / "docs/experiment_reproduction.md").read_text()
    row = re.search(rf"^\| {re.escape(DOC_ROWS[section])} \| ([^|]+) \|$", docs, re.M)
    assert row, f"docs/experiment_reproduction.md has no rerun row for {section}"
    said = row.group(1).strip()
    wording = {
        "all": list(ORDER),
        "build_dataset onwards": list(ORDER[1:]),
    }.get(said, [s.strip() for s in said.split(",")])
    assert wording == list(expected), f"the docs say {said!r} for {section}"


def test_everything_evaluation_needs_from_training_can_be_pulled():
    """A Studio, a clone or a queued experiment gets train's outputs with `dvc pull`; an output
    that is not cached (or persists outside DVC) would be missing there and make DVC retrain
    before every eval-only experiment."""
    import subprocess

    spec = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    for name in ("filter_tokens", "build_dataset", "train"):
        for out in spec[name]["outs"]:
            if isinstance(out, dict):
                path, options = next(iter(out.items()))
                assert not options.get("persist"), f"{name} output {path} persists outside DVC"
                if not options.get("cache", True):
                    # not in the DVC cache: then it must travel in git (the metrics details)
                    tracked = subprocess.run(
                        ["git", "ls-files", "--error-unmatch", path],
                        cwd=REPO_ROOT,
                        capture_output=True,
                    )
                    assert tracked.returncode == 0, (
                        f"{name} output {path} is neither in the DVC cache nor in git"
                    )
