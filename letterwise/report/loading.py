"""What the report reads: runs from `dvc exp show --json` (completed from each revision's
metrics/details/), and the files beside them (training curves, breakdowns, the verdict, the
Qwen3 data results, the timing of the reference run)."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from letterwise.io import details_path, write_text
from letterwise.numbers import MISSING
from letterwise.report.probe import check_probe

TASKS = ("spelling", "position", "count")
# Every instrument the evaluation may report, in reading order; any other key of a task that
# holds base/tuned/delta is reported after these, under its own name.
INSTRUMENTS = {
    "direct": "direct generation",
    "choice": "choice scoring",
    "cloze": "cloze slot",
    "cloze_calibrated": "cloze, calibrated",
    "oracle": "cloze, spelling given",
    "two_turn": "two-turn (spell, then cloze)",
    "spell_first": "spell-first generation",
    "teacher_forced": "teacher-forced letters",
}
FORMAT_NEUTRAL = ("cloze", "cloze_calibrated")
EVAL_FILES = ("metrics/eval_spelling.json", "metrics/eval_position.json")


def instrument_label(key: str) -> str:
    return INSTRUMENTS.get(key, key.replace("_", " "))


@dataclass
class Run:
    name: str
    rev: str
    params: dict[str, Any]
    metrics: dict[str, dict[str, Any]]  # metrics file -> its content
    changed: dict[str, Any] = field(default_factory=dict)  # params that differ from the reference

    def tasks(self) -> dict[str, dict[str, Any]]:
        found = {}
        for name in EVAL_FILES:
            data = self.metrics.get(name, {})
            found |= {task: data[task] for task in TASKS if isinstance(data.get(task), dict)}
        return found

    def eval_setting(self, key: str) -> Any:
        return self.params.get("eval", {}).get(key)

    def stage(self, name: str) -> dict[str, Any]:
        """A stage's full results (metrics/<name>.json completed from details), {} if absent."""
        return self.metrics.get(f"metrics/{name}.json") or {}

    @property
    def short_name(self) -> str:
        """The first name of a run that several experiments repeat."""
        return self.name.split(" = ")[0]


def is_comparison(value: Any) -> bool:
    return isinstance(value, dict) and {"base", "tuned", "delta"} <= value.keys()


def instrument_sections(task_metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """instrument key -> its base/tuned/delta section; direct generation is the task's own."""
    found = {"direct": task_metrics} if is_comparison(task_metrics) else {}
    known = [k for k in INSTRUMENTS if k != "direct" and is_comparison(task_metrics.get(k))]
    other = sorted(k for k, v in task_metrics.items() if k not in INSTRUMENTS and is_comparison(v))
    return found | {k: task_metrics[k] for k in known + other}


# --------------------------------------------------------------------------- dvc exp show


def _data(entry: dict[str, Any] | None) -> dict[str, Any]:
    return (entry or {}).get("data") or {}


def details_at(rev: str, metrics_file: str, saved: Path | None = None) -> dict[str, Any] | None:
    """The full results behind a headline metrics file (metrics/details/<name>) at `rev`: from
    a saved snapshot (`saved`/<rev>/, see save_results), the workspace file, or the committed
    one of a commit or experiment; None where the revision predates the split (its metrics
    file then holds every number itself) or is not in git."""
    path = details_path(metrics_file).as_posix()
    if saved is not None and (saved / rev / Path(path).name).is_file():
        return json.loads((saved / rev / Path(path).name).read_text())
    if rev == "workspace":
        return json.loads(Path(path).read_text()) if Path(path).is_file() else None
    shown = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True)
    return json.loads(shown.stdout) if shown.returncode == 0 else None


def run_of(name: str, rev_entry: dict[str, Any], saved: Path | None = None) -> Run | None:
    data = rev_entry.get("data") or {}
    rev = str(rev_entry.get("rev"))
    metrics = {path: _data(v) for path, v in (data.get("metrics") or {}).items()}
    metrics = {path: details_at(rev, path, saved) or headline for path, headline in metrics.items()}
    if not any(metrics.get(f) for f in EVAL_FILES):
        return None  # no evaluation in this revision: nothing to report
    params = _data((data.get("params") or {}).get("params.yaml"))
    return Run(name=name, rev=rev, params=params, metrics=metrics)


def runs_from_exp_show(shown: list[dict[str, Any]], saved: Path | None = None) -> list[Run]:
    """Workspace, baseline commits and their experiments, in DVC's order; duplicates (the
    workspace equal to HEAD) are kept once, under the more specific name."""
    runs: list[Run] = []
    for baseline in shown:
        rev = str(baseline.get("rev"))
        name = "workspace" if rev == "workspace" else f"commit {rev[:7]}"
        if (run := run_of(name, baseline, saved)) is not None:
            runs.append(run)
        for experiment in baseline.get("experiments") or []:
            for rev_entry in experiment.get("revs") or []:
                exp_name = experiment.get("name") or rev_entry.get("name") or rev_entry["rev"][:7]
                if (run := run_of(exp_name, rev_entry, saved)) is not None:
                    runs.append(run)
    # Same params and same eval results = the same run (wall times aside): keep one, preferring
    # a commit or an experiment name over "workspace". Experiments that repeat a run keep
    # their names as aliases, so every queued name is still found.
    unique: dict[str, Run] = {}
    for run in runs:
        key = json.dumps([run.params, run.tasks()], sort_keys=True, default=str)
        if key not in unique or unique[key].name == "workspace":
            unique[key] = run
        elif run.name != "workspace":
            unique[key].name += f" = {run.name}"
    return list(unique.values())


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def pick_reference(runs: list[Run]) -> Run:
    """The run the summary is about: the committed baseline (or the workspace)."""
    for run in runs:
        if run.name.startswith("commit "):
            return run
    return runs[0]


def mark_changes(runs: list[Run], reference: Run) -> None:
    base = flatten(reference.params)
    for run in runs:
        mine = flatten(run.params)
        run.changed = {k: v for k, v in mine.items() if base.get(k) != v}


def save_results(folder: Path, shown: list[dict[str, Any]]) -> None:
    """The report's inputs as files: `dvc exp show --json` and every revision's full results
    (metrics/details/), so the report renders again without the experiment refs."""
    entries = [
        entry
        for baseline in shown
        for entry in [baseline]
        + [r for e in baseline.get("experiments") or [] for r in e.get("revs") or []]
    ]
    for entry in entries:
        rev = str(entry.get("rev"))
        for metrics_file in (entry.get("data") or {}).get("metrics") or {}:
            details = details_at(rev, metrics_file)
            if details is not None:
                text = json.dumps(details, indent=2, sort_keys=True) + "\n"
                write_text(folder / rev / Path(metrics_file).name, text)
    write_text(folder / "exp_show.json", json.dumps(shown, indent=2) + "\n")


# --------------------------------------------------------------------------- files beside


@dataclass
class FollowUp:
    """A follow-up study: its folder, plan, test-split verdicts by model, planned seeds and
    compute spent (the same reading as the first study's)."""

    path: Path
    plan: dict[str, Any]
    verdicts: dict[str, tuple[Path, dict[str, Any]]]
    seeds: dict[str, list[int]]
    compute: dict[str, dict[str, Any]]


def load_follow_up(study_dir: Path) -> FollowUp | None:
    """The follow-up study in `study_dir`, or None where it has no plan.yaml."""
    plan = study_dir / "plan.yaml"
    if not plan.is_file():
        return None
    seeds, _ = load_study_extras(study_dir)
    return FollowUp(
        path=study_dir, plan=yaml.safe_load(plan.read_text()) or {},
        verdicts=load_study(study_dir), seeds=seeds, compute=load_study_compute(study_dir),
    )  # fmt: skip


@dataclass
class Inputs:
    """Everything besides the runs; each field None/empty where its file is absent, and the
    report then says what is missing and which command makes it."""

    loss_curves: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    breakdowns: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage -> breakdowns
    choices: list[dict[str, Any]] = field(default_factory=list)  # per-question choice records
    verdict: dict[str, Any] | None = None
    verdict_path: Path = Path("docs/results/controls/verdict.json")
    qwen3_data: dict[str, dict[str, Any]] = field(default_factory=dict)  # file stem -> content
    qwen3_data_path: Path = Path("docs/results/qwen3-data")
    timing: dict[str, Any] | None = None
    replay: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # run -> tasks
    axes: list[SavedRun] = field(default_factory=list)  # model/recipe/steps runs
    axes_path: Path = Path("docs/results/axes")
    # the same rule on other models' arms: <controls>-<model>/verdict.json beside the main one
    model_verdicts: dict[Path, dict[str, Any]] = field(default_factory=dict)
    # the rule at other training-step counts: <dose>/steps<N>/verdict.json, by N
    dose_verdicts: dict[int, tuple[Path, dict[str, Any]]] = field(default_factory=dict)
    # the powered study's verdicts (test split), by model: <study>/<model>/verdict.json
    study: dict[str, tuple[Path, dict[str, Any]]] = field(default_factory=dict)
    study_path: Path = Path("docs/results/study")
    # the plan's seeds per model, and each model's per-bin accuracies (<model>/breakdown.json)
    study_seeds: dict[str, list[int]] = field(default_factory=dict)
    study_breakdowns: dict[str, tuple[Path, dict[str, Any]]] = field(default_factory=dict)
    # per model, the compute its committed runs took (letterwise.study.compute_spent)
    study_compute: dict[str, dict[str, Any]] = field(default_factory=dict)
    # each model's probe comparison of the study's arms (<model>/probe_arms.json)
    study_probes: dict[str, tuple[Path, dict[str, Any]]] = field(default_factory=dict)
    # the follow-up studies (fresh test words, habit-free questions), in the order they ran
    follow_ups: list[FollowUp] = field(default_factory=list)
    # validation searches for a recipe: <dir>/<model>/validation/steps<N>/verdict.json
    recipe_searches: dict[str, tuple[Path, dict[str, Any]]] = field(default_factory=dict)
    # the probe stage's details (letterwise.probe): base vs tuned, per layer
    probe: dict[str, Any] | None = None
    probe_path: Path = Path("metrics/details/probe.json")


def loss_points(loss_tsv: Path) -> list[dict[str, float]]:
    """(step, loss) rows of a dvclive loss.tsv."""
    lines = loss_tsv.read_text().splitlines()
    if not lines or "step" not in lines[0].split("\t") or "loss" not in lines[0].split("\t"):
        raise SystemExit(f"{loss_tsv}: not a dvclive loss curve (a step and a loss column)")
    header = lines[0].split("\t")
    return [
        {"step": float(parts[header.index("step")]), "loss": float(parts[header.index("loss")])}
        for parts in (line.split("\t") for line in lines[1:] if line.strip())
    ]


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SystemExit(f"{path} is not valid JSON: {exc}") from None


def check_verdict(verdict: dict[str, Any], path: Path) -> dict[str, Any]:
    """The fields the report renders, present and of the right kind (else a clear error)."""
    problems = [
        key
        for key, kind in (("rule", str), ("sentence", str), ("rows", list), ("claimed", bool))
        if not isinstance(verdict.get(key), kind)
    ]
    for i, row in enumerate(verdict.get("rows") or []):
        for key in ("task", "instrument", "treatment", "treatment_minus_negative"):
            if key not in row:
                problems.append(f"rows[{i}].{key}")
    if problems:
        raise SystemExit(f"{path}: verdict lacks or mistypes {', '.join(problems)}")
    return verdict


def choice_records(predictions: Path) -> list[dict[str, Any]]:
    """Per position/count question, what choice scoring picked for each model and the correct
    answer: from data/predictions/<stage>.jsonl rows ({"task", "base": {"choice": record},
    "tuned": {...}}, see letterwise.eval.choice_metrics.question_record)."""
    records = []
    for line in predictions.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("task") not in ("position", "count"):
            continue
        picked = {m: (row.get(m) or {}).get("choice") for m in ("base", "tuned")}
        if not all(isinstance(p, dict) for p in picked.values()):
            continue  # choice scoring was not run for this question
        records.append({
            "task": row["task"], "expected": picked["base"].get("expected"),
            "base": picked["base"].get("choice"), "tuned": picked["tuned"].get("choice"),
        })  # fmt: skip
    if not records:
        raise SystemExit(f"{predictions}: no position/count question with choice scoring")
    return records


def saved_tasks(run_dir: Path) -> dict[str, dict[str, Any]]:
    """task -> its details section, from a saved run folder's eval_*.json ({} if none)."""
    tasks: dict[str, Any] = {}
    for name in ("eval_spelling.json", "eval_position.json"):
        if (run_dir / name).is_file():
            data = read_json(run_dir / name)
            tasks |= {t: data[t] for t in TASKS if isinstance(data.get(t), dict)}
    return tasks


def replay_runs(folder: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """Saved result folders of the replay experiment (<folder>/<run>/eval_*.json)."""
    runs = {}
    for run_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        tasks = saved_tasks(run_dir)
        if tasks:
            runs[run_dir.name] = tasks
    return runs


@dataclass
class SavedRun:
    """A run saved as a folder (params.yaml and its stages' details), as docs/results/<group>/
    <run>/ keeps them; the report's model × recipe × steps section reads these."""

    name: str
    params: dict[str, Any]
    tasks: dict[str, dict[str, Any]]  # task -> its details section

    def setting(self, *path: str) -> Any:
        """A param by its path ("train", "max_steps"); None where absent."""
        node: Any = self.params
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        return node

    @property
    def model(self) -> str:
        return str(self.params.get("model", MISSING))

    @property
    def arm(self) -> str:
        return str(self.setting("build_dataset", "arm") or "spelling")

    @property
    def seed(self) -> Any:
        """The training seed: train.seed, else the top-level seed (as Params.training_seed)."""
        train_seed = self.setting("train", "seed")
        return self.params.get("seed") if train_seed is None else train_seed


def load_saved_runs(*folders: Path) -> list[SavedRun]:
    """Every saved run (a sub-folder with params.yaml and eval details) under the folders."""
    runs = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for run_dir in sorted(p for p in folder.iterdir() if (p / "params.yaml").is_file()):
            tasks = saved_tasks(run_dir)
            if tasks:
                params = yaml.safe_load((run_dir / "params.yaml").read_text()) or {}
                runs.append(SavedRun(run_dir.name, params, tasks))
    return runs


def load_study(
    study_dir: Path = Path("docs/results/study"),
) -> dict[str, tuple[Path, dict[str, Any]]]:
    """model -> (path, verdict) for every <model>/verdict.json of the study's test split (the
    validation/ folders hold the confirm runs, which decide the recipe, not the answer)."""
    found: dict[str, tuple[Path, dict[str, Any]]] = {}
    if not study_dir.is_dir():
        return found
    for path in sorted(study_dir.glob("*/verdict.json")):
        found[path.parent.name] = (path, check_verdict(read_json(path), path))
    return found


def load_study_extras(
    study_dir: Path = Path("docs/results/study"),
) -> tuple[dict[str, list[int]], dict[str, tuple[Path, dict[str, Any]]]]:
    """The plan's seeds per model (plan.yaml) and every <model>/breakdown.json."""
    seeds: dict[str, list[int]] = {}
    plan = study_dir / "plan.yaml"
    if plan.is_file():
        planned = (yaml.safe_load(plan.read_text()) or {}).get("seeds") or {}
        seeds = {model: [int(s) for s in values] for model, values in planned.items()}
    breakdowns = {
        path.parent.name: (path, read_json(path))
        for path in sorted(study_dir.glob("*/breakdown.json"))
    }
    return seeds, breakdowns


def load_study_compute(study_dir: Path) -> dict[str, dict[str, Any]]:
    """Per model, the wall time of its committed runs by phase beside the plan's estimate
    (letterwise.study.compute_spent); empty without a plan."""
    from letterwise.study import compute_spent, load_plan

    plan = study_dir / "plan.yaml"
    return compute_spent(load_plan(plan), study_dir=study_dir) if plan.is_file() else {}


def load_study_probes(study_dir: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    """model -> (path, summary) for every <model>/probe_arms.json (letterwise.probe arms)."""
    found = {}
    for path in sorted(study_dir.glob("*/probe_arms.json")):
        summary = read_json(path)
        tasks = summary.get("tasks") if isinstance(summary, dict) else None
        if not isinstance(tasks, dict) or not all(
            isinstance(t, dict) and {"arms", "differences", "reading", "layers"} <= set(t)
            for t in tasks.values()
        ):
            raise SystemExit(
                f"{path}: not a probe arms summary (per task: arms, differences, reading, "
                "layers); write it again with `python -m letterwise.probe arms`"
            )
        found[path.parent.name] = (path, summary)
    return found


def load_inputs(
    *,
    loss: list[str],
    breakdowns: list[Path],
    predictions: Path | None,
    verdict: Path,
    qwen3_data: Path,
    timing: Path | None,
    replay: Path | None,
    axes: Path | None = None,
    dose: Path | None = None,
    study: Path | None = None,
    probe: Path | None = None,
    follow_ups: list[Path] | tuple[Path, ...] = (),
    recipe_search: Path | None = None,
) -> Inputs:
    """Read every side input. A loss curve or predictions file that is named and missing is a
    clear error; the other inputs may be absent, and the report then says so."""
    inputs = Inputs(verdict_path=verdict, qwen3_data_path=qwen3_data)
    for item in loss:
        label, _, path = item.rpartition("=")
        path_ = Path(path)
        if not path_.is_file():
            raise SystemExit(f"--loss {item}: no such file")
        inputs.loss_curves[label or "reference"] = loss_points(path_)
    for path in breakdowns:
        if path.is_file():
            inputs.breakdowns[path.parent.name] = read_json(path)
    if predictions is not None:
        if not predictions.is_file():
            raise SystemExit(f"--predictions {predictions}: no such file (`dvc pull` it first)")
        inputs.choices = choice_records(predictions)
    if verdict.is_file():
        inputs.verdict = check_verdict(read_json(verdict), verdict)
    for path in sorted(verdict.parent.parent.glob(f"{verdict.parent.name}-*/{verdict.name}")):
        inputs.model_verdicts[path] = check_verdict(read_json(path), path)
    if dose is not None:
        for path in sorted(dose.glob(f"steps*/{verdict.name}")):
            steps = re.fullmatch(r"steps(\d+)", path.parent.name)
            if steps:
                inputs.dose_verdicts[int(steps[1])] = (path, check_verdict(read_json(path), path))
    if study is not None:
        inputs.study_path, inputs.study = study, load_study(study)
        inputs.study_seeds, inputs.study_breakdowns = load_study_extras(study)
        inputs.study_probes = load_study_probes(study)
        inputs.study_compute = load_study_compute(study)
    inputs.follow_ups = [f for f in map(load_follow_up, follow_ups) if f is not None]
    if recipe_search is not None and recipe_search.is_dir():
        for path in sorted(recipe_search.glob("*/validation/steps*/verdict.json")):
            label = f"{path.parts[-4]} at {int(path.parent.name.removeprefix('steps')):,} steps"
            inputs.recipe_searches[label] = (path, check_verdict(read_json(path), path))
    if probe is not None:
        inputs.probe_path = probe
        if probe.is_file():
            try:
                inputs.probe = check_probe(read_json(probe), probe)
            except ValueError as error:
                raise SystemExit(str(error)) from None
    if qwen3_data.is_dir():
        inputs.qwen3_data = {p.stem: read_json(p) for p in sorted(qwen3_data.glob("*.json"))}
    if timing is not None and timing.is_file():
        inputs.timing = read_json(timing)
    if replay is not None and replay.is_dir():
        inputs.replay = replay_runs(replay)
    if axes is not None:
        # the treatment arm's seeds of the default setting sit with the control arms
        inputs.axes_path = axes
        inputs.axes = load_saved_runs(axes, verdict.parent)
    return inputs
