"""Atomic writes: a crashed stage leaves the old artefact or the new one, never half of one."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def write_text(path: str | Path, text: str) -> Path:
    """Write text to a temp file beside `path`, fsync it, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    """Stable JSON (sorted keys, trailing newline) so equal content gives equal bytes."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def details_path(metrics_file: str | Path) -> Path:
    """Where a stage's full results live: metrics/details/<name> beside metrics/<name>."""
    metrics_file = Path(metrics_file)
    return metrics_file.parent / "details" / metrics_file.name


def write_metrics(
    metrics_file: str | Path, details: dict[str, Any], headline: dict[str, Any]
) -> None:
    """A stage's results in two files: every number in metrics/details/<name> (read by publish,
    the cards and the report) and the headline numbers a run is compared by in metrics/<name>,
    the dvc metrics file, so `dvc exp show` stays readable. The headline is written last: its
    presence means the stage finished."""
    write_json(details_path(metrics_file), details)
    write_json(metrics_file, headline)


def write_jsonl(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    lines = (json.dumps(row, sort_keys=True, ensure_ascii=False) for row in rows)
    return write_text(path, "".join(line + "\n" for line in lines))


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temp directory beside `path`; on success it replaces `path` whole.

    On an exception the temp directory is removed and any existing `path` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- Hub offline

HUB_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


def hub_offline_by_default() -> None:
    """Run this process with the Hugging Face Hub offline unless the caller chose otherwise.

    Every stage reads its model from the bundled weights, the local HF cache or a local
    directory, so a Hub request is at best a slow no-op and at worst a warning per checkpoint.
    Called first thing in each stage's main() (publish: only when it has nothing to push).
    An HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE already in the environment, even "0", is the
    caller's decision and is left alone (`HF_HUB_OFFLINE=0 python -m stages.train` may download).

    huggingface_hub and datasets read these variables once, at import, so this should run before
    they are imported; if huggingface_hub (or datasets) is imported already, its flag is set too.
    Imports nothing heavy: the data stages run without torch or transformers.
    """
    if any(name in os.environ for name in HUB_OFFLINE_VARS[:2]):
        return
    for name in HUB_OFFLINE_VARS:
        os.environ.setdefault(name, "1")
    import sys

    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None:
        hub.HF_HUB_OFFLINE = True
    datasets_config = sys.modules.get("datasets.config")
    if datasets_config is not None and os.environ["HF_DATASETS_OFFLINE"] == "1":
        datasets_config.HF_HUB_OFFLINE = datasets_config.HF_DATASETS_OFFLINE = True
