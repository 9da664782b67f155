"""The server's Prometheus metrics (names are a contract with deployment/monitoring).

The server runs several processes (the HTTP server, one inference worker per endpoint), so the
metrics use prometheus_client's multiprocess mode: `python -m letterwise.serve` points
PROMETHEUS_MULTIPROC_DIR at a fresh directory before this module is imported anywhere, every
process writes its values there, and /metrics adds them up (`render`). Imported without that
variable (unit tests) the metrics live in the process's default registry.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from letterwise.serve.published import PublishedModel

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

HTTP_REQUESTS = Counter(
    "letterwise_http_requests", "HTTP requests by endpoint and status code", ["endpoint", "code"]
)
REQUEST_LATENCY = Histogram(
    "letterwise_request_latency_seconds",
    "time from a request's arrival to its response, by endpoint",
    ["endpoint"],
    buckets=LATENCY_BUCKETS,
)
ANSWERS = Counter(
    "letterwise_answers",
    "answers scored against the ground truth (outcome correct|wrong|unparseable)",
    ["task", "strategy", "outcome"],
)
BATCH_SIZE = Histogram(
    "letterwise_batch_size",
    "questions generated in one model batch",
    ["task"],
    buckets=BATCH_BUCKETS,
)
QUEUE_DEPTH = Gauge(
    "letterwise_queue_depth",
    "API requests admitted and not yet answered (waiting for or in a model batch)",
    multiprocess_mode="livesum",
)
GENERATED_TOKENS = Counter("letterwise_generated_tokens", "tokens generated", ["task"])
PROMPT_TOKENS = Counter("letterwise_prompt_tokens", "prompt tokens read", ["task"])
THINKING_REFUSALS = Counter(
    "letterwise_thinking_refusals", "requests refused for asking for thinking mode"
)
EVAL_ACCURACY = Gauge(
    "letterwise_eval_accuracy",
    "the published eval's accuracy of the tuned model and its 95% CI (bound lower|point|upper)",
    ["task", "strategy", "bound"],
    multiprocess_mode="mostrecent",
)
MODEL_INFO = Gauge(
    "letterwise_model_info",
    "the model served: 1 for the running model, adapter and mode",
    ["model", "adapter_revision", "mode"],
    multiprocess_mode="max",
)


def publish_model_metrics(model: PublishedModel, mode: str) -> None:
    """The start-up gauges: which model runs, and the eval accuracy the alerts compare with."""
    MODEL_INFO.labels(model.model, model.adapter_revision, mode).set(1)
    for (task, strategy), bounds in model.eval_accuracy.items():
        for bound, value in bounds.items():
            EVAL_ACCURACY.labels(task, strategy, bound).set(value)


def start_answer_series(task: str, strategies: tuple[str, ...], outcomes: tuple[str, ...]) -> None:
    """Create every answer series at 0, so rates and accuracy ratios exist from the start."""
    for strategy in strategies:
        for outcome in outcomes:
            ANSWERS.labels(task, strategy, outcome)
    for metric in (GENERATED_TOKENS, PROMPT_TOKENS):
        metric.labels(task)


def render() -> tuple[bytes, str]:
    """(body, content type) of /metrics: all processes' values in multiprocess mode."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
