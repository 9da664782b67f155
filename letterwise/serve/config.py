"""Server settings: command-line flags, each defaulting from a LETTERWISE_* environment variable.

The bearer token comes from LETTERWISE_API_TOKEN only (a flag would show it in `ps`), and is
never printed. LETTERWISE_MODE / --mode accepts non-thinking only: anything else stops the
server before it loads a model.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

MODE = "non-thinking"
DEVICES = ("auto", "cpu", "cuda")
TOKEN_ENV = "LETTERWISE_API_TOKEN"


class ConfigError(ValueError):
    """A setting is invalid; the message names the flag, its variable and what is allowed."""


@dataclass(frozen=True)
class Settings:
    model_dir: str
    host: str
    port: int
    device: str
    max_batch_size: int
    batch_timeout_s: float
    max_queue: int
    request_timeout_s: float
    mode: str
    log_level: str
    cpu_threads: int  # torch threads per model worker on CPU; 0 = share the machine's cores
    api_token: str | None  # from the environment only; never logged

    def public(self) -> dict[str, Any]:
        """The settings safe to print (the token reduced to whether there is one)."""
        shown = {k: v for k, v in self.__dict__.items() if k != "api_token"}
        return shown | {"auth": "bearer token" if self.api_token else "none"}


# flag -> (environment variable, default, type, help)
OPTIONS: dict[str, tuple[str, Any, Callable[[str], Any], str]] = {
    "--model-dir": ("LETTERWISE_MODEL_DIR", "models/published", str,
                    "the published model folder (written by the publish stage)"),
    "--host": ("LETTERWISE_HOST", "127.0.0.1", str,
               "address to listen on: 127.0.0.1 (this machine only), 0.0.0.0 or ::"),
    "--port": ("LETTERWISE_PORT", 8000, int, "TCP port to listen on (1024-65535)"),
    "--device": ("LETTERWISE_DEVICE", "auto", str,
                 "auto (CUDA when present), cpu or cuda"),
    "--max-batch-size": ("LETTERWISE_MAX_BATCH_SIZE", 8, int,
                         "most requests batched into one model call per endpoint"),
    "--batch-timeout-s": ("LETTERWISE_BATCH_TIMEOUT_S", 0.05, float,
                          "how long a batch waits for more requests after its first one"),
    "--max-queue": ("LETTERWISE_MAX_QUEUE", 64, int,
                    "most API requests in the server at once; more get 503 with Retry-After"),
    "--request-timeout-s": ("LETTERWISE_REQUEST_TIMEOUT_S", 30.0, float,
                            "a request still waiting for the model after this long gets 504"),
    "--mode": ("LETTERWISE_MODE", MODE, str, "non-thinking: the only mode served"),
    "--cpu-threads": ("LETTERWISE_CPU_THREADS", 0, int,
                      "torch threads per model worker on CPU; 0 = the usable cores (CPU "
                      "affinity capped by the cgroup CPU quota) divided among the three workers"),
    "--log-level": ("LETTERWISE_LOG_LEVEL", "info", str,
                    "critical, error, warning, info or debug"),
}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m letterwise.serve",
        description=(
            "Serve the published letterwise model over HTTP: POST /v1/spelling, /v1/position and "
            "/v1/count, GET /healthz, /readyz, /metrics and /docs. Every flag defaults from the "
            f"environment variable named in its help. Set {TOKEN_ENV} to require "
            "`Authorization: Bearer <token>` on /v1/*."
        ),
    )
    for flag, (env, default, _, text) in OPTIONS.items():
        parser.add_argument(flag, default=None, help=f"{text} (env {env}; default {default})")
    return parser


def _value(flag: str, given: str | None, environ: dict[str, str]) -> Any:
    env, default, kind, _ = OPTIONS[flag]
    raw = given if given is not None else environ.get(env)
    if raw is None or raw == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        source = flag if given is not None else env
        raise ConfigError(f"{source}: {raw!r} is not a valid {kind.__name__}") from None


def _check(ok: bool, flag: str, message: str) -> None:
    if not ok:
        env = OPTIONS[flag][0]
        raise ConfigError(f"{flag} / {env}: {message}")


def load_settings(
    argv: Sequence[str] | None = None, environ: dict[str, str] | None = None
) -> Settings:
    """Settings from flags over environment over defaults; ConfigError naming a bad value."""
    environ = dict(os.environ if environ is None else environ)
    args = vars(build_parser().parse_args(argv))
    values = {flag: _value(flag, args[flag[2:].replace("-", "_")], environ) for flag in OPTIONS}
    mode = values["--mode"]
    _check(
        mode == MODE,
        "--mode",
        f"mode {mode!r} is refused: this server serves non-thinking mode only (Qwen3 "
        "enable_thinking=False; thinking answers are long, slow and were not what the API "
        "was evaluated in). Unset it or set it to non-thinking",
    )
    _check(values["--device"] in DEVICES, "--device", f"choose one of {', '.join(DEVICES)}")
    _check(1024 <= values["--port"] <= 65535, "--port", "the port must be in 1024-65535")
    _check(
        values["--host"] in ("127.0.0.1", "0.0.0.0", "::"),
        "--host",
        "LitServe listens on 127.0.0.1, 0.0.0.0 or ::",
    )
    _check(1 <= values["--max-batch-size"] <= 256, "--max-batch-size", "must be 1 to 256")
    _check(values["--batch-timeout-s"] >= 0, "--batch-timeout-s", "must be >= 0")
    _check(values["--max-queue"] >= 1, "--max-queue", "must be >= 1")
    _check(
        values["--request-timeout-s"] > values["--batch-timeout-s"],
        "--request-timeout-s",
        "must be longer than the batch timeout (a request waits that long for its batch)",
    )
    _check(values["--cpu-threads"] >= 0, "--cpu-threads", "must be >= 0 (0 = automatic)")
    levels = ("critical", "error", "warning", "info", "debug")
    _check(values["--log-level"] in levels, "--log-level", f"choose one of {', '.join(levels)}")
    token = environ.get(TOKEN_ENV) or None
    return Settings(
        model_dir=values["--model-dir"],
        host=values["--host"],
        port=values["--port"],
        device=values["--device"],
        max_batch_size=values["--max-batch-size"],
        batch_timeout_s=values["--batch-timeout-s"],
        max_queue=values["--max-queue"],
        request_timeout_s=values["--request-timeout-s"],
        mode=mode,
        log_level=values["--log-level"],
        cpu_threads=values["--cpu-threads"],
        api_token=token,
    )
