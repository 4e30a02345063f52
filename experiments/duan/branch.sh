#!/usr/bin/env bash
# Branch every seed of a finished model: for each seed S, OUT/runs/SRC_sS/last.pt -> OUT/runs/DST_sS, trained on to
# STEPS steps under the training config CONFIG (`ddsa-sim train --branch-from`: weights, weight average, optimiser,
# step and data position carried). With the source's own config it continues the model into a new folder (v18's
# and v19's chains); with a variant it makes a branch paired seed by seed with the source continued, which sees
# the same batches (docs/results.md, v19-v20). The training store is OUT/data/train_ROW.zarr, ROW the last part
# of DST (as experiments/duan/evaluate_all.py reads it), and the runs are named as duan_ablation.sh names them.
#
#   bash experiments/duan/branch.sh OUT SRC DST CONFIG STEPS
#   bash experiments/duan/branch.sh out/duan4 unet_dose_d4_p128_ema_w16_20k_fromm_l \
#       unet_dose_d4_p128_ema_w16_lowdose_22k_fromm_l experiments/duan/unet_dose_d4_p128_ema_w16_lowdose.yaml 22000
#
# Environment: SEEDS (default "0 1 2"), PARALLEL (default 1: the seeds train at once, as v18-v20 ran them on two
# cores; 0: one after another), DEVICE (auto, cpu or cuda). A finished branch (DST_sS.done) is kept, an
# interrupted one resumes from its own last.pt. Run from the repository root with the ddsa-sim environment active.
set -euo pipefail

cd "$(dirname "$0")/../.."
if [[ $# -ne 5 ]]; then echo "usage: $0 OUT SRC DST CONFIG STEPS" >&2; exit 2; fi
OUT=$1 SRC=$2 DST=$3 CONFIG=$4 STEPS=$5
SEEDS=${SEEDS:-0 1 2}
PARALLEL=${PARALLEL:-1}
DATA=$OUT/data/train_${DST##*_}.zarr
for f in "$CONFIG" "$DATA"; do [[ -e $f ]] || { echo "error: $f not found" >&2; exit 2; }; done
CONFIG=$(realpath "$CONFIG")
for seed in $SEEDS; do
    [[ -f $OUT/runs/${SRC}_s$seed.done ]] || { echo "error: $OUT/runs/${SRC}_s$seed has not finished" >&2; exit 2; }
done

branch_run() {  # branch_run SEED: $OUT/runs/DST_sSEED from $OUT/runs/SRC_sSEED/last.pt
    local seed=$1 run=$OUT/runs/${DST}_s$1
    [[ -f $run.done ]] && return 0
    printf 'base: %s\nseed: %s\n' "$CONFIG" "$seed" > "$run.yaml"
    local args=("$run.yaml" --data "$DATA" -o "$run" --max-steps "$STEPS")
    [[ -n "${DEVICE:-}" ]] && args+=(--device "$DEVICE")
    if [[ -f $run/last.pt ]]; then args+=(--resume)
    else args+=(--branch-from "$OUT/runs/${SRC}_s$seed/last.pt" --overwrite)
    fi
    local t0; t0=$(date +%s)
    nice -n 5 ddsa-sim train "${args[@]}" > "$run.log" 2>&1
    echo "branch ${DST}_s$seed $(( $(date +%s) - t0 )) s (load $(cut -d' ' -f1-3 /proc/loadavg))" >> "$OUT/timings.txt"
    touch "$run.done"
}

pids=()
for seed in $SEEDS; do
    if [[ $PARALLEL == 1 ]]; then branch_run "$seed" & pids+=($!); else branch_run "$seed"; fi
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
