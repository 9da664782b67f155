"""Probe every committed study run: find each run's adapter READ-ONLY and write its probe.json.

A saved run folder (docs/results/study/<model>/<arm>-seed<k>/, scripts/save_run.sh) holds
EXPERIMENT: the experiment commit in the study's private clone (.study/clone, letterwise.study).
That commit's dvc.lock names models/adapter's `.dir` md5; the `.dir` file in the DVC cache
(<cache>/files/md5/<2>/<rest>) lists the adapter's files and their md5s, and each file is
copied from the cache into a temp dir. Only `git show` reads the clone: the study is running in
it, and a checkout or a `dvc` command there would change what it runs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

RUN_FOLDER = re.compile(r"^(?P<arm>[a-z_]+)-seed(?P<seed>\d+)$")
ADAPTER_OUT = "models/adapter"
PROBE_FILE = "probe.json"


class AdapterMissing(FileNotFoundError):
    """The run's adapter is not in this machine's DVC cache."""


def run_folders(study_dir: Path) -> list[Path]:
    """Run folders `<arm>-seed<k>` with an EXPERIMENT file, directly under `study_dir`."""
    return sorted(
        p
        for p in study_dir.iterdir()
        if p.is_dir() and RUN_FOLDER.match(p.name) and (p / "EXPERIMENT").is_file()
    )


def cache_path(cache: Path, md5: str) -> Path:
    return cache / "files" / "md5" / md5[:2] / md5[2:]


def adapter_dir_md5(clone: Path, experiment: str) -> str:
    """models/adapter's `.dir` md5 in the experiment commit's dvc.lock (read by `git show`)."""
    redo = "the run must be redone on this machine (python -m letterwise.study run)"
    known = subprocess.run(
        ["git", "-C", str(clone), "cat-file", "-e", f"{experiment}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    if known.returncode != 0:
        raise AdapterMissing(f"experiment commit {experiment} is not in {clone}; {redo}")
    shown = subprocess.run(
        ["git", "-C", str(clone), "show", f"{experiment}:dvc.lock"],
        capture_output=True,
        text=True,
        check=False,
    )
    if shown.returncode != 0:
        raise AdapterMissing(f"{experiment} has no dvc.lock ({shown.stderr.strip()}); {redo}")
    outs = yaml.safe_load(shown.stdout)["stages"]["train"]["outs"]
    return next(o["md5"] for o in outs if o["path"] == ADAPTER_OUT)


def materialise_adapter(clone: Path, cache: Path, experiment: str, dest: Path) -> Path:
    """Copy the run's adapter files from the DVC cache into `dest`; AdapterMissing if any is
    absent (the run was made on another machine: it must be redone on this one)."""
    md5 = adapter_dir_md5(clone, experiment)
    listing = cache_path(cache, md5)
    redo = "the run must be redone on this machine (python -m letterwise.study run)"
    if not listing.is_file():
        raise AdapterMissing(f"the adapter of {experiment} ({md5}) is not in {cache}; {redo}")
    for entry in json.loads(listing.read_text()):
        source = cache_path(cache, entry["md5"])
        if not source.is_file():
            raise AdapterMissing(
                f"{entry['relpath']} of {experiment}'s adapter is not in {cache}; {redo}"
            )
        target = dest / entry["relpath"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return dest


def pending(study_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """(folder, {arm, seed, experiment}) for each run folder without a probe.json yet."""
    out = []
    for folder in run_folders(study_dir):
        if (folder / PROBE_FILE).is_file():
            continue
        match = RUN_FOLDER.match(folder.name)
        assert match is not None
        experiment = (folder / "EXPERIMENT").read_text().strip()
        out.append(
            (folder, {"arm": match["arm"], "seed": int(match["seed"]), "experiment": experiment})
        )
    return out
