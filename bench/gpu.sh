#!/usr/bin/env bash
# The GPU checks in one call (device machine): CUDA test, FV renderer and activation benches.
# Usage: bash bench/gpu.sh [OUT_DIR]. Needs the project's Python dependencies importable.
set -uo pipefail
out=${1:-/tmp/gpu-bench}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
python3 -m pytest -q --noconftest -p no:cacheprovider -o addopts= tests/test_fv_cuda.py 2>&1 \
  | tee "$out/test_fv_cuda.txt" | tail -15
for steps in 64 256; do  # a few seconds each
  python3 bench/fv_render.py --device cuda --steps "$steps" 2>&1 | tee "$out/fv_render_$steps.txt"
done
python3 bench/activations.py --device cuda --workers 15 --per-photo 100 2>&1 | tee "$out/activations.txt"
