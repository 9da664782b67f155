"""Benchmark: wall time of the same three tiny eval-only cells fanned out with the local backend
at --max-parallel 1 and at --max-parallel 3 (a report, not a test).

It builds the tiny project of tests/fanout_project.py (qwen3-tiny reference run, moto S3,
a bare git remote; needs the dev extra), then runs the coordinator once per parallelism with
its own experiment names, and writes the times, the CPU count and the load averages.

    python scripts/bench_fanout.py --out docs/results/fanout_timing.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.fanout_project import tiny_origin, write_grid  # noqa: E402
from tests.s3_server import start_s3_server  # noqa: E402

# Both rounds evaluate afresh: no answers reused from the other round (letterwise.eval cache).
os.environ.setdefault("LETTERWISE_ANSWER_CACHE", "off")
QUESTIONS = {"a": 1, "b": 2, "c": 3}  # eval.max_questions per cell: three different evaluations


def fan_out(tiny, root: Path, parallel: int) -> dict:
    """One coordinator run of three cells named p<parallel>-a/b/c; its times and outcome."""
    group = f"p{parallel}"
    runs = {k: {"eval.max_questions": v} for k, v in QUESTIONS.items()}
    grid = write_grid(root / f"{group}.yaml", runs, group)
    load_before = os.getloadavg()
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "letterwise.experiments", "run", group, "--on", "local",
         "--max-parallel", str(parallel), "--workdir", str(root / f"cells-{group}"),
         "--grid", str(grid), "--no-compare"],
        cwd=tiny.project, env=tiny.env, capture_output=True, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"the p{parallel} fan-out failed:\n{done.stdout[-4000:]}{done.stderr}")
    cells = re.search(r"all cells ended after (\d+) s", done.stdout)
    return {
        "max_parallel": parallel,
        "cells": [f"{group}-{k}" for k in QUESTIONS],
        "cells_seconds": int(cells.group(1)) if cells else None,
        "wall_seconds_with_pull": round(wall, 1),
        "retried": "retrying" in done.stdout,
        "load_average_1min_before": round(load_before[0], 2),
        "load_average_1min_after": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=None, help="write the results as JSON here (default: print)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the scratch folder (clones, logs) afterwards"
    )
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="letterwise-bench-fanout-"))
    s3 = start_s3_server(root)
    try:
        started = time.perf_counter()
        tiny = tiny_origin(root / "setup", s3, "letterwise-bench")
        setup = time.perf_counter() - started
        rounds = [fan_out(tiny, root, parallel) for parallel in (1, 3)]
    finally:
        s3.stop()
    result = {
        "what": "three eval-only qwen3-tiny cells (eval.max_questions 1, 2, 3: eval_spelling, "
        "eval_position, publish rerun in a fresh clone each) fanned out with "
        "`python -m letterwise.experiments run ... --on local`, against moto S3 and a bare git "
        "repo, at --max-parallel 1 and 3",
        "cpus": os.cpu_count(),
        "setup_seconds": round(setup, 1),
        "rounds": rounds,
        "note": "measured once, on a shared machine (other jobs running: see the load averages); "
        "the two rounds ran one after the other, so load differs between them",
    }
    text = json.dumps(result, indent=2) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text, end="")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
