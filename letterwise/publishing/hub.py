"""Pushing the published folder to the Hugging Face Hub (create_repo + upload_folder), idempotently.

The token is read from the environment only and handed to huggingface_hub, which sends it as the
Authorization header; it is never written or printed (every error message is scrubbed of it).
Unchanged files are not committed again, so a rerun with nothing changed makes no new commit.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from letterwise.params import Params
from letterwise.publishing.folder import DATASET_SUBDIR
from letterwise.publishing.inputs import PublishError

COMMIT_MESSAGE = "letterwise publish"


def hub_token() -> str | None:
    """HF_TOKEN from the environment (the only place a token is read from), or None."""
    token = os.environ.get("HF_TOKEN", "").strip()
    return token or None


def push_plan(params: Params, token: str | None) -> tuple[list[tuple[str, str]], str | None]:
    """([(repo type, repo id)] to push, or [] with the reason the folder stays local)."""
    targets = [
        (repo_type, repo_id)
        for repo_type, repo_id in (
            ("model", params.publish.repo_id),
            ("dataset", params.publish.dataset_repo_id),
        )
        if repo_id
    ]
    if not targets:
        return [], "not pushed: no publish.repo_id (local folder only)"
    if token is None:
        return [], "not pushed: HF_TOKEN not set (local folder only)"
    return targets, None


def hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def scrub(text: str, token: str | None) -> str:
    """Belt and braces: no message we print or store may carry the token."""
    return text.replace(token, "***") if token else text


def push_to_hub(
    folder: Path, targets: list[tuple[str, str]], *, private: bool, token: str
) -> dict[str, dict[str, Any]]:
    """create_repo + upload_folder per target; raises PublishError with the Hub's message."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    pushed: dict[str, dict[str, Any]] = {}
    for repo_type, repo_id in targets:
        path = folder / DATASET_SUBDIR if repo_type == "dataset" else folder
        ignore = None if repo_type == "dataset" else [f"{DATASET_SUBDIR}/*"]
        try:
            api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
            head = api.repo_info(repo_id, repo_type=repo_type).sha
            info = api.upload_folder(
                repo_id=repo_id,
                repo_type=repo_type,
                folder_path=str(path),
                ignore_patterns=ignore,
                commit_message=COMMIT_MESSAGE,
            )
        except Exception as exc:  # the Hub's answer, whatever its kind, is the message to show
            done = ", ".join(f"{t} {p['repo_id']}" for t, p in pushed.items()) or "nothing"
            raise PublishError(
                f"upload of {repo_type} repo {repo_id} failed ({type(exc).__name__}): "
                f"{scrub(str(exc), token)}\n(pushed before the failure: {done})"
            ) from None
        pushed[repo_type] = {
            "repo_id": repo_id,
            "commit": info.oid,
            "new_commit": info.oid != head,
            "url": scrub(str(info.commit_url), token),
        }
    return pushed
