#!/usr/bin/env bash
# The prepared GPU check (under 5 minutes on the H200 machine): Triton kernels vs the reference
# ops in FP16/BF16, the AOT PTX launched through CuPy as TensorRT would launch it, the local kernel
# against dense, SDPA and FlexAttention, the landmark kernel against a GEMM of its FLOPs, and the
# whole model with the kernels against eager FP16 SDPA. Runs from the repository, nothing installed.
#
#   scripts/device_check.sh OUTDIR [--dry-run] [--budget SECONDS] [--skip triton,aot,timing,landmark,model] ...
#
# Writes OUTDIR/device_check.json (and OUTDIR/aot_manifest.json). Exit status: 0 passed,
# 1 a correctness check failed, 2 no GPU or bad usage, 124 the hard time limit hit.
# --dry-run exercises the harness on CPU (Triton's interpreter, tiny sizes).
set -uo pipefail

if [ $# -lt 1 ] || [ "${1#-}" != "$1" ]; then
    echo "usage: $0 OUTDIR [--dry-run] [--budget SECONDS] [--rounds N] [--seqs 4096,16384,32768] [--skip STAGES]" >&2
    exit 2
fi
mkdir -p "$1" || exit 2
OUTDIR="$(cd "$1" && pwd)"
shift

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2
# The repository itself, not an installed copy: seo_export from the root, seo_plugins from plugins/.
export PYTHONPATH="$ROOT:$ROOT/plugins${PYTHONPATH:+:$PYTHONPATH}"
# Compiled kernels go to a scratch cache, not into OUTDIR.
export TRITON_CACHE_DIR="${TRITON_CACHE_DIR:-$(mktemp -d)/triton}"
export TRITON_DEFAULT_FP_FUSION="${TRITON_DEFAULT_FP_FUSION:-1}"
unset TRITON_INTERPRET

PY="${PYTHON:-$(command -v python3 || command -v python)}"
# The script keeps its own budget (240 s by default) and writes results after every stage;
# this is the hard stop under the machine's 5 minutes.
exec timeout --kill-after=10 290 "$PY" "$ROOT/scripts/device_check.py" --out "$OUTDIR" "$@"
