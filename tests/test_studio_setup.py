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
        '  --query-gpu*) echo "NVIDIA L4, 23034 MiB, 580.65.06" ;;\n'
        '  *) echo "CUDA Version: 13.0" ;;\nesac\n',
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


def fake_studio(tmp_path: Path, driver: str) -> tuple[dict, Path, Path]:
    """A fake nvidia-smi reporting `driver`, a make that records its call, and a venv python
    that records every call, succeeds at pip and fails everything else (no GPU torch)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    fakes = {
        "nvidia-smi": '#!/bin/sh\ncase "$1" in\n'
        f'  --query-gpu*) echo "NVIDIA L4, 23034 MiB, {driver}" ;;\n'
        '  *) echo "CUDA Version: 12.2" ;;\nesac\n',
        "make": f'#!/bin/sh\necho "make $@" >> {calls}\n',
    }
    for name, text in fakes.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(
        f'#!/bin/sh\necho "python $@" >> {calls}\n[ "$1 $2" = "-m pip" ] && exit 0\nexit 1\n'
    )
    python.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "VENV": str(venv),
    }
    return env, calls, bin_dir


def setup_studio(env: dict, cwd: Path) -> subprocess.CompletedProcess:
    script = str(REPO_ROOT / "scripts/setup_studio.sh")
    return subprocess.run(["bash", script], cwd=cwd, env=env, capture_output=True, text=True)


def test_an_old_driver_stops_before_the_install_with_the_command_that_fixes_it(tmp_path):
    # torch 2.13.0 from PyPI is a CUDA 13 build: driver 550 cannot run it
    env, calls, _ = fake_studio(tmp_path, "550.54.15")
    done = setup_studio(env, tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "driver >= 580" in done.stderr
    fix = "TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 bash scripts/setup_studio.sh"
    assert fix in done.stderr
    assert not calls.exists()  # nothing installed


def test_a_retry_with_torch_index_url_force_reinstalls_torch(tmp_path):
    env, calls, _ = fake_studio(tmp_path, "550.54.15")
    env["TORCH_INDEX_URL"] = "https://download.pytorch.org/whl/cu126"
    done = setup_studio(env, tmp_path)
    assert done.returncode == 4, done.stdout + done.stderr  # stopped at the (fake) CUDA check
    lines = calls.read_text().splitlines()
    assert lines[0].startswith("make setup")
    (reinstall,) = [line for line in lines if "--force-reinstall" in line]
    assert "--index-url https://download.pytorch.org/whl/cu126" in reinstall
    assert reinstall.endswith("torch==2.13.0")


def test_a_python_older_than_3_11_is_refused(tmp_path):
    env, calls, bin_dir = fake_studio(tmp_path, "580.65.06")
    old = bin_dir / "python3.10"
    old.write_text('#!/bin/sh\ncase "$2" in\n  *print*) echo 3.10 ;;\n  *) exit 1 ;;\nesac\n')
    old.chmod(0o755)
    env["PYTHON"] = str(old)
    done = setup_studio(env, tmp_path)
    assert done.returncode == 4, done.stdout + done.stderr
    assert "Python 3.10" in done.stderr and "3.11 or newer" in done.stderr
    assert "PYTHON=python3.11 bash scripts/setup_studio.sh" in done.stderr
    assert not calls.exists()


@pytest.mark.parametrize(
    ("driver", "index", "ok", "suggested"),
    [
        ("580.65.06", None, True, None),
        ("575.51.03", None, False, "cu128"),
        ("535.183.01", None, False, "cu126"),
        ("535.183.01", "https://download.pytorch.org/whl/cu126", True, None),
        ("535.183.01", "https://download.pytorch.org/whl/cu130", False, "cu126"),
        ("470.82.01", None, False, None),
    ],
)
def test_driver_check_table(driver, index, ok, suggested):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "studio_checks", REPO_ROOT / "scripts/studio_checks.py"
    )
    checks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(checks)
    passed, lines = checks.check_driver(driver, index)
    assert passed is ok
    text = "\n".join(lines)
    if suggested:
        assert f"TORCH_INDEX_URL=https://download.pytorch.org/whl/{suggested} " in text
        assert "--force-reinstall" in text
    if driver.startswith("470"):
        assert "Update the driver" in text
