#!/usr/bin/env bash
# Set up a fresh Lightning AI Studio (or any CUDA Linux box) for letterwise's GPU stages:
#   1. check the GPU and its driver, and stop with a clear message on a machine without one;
#   2. install the project into .venv with the CUDA build of the pinned torch and Unsloth,
#      constrained by constraints-gpu.txt so the rest of the stack stays pinned. It marks the
#      venv as a GPU venv and installs through `make setup`, so the Makefile's stamp is written
#      and every later `make` (make test, make repro) keeps this stack;
#   3. check, after the install, that torch sees the GPU and that Unsloth imports;
#   4. configure the S3 DVC remote from LETTERWISE_S3_URL / AWS_* (scripts/configure_remote.py);
#   5. smoke-check the CUDA path with qwen3-tiny (scripts/gpu_smoke.py, about a minute);
#   6. download the Qwen3-4B weights once into the Hugging Face cache at the pinned commit
#      (python -m letterwise.models fetch qwen3-4b; ~8 GB the first time, nothing after).
#
# Usage: bash scripts/setup_studio.sh [--skip-install] [--skip-smoke] [--skip-fetch]
# Environment: PYTHON (default python3), VENV (default .venv), TORCH_INDEX_URL (an extra index
# for another CUDA build of the same torch version, e.g. https://download.pytorch.org/whl/cu126),
# LETTERWISE_S3_URL, LETTERWISE_S3_ENDPOINT_URL, AWS_REGION, AWS_PROFILE, AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY (see docs/remote.md).
set -euo pipefail

cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
skip_install=0
skip_smoke=0
skip_fetch=0

# fail CODE LINE...: the first line prefixed, the rest indented under it, all on stderr.
fail() {
    local code=$1
    shift
    printf 'setup_studio: %s\n' "$1" >&2
    shift
    (($# == 0)) || printf '  %s\n' "$@" >&2
    exit "$code"
}

for arg in "$@"; do
    case $arg in
        --skip-install) skip_install=1 ;;
        --skip-smoke) skip_smoke=1 ;;
        --skip-fetch) skip_fetch=1 ;;
        -h | --help)
            # The header comment above is the help text.
            while IFS= read -r line; do
                [[ $line == "#!"* ]] && continue
                [[ $line == "#"* ]] || break
                line=${line#"#"}
                printf '%s\n' "${line# }"
            done <"$0"
            exit 0
            ;;
        *) fail 2 "unknown argument: $arg (try --help)" ;;
    esac
done

# --- 1. Python, GPU and driver, before anything is installed -----------------------------------
python_version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) ||
    fail 4 "$PYTHON does not run: set PYTHON to a Python 3.11 or newer and rerun"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    fail 4 "$PYTHON is Python $python_version; letterwise needs Python 3.11 or newer." \
        "Install one (e.g. 'uv python install 3.11' or 'sudo apt-get install -y python3.11" \
        "python3.11-venv') and rerun with: PYTHON=python3.11 bash scripts/setup_studio.sh" \
        "(an existing $VENV made with the old Python must go first: rm -rf $VENV)"
fi
if ! command -v nvidia-smi >/dev/null 2>&1; then
    fail 3 "no NVIDIA GPU: nvidia-smi is not on PATH, so this machine has no usable CUDA GPU." \
        "On a Lightning Studio, switch the Studio to a GPU machine (any GPU for qwen3-tiny and" \
        "smollm2-135m; for qwen3-4b a T4 fits but is slowest, L4 or A10G is the usual choice)" \
        "and run this script again." \
        "On a Mac or a CPU-only box, use 'make setup' and the CPU path instead" \
        "(docs/lightning_studios.md)."
fi
if ! gpu_info=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1); then
    fail 3 "nvidia-smi is on PATH but failed, so the NVIDIA driver is not usable here:" \
        "$gpu_info" "Restart the Studio (or reinstall the driver on your own box) and retry."
fi
echo "GPU: $gpu_info"
driver_cuda=$(nvidia-smi 2>/dev/null | grep -o 'CUDA Version: [0-9.]*' || true)
echo "driver supports ${driver_cuda:-an unknown CUDA version}"
# The driver against the CUDA build of torch the install brings (PyPI's torch 2.13.0: CUDA 13,
# driver >= 580), before a multi-GB install that would fail at `import torch`.
driver_version=${gpu_info##*, }
if ((skip_install == 0)); then
    "$PYTHON" scripts/studio_checks.py driver "$driver_version" "${TORCH_INDEX_URL:-}" || exit 3
fi
memory_mib=${gpu_info#*, }
memory_mib=${memory_mib%% MiB*}
if [[ $memory_mib =~ ^[0-9]+$ ]] && ((memory_mib < 15000)); then
    echo "note: ${memory_mib} MiB of GPU memory: enough for qwen3-tiny and smollm2-135m;" \
        "qwen3-4b (4-bit LoRA) wants a 16 GB GPU (T4) or more (docs/lightning_studios.md)."
fi

# --- 2. install ---------------------------------------------------------------------------------
if ((skip_install == 0)); then
    command -v make >/dev/null 2>&1 ||
        fail 4 "make is not installed; install it (sudo apt-get install -y make) and rerun"
    [[ -x $VENV/bin/python ]] || "$PYTHON" -m venv "$VENV"
    # The marker switches the Makefile to constraints-gpu.txt + Unsloth; the stale stamp goes so
    # make installs now, even over a venv an older `make test` filled with the CPU stack.
    touch "$VENV/.letterwise-gpu"
    rm -f "$VENV"/.installed-*
    echo "+ make setup (constraints-gpu.txt): .[train,s3,dev,serve] + unsloth unsloth_zoo"
    # One resolve for everything, so Unsloth's caps and our pins are honoured together.
    make setup PYTHON="$PYTHON" VENV="$VENV" TORCH_INDEX_URL="${TORCH_INDEX_URL:-}"
    if [[ -n ${TORCH_INDEX_URL:-} ]]; then
        # A retry after a wrong torch build: pip counts the torch already installed (same version
        # number) as satisfying the pin and keeps it, so replace it from the index explicitly,
        # then let pip add the dependencies that build needs (its CUDA 12 libraries).
        torch_pin=$(grep -E '^torch==' constraints.txt)
        echo "+ pip install --force-reinstall --no-deps --index-url $TORCH_INDEX_URL $torch_pin"
        "$VENV/bin/python" -m pip install -q --force-reinstall --no-deps \
            --index-url "$TORCH_INDEX_URL" "$torch_pin" ||
            fail 4 "reinstalling $torch_pin from $TORCH_INDEX_URL failed (see above)"
        "$VENV/bin/python" -m pip install -q --extra-index-url "$TORCH_INDEX_URL" \
            -c constraints.txt "$torch_pin" ||
            fail 4 "installing the dependencies of $torch_pin from $TORCH_INDEX_URL failed"
    fi
fi
[[ -x $VENV/bin/python ]] || fail 4 "$VENV/bin/python not found: run without --skip-install"

# --- 3. CUDA, checked after the install -----------------------------------------------------------
"$VENV/bin/python" - <<'PY' || fail 4 "the installed torch cannot use this GPU (see above)"
import sys

import torch

if not torch.cuda.is_available():
    sys.exit(
        f"torch {torch.__version__} (built for CUDA {torch.version.cuda}) sees no GPU: a "
        "CPU-only build, or a CUDA build newer than this driver. Rerun as "
        "TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 bash scripts/setup_studio.sh "
        "(cu128 on a driver >= 570): it force-reinstalls torch from that index."
    )
props = torch.cuda.get_device_properties(0)
# bf16 only where it is native (compute capability >= 8.0): a T4 (7.5) emulates it, and
# Unsloth trains it in fp16 (letterwise.training.trainer.native_bf16)
native_bf16 = torch.cuda.get_device_capability(0) >= (8, 0)
print(
    f"torch {torch.__version__} (CUDA {torch.version.cuda}) on {props.name}, "
    f"{props.total_memory / 2**30:.0f} GiB, bf16={'yes' if native_bf16 else 'no (fp16)'}"
)
import unsloth  # noqa: E402,F401  (fails here, not mid-training, if the GPU stack is broken)

print(f"unsloth {unsloth.__version__}")
PY
"$VENV/bin/python" -m pip check || echo "note: pip check reports the conflicts above"

# --- 4. the DVC remote ----------------------------------------------------------------------------
if [[ -n ${LETTERWISE_S3_URL:-} ]]; then
    "$VENV/bin/python" scripts/configure_remote.py --check
else
    echo "LETTERWISE_S3_URL is not set: keeping the default local remote (~/.letterwise/dvc-remote)." \
        "For S3: export LETTERWISE_S3_URL=s3://BUCKET/PREFIX (and AWS_* or AWS_PROFILE), then" \
        "run '$VENV/bin/python scripts/configure_remote.py --check'."
fi

# --- 5. smoke check -------------------------------------------------------------------------------
if ((skip_smoke == 0)); then
    HF_HUB_OFFLINE=1 "$VENV/bin/python" scripts/gpu_smoke.py
fi

# --- 6. the Qwen3-4B weights -----------------------------------------------------------------------
# The stages never download (they run with the Hub offline); this is the one download, into
# ~/.cache/huggingface on the Studio drive. Rerunning finds the files there and downloads nothing.
if ((skip_fetch == 0)); then
    HF_HUB_OFFLINE=0 "$VENV/bin/python" -m letterwise.models fetch qwen3-4b ||
        fail 5 "the Qwen3-4B download failed (see above); rerun to resume, or --skip-fetch"
fi

cat <<EOF

Studio ready. Next, in this directory:
  source $VENV/bin/activate
  dvc exp run --pull --allow-missing -S model=qwen3-4b   # Qwen/Qwen3-4B from the HF cache (step 6)
  dvc exp push origin <exp-name>                          # the exp's git ref + its outputs
EOF
