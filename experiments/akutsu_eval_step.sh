#!/usr/bin/env bash
# One trained akutsu2020 model through the issue-20 checks (docs/AKUTSU.md, "The CPU run"), each result
# under benchmarks/results/akutsu/ with TAG in its name:
#   experiments/akutsu_eval_step.sh MODEL TAG [kodak|val|size|roundtrips|crops ...]   (default: size kodak val)
#   size        experiments/akutsu_size_check.py: whole image against its 256² tiles (bpp, |H_d|, PSNR, RGB means)
#   kodak       eval.py on Kodak-24, real files, main and fused decoders, metrics inside the masks too
#   val         the same on shared/data/val (the CPU run's validation images)
#   roundtrips  experiments/akutsu_roundtrips.py: 24 Kodak images, encoder and both decoders in 3 processes
#   crops       experiments/akutsu_crops.py: the side-by-side figure at equal rate
# Masks: $KODAK_MASKS (default ~/lic_runs/kodak_masks) and $VAL_MASKS (~/lic_runs/akutsu-masks/val), made by
# `python -m lic_jax.train.labels DIR --out MASKS`. Runs niced (NICE, default 5) beside a training run.
# DECODERS (default "main fused"): "main" for the ablation (b) model, whose G_s never trained.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:?usage: $0 MODEL TAG [kodak|val|size|roundtrips|crops ...]}
TAG=${2:?usage: $0 MODEL TAG [kodak|val|size|roundtrips|crops ...]}
shift 2
PARTS=("$@"); [[ ${#PARTS[@]} -gt 0 ]] || PARTS=(size kodak val)
PY=${PYTHON:-.venv/bin/python}
RES=benchmarks/results/akutsu
KODAK_MASKS=${KODAK_MASKS:-$HOME/lic_runs/kodak_masks}
VAL_MASKS=${VAL_MASKS:-$HOME/lic_runs/akutsu-masks/val}
SHARED=${LIC_JAX_SHARED:-$(cd .. && pwd)/shared}
export LIC_JAX_SHARED=$SHARED
[[ -f $MODEL/config.json ]] || { echo "$0: $MODEL is not a model directory (no config.json)" >&2; exit 2; }
run() { echo "== $(date -u +%T) $*"; nice -n "${NICE:-5}" "$@"; }
evaluate() {  # data set, masks, result name
  for dec in ${DECODERS:-main fused}; do
    [[ $dec == main || $dec == fused ]] || { echo "$0: DECODERS: main and/or fused, got $dec" >&2; exit 2; }
    local d=(); [[ $dec == fused ]] && d=(--decoder synthesis_fused)
    run "$PY" eval.py run --checkpoint "$MODEL" --dataset "$1" --masks "$2" --metrics psnr-rgb,ms-ssim-rgb \
      "${d[@]}" --name "akutsu2020 $TAG $dec" --no-progress --out "$RES/$3_${TAG}_$dec.json"
  done
}
for part in "${PARTS[@]}"; do
  case $part in
    size) run "$PY" experiments/akutsu_size_check.py --model "$MODEL" --out "$RES/size_check_$TAG.json" ;;
    kodak) evaluate kodak "$KODAK_MASKS" kodak ;;
    val) evaluate "$SHARED/data/val" "$VAL_MASKS" val ;;
    roundtrips) run "$PY" experiments/akutsu_roundtrips.py --model "$MODEL" --dataset kodak --out "$RES/roundtrips_$TAG.json" ;;
    crops) run "$PY" experiments/akutsu_crops.py --model "$MODEL" --dataset kodak --masks "$KODAK_MASKS" --out "$RES/crops_$TAG" ;;
    *) echo "$0: unknown part $part (kodak, val, size, roundtrips, crops)" >&2; exit 2 ;;
  esac
done
