"""A GPU Studio's venv stays a GPU venv: scripts/setup_studio.sh installs through `make setup`
with the GPU marker, so the Makefile's stamp is written and a later `make test` keeps the
Unsloth stack (constraints-gpu.txt) instead of upgrading over it with the CPU pins."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="needs GNU make")
GPU_MARKER = ".letterwise-gpu"
STAMP = ".installed-train-s3-dev-serve"  # EXTRAS train,s3,dev,serve, commas made dashes


def planned_setup(venv: Path) -> list[list[str]]:
    """The commands `make setup` would run for this venv (make -n), continuation lines joined."""
    done = subprocess.run(
        [MAKE, "-n", "setup", f"VENV={venv}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [shlex.split(line) for line in done.stdout.replace("\\\n", " ").splitlines()]


def pip_install_of_the_project(commands: list[list[str]]) -> list[str]:
    (install,) = [c for c in commands if "pip" in c and "-e" in c]
    return install


def constraint_files(install: list[str]) -> list[str]:
    return [install[i + 1] for i, arg in enumerate(install) if arg == "-c"]


def pins(constraint_file: str) -> dict[str, str]:
    """name -> version of every `name==version` in a constraints file and those it includes."""
    found: dict[str, str] = {}
    for line in (REPO_ROOT / constraint_file).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-c "):
            found |= pins(line[3:].strip())
        elif match := re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line):
            found[match.group(1).lower().replace("_", "-")] = match.group(2)
    return found


def merged_pins(files: list[str]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for name in files:
        for package, version in pins(name).items():
            assert merged.setdefault(package, version) == version, (
                f"{package} pinned to {merged[package]} and {version} in {files}"
            )
    return merged


def test_make_installs_the_gpu_stack_into_a_marked_venv(tmp_path: Path) -> None:
    cpu_venv, gpu_venv = tmp_path / "cpu", tmp_path / "gpu"
    gpu_venv.mkdir()
    (gpu_venv / GPU_MARKER).touch()

    cpu = planned_setup(cpu_venv)
    cpu_install = pip_install_of_the_project(cpu)
    assert "constraints-cpu.txt" in constraint_files(cpu_install)
    assert "constraints-gpu.txt" not in constraint_files(cpu_install)
    assert "unsloth" not in cpu_install

    gpu = planned_setup(gpu_venv)
    gpu_install = pip_install_of_the_project(gpu)
    assert "constraints-gpu.txt" in constraint_files(gpu_install)
    assert "constraints-cpu.txt" not in constraint_files(gpu_install)
    assert {"unsloth", "unsloth_zoo"} <= set(gpu_install)
    assert ["touch", str(gpu_venv / STAMP)] in gpu  # the stamp make test looks for


def test_the_gpu_constraints_and_the_makefile_never_disagree_on_a_pin(tmp_path: Path) -> None:
    gpu_venv = tmp_path / "gpu"
    gpu_venv.mkdir()
    (gpu_venv / GPU_MARKER).touch()
    gpu_files = constraint_files(pip_install_of_the_project(planned_setup(gpu_venv)))
    cpu_files = constraint_files(pip_install_of_the_project(planned_setup(tmp_path / "cpu")))
    gpu, cpu = merged_pins(gpu_files), merged_pins(cpu_files)  # each set agrees with itself
    shared = set(gpu) & set(cpu)
    assert {"torch", "peft", "dvc"} <= shared  # constraints.txt, in both
    assert {name: gpu[name] for name in shared} == {name: cpu[name] for name in shared}
    # Unsloth caps these below the CPU pins: the GPU install must not pin them.
    assert not {"transformers", "trl", "datasets", "huggingface-hub"} & set(gpu)
    assert gpu["unsloth"] == gpu["unsloth-zoo"]


def test_setup_studio_installs_through_make_into_a_marked_venv(tmp_path: Path) -> None:
    """With a (fake) GPU: the venv is marked, the stale stamp removed and `make setup` run."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "make-calls"
    fakes = {
        "nvidia-smi": '#!/bin/sh\ncase "$1" in\n'
        '  --query-gpu*) echo "NVIDIA L4, 23034 MiB, 550.54.15" ;;\n'
        '  *) echo "CUDA Version: 12.4" ;;\nesac\n',
        # make: record the call, then show what the real make would run (nothing installed)
        "make": f'#!/bin/sh\necho "$@" >> {calls}\nexec {MAKE} -n "$@" >> {calls}.plan\n',
    }
    for name, text in fakes.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("#!/bin/sh\nexit 1\n")  # a torch that sees no GPU
    (venv / "bin" / "python").chmod(0o755)
    (venv / STAMP).write_text("")  # left by an earlier `make test` with the CPU stack
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "VENV": str(venv),
    }
    done = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts/setup_studio.sh")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 4, done.stdout + done.stderr  # stopped at the CUDA check
    assert (venv / GPU_MARKER).exists() and not (venv / STAMP).exists()
    (call,) = calls.read_text().splitlines()
    assert call.split()[0] == "setup" and f"VENV={venv}" in call.split()
    plan = (tmp_path / "make-calls.plan").read_text().replace("\\\n", " ")
    assert "-c constraints-gpu.txt" in plan and "unsloth unsloth_zoo" in plan
    assert "constraints-cpu.txt" not in plan
