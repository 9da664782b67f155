"""What a fan-out will run and what it will cost: the grid cells (validated), what each reruns
(from dvc.yaml's params per stage) and the estimate from experiments/machines.yaml (declared
estimates of prices, speeds and hours, never measurements). Built on the grid; the backends,
the coordinator and the `run` command build on this."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from letterwise.experiments.grid import (
    PlannedRun,
    known_key,
    load_grid,
    plan,
    read_params,
    with_changes,
)
from letterwise.params import parse_params
from letterwise.presets import PRESETS, resolve_preset

ESTIMATES_FILE = Path("experiments/machines.yaml")
DVC_YAML = Path("dvc.yaml")
# Stages whose params, when a cell changes them, make the cell retrain (and rebuild data).
TRAINING_STAGES = ("filter_tokens", "build_dataset", "train")


class FanoutError(SystemExit):
    """A fan-out that cannot start: bad flags, an unpushed base commit, a missing variable."""


class MachineEstimate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    usd_per_hour: float = Field(gt=0)
    speed: float = Field(gt=0)


class RunHours(BaseModel):
    model_config = ConfigDict(extra="forbid")
    retrains: float = Field(gt=0)
    eval_only: float = Field(gt=0)


class Estimates(BaseModel):
    """experiments/machines.yaml: estimated prices, speeds and hours (never measurements)."""

    model_config = ConfigDict(extra="forbid")
    machines: dict[str, MachineEstimate] = Field(min_length=1)
    hours_per_run: dict[str, RunHours] = Field(min_length=1)
    startup_minutes: float = Field(ge=0)


def load_estimates(path: Path = ESTIMATES_FILE) -> Estimates:
    try:
        return Estimates.model_validate(yaml.safe_load(Path(path).read_text()))
    except FileNotFoundError:
        raise FanoutError(f"{path} not found (run from the repository root)") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise FanoutError(f"{path} is invalid: {problems}") from None


Kind = Literal["retrains", "eval_only"]


def stage_params(dvc_yaml: Path = DVC_YAML) -> dict[str, list[str]]:
    """Each stage's params entries from dvc.yaml (dotted keys or whole sections)."""
    stages = yaml.safe_load(Path(dvc_yaml).read_text())["stages"]
    return {
        name: [p for p in stage.get("params") or [] if isinstance(p, str)]
        for name, stage in stages.items()
    }


def run_kind(changes: dict[str, Any], params_by_stage: dict[str, list[str]]) -> Kind:
    """'retrains' when a change reaches a data or train stage's params, else 'eval_only'."""

    def reaches(key: str, param: str) -> bool:
        return key == param or key.startswith(param + ".") or param.startswith(key + ".")

    for stage in TRAINING_STAGES:
        if any(reaches(k, p) for k in changes for p in params_by_stage.get(stage, [])):
            return "retrains"
    return "eval_only"


@dataclass(frozen=True)
class Cell:
    """One grid run to fan out, with what the estimate needs."""

    run: PlannedRun
    preset: str | None  # None: a Hub id or a local path, which has no estimate
    kind: Kind

    @property
    def name(self) -> str:
        return self.run.name


@dataclass(frozen=True)
class CostEstimate:
    hours_per_cell: dict[str, float | None]
    machine_hours: float | None
    usd: float | None
    wall_hours: float | None


def estimate(
    cells: list[Cell], machine: str, max_parallel: int, estimates: Estimates
) -> CostEstimate:
    """Machine-hours, cost and wall time of the fan-out, from the declared estimates."""
    speed = estimates.machines[machine].speed
    startup = estimates.startup_minutes / 60
    hours: dict[str, float | None] = {}
    for cell in cells:
        declared = estimates.hours_per_run.get(cell.preset or "")
        hours[cell.name] = (
            getattr(declared, cell.kind) / speed + startup if declared is not None else None
        )
    if any(h is None for h in hours.values()):
        return CostEstimate(hours, None, None, None)
    durations = [h for h in hours.values() if h is not None]
    machine_hours = sum(durations)
    # The coordinator starts cells in grid order as slots free up: list scheduling.
    slots = [0.0] * min(max_parallel, len(durations))
    for duration in durations:
        heapq.heappush(slots, heapq.heappop(slots) + duration)
    return CostEstimate(
        hours,
        machine_hours,
        machine_hours * estimates.machines[machine].usd_per_hour,
        max(slots),
    )


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    """`--set key=value` pairs (values are YAML, as `dvc exp run -S` reads them)."""
    changes: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise FanoutError(f"--set {pair!r}: expected KEY=VALUE, e.g. model=qwen3-4b")
        problem = known_key(key)
        if problem:
            raise FanoutError(f"--set {pair!r}: {problem}")
        changes[key] = yaml.safe_load(value)
    return changes


def plan_cells(
    grid_file: Path,
    params_file: Path,
    groups: list[str],
    dvc_yaml: Path = DVC_YAML,
    common: dict[str, Any] | None = None,
) -> list[Cell]:
    """The groups' runs, validated (GridError before anything starts), with preset and kind.
    `common` changes (from --set) apply to every cell; a run's own changes win over them."""
    params = read_params(params_file)
    common = common or {}
    runs = plan(load_grid(grid_file), with_changes(params, common), groups)
    by_stage = stage_params(dvc_yaml)
    cells = []
    for run in runs:
        if run.skipped:
            continue
        run = replace(run, changes={**common, **run.changes})
        model = parse_params(with_changes(params, run.changes), source=run.name).model
        preset = resolve_preset(model).name if model in PRESETS else None
        cells.append(Cell(run, preset, run_kind(run.changes, by_stage)))
    return cells
