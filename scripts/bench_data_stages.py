"""Benchmark: wall time and peak memory of the two data stages (a report, not a test).

Each stage runs in a fresh interpreter, as `dvc repro` runs it, in a scratch directory holding
a params.yaml for the chosen preset; peak memory is the child's max RSS.

    python scripts/bench_data_stages.py --model qwen3-4b --repeats 3 --out bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
STAGES = ("filter_tokens", "build_dataset")


def run_stage(stage: str, workdir: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one stage run in a child process."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child: exec the stage so getrusage covers exactly it
        os.chdir(workdir)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.execvpe(sys.executable, [sys.executable, "-m", f"stages.{stage}"], env)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{stage} failed in {workdir}")
    scale = 1024 if sys.platform != "darwin" else 1024 * 1024  # ru_maxrss: KiB on Linux, B on macOS
    return wall, usage.ru_maxrss / scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen3-4b", help="preset whose tokenizer is used")
    parser.add_argument("--repeats", type=int, default=3, help="runs per stage (median reported)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["model"] = args.model
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        (workdir / "params.yaml").write_text(yaml.safe_dump(params))
        runs: dict[str, list[tuple[float, float]]] = {stage: [] for stage in STAGES}
        for _ in range(args.repeats):
            for stage in STAGES:
                runs[stage].append(run_stage(stage, workdir))
    for stage, samples in runs.items():
        results[stage] = {
            "wall_s_median": round(statistics.median(s[0] for s in samples), 2),
            "wall_s_min": round(min(s[0] for s in samples), 2),
            "peak_rss_mib": round(max(s[1] for s in samples), 1),
        }
    total = sum(r["wall_s_median"] for r in results.values())
    report = {
        "model": args.model,
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "stages": results,
        "total_wall_s_median": round(total, 2),
    }
    table = Table(title=f"data stages on {args.model} ({os.cpu_count()} CPUs, {args.repeats} runs)")
    for column in ("stage", "median wall s", "min wall s", "peak RSS MiB"):
        table.add_column(column, justify="right" if column != "stage" else "left")
    for stage, r in results.items():
        table.add_row(stage, str(r["wall_s_median"]), str(r["wall_s_min"]), str(r["peak_rss_mib"]))
    table.add_row("both", f"{total:.2f}", "", "", style="bold")
    Console().print(table)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
