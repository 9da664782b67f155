"""The layout: `stages/` holds one thin entry point per dvc stage, the work is in `letterwise/`,
and every stage's dvc deps are exactly the code it imports, so `dvc repro` reruns exactly the
stages a code change can affect.
"""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.test_pipeline import dvc, git

STAGES = (
    "filter_tokens", "build_dataset", "train", "eval_spelling", "eval_position", "probe", "publish",
)  # fmt: skip
CODE_ROOTS = ("letterwise", "stages")


def module_file(name: str) -> Path | None:
    path = REPO_ROOT.joinpath(*name.split("."))
    if (path / "__init__.py").exists():
        return path / "__init__.py"
    if path.with_suffix(".py").exists():
        return path.with_suffix(".py")
    return None


def imported_modules(path: Path) -> set[str]:
    """Every letterwise/stages module imported anywhere in `path`, lazy imports included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {m for m in found if m.split(".")[0] in CODE_ROOTS and module_file(m)}


def import_closure(module: str) -> set[str]:
    """Files of `module` and everything it imports, transitively, with parent packages."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += imported_modules(module_file(name))
    return {module_file(name).relative_to(REPO_ROOT).as_posix() for name in seen}


def is_docstring_only(path: str) -> bool:
    body = ast.parse((REPO_ROOT / path).read_text()).body
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def code_deps(stage: str) -> set[str]:
    """The stage's dvc deps inside letterwise/ and stages/, directories expanded to files."""
    spec = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"][stage]
    files: set[str] = set()
    for dep in spec["deps"]:
        if dep.split("/")[0] not in CODE_ROOTS:
            continue
        path = REPO_ROOT / dep
        members = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        files |= {p.relative_to(REPO_ROOT).as_posix() for p in members}
    return files


def test_stages_holds_exactly_one_module_per_dvc_stage():
    spec = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    assert set(spec) == set(STAGES)
    modules = {p.stem for p in (REPO_ROOT / "stages").glob("*.py")} - {"__init__"}
    assert modules == set(STAGES)
    for stage in STAGES:
        assert spec[stage]["cmd"] == f"python -m stages.{stage}"


@pytest.mark.parametrize("stage", STAGES)
def test_dvc_deps_are_exactly_the_code_the_stage_imports(stage):
    imported = import_closure(f"stages.{stage}")
    # package __init__ files that hold only a docstring cannot change behaviour: not deps
    empty_inits = {p for p in imported if p.endswith("__init__.py") and is_docstring_only(p)}
    expected = imported - empty_inits
    declared = code_deps(stage)
    assert declared == expected, (
        f"{stage}: declared but not imported {sorted(declared - expected)}; "
        f"imported but not declared {sorted(expected - declared)}"
    )


def test_stages_do_not_import_each_other():
    for stage in STAGES:
        imported = imported_modules(REPO_ROOT / "stages" / f"{stage}.py")
        assert not {m for m in imported if m.startswith("stages.")}, stage


def test_the_core_never_imports_a_stage():
    for path in (REPO_ROOT / "letterwise").rglob("*.py"):
        stages = {m for m in imported_modules(path) if m.split(".")[0] == "stages"}
        assert not stages, f"{path} imports {stages}"


def test_data_stage_closures_hold_no_model_code():
    # written out by hand: the data stages' whole world, independent of dvc.yaml
    allowed = {
        "letterwise/params.py", "letterwise/presets.py", "letterwise/io.py",
        "letterwise/data/vocab.py", "letterwise/data/tokens.py", "letterwise/data/dataset.py",
        "letterwise/cards/dataset_card.py", "letterwise/tasks/__init__.py",
        "letterwise/tasks/common.py", "letterwise/tasks/spelling.py",
        "letterwise/tasks/position.py", "letterwise/tasks/count.py",
        "letterwise/tasks/replay.py", "letterwise/gemma3_assets.py",
    }  # fmt: skip
    for stage in ("filter_tokens", "build_dataset"):
        core = {p for p in import_closure(f"stages.{stage}") if p.startswith("letterwise/")}
        core -= {p for p in core if p.endswith("__init__.py") and is_docstring_only(p)}
        assert core <= allowed, sorted(core - allowed)


# --------------------------------------------------------------------------- dvc status
# Which stages a change to one core module must rerun, worked out by hand from what each
# module does (not read from dvc.yaml).
TOUCHED_MODULE_RERUNS = {
    "letterwise/data/vocab.py": {"filter_tokens", "build_dataset"},
    "letterwise/data/tokens.py": {"filter_tokens"},
    "letterwise/cards/dataset_card.py": {"build_dataset"},
    "letterwise/tasks/position.py": {
        "build_dataset", "train", "eval_spelling", "eval_position", "probe", "publish",
    },  # fmt: skip
    # replay questions are built by build_dataset and answered by the base model in train
    "letterwise/tasks/replay.py": {"build_dataset", "train"},
    "letterwise/tasks/spell_first.py": {"eval_spelling", "eval_position", "publish"},
    # the probe's logit lens tokenizes the slot with the cloze scorer, which imports choice
    "letterwise/eval/choice.py": {"eval_spelling", "eval_position", "probe", "publish"},
    "letterwise/training/checkpoints.py": {"train"},
    "letterwise/chat.py": {"train", "eval_spelling", "eval_position", "probe", "publish"},
    "letterwise/eval/stats.py": {"eval_spelling", "eval_position", "probe", "publish"},
    "letterwise/probe/probes.py": {"probe"},
    "letterwise/cards/model_card.py": {"publish"},
    "letterwise/publishing/hub.py": {"publish"},
    "letterwise/params.py": set(STAGES),
}


def stub_outputs(project: Path) -> None:
    """Every declared out as a small placeholder, so `dvc commit` can record a lock file
    without running the pipeline (this test is about the dependency graph, not the results)."""
    spec = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    for stage in spec.values():
        for entry in stage.get("outs", []) + stage.get("metrics", []) + stage.get("plots", []):
            out = project / (entry if isinstance(entry, str) else next(iter(entry)))
            if out.suffix in (".json", ".jsonl"):
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text("{}\n")
            else:
                out.mkdir(parents=True, exist_ok=True)
                (out / "placeholder.txt").write_text("placeholder\n")
    (project / "data/dataset/hf/train").mkdir(parents=True, exist_ok=True)
    (project / "data/dataset/hf/train/placeholder.txt").write_text("placeholder\n")


@pytest.mark.slow
def test_touching_one_core_module_reruns_exactly_the_stages_that_use_it(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    # docs/: the committed results the model card's verdicts quote (the controls pilot and
    # each study verdict), every docs path any stage depends on
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"].values()
    docs_deps = sorted(
        {dep for spec in stages for dep in spec.get("deps", []) if dep.startswith("docs/")}
    )
    for name in ("dvc.yaml", "params.yaml", "letterwise", "stages", *docs_deps):
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, project / name)
    git(project, "init", "-q")
    dvc(project, "init", "-q")
    stub_outputs(project)
    dvc(project, "commit", "-f", "-q")
    assert json.loads(dvc(project, "status", "--json").stdout) == {}

    for module, expected in TOUCHED_MODULE_RERUNS.items():
        path = project / module
        original = path.read_text()
        path.write_text(original + "\n# touched\n")
        changed = set(json.loads(dvc(project, "status", "--json").stdout))
        path.write_text(original)
        assert changed == expected, f"touching {module}: dvc status lists {sorted(changed)}"
