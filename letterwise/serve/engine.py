"""The model side of the server: one LitServe LitAPI per task, each in its own worker process.

LitServe collects up to `max_batch_size` requests per endpoint (waiting at most
`batch_timeout` after the first) and hands them to `predict` together. `predict` asks all their
questions in as few letterwise.generation.generate calls as possible (one per distinct decoding
setting), scores every answer against the ground truth and records the metrics.

Each LitAPI loads its own copy of the model in `setup` (LitServe runs one worker per API):
three copies in all. That is about 1 GB resident per worker for SmolLM2-135M on CPU (torch
plus the float32 model); for Qwen3-4B in 4 bit it is ~3 x 3 GB of GPU memory (see docs/api.md).
"""

# No `from __future__ import annotations` here: LitServe reads the decode_request/encode_response
# annotations to build the routes, and FastAPI needs the real classes, not strings.
import math
import os
import time
from pathlib import Path
from queue import Empty
from typing import Any

import litserve as ls
import torch
from litserve.loops import BatchedLoop
from litserve.loops.base import collate_requests
from pydantic import TypeAdapter

from letterwise.generation import generate
from letterwise.serve import answering, metrics, schemas
from letterwise.serve.published import STRATEGIES

GENERATE_BATCH = 64  # prompts per forward pass; a batch of requests may hold up to 8 x 32
IDLE_WAIT_S = 1.0


class _FirstThenQueue:
    """A request queue with its first request already taken off, handed out before the rest."""

    def __init__(self, queue: Any, first: Any) -> None:
        self._queue, self._first = queue, first

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return self._queue.get(block=block, timeout=timeout)

    def get_nowait(self) -> Any:
        return self.get(block=False)


class WaitingBatchedLoop(BatchedLoop):
    """LitServe's batched loop, but an idle worker blocks on the queue instead of polling it.

    LitServe's loop polls its request queue every millisecond even when idle, which costs
    ~5% of a core per worker plus ~15% in the queue's manager process here. This loop waits
    (blocking) for the first request, then lets LitServe's own `collate_requests` gather the
    rest of the batch (batch timeout, request timeouts and shutdown all handled there).
    """

    def get_batch_requests(self, lit_api: ls.LitAPI, request_queue: Any, transport: Any) -> Any:
        try:
            first = request_queue.get(timeout=IDLE_WAIT_S)
        except Empty:
            return [], []
        return collate_requests(self, lit_api, _FirstThenQueue(request_queue, first), transport)


CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """The CPU limit of this process's cgroup in CPUs (docker --cpus, a Kubernetes CPU limit).

    cgroup v2: `cpu.max` holds "QUOTA PERIOD" ("max PERIOD": no limit); cgroup v1:
    `cpu.cfs_quota_us` (-1: no limit) over `cpu.cfs_period_us`. None when there is no limit or
    no cgroup file to read (macOS, an unlimited container).
    """
    v2 = root / "cpu.max"
    try:
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        for v1 in (root / "cpu", root / "cpu,cpuacct"):
            if (v1 / "cpu.cfs_quota_us").is_file():
                quota = int((v1 / "cpu.cfs_quota_us").read_text())
                period = int((v1 / "cpu.cfs_period_us").read_text())
                return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None  # unreadable or malformed: fall back to the affinity count
    return None


def usable_cores(root: Path = CGROUP_ROOT) -> int:
    """Cores this process may use: its CPU affinity, capped by its cgroup's CPU quota.

    Inside a CPU-limited container the affinity still lists every core of the node (say 64),
    while the quota says 4: threads sized from the affinity would oversubscribe the quota.
    """
    if hasattr(os, "process_cpu_count"):  # Python 3.13+: the affinity-aware count
        cores = os.process_cpu_count() or 1
    elif hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota(root)
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))  # 1.5 CPUs: 1 thread, not 2 that queue
    return cores


def worker_threads(workers: int, cores: int | None = None) -> int:
    """Torch threads per worker when `workers` model workers share `cores` (default: this
    process's usable cores, cgroup quota included).

    Each worker's torch would otherwise use every core: on a 2-core CPU shared with other work,
    three workers x 2 threads made generation 10-30x slower than 1 thread each (measured with
    SmolLM2-135M: 0.8-1 s vs 5-37 s for one 26-token answer), as the threads of one matrix
    product wait for each other. (Ignored on CUDA, where the GPU does the work.)
    """
    return max(1, (usable_cores() if cores is None else cores) // workers)


class TaskAPI(ls.LitAPI):
    """Answers one task's requests with the published model; subclasses fix task and schemas."""

    task: str = ""

    def __init__(
        self, model_dir: str, max_batch_size: int, batch_timeout_s: float, cpu_threads: int
    ) -> None:
        super().__init__(
            max_batch_size=max_batch_size,
            batch_timeout=batch_timeout_s,
            api_path=f"/v1/{self.task}",
            loop=WaitingBatchedLoop(),
        )
        self.model_dir = model_dir
        self.cpu_threads = cpu_threads

    # ------------------------------------------------------------------ setup (in the worker)

    def setup(self, device: str) -> None:
        """Load the published folder as the load-back check does, then answer once (warm-up)."""
        import rich

        from letterwise.modeling import resolve_backend
        from letterwise.presets import resolve_preset
        from letterwise.publishing.load_back import load_published
        from letterwise.serve.published import read_published

        rich.reconfigure(quiet=True)  # generate()'s progress bars are for the stages, not a server
        torch.set_num_threads(self.cpu_threads or worker_threads(len(APIS)))
        published = read_published(self.model_dir)
        preset = resolve_preset(published.model)
        backend = resolve_backend(preset, "auto")
        self.model, self.tokenizer = load_published(
            published.folder, preset, published.provenance, backend
        )
        self.published = published
        strategies = STRATEGIES if self.task != "spelling" else ("direct",)
        metrics.start_answer_series(self.task, strategies, answering.OUTCOMES)
        question = self.warm_up_question | {"decoding": "greedy"}
        warm_up = TypeAdapter(self.request_model).validate_python(question)
        self._answer([warm_up], record=False)

    # ------------------------------------------------------------------ per batch

    def predict(self, requests: list[schemas.Options]) -> list[dict[str, Any]]:
        return self._answer(requests, record=True)

    def _answer(self, requests: list[schemas.Options], record: bool) -> list[dict[str, Any]]:
        """Answer every question of every request; one generate() call per decoding setting."""
        started = time.monotonic()
        groups: dict[tuple, list[tuple[int, dict[str, Any]]]] = {}
        samplings = [answering.sampling_of(r, self.published.sampling) for r in requests]
        for i, request in enumerate(requests):
            key = (request.strategy, samplings[i])
            rows = [answering.question_row(self.task, item) for item in request.questions()]
            groups.setdefault(key, []).extend((i, row) for row in rows)

        results: list[list[dict[str, Any]]] = [[] for _ in requests]
        generation_s = [0.0] * len(requests)
        batch_size = [0] * len(requests)
        for (strategy, sampling), members in groups.items():
            rows = [row for _, row in members]
            prompts, budgets = zip(
                *(answering.prompt_and_budget(self.tokenizer, row, strategy) for row in rows),
                strict=True,
            )
            tic = time.monotonic()
            outputs = [
                samples[0]
                for samples in generate(
                    self.model,
                    self.tokenizer,
                    list(prompts),
                    max_new_tokens=list(budgets),
                    sampling=sampling,
                    batch_size=GENERATE_BATCH,
                    description=f"serve {self.task}",
                )
            ]
            seconds = time.monotonic() - tic
            for (i, row), output in zip(members, outputs, strict=True):
                scored = answering.score(row, strategy, output)
                results[i].append(answering.result(row, strategy, output, scored))
                generation_s[i] += seconds
                batch_size[i] = max(batch_size[i], len(rows))
                if record:
                    metrics.ANSWERS.labels(self.task, strategy, scored.outcome).inc()
            if record:
                self._record_batch(list(prompts), outputs)

        model = {
            "name": self.published.model,
            "adapter_revision": self.published.adapter_revision,
            "mode": schemas.MODE,
        }
        return [
            {
                "results": results[i],
                "model": model,
                "sampling": {
                    "decoding": samplings[i].decoding,
                    "temperature": samplings[i].temperature,
                    "top_p": samplings[i].top_p,
                    "top_k": samplings[i].top_k,
                    "min_p": samplings[i].min_p,
                    "seed": samplings[i].seed,
                },
                "timings": {
                    "queue_s": round(max(0.0, started - request.received_at), 6),
                    "generation_s": round(generation_s[i], 6),
                    "batch_size": batch_size[i],
                    "batch_requests": len(requests),
                },
            }
            for i, request in enumerate(requests)
        ]

    def _record_batch(self, prompts: list[str], outputs: list[str]) -> None:
        """Batch size and token counts (completions re-tokenized from their decoded text)."""
        metrics.BATCH_SIZE.labels(self.task).observe(len(prompts))
        encode = self.tokenizer(prompts + outputs, add_special_tokens=False)["input_ids"]
        metrics.PROMPT_TOKENS.labels(self.task).inc(sum(map(len, encode[: len(prompts)])))
        metrics.GENERATED_TOKENS.labels(self.task).inc(sum(map(len, encode[len(prompts) :])))


class SpellingAPI(TaskAPI):
    task = "spelling"
    request_model = schemas.SpellingRequest
    warm_up_question = {"word": "berry"}

    def decode_request(self, request: schemas.SpellingRequest) -> schemas.SpellingRequest:
        return request

    def encode_response(self, output: dict[str, Any]) -> schemas.SpellingResponse:
        return output


class PositionAPI(TaskAPI):
    task = "position"
    request_model = schemas.PositionRequest
    warm_up_question = {"word": "berry", "index": 3}

    def decode_request(self, request: schemas.PositionRequest) -> schemas.PositionRequest:
        return request

    def encode_response(self, output: dict[str, Any]) -> schemas.PositionResponse:
        return output


class CountAPI(TaskAPI):
    task = "count"
    request_model = schemas.CountRequest
    warm_up_question = {"word": "berry", "letter": "r"}

    def decode_request(self, request: schemas.CountRequest) -> schemas.CountRequest:
        return request

    def encode_response(self, output: dict[str, Any]) -> schemas.CountResponse:
        return output


APIS: tuple[type[TaskAPI], ...] = (SpellingAPI, PositionAPI, CountAPI)
