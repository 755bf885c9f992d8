#!/usr/bin/env bash
# GPU search paths and the face pipeline against the H200's bounds, in one go.
#   bash benchmarks/gpu/run.sh            # on the device (torch + CUDA), at most ~8 min
#   bash benchmarks/gpu/run.sh --cpu      # anywhere, small sizes (CI)
# Extra arguments go to gpu_bench.py. Wheels in .whl/ (carried to the device)
# are installed offline into /tmp/tanu-gpu-site first.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ -n "${TANU_PYTHON:-}" ]]; then
  PY="$TANU_PYTHON"
elif [[ -x .venv/bin/python ]]; then
  PY=.venv/bin/python
else
  PY=python3
fi
if [[ " $* " != *" --cpu "* ]] && ! "$PY" -c "import torch" 2>/dev/null \
    && python3 -c "import torch, numpy" 2>/dev/null; then
  PY=python3  # the device image's python3 holds torch; the repo venv may not
fi
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/tanu-gpu-site .whl/*.whl
  export PYTHONPATH="/tmp/tanu-gpu-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
"$PY" -c 'import sys; print("python", sys.version.split()[0], sys.executable)'
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,clocks.sm --format=csv,noheader || true
exec "$PY" benchmarks/gpu/gpu_bench.py "$@"
