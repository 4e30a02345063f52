#!/usr/bin/env bash
# Every check and figure that needs an NVIDIA GPU, in one go (docs/gpu.md, docs/benchmarks.md "GPU"):
#   parity      the CUDA = numba parity tests and the export device checks (pytest)
#   main_job    DSA pairs/s (render_views) and export samples/s: CUDA vs numba siddon on this machine's cores
#   train       training steps/s of the paper, Duan and CPU-small configs on CUDA (experiments/bench_train.py)
#   project512  projector views/s and DSA pairs/s at 512^3 / 512^2 (ours; DeepDRR and DiffDRR where installed)
#   project1024 the same at a 1024^2 detector
# Usage:
#   bash experiments/gpu_checks.sh [OUTDIR]            # default out/gpu_checks
#   CT=path/to/ct.nii.gz bash experiments/gpu_checks.sh  # another CT than builtin:chest-ct
# Each stage runs under its own time limit (seconds; LIMIT_SCALE=2 doubles them) and writes OUTDIR/<stage>.log;
# OUTDIR/stages.txt gets the GPU's name and one line per stage (exit status, seconds); a stage that fails
# or runs out of time does not stop the next. The benchmarks' last log line is their JSON.
set -uo pipefail

cd "$(dirname "$0")/.."
OUT=${1:-out/gpu_checks}
CT=${CT:-builtin:chest-ct}
PY=${PYTHON:-python}
SCALE=${LIMIT_SCALE:-1}
mkdir -p "$OUT"

stage() {  # stage NAME LIMIT_S COMMAND...
    local name=$1 limit=$(( $2 * SCALE )); shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "$name rc=$rc $((SECONDS - t0)) s (limit $limit s)$( ((rc == 124)) && echo ': out of time')" \
        | tee -a "$OUT/stages.txt"
}

{ echo "start $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $PY -c "import torch, numba, numpy; print('torch', torch.__version__, 'numba', numba.__version__, 'numpy', numpy.__version__)"
} 2>&1 | tee -a "$OUT/stages.txt"

stage parity 100 $PY -m pytest -rs -p no:cacheprovider tests/test_projector_torch.py tests/test_export_device.py
stage main_job 120 $PY experiments/bench_gpu.py --systems scene,export --cpu-variants numba-siddon --ct "$CT" \
    --ct-mm 2 --scene-detector 256 --pairs 16 --export-count 16
stage train 150 $PY experiments/bench_train.py experiments/ddsa_gpu_paper.yaml experiments/duan/unet_w16_wgan.yaml \
    experiments/duan/unet_d4_w16.yaml experiments/ddsa_cpu_small.yaml --steps 300 --warmup 30
stage project512 120 $PY experiments/bench_gpu.py --systems ours,deepdrr,diffdrr --ct "$CT" --size 512 --detector 512 \
    --views 16 --batch 8
stage project1024 60 $PY experiments/bench_gpu.py --systems ours --ct "$CT" --size 512 --detector 1024 --views 8 --batch 4
