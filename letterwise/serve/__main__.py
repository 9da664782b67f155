"""`python -m letterwise.serve`: check the settings and the published folder, then serve.

Exit status: 0 after a SIGTERM drain, 1 when the model folder or a model worker fails, 2 for
invalid settings (thinking mode included). Every refusal is one line naming the problem.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from letterwise.serve.config import MODE, ConfigError, Settings, load_settings
from letterwise.serve.published import PublishedFolderError, PublishedModel, read_published

PROG = "letterwise.serve"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def fail(message: str, status: int) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return status


@contextmanager
def metrics_dir() -> Iterator[Path]:
    """A clean directory for multiprocess metrics, set before prometheus_client is imported.

    An explicit PROMETHEUS_MULTIPROC_DIR (e.g. a Kubernetes emptyDir) is emptied of old values
    and kept; otherwise a temporary directory is made and removed at exit.
    """
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before its multiprocess dir was set")
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="letterwise-metrics-") as tmp:
        os.environ[MULTIPROC_ENV] = tmp
        yield Path(tmp)


def check_device(settings: Settings) -> str | None:
    """None if the device can be used, else why not. cpu hides CUDA from the model workers."""
    if settings.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the workers' default_device() is then cpu
    elif settings.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            return "--device cuda / LETTERWISE_DEVICE=cuda, but no CUDA device is available here"
    return None


def serve(settings: Settings, published: PublishedModel) -> int:
    from letterwise.serve.app import build_server
    from letterwise.serve.metrics import publish_model_metrics

    publish_model_metrics(published, MODE)
    server = build_server(settings, published)
    signal.signal(signal.SIGTERM, server.request_shutdown)
    server.run(
        host=settings.host,
        port=settings.port,
        num_api_servers=1,
        log_level=settings.log_level,
        generate_client_file=False,
    )
    if server.failure:
        return fail(server.failure, 1)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = load_settings(argv)
    except ConfigError as exc:
        return fail(str(exc), 2)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        published = read_published(settings.model_dir)
    except PublishedFolderError as exc:
        return fail(str(exc), 1)
    if published.eval_mode not in (None, MODE):
        return fail(
            f"{settings.model_dir} was evaluated in {published.eval_mode!r} mode; this server "
            "serves non-thinking mode only, so its live accuracy would not compare with that "
            "eval. Publish a non-thinking evaluation (eval.mode: non-thinking)",
            2,
        )
    problem = check_device(settings)
    if problem:
        return fail(problem, 1)
    logging.getLogger(PROG).info(
        "serving %s (adapter %s, eval accuracy for %d task/strategy pairs) with %s",
        published.model,
        published.adapter_revision,
        len(published.eval_accuracy),
        settings.public(),
    )
    with metrics_dir():
        return serve(settings, published)


if __name__ == "__main__":
    sys.exit(main())
