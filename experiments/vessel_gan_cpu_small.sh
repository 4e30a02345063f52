#!/usr/bin/env bash
# Train both vessel GANs on voxelized procedural trees on the CPU and score them (docs/results.md).
#   experiments/vessel_gan_cpu_small.sh [OUT]      (default OUT=runs/vessel_gan_cpu_small)
# Data: 160 L-system trees (root diameter 8 mm: vessels about 4 voxels across; seeds 0..159; 32^3 voxels
# at 1 mm) for training, a held-out draw of 128 (seeds 30000..) that picks best.pt (--val-data), and two
# held-out draws of 64 (seeds 10000.., 20000..) as the reference and the real-vs-real floor. The two
# trainings run one after the other, niced, one thread each, each stopping after max_minutes of its config; then
# experiments/vessel_gan_score.py writes OUT/scores.{json,md} and IMG_DIR/gan_{wgan,stylegan}.png
# (default IMG_DIR=docs/img). AMP_CPU=1 trains in bfloat16 (the configs with `amp_cpu: true`, written to
# OUT/vessel_KIND.yaml): 2-2.4x the steps in the same minutes on a CPU with bfloat16 instructions
# (docs/benchmarks.md); no gain expected on one without (not measured).
set -euo pipefail
OUT=${1:-runs/vessel_gan_cpu_small}
IMG_DIR=${IMG_DIR:-docs/img}
TREE="-p root_diameter_mm=8 -p length_diameter_ratio=3 -p iterations=5"
mkdir -p "$OUT"
for part in "train 0 160" "select 30000 128" "reference 10000 64" "floor 20000 64"; do
  set -- $part
  [ -d "$OUT/data/$1" ] || nice -n 10 ddsa-sim vessels gan-data -o "$OUT/data/$1" -n "$3" --seed "$2" \
    --shape 32 --spacing-mm 1 $TREE
done
for kind in wgan stylegan; do
  config="experiments/vessel_${kind}_cpu_small.yaml"
  if [ "${AMP_CPU:-0}" = 1 ]; then
    { cat "$config"; echo "amp_cpu: true"; } > "$OUT/vessel_${kind}.yaml"
    config="$OUT/vessel_${kind}.yaml"
  fi
  nice -n 10 ddsa-sim vessels gan-train "$config" --data "$OUT/data/train" \
    --val-data "$OUT/data/select" -o "$OUT/$kind" > "$OUT/$kind.log" 2>&1
  tail -n 1 "$OUT/$kind.log" | tee "$OUT/$kind/train.log"
done
nice -n 10 python experiments/vessel_gan_score.py --reference "$OUT/data/reference" --floor "$OUT/data/floor" \
  --runs "$OUT/wgan" "$OUT/stylegan" -o "$OUT" --img-dir "$IMG_DIR"
