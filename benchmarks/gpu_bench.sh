#!/usr/bin/env bash
# GPU benchmark in one step, for a machine with an NVIDIA GPU and nothing installed but Python and
# PyTorch (under 8 minutes). Backbone faces/s at batch 1-256 for PyTorch fp32/fp16/bf16, ONNX Runtime
# CUDA and TensorRT FP16 (when onnxruntime-gpu or the tensorrt wheel is there, installed from wheels
# carried in .whl/), then videos/s end to end with several front processes feeding one Triton
# (DEEPFAKE_TRITON_GRPC_URL, e.g. the official container serving model_repository with
# --model-config-name=gpu-tensorrt). Prints a table, writes benchmarks/results/gpu_bench.json.
#
#   bash benchmarks/gpu_bench.sh [--fronts 4] [--budget-s 420]
#
# On a machine without an NVIDIA GPU it refuses at once, with exit status 3, and writes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
    echo "gpu_bench: no NVIDIA GPU here (nvidia-smi finds none); it measures GPUs only." >&2
    echo "gpu_bench: on a CPU host run benchmarks/model_cpu.py and benchmarks/e2e.py instead." >&2
    exit 3
fi

PYTHON=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then  # no network on the GPU host: wheels travel with the tree
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/gpu-bench-site .whl/*.whl
    export PYTHONPATH="/tmp/gpu-bench-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec timeout 470 "$PYTHON" benchmarks/gpu_bench.py "$@"
