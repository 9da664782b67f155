"""The server: LitServe with the three task APIs, probes, metrics, JSON errors and a drain.

`LetterwiseServer` changes two things about LitServe's process management:
- start-up does not block until a model worker is ready: /healthz answers at once and /readyz
  says 503 until every worker has loaded the model and answered a warm-up question; a worker
  that fails (or dies later) stops the server with exit status 1 (`failure` says why);
- SIGTERM drains: LitServe installs no SIGTERM handler, so the signal would kill the main
  process at once and orphan its workers. `request_shutdown` starts LitServe's own graceful
  shutdown instead: the HTTP server stops accepting connections and finishes every request in
  flight (for up to the request timeout plus a margin) while the model workers keep answering;
  then the workers stop.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from typing import Any

import litserve as ls
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from litserve.utils import WorkerSetupStatus
from starlette.exceptions import HTTPException as StarletteHTTPException

from letterwise.serve import metrics, schemas
from letterwise.serve.config import Settings
from letterwise.serve.engine import APIS
from letterwise.serve.guards import MAX_BODY_BYTES, GuardMiddleware, MetricsMiddleware, json_error
from letterwise.serve.published import PublishedModel

logger = logging.getLogger("letterwise.serve")
API_PATHS = tuple(f"/v1/{api.task}" for api in APIS)
ENDPOINTS = frozenset({*API_PATHS, "/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"})
WATCH_INTERVAL_S = 0.5
DRAIN_MARGIN_S = 10.0  # on top of the request timeout: the longest a request in flight takes


class LetterwiseServer(ls.LitServer):
    def __init__(self, *args: Any, request_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, timeout=request_timeout_s, **kwargs)
        self._monitor_workers = False  # `_watch_workers` replaces LitServe's worker monitor
        self.uvicorn_graceful_timeout = request_timeout_s + DRAIN_MARGIN_S
        self.failure: str | None = None
        self._ready = False
        self._main_pid = os.getpid()

    # ------------------------------------------------------------------ start-up, readiness

    def verify_worker_status(self) -> None:
        """Called by run() before the HTTP server starts: watch the workers instead of waiting."""
        threading.Thread(target=self._watch_workers, name="letterwise-watch", daemon=True).start()

    def _watch_workers(self) -> None:
        announced = False
        while not self._shutdown_event.is_set():
            statuses = dict(self.workers_setup_status)
            failed = [
                name for name, status in statuses.items() if status == WorkerSetupStatus.ERROR
            ]
            dead = [w.pid for w in self.inference_workers if not w.is_alive()]
            if failed or dead:
                what = f"worker(s) {', '.join(failed)} failed to load the model" if failed else (
                    f"model worker process(es) {dead} died"
                )  # fmt: skip
                self.failure = f"{what} (the error is logged above); stopping the server"
                logger.error(self.failure)
                self._shutdown_event.set()
                return
            if not announced and statuses and set(statuses.values()) == {WorkerSetupStatus.READY}:
                logger.info("ready: %d model workers loaded and warmed up", len(statuses))
                announced = True
            time.sleep(WATCH_INTERVAL_S)

    def worker_statuses(self) -> dict[str, str]:
        status = getattr(self, "workers_setup_status", None)
        return dict(status) if status is not None else {}

    def is_ready(self) -> bool:
        """Every model worker has loaded the model and answered its warm-up question."""
        if not self._ready:
            statuses = self.worker_statuses()
            self._ready = bool(statuses) and set(statuses.values()) == {WorkerSetupStatus.READY}
        return self._ready

    # ------------------------------------------------------------------ shutdown

    def request_shutdown(self, signum: int, frame: Any) -> None:
        """SIGTERM handler. Set the shutdown event from a new thread: the main thread is blocked
        in a call on the same manager connection, which the handler must not reuse."""
        if os.getpid() != self._main_pid:  # a forked HTTP process re-raising after its own drain
            return
        if getattr(self, "_shutdown_event", None) is None:  # still starting: nothing to drain
            raise SystemExit(128 + signum)
        logger.info("SIGTERM: draining requests in flight, then stopping")
        threading.Thread(target=self._shutdown_event.set, daemon=True).start()


# ---------------------------------------------------------------------------- errors


def _location(loc: tuple | list) -> str:
    return ".".join(str(part) for part in loc)


async def validation_error(request: Request, exc: RequestValidationError) -> Response:
    """422 naming every problem; thinking requests are counted and name the policy."""
    errors = [
        {"loc": list(e["loc"]), "msg": e["msg"].removeprefix("Value error, "), "type": e["type"]}
        for e in exc.errors()
    ]
    if any(e["type"] == schemas.THINKING_REFUSED for e in errors):
        metrics.THINKING_REFUSALS.inc()
        errors = [e for e in errors if e["type"] == schemas.THINKING_REFUSED]
    summary = "; ".join(f"{_location(e['loc'])}: {e['msg']}" for e in errors)
    return json_error(422, summary or "invalid request", detail=errors)


def http_error(timeout_s: float):
    async def handler(request: Request, exc: StarletteHTTPException) -> Response:
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"no endpoint at {request.url.path}; the API is described at /docs"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        elif exc.status_code == 504:
            message = (
                f"the request waited more than {timeout_s} s for the model "
                "(LETTERWISE_REQUEST_TIMEOUT_S); retry later or with fewer items"
            )
        return json_error(exc.status_code, message, headers=getattr(exc, "headers", None))

    return handler


async def server_error(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s", request.url.path)
    return json_error(500, "internal server error (logged on the server)")


# ---------------------------------------------------------------------------- routes, docs

ERROR_RESPONSES = {
    401: "missing or wrong bearer token (when LETTERWISE_API_TOKEN is set)",
    413: f"body larger than {MAX_BODY_BYTES} bytes",
    415: "body is not application/json",
    422: "invalid request (the error names each problem), or thinking mode asked for",
    503: "model still loading, or the server is at capacity (see Retry-After)",
    504: "waited longer than LETTERWISE_REQUEST_TIMEOUT_S for the model",
}
TASK_DOCS = {
    "spelling": "Spell a word letter by letter: `{word}` or `{items: [{word}, ...]}`.",
    "position": "The letter at a 1-based position: `{word, index}` or `{items: [...]}`.",
    "count": "How often a letter occurs in a word: `{word, letter}` or `{items: [...]}`.",
}


def add_routes(server: LetterwiseServer) -> None:
    app = server.app

    async def healthz() -> dict[str, str]:
        """The process is up (says nothing about the model: see /readyz)."""
        return {"status": "ok"}

    async def readyz() -> Response:
        """200 once every model worker has loaded the model and answered a warm-up question."""
        workers = server.worker_statuses()
        if server.is_ready():
            return JSONResponse({"status": "ready", "workers": workers})
        return json_error(503, "the model is loading", {"Retry-After": "5"}, workers=workers)

    async def prometheus_metrics() -> Response:
        """Prometheus metrics of every server process."""
        body, content_type = metrics.render()
        return Response(content=body, media_type=content_type)

    app.add_api_route("/healthz", healthz, methods=["GET"], tags=["probes"])
    app.add_api_route("/readyz", readyz, methods=["GET"], tags=["probes"])
    app.add_api_route("/metrics", prometheus_metrics, methods=["GET"], tags=["probes"])
    for route in app.routes:
        task = getattr(route, "path", "").removeprefix("/v1/")
        if task in TASK_DOCS:
            route.summary = f"{task} question(s)"
            route.description = TASK_DOCS[task] + " Non-thinking mode only."
            route.tags = ["questions"]
            route.responses = {
                code: {"description": text, "model": None} for code, text in ERROR_RESPONSES.items()
            }


def build_server(settings: Settings, published: PublishedModel) -> LetterwiseServer:
    """The configured server (not started): call `.run(...)` in the main process."""
    apis = [
        api(
            settings.model_dir,
            settings.max_batch_size,
            settings.batch_timeout_s,
            settings.cpu_threads,
        )
        for api in APIS
    ]
    made: list[LetterwiseServer] = []  # the guard asks the server (made below) for readiness
    server = LetterwiseServer(
        apis,
        accelerator=settings.device,
        devices=1,
        request_timeout_s=settings.request_timeout_s,
        model_metadata={
            "model": published.model,
            "adapter_revision": published.adapter_revision,
            "mode": schemas.MODE,
        },
        middlewares=[
            (
                GuardMiddleware,
                {
                    "token": settings.api_token,
                    "max_queue": settings.max_queue,
                    "in_flight": multiprocessing.Value("i", 0),
                    "ready": lambda: made[0].is_ready(),
                },
            ),
            (MetricsMiddleware, {"endpoints": ENDPOINTS}),
        ],
    )
    made.append(server)
    server.app.add_exception_handler(RequestValidationError, validation_error)
    server.app.add_exception_handler(StarletteHTTPException, http_error(settings.request_timeout_s))
    server.app.add_exception_handler(Exception, server_error)
    add_routes(server)
    return server
