#!/usr/bin/env bash
# Duan's experiment at CPU scale, with physics ablations and an out-of-distribution protocol (issue 17;
# results and the protocol: docs/results.md, "Duan's experiment at CPU scale").
#   1. cut the builtin chest CT into 6 disjoint slabs (git-ignored out/chest_slabs),
#   2. export one training set per ablation row (experiments/duan/train_{a..q}.yaml: published L-system
#      design, 16 poses per skeleton), one common full-physics test set and the out-of-distribution test
#      sets, each with motion and without (experiments/duan/test_*.yaml, written by make_configs.py; and
#      test_common_fed, row q's diagnostic, and test_common_fine, the pixel scale's),
#   3. train the U-Net (experiments/duan/unet.yaml) per row and seed, the training variants of EXTRA (e.g.
#      anatomy superposition, experiments/duan/unet_sup.yaml) on their rows, and the U-Net-WGAN
#      (experiments/duan/unet_wgan.yaml) on row GAN_ROW, started from the U-Net of the same seed,
#   4. evaluate every model on every test set (ddsa_sim.training.evaluate.evaluate_checkpoint, the code of
#      `ddsa-sim evaluate`, one process for all pairs) and write the table (mean +- std over seeds); the
#      same with test-time augmentation (`ddsa-sim evaluate --tta`) into table_tta.md, the U-Net-WGANs' last.pt
#      (table_last.md, table_last_tta.md), and each network on 64 of its own training images (table_fit_tta.md),
#   5. score estimators that know the anatomy on every test set (experiments/duan/references.py): what the
#      targets ask beyond removing the anatomy.
#
#   bash experiments/duan_ablation.sh [OUT_DIR]          # default OUT_DIR=out/duan
#
# Environment: ROWS (default "a b c d e f g h i j k l m n p o q"), SEEDS (U-Net seeds, default "0 1 2"), GAN_SEEDS (U-Net-WGAN
# seeds, default "0 1 2"; "" skips it), GAN_ROW (its row, default f), EXTRA (further trainings NET:ROW, the
# config experiments/duan/NET.yaml on row ROW's data, default "unet_sup:f unet_sup:i unet_sup_cos:i
# unet_vsup:i unet_dose:i unet_sup4k:j unet_sup4k:k unet_dose:k unet_d4:e unet_dose_d4:k", in this order: a
# variant's warm-up (WARMUP below) or the network a U-Net-WGAN variant fine-tunes (GAN_FROM) comes before it;
# "" skips them), TTA (default 1; "" skips
# the test-time-augmentation evaluation), TESTS (test-set stems, default all), WORKERS (export processes,
# default 1), DEVICE (train on it: auto, cpu or cuda; default each config's, cpu), MAX_STEPS (override
# optim.max_steps of both nets; a smoke test:
# ROWS=a SEEDS=0 GAN_SEEDS= TESTS=test_common MAX_STEPS=5 bash experiments/duan_ablation.sh /tmp/duan_smoke).
# Every stage resumes: a finished store, run or evaluation is kept, an interrupted export resumes.
# Needs the pytigre 0.1.8 source tarball for the head test sets (DDSA_SIM_PYTIGRE_TARBALL, docs/export.md).
# Run from the repository root with the ddsa-sim environment active. Everything runs niced, one at a time.
set -euo pipefail

cd "$(dirname "$0")/.."
OUT=${1:-out/duan}
ROWS=${ROWS:-a b c d e f g h i j k l m n p o q}  # a warm-up row (START_FROM) before the rows it starts
SEEDS=${SEEDS:-0 1 2}
GAN_SEEDS=${GAN_SEEDS-0 1 2}
GAN_ROW=${GAN_ROW:-f}
EXTRA=${EXTRA-unet_sup:f unet_sup:i unet_sup_cos:i unet_vsup:i unet_dose:i unet_sup4k:j unet_sup4k:k unet_dose:k unet_d4:e unet_dose_d4:k}
TTA=${TTA-1}
WORKERS=${WORKERS:-1}
ALL_TESTS=$(cd experiments/duan && ls test_*.yaml | sed 's/\.yaml$//' | tr '\n' ' ')
TESTS=${TESTS:-$ALL_TESTS}
NICE=(nice -n 5)
mkdir -p "$OUT/data" "$OUT/runs" "$OUT/eval"
TIMES=$OUT/timings.txt

stage() {  # stage NAME COMMAND...: run it niced, print and record its wall time and the load average
    local name=$1; shift
    echo "== $name: $*" >&2
    local t0; t0=$(date +%s.%N)
    "${NICE[@]}" "$@"
    local dt; dt=$(python -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$t0" "$(date +%s.%N)")
    echo "$name ${dt} s (load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$TIMES" >&2
}

export_store() {  # export_store STEM: experiments/duan/STEM.yaml -> $OUT/data/STEM.zarr (resumes)
    local stem=$1 store=$OUT/data/$1.zarr
    [[ -f $store.done ]] && return 0
    local args=(experiments/duan/$stem.yaml -o "$store" --workers "$WORKERS")
    [[ -d $store ]] && args+=(--resume)
    stage "export $stem" ddsa-sim export "${args[@]}"
    ddsa-sim inspect "$store" > "$store.inspect.txt"
    touch "$store.done"
}

# rows whose U-Net starts from another row's trained U-Net of the same seed (row f: from scratch, two of two
# seeds stayed at the all-zero image for 2000 steps; docs/results.md)
declare -A START_FROM=([f]=e [i]=e [j]=e [k]=e [l]=e [n]=m [o]=p [q]=m)
# the warm-up network of a training variant on a START_FROM row (default unet): one of the same architecture
declare -A WARMUP=([unet_dose_d4]=unet_d4 [unet_dose_w16]=unet_w16 [unet_dose_d4_p128]=unet_d4
                  [unet_dose_d4_p128_ema]=unet_d4 [unet_dose_d4_p128_cos]=unet_d4 [unet_dose_d4_p128_cos_ema]=unet_d4
                  [unet_dose_d4_p128_ema_w16]=unet_d4_w16)
# a U-Net-WGAN starts from the trained network of the same row and seed that it fine-tunes
declare -A GAN_FROM=([unet_wgan]=unet [unet_w16_wgan]=unet_w16 [unet_dose_wgan]=unet_dose [unet_dose_w16_wgan]=unet_dose_w16)

train_run() {  # train_run NET ROW SEED: $OUT/runs/NET_ROW_sSEED (config with seed SEED)
    local net=$1 row=$2 seed=$3 run=$OUT/runs/$1_$2_s$3
    [[ -f $run.done ]] && return 0
    # unet_cont: the control of a START_FROM row, the U-Net of ROW continued on ROW's data (unet.yaml)
    printf 'base: %s\nseed: %s\n' "$PWD/experiments/duan/${net%_cont}.yaml" "$seed" > "$run.yaml"
    # the U-Net-GANs and the control start from a trained network of the same row and seed, a START_FROM row
    # from its warm-up on the row it starts from
    local init=
    if [[ -n ${GAN_FROM[$net]:-} ]]; then init=${GAN_FROM[$net]}_$row
    elif [[ $net == unet_cont ]]; then init=unet_$row
    elif [[ -n ${START_FROM[$row]:-} ]]; then init=${WARMUP[$net]:-unet}_${START_FROM[$row]}
    fi
    [[ -n $init ]] && echo "init_from: $OUT/runs/${init}_s$seed/best.pt" >> "$run.yaml"
    local args=("$run.yaml" --data "$OUT/data/train_$row.zarr" -o "$run")
    [[ -n "${MAX_STEPS:-}" ]] && args+=(--max-steps "$MAX_STEPS")
    [[ -n "${DEVICE:-}" ]] && args+=(--device "$DEVICE")
    if [[ -f $run/last.pt ]]; then args+=(--resume); else args+=(--overwrite); fi
    stage "train ${net}_${row}_s$seed" ddsa-sim train "${args[@]}"
    touch "$run.done"
}

echo "start $(date -u +%Y-%m-%dT%H:%M:%SZ) commit $(git rev-parse --short HEAD) on $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$TIMES" >&2

[[ -f out/chest_slabs/chest_z2L.nii.gz ]] || stage prepare python experiments/prepare_chest_slabs.py out/chest_slabs

for row in $ROWS; do export_store "train_$row"; done
for stem in $TESTS; do export_store "$stem"; done

for row in $ROWS; do
    for seed in $SEEDS; do train_run unet "$row" "$seed"; done
done
for item in $EXTRA; do
    if [[ " $ROWS " == *" ${item#*:} "* ]]; then
        for seed in $SEEDS; do train_run "${item%%:*}" "${item#*:}" "$seed"; done
    fi
done
for row in "${!START_FROM[@]}"; do  # the same number of steps from the same start without the row's data
    if [[ " $ROWS " == *" $row "* ]]; then
        for seed in $SEEDS; do train_run unet_cont "${START_FROM[$row]}" "$seed"; done
    fi
done
if [[ " $ROWS " == *" $GAN_ROW "* ]]; then
    for seed in $GAN_SEEDS; do train_run unet_wgan "$GAN_ROW" "$seed"; done
fi

stage evaluate python experiments/duan/evaluate_all.py "$OUT" --tests $TESTS
python experiments/duan/table.py "$OUT" > "$OUT/table.md"
# the U-Net-WGANs' last.pt too: their best.pt is the network they start from until a validation check beats it,
# which none did in v10 (docs/results.md), so best.pt alone would report that network again
GANS="unet_wgan_$GAN_ROW"
for item in $EXTRA; do [[ ${item%%:*} == *wgan* ]] && GANS+=" ${item%%:*}_${item#*:}"; done
stage evaluate_last python experiments/duan/evaluate_all.py "$OUT" --tests $TESTS --checkpoint last --runs $GANS
if [[ -d $OUT/eval_last ]]; then python experiments/duan/table.py "$OUT" --checkpoint last > "$OUT/table_last.md"; fi
if [[ -n $TTA ]]; then  # the same with test-time augmentation (8 passes per image)
    stage evaluate_tta python experiments/duan/evaluate_all.py "$OUT" --tests $TESTS --tta
    python experiments/duan/table.py "$OUT" --tta > "$OUT/table_tta.md"
    stage evaluate_last_tta python experiments/duan/evaluate_all.py "$OUT" --tests $TESTS --checkpoint last --tta --runs $GANS
    if [[ -d $OUT/eval_last_tta ]]; then python experiments/duan/table.py "$OUT" --checkpoint last --tta > "$OUT/table_last_tta.md"; fi
    # how well each network fits its own training images (64 per run, the same metrics)
    stage evaluate_fit python experiments/duan/evaluate_all.py "$OUT" --fit --tta
    python experiments/duan/table.py "$OUT" --fit --tta > "$OUT/table_fit_tta.md"
fi
stage references python experiments/duan/references.py "$OUT" -o "$OUT/references.png" > "$OUT/references.md"
stage figure python experiments/duan/figure.py "$OUT" -o "$OUT/ood_grid.png"
cat "$OUT/table.md"
echo "timings: $TIMES; tables: $OUT/table.md, $OUT/table_tta.md (the U-Net-WGANs' last.pt: table_last*.md); references: $OUT/references.md; figure: $OUT/ood_grid.png" >&2
