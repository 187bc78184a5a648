#!/usr/bin/env bash
# The GPU check on a machine with a GPU, from the repository root of a copy of the working tree:
#
#     bash bench/gpu_check.sh [bench.gpu flags, e.g. --budget-s 420]
#
# Finds a Python whose torch sees CUDA and that has transformers (PYTHON=..., python3, python,
# /opt/torch/.venv/bin/python3), runs `python -m bench.gpu` with it from the repository root (nerforge,
# conll2003_loader and bench import from the tree: nothing of the project is installed), prints the JSON
# and copies it to $OUT when that is set. It installs nothing into that Python. Where a package is
# missing: wheels in .whl/ (carried with the call) go to /tmp/site (pip --no-index --target), else pip
# tries the registry into /tmp/site. Where no Python has CUDA torch at all, a fresh .venv-gpu gets torch
# and transformers from the registry (needs network).
#
# Why no `venv --system-site-packages` over the found Python: on the lent H200 image python3 is itself a
# virtual environment (/opt/torch/.venv); a venv made from it sees the *base* interpreter's site-packages,
# not that venv's torch. Running the found interpreter directly is what keeps its CUDA torch.
set -uo pipefail
cd "$(dirname "$0")/.."
JSON=${GPU_JSON:-bench/results/gpu.json}
LIMIT=${GPU_CHECK_TIMEOUT:-470} # seconds for bench.gpu (its own budget, --budget-s, is 420 by default)

has_cuda() { "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; }
PY=""
for c in ${PYTHON:-} python3 python /opt/torch/.venv/bin/python3; do
    if command -v "$c" >/dev/null 2>&1 && has_cuda "$c"; then PY=$(command -v "$c"); break; fi
done
if [ -z "$PY" ] && ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "gpu_check: no Python with a CUDA torch and no nvidia-smi: no GPU here (python -m bench.gpu --smoke runs the code on CPU)" >&2
    exit 2
fi
if [ -z "$PY" ]; then
    echo "gpu_check: no Python with a CUDA torch found; making .venv-gpu (needs the package registry)" >&2
    python3 -m venv .venv-gpu && .venv-gpu/bin/python -m pip install -q torch transformers accelerate pyyaml \
        || { echo "gpu_check: could not install torch (no registry?); set PYTHON=/path/to/python with CUDA torch" >&2; exit 2; }
    PY=.venv-gpu/bin/python
    has_cuda "$PY" || { echo "gpu_check: torch in .venv-gpu does not see a GPU" >&2; exit 2; }
fi

missing=$("$PY" -c 'import importlib.util as u; print(" ".join(m for m in ("transformers", "tokenizers", "yaml") if u.find_spec(m) is None))')
if [ -n "$missing" ]; then
    echo "gpu_check: $PY lacks: $missing" >&2
    if ls .whl/*.whl >/dev/null 2>&1; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    else
        "$PY" -m pip install -q --target /tmp/site transformers pyyaml
    fi
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

echo "gpu_check: $PY ($("$PY" -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)'))"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>/dev/null || true

export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
timeout --signal=TERM --kill-after=10 "$LIMIT" "$PY" -m bench.gpu --output "$JSON" "$@"
rc=$?
[ $rc -eq 124 ] && echo "gpu_check: bench.gpu passed ${LIMIT}s and was stopped; the JSON holds the rows done" >&2
if [ -f "$JSON" ]; then
    cat "$JSON"
    if [ -n "${OUT:-}" ]; then cp "$JSON" "$OUT/"; fi
fi
# FSDP2 on this GPU: a few steps, checkpoint, resume, export (bench/fsdp_check.sh; GPU_CHECK_FSDP=0 skips).
if [ "${GPU_CHECK_FSDP:-1}" = 1 ]; then
    PY="$PY" timeout --signal=TERM --kill-after=10 "${FSDP_CHECK_TIMEOUT:-240}" bash bench/fsdp_check.sh \
        || echo "gpu_check: the FSDP check failed or was stopped (bench/results/gpu_fsdp.json says where)" >&2
fi
exit $rc
