#!/usr/bin/env bash
# The Circle of Willis at the published network's size, in one call of a lent GPU (docs/results.md, v26).
#
# Every CPU version since v22 ends on the same next run: the published network size (fit_cow_w64_d5.yaml: 82 M
# parameters, 64x the 16-channel networks of v22-v25) trained for as many steps as v24's chain, on the same
# data, scored as v23-v25. This script is that run, so that a session lent a GPU spends its device minutes on it:
#
#   bash experiments/duan/gpu_cow.sh prepare     # here, once, with PyPI reachable (about 10 minutes)
#       .whl/         wheels of the packages the device image lacks that these commands import, at this
#                     environment's versions; SpekPy without its tables (164 MB): only a spectrum or an energy
#                     grid missing from the cache imports SpekPy
#       .ddsa-cache/  this machine's spectra and attenuation caches and the pytigre tarball (docs/export.md)
#       then exports both stores here as on the device, with SpekPy and the packages not carried (ABSENT)
#       unimportable and the carried cache as the cache: the check that nothing else is needed (where it
#       fails, the cache is filled here and the check run again)
#   device run: command "bash experiments/duan/gpu_cow.sh run", carry [".whl", ".ddsa-cache"], timeout_s 590
#
# `run` installs the wheels (where zarr is missing), exports fit_cow_heads_many (12 heads, v23) and the TIGRE
# Circle of Willis set on the machine's cores, trains fit_cow_w64_d5.yaml (seed 0) in stages to each step
# count of STAGES while the time left allows the next one (its time estimated from the last stage's rate), and
# scores every stage's optimiser's weights and the last stage's weight average as v23-v25 (TTA; the TIGRE set,
# 32 frames, and the validation head, 64), plus vessel_error.py on the last. Results: $OUT (the device tool's
# folder; default out/gpu_cow/results) gets stages.txt (one line per stage: exit status, seconds) and
# gpu_cow.tar.gz (every JSON, log and PNG), both rewritten after each stage, so a run cut short returns what
# it finished. Checkpoints stay on the device (1.2 GB each).
#
# Environment: BUDGET_S (default 540: seconds from the start until the last stage must end), STAGES (default
# "3000 6000 12000 24000 30000"), DEVICE (auto), EXPORT_COUNT (samples per store; default the configs'),
# VAL_SAMPLES (64), PYTHON (.venv/bin/python where there is one, else python3). A dry run on the CPU, a few minutes:
#   SMOKE=1 bash experiments/duan/gpu_cow.sh run    # EXPORT_COUNT=8, STAGES="10 20", VAL_SAMPLES=4, the CPU
set -uo pipefail

cd "$(dirname "$0")/../.."
PY=${PYTHON:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3)}  # .venv does not travel
WHEELS=.whl
CACHE=.ddsa-cache
WORK=out/gpu_cow
TRAIN_CONFIG=experiments/duan/fit_cow_heads_many.yaml
COW_CONFIG=experiments/duan/test_ood_generator_cow_static.yaml
NET_CONFIG=experiments/duan/fit_cow_w64_d5.yaml
# what the device image lacks of setup.cfg's requirements and theirs (docs of the device tool: its package list)
PACKAGES="zarr numcodecs donfig google-crc32c killeengeo kornia kornia_rs pydantic pydantic_core annotated-types
typing-inspection typing_extensions pytorch-msssim spekpy xraydb sqlalchemy platformdirs"
# imported only for other commands (CT and DICOM files, 3-D views, videos): not carried, the tree's 64 MiB are short
ABSENT="nibabel pydicom pyvista imageio_ffmpeg"

die() { echo "error: $*" >&2; exit 2; }

prepare() {
    local pins
    pins=$($PY -c "
import importlib.metadata as m, sys
print(' '.join(f'{p}=={m.version(p)}' for p in sys.argv[1:]))" $PACKAGES) || die "a package of PACKAGES is not installed here"
    rm -rf "$WHEELS" && mkdir -p "$WHEELS"
    # shellcheck disable=SC2086
    $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$WHEELS" $pins || die "pip download failed"
    $PY - "$WHEELS" <<'EOF' || die "could not strip SpekPy's tables"
import pathlib, sys, zipfile
(wheel,) = pathlib.Path(sys.argv[1]).glob("spekpy-*.whl")
stripped = wheel.with_suffix(".tmp")
with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(stripped, "w", zipfile.ZIP_DEFLATED) as dst:
    for info in src.infolist():
        if "/data/tables/" in info.filename:
            continue
        data = src.read(info)
        if info.filename.endswith(".dist-info/RECORD"):  # list only what the wheel still holds
            data = b"".join(line for line in data.splitlines(keepends=True) if b"/data/tables/" not in line)
        dst.writestr(info, data)
stripped.replace(wheel)
EOF
    local home=${DDSA_SIM_CACHE_DIR:-$HOME/.cache/ddsa-sim}
    rm -rf "$CACHE" && mkdir -p "$CACHE"
    cp -r "$home/spectra" "$home/attenuation" "$CACHE/" || die "no spectra/attenuation cache in $home"
    cp "${DDSA_SIM_PYTIGRE_TARBALL:-$home/pytigre-0.1.8.tar.gz}" "$CACHE/" || die "no pytigre tarball (docs/export.md)"
    # the cache check: both exports as on the device (the packages not carried and SpekPy unimportable, the
    # carried cache as the cache); where it fails, the exports once with SpekPy fill the cache, then the check again
    local blocked fill
    blocked=$(mktemp -d) fill=$(mktemp -d)
    for m in $ABSENT spekpy; do
        mkdir -p "$blocked/$m"
        echo "raise ImportError('$m: not importable on the device')" > "$blocked/$m/__init__.py"
        [[ $m == spekpy ]] || cp -r "$blocked/$m" "$fill/"
    done
    exports() {  # exports PYTHONPATH
        rm -rf "$WORK/check"
        for cfg in "$TRAIN_CONFIG" "$COW_CONFIG"; do
            PYTHONPATH=$1 DDSA_SIM_CACHE_DIR=$PWD/$CACHE DDSA_SIM_PYTIGRE_TARBALL=$PWD/$CACHE/pytigre-0.1.8.tar.gz \
                $PY -m ddsa_sim.cli export "$cfg" -o "$WORK/check/$(basename "$cfg" .yaml).zarr" --workers "$(nproc)" || return 1
        done
    }
    if ! exports "$blocked"; then
        echo "the carried cache lacks something (above): filling it with this machine's SpekPy, then checking again"
        exports "$fill" || die "the exports fail here (above)"
        exports "$blocked" || die "the exports need more than what travels (above)"
    fi
    rm -rf "$blocked" "$fill" "$WORK/check"
    local carried tree
    carried=$(du -cb "$WHEELS" "$CACHE" | tail -1 | cut -f1)
    tree=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
    echo "travels: $carried bytes carried and $tree of tracked files, $((carried + tree)) of the device tool's 67108864"
    (( carried + tree < 67108864 )) || die "more than 64 MiB would travel"
}

run() {
    if [[ ${SMOKE:-0} == 1 ]]; then
        : "${EXPORT_COUNT:=8}" "${STAGES:=10 20}" "${VAL_SAMPLES:=4}" "${DEVICE:=cpu}" "${BUDGET_S:=3600}"
    fi
    local budget=${BUDGET_S:-540} stages=${STAGES:-3000 6000 12000 24000 30000} device=${DEVICE:-auto}
    local results=${OUT:-$WORK/results} start=$SECONDS
    mkdir -p "$results" "$WORK/logs" "$WORK/eval"
    : > "$WORK/stages.txt"
    note() { echo "$*" | tee -a "$WORK/stages.txt"; cp "$WORK/stages.txt" "$results/"; }
    pack() { tar czf "$results/gpu_cow.tar.gz" -C "$WORK" stages.txt logs eval; }
    stage() {  # stage NAME LIMIT_S COMMAND...: run it under a time limit, log it, note its status
        local name=$1 limit=$2; shift 2
        local t0=$SECONDS
        timeout "$limit" "$@" > "$WORK/logs/$name.log" 2>&1
        local rc=$?
        note "$name rc=$rc $((SECONDS - t0)) s (limit $limit s, $((SECONDS - start)) s in)"
        pack
        return $rc
    }
    left() { local l=$((budget - (SECONDS - start))); echo $((l > 1 ? l : 1)); }  # timeout 0 would mean no limit

    if ! $PY -c "import zarr" 2>/dev/null; then
        [[ -d $WHEELS ]] || die "zarr is missing and there is no $WHEELS: run 'prepare' here and carry $WHEELS"
        $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
            "$WHEELS"/*.whl || die "wheel install failed"
        export PYTHONPATH=/tmp/site
    fi
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
    [[ -d $CACHE ]] && export DDSA_SIM_CACHE_DIR=$PWD/$CACHE DDSA_SIM_PYTIGRE_TARBALL=$PWD/$CACHE/pytigre-0.1.8.tar.gz
    note "start $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')," \
         "$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || echo 'no GPU'), budget $budget s"
    $PY -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__)" | tee -a "$WORK/stages.txt"

    local count=() data=$WORK/data
    [[ -n ${EXPORT_COUNT:-} ]] && count=(--count "$EXPORT_COUNT")
    for cfg in "$TRAIN_CONFIG" "$COW_CONFIG"; do
        local name
        name=$(basename "$cfg" .yaml)
        [[ -f $data/$name.done ]] && continue
        rm -rf "$data/$name.zarr"
        stage "export_$name" "$(left)" $PY -m ddsa_sim.cli export "$cfg" -o "$data/$name.zarr" --workers "$(nproc)" \
            "${count[@]}" || die "export of $cfg failed ($WORK/logs/export_$name.log)"
        touch "$data/$name.done"
    done

    local run=$WORK/run prev=0 rate="" eval_s=0 n
    score() {  # score STEP WEIGHTS: both sets, as v23-v25 (TTA); WEIGHTS stepped (the optimiser's) or model
        local flag=()
        [[ $2 == stepped ]] && flag=(--stepped)
        stage "score_$1_$2" "$(left)" bash -c "
            $PY -m ddsa_sim.cli evaluate $run/last.pt ${flag[*]} --data $data/test_ood_generator_cow_static.zarr --tta \
                --out-png $WORK/eval/$1_cow_$2.png > $WORK/eval/$1_cow_$2.json &&
            $PY -m ddsa_sim.cli evaluate $run/last.pt ${flag[*]} --data $data/fit_cow_heads_many.zarr --split val \
                --max-samples ${VAL_SAMPLES:-64} --tta --out-png $WORK/eval/$1_val_$2.png > $WORK/eval/$1_val_$2.json"
    }
    for n in $stages; do
        if [[ -n $rate ]]; then  # the next stage at the last rate, its scoring, and the last stage's extra scoring after it
            local need
            need=$(awk -v s=$((n - prev)) -v r="$rate" -v e="$eval_s" 'BEGIN {printf "%d", s / r + 2 * e + 30}')
            if (( need > $(left) )); then note "stop before $n steps: about $need s needed, $(left) s left"; break; fi
        fi
        local t0=$SECONDS resume=()
        [[ -f $run/last.pt ]] && resume=(--resume)
        stage "train_$n" "$(left)" $PY -m ddsa_sim.cli train "$NET_CONFIG" --data "$data/fit_cow_heads_many.zarr" \
            -o "$run" "${resume[@]}" --max-steps "$n" --device "$device" || break
        rate=$(awk -v s=$((n - prev)) -v t=$((SECONDS - t0)) 'BEGIN {printf "%.3f", s / (t > 0 ? t : 1)}')
        prev=$n
        t0=$SECONDS
        score "$n" stepped || break
        eval_s=$((SECONDS - t0))
    done
    # the last stage trained: its weight average too, and where the error lies
    if (( prev > 0 )); then
        score "$prev" model
        stage vessel_error "$(left)" $PY experiments/duan/vessel_error.py "$run/last.pt" \
            --data "$data/test_ood_generator_cow_static.zarr" --tta -o "$WORK/eval/vessel_error_cow.json" \
            --png "$WORK/eval/vessel_error_cow.png"
    fi
    note "end $(date -u +%Y-%m-%dT%H:%M:%SZ), $((SECONDS - start)) s"
    pack
}

case ${1:-} in
    prepare) prepare ;;
    run) run ;;
    *) die "usage: $0 prepare | run" ;;
esac
