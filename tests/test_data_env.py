"""The Mac data-prep path, for real: a fresh torch-free venv built the way README says, then
both data stages for the default preset and for qwen3-4b.

tests/test_data_stages.py proves the data stages never *import* torch, but it runs inside the
full environment, where everything torch pulls in (Jinja2, networkx, ...) is installed too. A
dependency the data stages need but only torch brings would pass there and break on a Mac. This
test installs nothing but the repo's own files (`make setup-data`) into a new venv, so such a
dependency fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.test_pipeline import fresh_clone, set_params

README = (REPO_ROOT / "README.md").read_text()
SETUP_COMMAND = "make setup-data"
QWEN_COMMAND = "dvc exp run build_dataset -S model=qwen3-4b"


def data_env(clone: Path) -> dict[str, str]:
    """The environment of a shell where only the clone's own venv is active."""
    ours = str(Path(os.environ.get("VIRTUAL_ENV", REPO_ROOT / ".venv")) / "bin")
    path = [p for p in os.environ["PATH"].split(os.pathsep) if p and Path(p) != Path(ours)]
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    env["PATH"] = os.pathsep.join([str(clone / ".venv/bin"), *path])
    env["HF_HUB_OFFLINE"] = "1"
    env["DVC_NO_ANALYTICS"] = "1"
    return env


def run(clone: Path, *command: str) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=clone, env=data_env(clone), capture_output=True, text=True)
    assert result.returncode == 0, (
        f"{' '.join(command)} failed in the torch-free env:\n{result.stdout[-3000:]}\n"
        f"{result.stderr[-3000:]}"
    )
    return result


@pytest.mark.slow  # builds a venv and installs the data stack into it
def test_readme_mac_data_prep_in_a_fresh_torch_free_venv(tmp_path):
    # The commands below are the README's, not paraphrases of them.
    assert SETUP_COMMAND in README and QWEN_COMMAND in README
    clone = fresh_clone(tmp_path / "clone")
    run(clone, *SETUP_COMMAND.split())

    python = str(clone / ".venv/bin/python")
    probe = run(
        clone,
        python,
        "-c",
        "import importlib.metadata as m, importlib.util as u, json; "
        "print(json.dumps({'torch_module': u.find_spec('torch') is not None, "
        "'dists': sorted(d.metadata['Name'].lower() for d in m.distributions())}))",
    )
    installed = json.loads(probe.stdout)
    assert not installed["torch_module"], "torch is importable in the data-only environment"
    assert "torch" not in installed["dists"]
    # The card templating dependency is declared by us, not inherited from torch.
    assert "jinja2" in installed["dists"]

    # Smaller training set than the default only to keep the test short; same code paths.
    set_params(clone, {"build_dataset": {"max_train_tokens": 300}})
    run(clone, "git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qam", "params")
    run(clone, "dvc", "repro", "build_dataset")
    smollm2 = json.loads((clone / "metrics/details/build_dataset.json").read_text())
    assert smollm2["model"] == "smollm2-135m"
    assert smollm2["leakage"]["leaked_words"] == 0
    assert (clone / "data/dataset/README.md").read_text().startswith("---")

    run(clone, *QWEN_COMMAND.split())
    qwen = json.loads((clone / "metrics/details/build_dataset.json").read_text())
    assert qwen["model"] == "qwen3-4b"
    assert qwen["leakage"]["leaked_words"] == 0
    assert (clone / "data/dataset/hf/dataset_dict.json").exists()
