"""ASGI middleware in front of the API: request metrics, auth, size limits and back-pressure.

`MetricsMiddleware` (outermost) counts every response by endpoint and status code and times it.
`GuardMiddleware` checks each /v1/* request, cheapest first: the bearer token (401), the body
size (413), the content type (415), readiness (503 while the model loads) and the bounded queue
(503 with Retry-After when LETTERWISE_MAX_QUEUE requests are already in the server). Every
refusal is a JSON body naming the problem. The token is compared in constant time and never
logged or echoed.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from letterwise.serve.metrics import HTTP_REQUESTS, QUEUE_DEPTH, REQUEST_LATENCY

API_PREFIX = "/v1/"
MAX_BODY_BYTES = 64 * 1024
LOADING_RETRY_AFTER_S = 5
FULL_RETRY_AFTER_S = 1
BODY_METHODS = {"POST", "PUT", "PATCH"}


def json_error(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any):
    """The one error shape of the API: {"error": <what is wrong>, "status": <code>, ...}."""
    return JSONResponse({"error": message, "status": status, **extra}, status, headers=headers)


class MetricsMiddleware:
    """letterwise_http_requests_total{endpoint,code} and letterwise_request_latency_seconds."""

    def __init__(self, app: ASGIApp, endpoints: frozenset[str]) -> None:
        self.app = app
        self.endpoints = endpoints  # any other path is counted as "other" (bounded labels)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before responding

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            path = scope["path"]
            endpoint = path if path in self.endpoints else "other"
            HTTP_REQUESTS.labels(endpoint, str(status)).inc()
            REQUEST_LATENCY.labels(endpoint).observe(time.perf_counter() - started)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class GuardMiddleware:
    """Auth, body limits and admission for /v1/*; everything else passes straight through."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        max_queue: int,
        in_flight: Any,  # a multiprocessing.Value("i") shared by the HTTP server processes
        ready: Callable[[], bool],
        max_body: int = MAX_BODY_BYTES,
    ) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.max_queue = max_queue
        self.in_flight = in_flight
        self.ready = ready
        self.max_body = max_body

    def _auth_error(self, scope: Scope) -> JSONResponse | None:
        if self.token is None:
            return None
        challenge = {"WWW-Authenticate": 'Bearer realm="letterwise"'}
        header = _header(scope, b"authorization")
        if header is None:
            return json_error(
                401, "missing bearer token: send `Authorization: Bearer <token>`", challenge
            )
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            return json_error(
                401, "malformed Authorization header: expected `Bearer <token>`", challenge
            )
        if not hmac.compare_digest(credentials.strip().encode(), self.token):
            return json_error(401, "invalid bearer token", challenge)
        return None

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | JSONResponse | None:
        """The whole body (at most max_body bytes), a 413 response, or None if the client left."""
        too_large = json_error(
            413, f"request body is larger than {self.max_body} bytes", max_bytes=self.max_body
        )
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            return too_large
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _admit(self) -> bool:
        with self.in_flight.get_lock():
            if self.in_flight.value >= self.max_queue:
                return False
            self.in_flight.value += 1
            return True

    def _release(self) -> None:
        with self.in_flight.get_lock():
            self.in_flight.value -= 1

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        refusal = self._auth_error(scope)
        if refusal is None and scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)  # the router answers 404 / 405
            return
        body = b""
        if refusal is None:
            read = await self._read_body(scope, receive)
            if read is None:
                return
            refusal, body = (read, b"") if isinstance(read, JSONResponse) else (None, read)
        if refusal is None:
            content_type = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
            if content_type != "application/json":
                refusal = json_error(
                    415, f"send a JSON body with `Content-Type: application/json` "
                    f"(got {content_type or 'no content type'!r})",
                )  # fmt: skip
        if refusal is None and not self.ready():
            refusal = json_error(
                503,
                "the model is still loading; retry once /readyz answers 200",
                {"Retry-After": str(LOADING_RETRY_AFTER_S)},
            )
        if refusal is None and not self._admit():
            refusal = json_error(
                503,
                f"the server is at capacity ({self.max_queue} requests in flight, "
                "LETTERWISE_MAX_QUEUE); retry shortly",
                {"Retry-After": str(FULL_RETRY_AFTER_S)},
            )
        if refusal is not None:
            await refusal(scope, receive, send)
            return

        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        QUEUE_DEPTH.inc()
        try:
            await self.app(scope, replay, send)
        finally:
            QUEUE_DEPTH.dec()
            self._release()
