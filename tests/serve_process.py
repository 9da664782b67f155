"""The API server as a real process on 127.0.0.1 for the tests, and a small HTTP client.

`ServerProcess.start(model_dir, log_dir, **env)` runs `python -m letterwise.serve` on a free
loopback port with LETTERWISE_* settings from `env` and waits until /readyz answers 200;
`stop()` sends SIGTERM and returns the exit status. `call(...)` sends one request and returns
(status, headers, parsed JSON body). Standard library only.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.prometheus_server import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 240.0  # three workers each import torch and load a model on a busy 2-core CPU


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any  # parsed JSON, or the raw text when the body is not JSON

    @property
    def error(self) -> str:
        return self.body.get("error", "") if isinstance(self.body, dict) else str(self.body)


def call(
    base: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
    timeout: float = 300.0,
) -> Reply:
    """One HTTP request: `body` is sent as JSON, `raw` as given (with the headers given)."""
    host, port = base.removeprefix("http://").split(":")
    sent = dict(headers or {})
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json")
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request(method, path, body=data, headers=sent)
        response = connection.getresponse()
        text = response.read().decode("utf-8", errors="replace")
        received = {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        parsed = text
    return Reply(response.status, received, parsed)


def server_env(**settings: str) -> dict[str, str]:
    """The server's environment: offline, this checkout on the path, LETTERWISE_* from kwargs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LETTERWISE_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if "LETTERWISE_CACHE" in os.environ:  # where the base weights are cached
        env["LETTERWISE_CACHE"] = os.environ["LETTERWISE_CACHE"]
    env.update(PYTHONPATH=str(REPO_ROOT), HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    env.update({f"LETTERWISE_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def run_server_command(
    args: list[str], env: dict[str, str], timeout: float = 120.0
) -> subprocess.CompletedProcess:
    """`python -m letterwise.serve ARGS` to completion (for start-up refusals)."""
    return subprocess.run(
        [sys.executable, "-m", "letterwise.serve", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class ServerProcess:
    def __init__(self, process: subprocess.Popen, url: str, log: Path, token: str | None) -> None:
        self.process, self.url, self.log, self.token = process, url, log, token
        # What the probes and an API request answered before /readyz said 200.
        self.seen_while_loading: list[dict[str, Any]] = []

    @classmethod
    def start(cls, model_dir: Path, log_dir: Path, **settings: str) -> ServerProcess:
        """Start on a free port and wait until ready (retrying if another process took the port)."""
        log_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # another process may take the free port first
            port = free_port()
            log = log_dir / f"server-{port}.log"
            with open(log, "wb") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "letterwise.serve", "--model-dir", str(model_dir),
                     "--host", "127.0.0.1", "--port", str(port)],
                    env=server_env(**settings),
                    cwd=REPO_ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, to clean up after a kill
                )  # fmt: skip
            server = cls(process, f"http://127.0.0.1:{port}", log, settings.get("api_token"))
            if server.wait_ready():
                return server
            server.stop()
            if "address already in use" not in server.output():
                break
        raise RuntimeError(f"the server did not become ready; its log:\n{server.output()[-4000:]}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                healthz = call(self.url, "GET", "/healthz", timeout=5).status
                readyz = call(self.url, "GET", "/readyz", timeout=5).status
                if readyz == 200:
                    return True
                if len(self.seen_while_loading) < 3:
                    api = call(self.url, "POST", "/v1/spelling", {"word": "cat"}, token=self.token)
                    if call(self.url, "GET", "/readyz", timeout=5).status == 200:
                        continue  # became ready meanwhile: this observation is not "loading"
                    self.seen_while_loading.append(
                        {"healthz": healthz, "readyz": readyz, "api": api.status,
                         "api_error": api.error}
                    )  # fmt: skip
            except OSError:
                pass  # not listening yet
            time.sleep(0.5)
        return False

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (the server drains), then SIGKILL to its whole process group if it has not
        exited within `timeout` or left workers behind; returns the main process's status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # leftovers only: a drained server has none
        except ProcessLookupError:
            pass
        return self.process.wait(timeout=timeout)
