"""The powered study, run from its committed plan, one run at a time, resumable.

    python -m letterwise.study status                  # what the plan asks, what is committed
    python -m letterwise.study run --phase confirm     # the validation check before the test split
    python -m letterwise.study run --phase test --model smollm2-135m
    python -m letterwise.study run --dry-run           # the dvc commands only
    python -m letterwise.study --plan docs/results/study2/plan.yaml run   # another plan

The plan (docs/results/study/plan.yaml) names the recipe, the n, the arms and the seeds. Each run
is a `dvc exp run` in a private clone of this repository at the commit being run (so edits made
in the working tree meanwhile never leak into a run), sharing this repository's DVC cache and
the answer cache (base answers are computed once per model). A finished run is saved with
scripts/save_run.sh into docs/results/study/<model>/<arm>-seed<k>/ (validation runs under
docs/results/study/<model>/validation/steps<N>/), with timing.json, and committed at once: a
stop at any moment loses at most the run in flight, and the next `run` skips every committed
folder.

A plan may name its own `results_dir` (default docs/results/study), experiment-name `prefix`
(default "study") and `code_commit` (the commit its first run goes at; default HEAD): the second
study re-tests the first study's recipe, at the first study's code, on fresh test words.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from letterwise.io import write_json

PLAN_FILE = Path("docs/results/study/plan.yaml")
STUDY_DIR = Path("docs/results/study")
CLONE_DIR = Path(".study/clone")
PHASES = ("confirm", "test")
# what makes a saved run complete: the verdict reads eval_position.json's per-question results
REQUIRED_FILES = ("eval_position.json", "eval_spelling.json", "train.json", "COMMIT", "timing.json")

console = Console(stderr=True)


class PlanError(SystemExit):
    """The plan file is missing a section the runner needs, or names an unknown value."""


@dataclass(frozen=True)
class StudyRun:
    phase: str
    model: str
    arm: str
    seed: int
    settings: tuple[tuple[str, Any], ...]  # every -S key=value, in order
    study_dir: Path = STUDY_DIR  # the plan's results_dir
    prefix: str = "study"  # the plan's experiment-name prefix

    @property
    def name(self) -> str:
        # unique per folder: save_run.sh finds the experiment by name
        if self.phase == "confirm":
            steps = dict(self.settings).get("train.max_steps", "default")
            return f"{self.prefix}-val-{self.model}-{self.arm}-s{self.seed}-steps{steps}"
        return f"{self.prefix}-{self.model}-{self.arm}-s{self.seed}"

    @property
    def folder(self) -> Path:
        base = self.study_dir / self.model
        if self.phase == "confirm":
            # one folder per step count: a confirm run at raised steps never overwrites (or is
            # skipped because of) the one that raised them
            steps = dict(self.settings).get("train.max_steps", "default")
            base = base / "validation" / f"steps{steps}"
        return base / f"{self.arm}-seed{self.seed}"

    def command(self) -> list[str]:
        command = ["dvc", "exp", "run", "-n", self.name]
        for key, value in self.settings:
            command += ["-S", f"{key}={_yaml_scalar(value)}"]
        return command


def _yaml_scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _dotted(section: dict[str, Any], where: str) -> list[tuple[str, Any]]:
    """The plan's `a.b: value` entries of a section (prose entries such as `other` skipped)."""
    if not isinstance(section, dict):
        raise PlanError(f"{PLAN_FILE}: `{where}` must be a mapping")
    return [(key, value) for key, value in section.items() if "." in key]


def load_plan(path: Path = PLAN_FILE) -> dict[str, Any]:
    if not path.is_file():
        raise PlanError(f"{path} not found: the study runs only from a committed plan")
    plan = yaml.safe_load(path.read_text())
    for key in ("recipe", "n", "arms", "seeds"):
        if key not in plan:
            raise PlanError(f"{path}: no `{key}` section")
    plan["_path"] = str(path)
    return plan


def results_dir(plan: dict[str, Any]) -> Path:
    return Path(plan.get("results_dir") or STUDY_DIR)


def planned_runs(
    plan: dict[str, Any], phase: str, models: list[str] | None = None
) -> list[StudyRun]:
    """Every run of a phase, in the order they are run: seed by seed, so that a partial study
    has whole seeds (all arms of seed 1 before any of seed 2)."""
    if phase not in PHASES:
        raise PlanError(f"unknown phase {phase!r} (known: {', '.join(PHASES)})")
    shared = _dotted(plan["recipe"], "recipe") + _dotted(plan["n"], "n")
    if phase == "confirm":
        confirm = plan.get("confirm")
        if not isinstance(confirm, dict):
            raise PlanError(f"{plan.get('_path', PLAN_FILE)}: no `confirm` phase in this plan")
        arms, seeds_of = confirm["arms"], {m: confirm["seeds"] for m in plan["seeds"]}
        shared += _dotted(confirm, "confirm") + [("eval.split", "validation")]
    else:
        arms, seeds_of = plan["arms"], plan["seeds"]
        shared += [("eval.split", "test")]
    unknown = sorted(set(models or []) - set(plan["seeds"]))
    if unknown:
        raise PlanError(
            f"the plan has no model {', '.join(unknown)} (it has {', '.join(plan['seeds'])})"
        )
    runs = []
    for model in models or list(plan["seeds"]):
        for seed in seeds_of[model]:
            for arm in arms:
                settings = [("model", model), ("build_dataset.arm", arm), ("train.seed", seed)]
                merged = dict(settings + shared)  # a later entry (the phase's) wins
                runs.append(StudyRun(
                    phase, model, arm, int(seed), tuple(merged.items()),
                    results_dir(plan), str(plan.get("prefix") or "study"),
                ))  # fmt: skip
    return runs


def study_commit(plan: dict[str, Any], run: StudyRun, root: Path = Path(".")) -> str | None:
    """The code commit a run goes at: the one its arm's committed runs of this phase ran at
    (their COMMIT files), else the one the model's ran at, so that a study resumed in a later
    session runs on the code its runs ran at; None when none is committed. An arm moves to
    other code only by --at (Gemma's negative control did, for its replay fix: plan.yaml).
    Several commits to choose from is an error."""
    committed = [r for r in planned_runs(plan, run.phase, [run.model]) if is_complete(r, root)]
    same_arm = [r for r in committed if r.arm == run.arm]
    for group, whose in ((same_arm, f"{run.model} {run.arm}"), (committed, run.model)):
        commits = {(root / r.folder / "COMMIT").read_text().strip() for r in group}
        if len(commits) > 1:
            raise PlanError(
                f"{whose} {run.phase} runs are committed at several code commits "
                f"({', '.join(sorted(c[:7] for c in commits))}): pass --at to choose one"
            )
        if commits:
            return commits.pop()
    return None


def is_complete(run: StudyRun, root: Path = Path(".")) -> bool:
    return all((root / run.folder / name).is_file() for name in REQUIRED_FILES)


def _git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def prepare_clone(commit: str, repo: Path = Path(".")) -> Path:
    """A clone of this repository at `commit` that uses this repository's DVC cache."""
    clone = repo / CLONE_DIR
    if not (clone / ".git").is_dir():
        clone.parent.mkdir(parents=True, exist_ok=True)
        _git("clone", "-q", str(repo.resolve()), str(clone))
    _git("fetch", "-q", str(repo.resolve()), "HEAD", cwd=clone)
    _git("checkout", "-q", "-f", commit, cwd=clone)
    # a run starts from the commit's params and lock, never from the previous run's
    _git("checkout", "-q", "--", ".", cwd=clone)
    cache = (repo / ".dvc" / "cache").resolve()
    subprocess.run(
        ["dvc", "cache", "dir", "--local", str(cache)], cwd=clone, check=True, env=_tool_env()
    )
    return clone


def _tool_env() -> dict[str, str]:
    """This environment with the running interpreter's bin folder first on PATH, so `dvc` is the
    one installed beside letterwise even when the virtual environment is not activated."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def run_one(
    run: StudyRun, commit: str, repo: Path = Path("."), plan_file: Path = PLAN_FILE
) -> Path:
    """One run in the clone, saved into the repo and committed; returns its folder."""
    clone = prepare_clone(commit, repo)
    command = run.command()
    shown = " ".join(shlex.quote(c) for c in command)
    console.print(f"[bold]{run.name}[/] at {commit[:7]}: {shown}")
    started = time.time()
    subprocess.run(command, cwd=clone, check=True, env=_tool_env())
    seconds = time.time() - started
    saved = clone / "docs/results/study/.saved" / run.folder.name
    saved.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["bash", "scripts/save_run.sh", run.name, str(saved.relative_to(clone)),
         f"python -m letterwise.study --plan {plan_file} run --phase {run.phase} "
         f"(this run: {shown})"],
        cwd=clone, check=True, env=_tool_env(),
    )  # fmt: skip
    write_json(saved / "timing.json", {
        "wall_seconds": round(seconds, 1),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "cpu": _cpu_model(),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        # the plan's last commit in this repository (a plan newer than the code it runs at is
        # not in the clone's checkout)
        "plan_commit": _git("log", "-1", "--format=%H", "--", str(plan_file), cwd=repo),
    })  # fmt: skip
    dest = repo / run.folder
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.incoming"
    subprocess.run(["rm", "-rf", str(tmp)], check=True)
    subprocess.run(["cp", "-r", str(saved), str(tmp)], check=True)
    subprocess.run(["rm", "-rf", str(dest)], check=True)
    tmp.rename(dest)  # whole folder or nothing
    message = f"Study run {run.name}: {seconds / 60:.0f} min (python -m letterwise.study)"
    commit_folder(run.folder, message, repo)
    console.print(f"saved and committed {run.folder} ({seconds / 60:.1f} min)")
    return dest


def commit_folder(folder: Path, message: str, repo: Path = Path("."), tries: int = 10) -> None:
    """Commit only `folder`; others may be committing in the same repository (index.lock)."""
    for attempt in range(tries):
        try:
            _git("add", "--", str(folder), cwd=repo)
            _git("commit", "-q", "-m", message, "--", str(folder), cwd=repo)
            return
        except subprocess.CalledProcessError as error:
            if "index.lock" not in (error.stderr or "") or attempt == tries - 1:
                raise
            time.sleep(3)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def run_minutes(run: StudyRun, root: Path = Path(".")) -> float | None:
    """The committed run's wall time from its timing.json, in minutes (None if not run)."""
    path = root / run.folder / "timing.json"
    if not path.is_file():
        return None
    return float(json.loads(path.read_text())["wall_seconds"]) / 60


def compute_spent(
    plan: dict[str, Any], root: Path = Path("."), study_dir: Path | None = None
) -> dict[str, dict[str, Any]]:
    """Per model: every committed run's wall time (its timing.json) summed per phase, the
    confirm runs of earlier step counts included, beside the plan's estimate
    (compute_estimate.<model>) and the number of planned test runs. Runs moved to
    `superseded/` (redone at another commit) are compute spent but not study runs: their own
    bucket."""
    study_dir = results_dir(plan) if study_dir is None else study_dir
    estimates = plan.get("compute_estimate") or {}
    spent: dict[str, dict[str, Any]] = {}
    for model in plan["seeds"]:
        entry = spent[model] = {"estimate": estimates.get(model)}
        for phase in (*PHASES, "superseded"):
            entry[phase] = {"runs": 0, "minutes": 0.0}
        entry["test"]["planned"] = len(planned_runs(plan, "test", [model]))
        for timing in sorted((root / study_dir / model).glob("**/timing.json")):
            parts = timing.relative_to(root / study_dir / model).parts
            phase = {"validation": "confirm", "superseded": "superseded"}.get(parts[0], "test")
            recorded = json.loads(timing.read_text())
            # a failed attempt's compute is spent too (timing.json names it when a run is redone)
            seconds = float(recorded["wall_seconds"]) + float(
                recorded.get("earlier_attempts_seconds", 0)
            )
            entry[phase]["runs"] += 1
            entry[phase]["minutes"] = round(entry[phase]["minutes"] + seconds / 60, 1)
    return spent


def status_table(plan: dict[str, Any], root: Path = Path(".")) -> Table:
    table = Table(title="the study: planned runs and what is committed")
    for column in ("phase", "run", "folder", "state", "minutes"):
        table.add_column(column)
    for phase in [p for p in PHASES if p == "test" or isinstance(plan.get("confirm"), dict)]:
        for run in planned_runs(plan, phase):
            done = is_complete(run, root)
            minutes = run_minutes(run, root) if done else None
            state = "[green]committed[/]" if done else "to run"
            shown = "" if minutes is None else f"{minutes:.1f}"
            table.add_row(phase, run.name, str(run.folder), state, shown)
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m letterwise.study",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--plan", type=Path, default=PLAN_FILE,
        help="the committed plan to run (default: %(default)s, the first study)",
    )  # fmt: skip
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("status", help="list the planned runs and which are committed")
    run = sub.add_parser("run", help="run every planned run not yet committed, in order")
    run.add_argument(
        "--phase",
        choices=PHASES,
        default="test",
        help="confirm = the validation check of the recipe; test = the study itself",
    )
    run.add_argument("--model", action="append", help="only this model (repeatable); default all")
    run.add_argument(
        "--arm", action="append", help="only this arm (repeatable); default every planned arm"
    )
    run.add_argument("--limit", type=int, default=None, help="stop after this many runs")
    run.add_argument("--dry-run", action="store_true", help="print the dvc commands, run nothing")
    run.add_argument(
        "--at",
        default="study",
        help="the code commit to run at; default: the commit the arm's committed runs of the "
        "phase ran at, else the model's (a resumed study stays on its code), else the plan's "
        "code_commit, else HEAD",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    plan = load_plan(args.plan)
    if args.action == "status":
        Console().print(status_table(plan))
        for model, entry in compute_spent(plan).items():
            test, confirm = entry["test"], entry["confirm"]
            phases = (
                f"confirm {confirm['runs']} run(s), {confirm['minutes'] / 60:.2f} h; test "
                f"{test['runs']}/{test['planned']} runs, {test['minutes'] / 60:.2f} h"
            )
            if entry["superseded"]["runs"]:
                old = entry["superseded"]
                phases += f"; superseded {old['runs']} run(s), {old['minutes'] / 60:.2f} h"
            Console().print(f"{model}: {phases} (plan's estimate: {entry['estimate']})")
        return 0
    runs = [r for r in planned_runs(plan, args.phase, args.model) if not is_complete(r)]
    if args.arm:
        unknown = sorted(set(args.arm) - {r.arm for r in planned_runs(plan, args.phase)})
        if unknown:
            raise PlanError(f"the plan has no arm {', '.join(unknown)} in the {args.phase} phase")
        runs = [r for r in runs if r.arm in args.arm]
    if args.limit is not None:
        runs = runs[: args.limit]
    if args.dry_run:
        for run in runs:
            print(" ".join(shlex.quote(c) for c in run.command()))
        return 0
    if _git("status", "--porcelain", "--", str(args.plan)) or not _git(
        "log", "-1", "--format=%H", "--", str(args.plan)
    ):
        raise PlanError(f"{args.plan} is not committed as it is: commit the plan before running it")
    at = str(plan.get("code_commit") or "HEAD") if args.at == "study" else args.at
    head = _git("rev-parse", at)
    console.print(f"{len(runs)} run(s) to go")
    for index, run in enumerate(runs, 1):
        commit = head if args.at != "study" else (study_commit(plan, run) or head)
        console.print(f"[{index}/{len(runs)}] at {commit[:7]}")
        run_one(run, commit, plan_file=args.plan)
    summary = {r.name: str(r.folder) for r in runs}
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
