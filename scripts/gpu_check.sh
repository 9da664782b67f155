#!/usr/bin/env bash
# The rehearsed one-call device check (issue 35): runs letterwise.gpu_check with nothing
# downloaded and writes JSON results under one folder (default gpu_check_results/<device>/).
#
# Usage: bash scripts/gpu_check.sh [--dry-run] [--out DIR] [--only CHECK...]
#   --dry-run: CPU, tiny Qwen3 only; the CUDA/Unsloth checks are recorded as skipped, never
#   as passed (tests/test_gpu_path_fixes.py runs this mode in the slow suite).
# Environment: WHEELS (a folder of carried wheels, installed with --no-index --no-deps before
# the check when it exists; default .gpu_wheels), PYTHON (default: .venv/bin/python if there).
#
# The wheel set, measured 2026-12-06 with
#   pip download --no-deps unsloth==2026.10.5 unsloth_zoo==2026.10.5 'trl<=1.15' bitsandbytes \
#     'datasets<5' 'transformers<=5.17' peft accelerate xformers
# is 93,819,949 bytes (89.5 MiB): bitsandbytes 0.50.2 alone is 43.1 MB (41.1 MiB), unsloth
# 30.0 MB, transformers 12.3 MB, xformers 3.3 MB, the other five 5.1 MB. Over a 64 MiB carry,
# bitsandbytes is the piece to leave out: the rest is 50.7 MB (48.3 MiB) and runs every check
# but the 4-bit one (qwen3_4b_step's Unsloth load_in_4bit part then fails, recorded in its JSON
# beside the peft numbers). torch itself is the device's own.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-}
if [[ -z $PYTHON ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
WHEELS=${WHEELS:-.gpu_wheels}
out=""
args=()
while (($#)); do
    case $1 in
        --out) out=$2; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
if [[ -d $WHEELS ]] && compgen -G "$WHEELS/*.whl" >/dev/null; then
    echo "+ pip install --no-index --no-deps $WHEELS/*.whl"
    "$PYTHON" -m pip install -q --no-index --no-deps "$WHEELS"/*.whl
fi
if [[ -z $out ]]; then
    device=$("$PYTHON" -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")' 2>/dev/null || echo unknown)
    out="gpu_check_results/${device// /_}"
fi
exec "$PYTHON" -m letterwise.gpu_check --out "$out" ${args[@]+"${args[@]}"}
