"""The experiment grid (experiments/grid.yaml): named groups of params changes, each run
validated against the params schema (letterwise.params) before anything is queued or started,
and the `-S key=value` form `dvc exp run` reads them in. Everything else in
letterwise.experiments builds on this module; it imports none of them.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from letterwise.params import Params, ParamsError, parse_params
from letterwise.presets import resolve_preset

GRID_FILE = Path("experiments/grid.yaml")
PARAMS_FILE = Path("params.yaml")


class GridError(SystemExit):
    """The grid file is malformed or one of its runs is not a valid params change."""


class Group(BaseModel):
    model_config = ConfigDict(extra="forbid")
    about: str
    requires: Literal["thinking_mode"] | None = None
    runs: dict[str, dict[str, Any]] = Field(min_length=1)


class Grid(BaseModel):
    model_config = ConfigDict(extra="forbid")
    groups: dict[str, Group] = Field(min_length=1)


@dataclass(frozen=True)
class PlannedRun:
    name: str  # the DVC experiment name: <group>-<run>
    group: str
    changes: dict[str, Any]  # dotted params key -> value
    skipped: str | None = None  # why this run is not queued on this preset


def load_grid(path: Path = GRID_FILE) -> Grid:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise GridError(f"{path} not found (run from the repository root)") from None
    except yaml.YAMLError as exc:
        raise GridError(f"{path} is not valid YAML: {exc}") from None
    try:
        return Grid.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise GridError(f"{path} is invalid: {problems}") from None


def read_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    """The base params.yaml as a dict (the runs' changes apply on top of it)."""
    try:
        return yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise GridError(f"{path} not found (run from the repository root)") from None


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """--grid and --params, the same on both commands (queue and fan-out)."""
    parser.add_argument(
        "--grid", type=Path, default=GRID_FILE, help="grid file (default: %(default)s)"
    )
    parser.add_argument(
        "--params", type=Path, default=PARAMS_FILE, help="base params (default: %(default)s)"
    )


def known_key(key: str) -> str | None:
    """None when `key` is a params path; else what is wrong with it, naming the allowed keys."""
    model: type[BaseModel] = Params
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if part not in model.model_fields:
            where = ".".join(parts[:depth]) or "the top level"
            return f"unknown param {key!r}: {where} has {', '.join(model.model_fields)}"
        annotation = model.model_fields[part].annotation
        last = depth == len(parts) - 1
        is_section = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        if is_section and last:
            return f"{key!r} is a section; set one of its keys ({key}.<name>)"
        if not is_section and not last:
            return f"unknown param {key!r}: {'.'.join(parts[: depth + 1])} has no sub-keys"
        if is_section:
            model = annotation
    return None


def with_changes(params: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """params.yaml content with dotted-key changes applied (a new dict)."""
    result = yaml.safe_load(yaml.safe_dump(params))
    for key, value in changes.items():
        node = result
        *sections, leaf = key.split(".")
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = value
    return result


def plan(grid: Grid, params: dict[str, Any], groups: list[str]) -> list[PlannedRun]:
    """The runs of the chosen groups, each validated; raises GridError before anything runs."""
    unknown = [g for g in groups if g not in grid.groups]
    if unknown:
        raise GridError(f"unknown group(s) {unknown}; the grid has {', '.join(grid.groups)}")
    problems, planned = [], []
    for group_name in groups:
        group = grid.groups[group_name]
        for run_name, changes in group.runs.items():
            where = f"group {group_name!r}, run {run_name!r}"
            bad_keys = [msg for key in changes if (msg := known_key(key))]
            if bad_keys:
                problems += [f"{where}: {msg}" for msg in bad_keys]
                continue
            try:
                parsed = parse_params(with_changes(params, changes), source=where)
            except ParamsError as exc:
                problems.append(str(exc))
                continue
            skipped = None
            preset = resolve_preset(parsed.model)
            if group.requires == "thinking_mode" and not preset.has_thinking_mode:
                skipped = f"{preset.name} has no thinking mode (this group needs a Qwen3 preset)"
            planned.append(PlannedRun(f"{group_name}-{run_name}", group_name, changes, skipped))
    if problems:
        raise GridError("the grid cannot be queued; nothing was:\n  " + "\n  ".join(problems))
    return planned


def set_arguments(changes: dict[str, Any]) -> list[str]:
    """`-S key=value` pairs in the YAML form `dvc exp run` parses (lists as [a, b])."""
    args = []
    for key, value in changes.items():
        text = yaml.safe_dump(value, default_flow_style=True).strip()
        text = text.removesuffix("\n...").removesuffix("...").strip()
        args += ["-S", f"{key}={text}"]
    return args
