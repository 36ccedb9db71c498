#!/usr/bin/env bash
# The recorded PVA transfer run (reports/transfer/README.md): the PVA pipeline on libero_object
# tasks 0-4 under vita_vla_128 (scenes rendered along scripted-expert episodes from the demo init
# states 0-5 in the canonical and seen domains; a small CLIP trained on them; prompts tuned; the
# aligner trained), then each shipped policy with and without the aligner on the canonical
# domain, two seen and two unseen domains: 20 episodes per cell, the teacher's held-out init
# states 30-33 of each task, temporal ensembling 0.01 as in their recorded evaluations.
#   bash scripts/pva_transfer.sh                         # every stage not yet finished (re-runnable)
#   POLICIES=teacher_libero_object bash scripts/pva_transfer.sh   # one policy's cells only
#   ALIGNER=reports/transfer/aligner bash scripts/pva_transfer.sh  # the recorded aligner, no pipeline
#   DOMAINS=seen,unseen bash scripts/pva_transfer.sh     # other domains or sets (one run each)
# Stages skip when their output exists; evaluations resume; wall times go to $OUT/wall_times.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/pva}
ALIGNER=${ALIGNER:-$OUT/aligner}
POLICIES=${POLICIES:-"teacher_libero_object vita_vla_libero_object"}
DOMAINS=${DOMAINS:-canonical,seen/dim,seen/warm_light,unseen/dusk,unseen/green_room}
PROTOCOL=vita_vla_128
VB=.venv/bin/vitabench
export MUJOCO_GL=${MUJOCO_GL:-egl}
mkdir -p "$OUT/logs"

source scripts/timed.sh  # timed NAME COMMAND... (the repository root is the working directory)

render() {  # render FILE ARGS...: domain images along expert episodes unless FILE exists
  local file=$1
  shift
  [[ -f "$file" ]] || { timed "render_$(basename "$file" .npz)" $VB pva render --suite libero_object --tasks 0-4 \
    --protocol $PROTOCOL --steps 120 --out "$file.part.npz" "$@" && mv "$file.part.npz" "$file"; }
}

if [[ ! -f "$ALIGNER/aligner.json" ]]; then  # the pipeline, unless an aligner is given
  render "$OUT/seen.npz" --domains canonical,seen --init-states 0-5 --every 10
  render "$OUT/unseen.npz" --domains canonical,unseen --init-states 30-31 --every 20  # for pva check only
  [[ -f "$OUT/clip/config.json" ]] || timed train_clip $VB pva train-clip --data "$OUT/seen.npz" --out "$OUT/clip" --steps 400
  [[ -f "$OUT/prompts/prompts.json" ]] || timed tune_prompts $VB pva tune-prompts --data "$OUT/seen.npz" --clip "$OUT/clip" \
    --out "$OUT/prompts" --steps 200
  timed align $VB pva align --data "$OUT/seen.npz" --prompts "$OUT/prompts" --out "$ALIGNER" --steps 400
  [[ -f "$OUT/check.md" ]] || {
    $VB pva check --aligner "$ALIGNER" --data "$OUT/seen.npz" > "$OUT/check.md"
    $VB pva check --aligner "$ALIGNER" --data "$OUT/unseen.npz" | tail -n +3 >> "$OUT/check.md"
  }
fi

for checkpoint in $POLICIES; do
  policy=$($VB list checkpoints --json | .venv/bin/python -c \
    "import json, sys; print(next(c['policy'] for c in json.load(sys.stdin) if c['name'] == sys.argv[1]))" "$checkpoint")
  LP_NUM_THREADS=1 timed "evaluate_$checkpoint" $VB pva evaluate --policy "$policy" --policy-arg "checkpoint=$checkpoint" \
    --policy-arg ensemble=0.01 --aligner "$ALIGNER" --suite libero_object --tasks 0-4 --domains $DOMAINS \
    --episodes-per-task 4 --protocol $PROTOCOL --workers 2 --out "$OUT/eval/$checkpoint"
  $VB transfer "$OUT"/eval/"$checkpoint"/*/* > "$OUT/transfer_$checkpoint.md"
done
