"""A real Prometheus on 127.0.0.1 for the serving tests, and what the monitoring files query.

- `start_prometheus(tmp_path, scrape_target, rule_files)` starts Debian's `prometheus` binary on a
  free loopback port, scraping one target every second as job "letterwise-api" (the job the
  alert rules select) and evaluating the given rule files every second.
- `query(url, promql)` runs an instant query and returns its result list; `wait_for(...)` polls
  until a query returns data.
- `metric_names_used()` parses the Grafana dashboard and the alert/recording rules and returns
  every exported metric name they reference (recording-rule outputs and Prometheus' own `up`
  left out): the names a scrape of the real server must provide.
- `CONTRACT_METRICS`: the metrics the server exports, with their type and labels.

The server tests use these to check that every metric the dashboard and the alerts read comes
back from a real scrape. tests/test_deployment.py checks the helpers themselves against a tiny
stand-in exporter (`serve_stand_in_exporter`, prometheus_client in a subprocess).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
MONITORING = REPO_ROOT / "deployment" / "monitoring"
RULE_FILES = sorted((MONITORING / "rules").glob("*.yml"))
DASHBOARD = MONITORING / "grafana" / "dashboards" / "letterwise.json"
JOB = "letterwise-api"  # the scrape job name the alert rules select (up{job="letterwise-api"})
START_TIMEOUT_S = 30.0

# The server's metrics contract: name -> (type, labels). Histograms also export _bucket (with
# `le`), _sum and _count.
CONTRACT_METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "letterwise_http_requests_total": ("counter", ("endpoint", "code")),
    "letterwise_request_latency_seconds": ("histogram", ("endpoint",)),
    "letterwise_answers_total": ("counter", ("task", "strategy", "outcome")),
    "letterwise_batch_size": ("histogram", ("task",)),
    "letterwise_queue_depth": ("gauge", ()),
    "letterwise_generated_tokens_total": ("counter", ("task",)),
    "letterwise_prompt_tokens_total": ("counter", ("task",)),
    "letterwise_thinking_refusals_total": ("counter", ()),
    "letterwise_eval_accuracy": ("gauge", ("task", "strategy", "bound")),
    "letterwise_model_info": ("gauge", ("model", "adapter_revision", "mode")),
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Labels Prometheus attaches to every scraped series.
TARGET_LABELS = ("job", "instance")
# Series Prometheus makes itself for each target (not exported by the server).
SYNTHETIC_METRICS = {"up", "ALERTS", "ALERTS_FOR_STATE"}

# Grafana variables in the dashboard's queries, and what they stand for in a direct query.
GRAFANA_VARIABLES = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
    "window": "1h",
    "task": "count",
    "strategy": "direct",
    "datasource": "prometheus",
}


class PrometheusError(RuntimeError):
    pass


# --------------------------------------------------------------------------- tools and ports


def find_tool(name: str) -> str | None:
    """A Debian tool (prometheus, promtool, amtool) on PATH, or None."""
    return shutil.which(name)


_DEBIAN_HINT = "Debian package {0} (`make test-tools` as root, or apt-get install {0})"
TOOL_HINTS = {
    "prometheus": _DEBIAN_HINT.format("prometheus"),
    "promtool": _DEBIAN_HINT.format("prometheus"),
    "amtool": _DEBIAN_HINT.format("prometheus-alertmanager"),
}


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it; a tiny race is acceptable)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- the server


def _host_port(target: str) -> str:
    """'http://127.0.0.1:8000/metrics' or '127.0.0.1:8000' -> '127.0.0.1:8000'."""
    parsed = urllib.parse.urlsplit(target if "//" in target else f"//{target}")
    if not parsed.hostname or not parsed.port:
        raise ValueError(f"scrape target {target!r} needs a host and a port")
    return f"{parsed.hostname}:{parsed.port}"


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def start_prometheus(
    tmp_path: Path,
    scrape_target: str,
    rule_files: Iterable[Path | str] = (),
    *,
    scrape_interval: str = "1s",
    metrics_path: str = "/metrics",
) -> tuple[str, subprocess.Popen[bytes]]:
    """Start Debian's prometheus on 127.0.0.1:<free port>, scraping `scrape_target` as job
    "letterwise-api" every `scrape_interval` and evaluating `rule_files` as often.

    Returns (base URL, process) once /-/ready answers 200; stop it with `stop_prometheus`.
    Its config, data and log live under tmp_path/"prometheus" (the log: prometheus.log).
    """
    binary = find_tool("prometheus")
    if binary is None:
        raise FileNotFoundError(f"prometheus not found: install the {TOOL_HINTS['prometheus']}")
    workdir = Path(tmp_path) / "prometheus"
    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "rule_files": [str(Path(path).resolve()) for path in rule_files],
        "scrape_configs": [
            {
                "job_name": JOB,
                "metrics_path": metrics_path,
                "scrape_timeout": scrape_interval,
                "static_configs": [{"targets": [_host_port(scrape_target)]}],
            }
        ],
    }
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    log_path = workdir / "prometheus.log"
    last_error = ""
    for _ in range(3):  # another process may grab the free port first: retry with a new one
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config_path}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if _get(f"{url}/-/ready", timeout=1.0)[0] == 200:
                    return url, process
            except OSError:
                pass
            time.sleep(0.1)
        stop_prometheus(process)
        last_error = log_path.read_text(errors="replace")[-3000:]
        if "address already in use" not in last_error:
            break
    raise PrometheusError(f"prometheus did not become ready; its log:\n{last_error}")


def stop_prometheus(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


def query(url: str, promql: str) -> list[Any]:
    """Instant query; returns `data.result` (a list of {"metric": ..., "value": [t, "v"]} for a
    vector). Raises PrometheusError on a bad query or a failed request."""
    request_url = f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    status, body = _get(request_url)
    try:
        payload = json.loads(body)
    except json.JSONDecodeError as error:
        raise PrometheusError(f"{promql!r}: HTTP {status}, not JSON: {body[:300]!r}") from error
    if status != 200 or payload.get("status") != "success":
        raise PrometheusError(f"{promql!r}: HTTP {status}: {payload.get('error', payload)}")
    return payload["data"]["result"]


def wait_for(url: str, promql: str, timeout: float = 15.0) -> list[Any]:
    """Poll `query` until it returns a non-empty result; PrometheusError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = query(url, promql)
        if result:
            return result
        if time.monotonic() > deadline:
            raise PrometheusError(f"{promql!r} returned no data within {timeout:.0f} s")
        time.sleep(0.25)


# --------------------------------------------------------------------------- PromQL in the files

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()")
_SELECTOR = re.compile(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^{}]*\})")
_LABEL_NAME = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan", "start", "end",
}  # fmt: skip
_GRAFANA_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def expand_grafana_variables(expr: str, values: dict[str, str] | None = None) -> str:
    """Replace $var / ${var} with plain values, so a dashboard query runs as plain PromQL."""
    table = {**GRAFANA_VARIABLES, **(values or {})}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in table:
            raise KeyError(f"no value for Grafana variable ${name} in {expr!r}")
        return table[name]

    return _GRAFANA_VARIABLE.sub(replace, expr)


def metric_names_in(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, keywords, labels left out)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in _KEYWORDS}


def label_names_in(expr: str) -> dict[str, set[str]]:
    """metric name -> the label names its `{...}` matchers use, for every selector in `expr`."""
    text = _STRING.sub('""', expr)
    labels: dict[str, set[str]] = {}
    for name, matchers in _SELECTOR.findall(text):
        labels.setdefault(name, set()).update(_LABEL_NAME.findall(matchers))
    return labels


def dashboard_panels(dashboard: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """Every panel of the dashboard, rows' nested panels included."""
    if dashboard is None:
        dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def dashboard_expressions(dashboard: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """(panel title, PromQL with Grafana variables as written) for every dashboard query."""
    return [
        (panel.get("title", ""), target["expr"])
        for panel in dashboard_panels(dashboard)
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def rules(rule_files: Iterable[Path] = RULE_FILES) -> list[dict[str, Any]]:
    """Every recording and alerting rule in the rule files."""
    return [
        rule
        for path in rule_files
        for group in yaml.safe_load(Path(path).read_text())["groups"]
        for rule in group["rules"]
    ]


def rule_expressions(rule_files: Iterable[Path] = RULE_FILES) -> list[tuple[str, str]]:
    """(rule name, expr) for every recording and alerting rule."""
    return [(rule.get("record") or rule["alert"], rule["expr"]) for rule in rules(rule_files)]


def recorded_names(rule_files: Iterable[Path] = RULE_FILES) -> set[str]:
    return {rule["record"] for rule in rules(rule_files) if "record" in rule}


def contract_base_name(name: str) -> str | None:
    """The contract metric a scraped series name belongs to (histogram suffixes stripped)."""
    if name in CONTRACT_METRICS:
        return name
    for suffix in HISTOGRAM_SUFFIXES:
        base = name.removesuffix(suffix)
        if base != name and CONTRACT_METRICS.get(base, ("",))[0] == "histogram":
            return base
    return None


def metric_names_used() -> set[str]:
    """Every exported metric name the dashboard and the rule files reference, as written there
    (histograms with their _bucket/_sum/_count suffix): each must return data from a real scrape
    of the server. Recording-rule outputs (names with ':') and Prometheus' own series (`up`,
    `ALERTS`) are not exported by the server and are left out."""
    expressions = [expr for _, expr in dashboard_expressions()]
    expressions += [expr for _, expr in rule_expressions()]
    names: set[str] = set()
    for expr in expressions:
        names |= metric_names_in(expand_grafana_variables(expr))
    return {name for name in names if ":" not in name and name not in SYNTHETIC_METRICS}


# --------------------------------------------------------------------------- stand-in exporter


def serve_stand_in_exporter(port: int) -> None:
    """Export every contract metric on 127.0.0.1:`port` with made-up, moving values, forever.

    For the helpers' self-test only (run it in a subprocess): count/direct answers 20% right
    against an eval lower bound of 0.8 (the significant-drop alert goes pending), spelling/direct
    95% against 0.9 (no alert). Not the server.
    """
    import random

    from prometheus_client import Counter, Gauge, Histogram, start_http_server

    rng = random.Random(0)
    requests = Counter("letterwise_http_requests_total", "requests", ["endpoint", "code"])
    latency = Histogram(
        "letterwise_request_latency_seconds",
        "latency",
        ["endpoint"],
        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    )
    answers = Counter("letterwise_answers_total", "answers", ["task", "strategy", "outcome"])
    batch = Histogram("letterwise_batch_size", "batch", ["task"], buckets=(1, 2, 4, 8, 16, 32))
    queue = Gauge("letterwise_queue_depth", "queue")
    generated = Counter("letterwise_generated_tokens_total", "generated", ["task"])
    prompt = Counter("letterwise_prompt_tokens_total", "prompt", ["task"])
    thinking = Counter("letterwise_thinking_refusals_total", "thinking")
    eval_accuracy = Gauge("letterwise_eval_accuracy", "eval", ["task", "strategy", "bound"])
    info = Gauge("letterwise_model_info", "info", ["model", "adapter_revision", "mode"])
    info.labels("stand-in", "0" * 40, "non-thinking").set(1)
    accuracy = {("count", "direct"): 0.2, ("spelling", "direct"): 0.95, ("position", "direct"): 0.6}
    lower = {("count", "direct"): 0.8, ("spelling", "direct"): 0.9, ("position", "direct"): 0.5}
    for (task, strategy), bound in lower.items():
        eval_accuracy.labels(task, strategy, "lower").set(bound)
        eval_accuracy.labels(task, strategy, "point").set(bound + 0.03)
        eval_accuracy.labels(task, strategy, "upper").set(bound + 0.06)
        for outcome in ("correct", "wrong", "unparseable"):
            answers.labels(task, strategy, outcome)
    start_http_server(port, addr="127.0.0.1")
    while True:
        for (task, strategy), p in accuracy.items():
            for _ in range(10):
                answers.labels(task, strategy, "correct" if rng.random() < p else "wrong").inc()
            endpoint = f"/v1/{task}"
            requests.labels(endpoint, "200").inc(9)
            requests.labels(endpoint, "503").inc()
            latency.labels(endpoint).observe(rng.uniform(0.05, 2.0))
            batch.labels(task).observe(rng.choice((1, 2, 4, 8)))
            generated.labels(task).inc(rng.randint(5, 40))
            prompt.labels(task).inc(rng.randint(20, 80))
        requests.labels("/v1/count", "422").inc()
        thinking.inc()
        queue.set(rng.randint(0, 5))
        time.sleep(0.1)
