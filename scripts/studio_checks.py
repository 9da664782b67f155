"""Pre-install checks for scripts/setup_studio.sh: the NVIDIA driver against the CUDA build of
torch that the install will bring. Standard library only (runs before the venv exists).

torch 2.13.0's Linux wheel on PyPI is a CUDA 13 build: it needs driver >= 580 and fails at
`import torch` (or sees no GPU) on an older driver. PyTorch's own index has CUDA 12 builds of
the same version, which run on the drivers cloud GPUs ship (CUDA 12 minor-version compatibility:
driver >= 525.60.13). Used as:

    python scripts/studio_checks.py driver DRIVER_VERSION [TORCH_INDEX_URL]

exit 0 (prints what will be installed) or 3 (prints why, and the exact command to fix it).
"""

from __future__ import annotations

import re
import sys

TORCH_VERSION = "2.13.0"
PYTORCH_INDEX = "https://download.pytorch.org/whl"
PYPI_CUDA = (13, 0)  # the CUDA build of torch 2.13.0's PyPI wheel on Linux
# minimum Linux driver per CUDA build (NVIDIA's CUDA compatibility tables): a CUDA 13 build
# needs the 580 driver; CUDA 12 builds run on >= 525.60.13 through minor-version compatibility.
MIN_DRIVER = {13: (580, 0), 12: (525, 60)}
# CUDA 12 builds of torch on PyTorch's index, newest first, with the driver each was released
# with (preferred when the driver is that new; any of them runs on >= 525.60 otherwise).
CU12_BUILDS = [("cu128", (570, 0)), ("cu126", (560, 0))]
SCRIPT = "bash scripts/setup_studio.sh"


def parse_driver(text: str) -> tuple[int, ...]:
    match = re.search(r"(\d+)\.(\d+)", text)
    if not match:
        raise ValueError(f"not a driver version: {text!r}")
    return int(match.group(1)), int(match.group(2))


def index_cuda(index_url: str | None) -> tuple[int, int] | None:
    """The CUDA version of a PyTorch index URL (.../whl/cu126 -> (12, 6)); PyPI (None) is
    torch 2.13.0's CUDA 13 build; a CPU index (.../whl/cpu) gives None."""
    if not index_url:
        return PYPI_CUDA
    match = re.search(r"/cu(\d+?)(\d)/?$", index_url.strip())
    if not match:
        return None
    return int(match.group(1)), int(match.group(2))


def best_cu12_index(driver: tuple[int, ...]) -> str:
    for tag, released_with in CU12_BUILDS:
        if driver >= released_with:
            return f"{PYTORCH_INDEX}/{tag}"
    return f"{PYTORCH_INDEX}/{CU12_BUILDS[-1][0]}"


def check_driver(driver_text: str, index_url: str | None) -> tuple[bool, list[str]]:
    """(ok, message lines) for this driver and the torch build TORCH_INDEX_URL selects."""
    driver = parse_driver(driver_text)
    shown = ".".join(map(str, driver))
    cuda = index_cuda(index_url)
    source = f"TORCH_INDEX_URL={index_url}" if index_url else "PyPI"
    if cuda is None:
        return False, [
            f"TORCH_INDEX_URL={index_url} is not a CUDA build of torch: the GPU path needs one.",
            f"Rerun with: TORCH_INDEX_URL={best_cu12_index(driver)} {SCRIPT}",
        ]
    needed = MIN_DRIVER.get(cuda[0])
    if needed is None or driver >= needed:
        return True, [f"driver {shown}: torch {TORCH_VERSION} from {source} (CUDA {cuda[0]}) fits"]
    if driver < MIN_DRIVER[12]:
        return False, [
            f"NVIDIA driver {shown} is too old for any CUDA build of torch {TORCH_VERSION} "
            f"(CUDA 12 needs >= 525.60, CUDA 13 >= 580).",
            "Update the driver (or pick a newer machine image) and rerun this script.",
        ]
    fix = best_cu12_index(driver)
    return False, [
        f"NVIDIA driver {shown} is older than torch {TORCH_VERSION} from {source} needs: a "
        f"CUDA {cuda[0]}.{cuda[1]} build, driver >= {needed[0]}.",
        "Install a CUDA 12 build of the same torch instead; rerun this script as",
        f"  TORCH_INDEX_URL={fix} {SCRIPT}",
        "(it force-reinstalls torch from that index; by hand, in the venv:",
        f"  .venv/bin/python -m pip install --force-reinstall --index-url {fix} "
        f"torch=={TORCH_VERSION})",
    ]


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "driver":
        print(__doc__, file=sys.stderr)
        return 2
    ok, lines = check_driver(argv[1], argv[2] if len(argv) > 2 else None)
    print("\n".join(lines), file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
