"""Throughput and latency of the API at several concurrency levels, on loopback.

Starts `python -m letterwise.serve` on 127.0.0.1 with the given published folder (or uses a
running server with --url), sends --requests single-question greedy requests per level from
`concurrency` client threads, and reports requests/s, p50/p95 latency and how many requests the
server batched together (its `timings.batch_requests`). Dynamic batching should make the
requests/s at high concurrency several times that at concurrency 1.

    python scripts/bench_serve.py --model-dir models/published --concurrency 1 8 32
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.serve_process import ServerProcess, call  # noqa: E402

# Held-out-style words of 5 to 10 letters: every request asks about a different one.
WORDS = [
    "garden", "planet", "wisdom", "silver", "harbor", "candle", "rocket", "meadow", "thunder",
    "blanket", "pepper", "castle", "marble", "violin", "lantern", "pirate", "saddle", "walnut",
    "circus", "fossil", "gravel", "jungle", "kettle", "lizard", "mirror", "napkin", "orchid",
    "parrot", "quartz", "ribbon", "spider", "tunnel", "valley", "wizard", "anchor", "bishop",
]  # fmt: skip


def question(task: str, i: int) -> dict[str, Any]:
    word = WORDS[i % len(WORDS)]
    if task == "spelling":
        return {"word": word}
    if task == "position":
        return {"word": word, "index": 1 + i % len(word)}
    return {"word": word, "letter": word[i % len(word)]}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run_level(url: str, task: str, concurrency: int, requests: int, token: str | None) -> dict:
    """`requests` requests from `concurrency` threads; each thread sends its share in turn."""
    latencies: list[float] = []
    batched: list[int] = []
    failures: list[str] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            tic = time.perf_counter()
            reply = call(url, "POST", f"/v1/{task}", question(task, i) | {"decoding": "greedy"},
                         token=token)  # fmt: skip
            elapsed = time.perf_counter() - tic
            with lock:
                if reply.status == 200:
                    latencies.append(elapsed)
                    batched.append(reply.body["timings"]["batch_requests"])
                else:
                    failures.append(f"{reply.status}: {reply.error}")

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, e.g. {failures[:3]}")
    return {
        "concurrency": concurrency,
        "requests": requests,
        "seconds": round(wall, 3),
        "requests_per_s": round(requests / wall, 3),
        "p50_s": round(statistics.median(latencies), 3),
        "p95_s": round(percentile(latencies, 0.95), 3),
        "mean_batch_requests": round(statistics.mean(batched), 2),
        "max_batch_requests": max(batched),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=Path("models/published"),
        help="published folder to serve (default: models/published)",
    )
    parser.add_argument("--url", help="benchmark a running server instead of starting one")
    parser.add_argument("--token", help="bearer token of the running server given with --url")
    parser.add_argument(
        "--task",
        choices=("spelling", "position", "count"),
        default="position",
        help="endpoint to load (default: position)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=[1, 8, 32],
        help="client threads per level (default: 1 8 32)",
    )
    parser.add_argument("--requests", type=int, default=64, help="requests per level (default: 64)")
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=32,
        help="LETTERWISE_MAX_BATCH_SIZE of the started server (default: 32)",
    )
    parser.add_argument(
        "--batch-timeout-s",
        type=float,
        default=0.05,
        help="LETTERWISE_BATCH_TIMEOUT_S of the started server (default: 0.05)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--log-dir",
        type=Path,
        default=Path("/tmp/letterwise-bench"),
        help="where the started server's log goes",
    )
    args = parser.parse_args(argv)  # fmt: skip
    if any(c < 1 for c in args.concurrency) or args.requests < max(args.concurrency):
        parser.error("concurrency levels must be >= 1 and --requests at least the largest one")

    server = None
    url, token = args.url, args.token
    if url is None:
        print(f"starting the server on {args.model_dir} (log in {args.log_dir}) ...")
        server = ServerProcess.start(
            args.model_dir.resolve(),
            args.log_dir,
            max_batch_size=args.max_batch_size,
            batch_timeout_s=args.batch_timeout_s,
            max_queue=max(64, 2 * max(args.concurrency)),
            request_timeout_s=600,
        )
        url = server.url
    try:
        info = call(url, "GET", "/info").body.get("model", {})
        print(f"model {info.get('model')} (adapter {info.get('adapter_revision')}), "
              f"task {args.task}, {args.requests} greedy requests per level")  # fmt: skip
        run_level(url, args.task, 4, 8, token)  # warm-up: first batches pay one-off costs
        results = [run_level(url, args.task, c, args.requests, token) for c in args.concurrency]
    finally:
        if server is not None:
            server.stop()
    base = results[0]["requests_per_s"]
    header = f"{'concurrency':>11} {'req/s':>8} {'x c=1':>6} {'p50 s':>7} {'p95 s':>7} {'batch':>6}"
    print(header)
    for r in results:
        print(f"{r['concurrency']:>11} {r['requests_per_s']:>8.2f} "
              f"{r['requests_per_s'] / base:>6.1f} {r['p50_s']:>7.2f} {r['p95_s']:>7.2f} "
              f"{r['mean_batch_requests']:>6.1f}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"model": info, "task": args.task, "levels": results},
                                        indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
