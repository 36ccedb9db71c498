#!/usr/bin/env bash
# The recorded distillation run: a teacher and the five VITA-VLA student variants trained on
# scripted demos; an evaluation chain beside the training evaluates each checkpoint as soon as it
# exists (one evaluation at a time); then the table of reports/ablations/vita_vla_variants.toml.
#   DATA="runs/distill/demos_a.hdf5 runs/distill/demos_b.hdf5" scripts/distill_variants.sh
# Re-running continues: finished stages (lineage.json present) are skipped, interrupted ones
# resume from their train_state.pt, finished evaluations are reused. Wall times go to
# $OUT/wall_times.tsv, logs to $OUT/logs/.
set -euo pipefail
OUT=runs/distill  # the checkpoint paths in the ablation spec live here
CK=$OUT/ckpt
HISTORY=${HISTORY:-4}
TEACHER_STEPS=${TEACHER_STEPS:-1000}
ALIGN_STEPS=${ALIGN_STEPS:-200}
FINETUNE_STEPS=${FINETUNE_STEPS:-400}
LR=${LR:-1e-3}
SPEC=reports/ablations/vita_vla_variants.toml
VB=(nice -n 5 .venv/bin/vitabench)
data_args=()
for file in ${DATA:?set DATA to the demo files}; do data_args+=(--data "$file"); done
mkdir -p "$CK" "$OUT/logs" "$OUT/ablation"
export OMP_NUM_THREADS=1 MUJOCO_GL=${MUJOCO_GL:-egl}

source "$(dirname "$0")/timed.sh"  # timed NAME COMMAND...

stage() {  # stage NAME COMMAND...: train into $CK/NAME unless it is finished
  local name=$1
  shift
  [[ -f "$CK/$name/lineage.json" ]] || timed "$name" "$@" --out "$CK/$name" --resume
}

evaluate() {  # evaluate VARIANT POLICY ARGS...: once its checkpoint exists, the run `vitabench ablate` reuses
  local variant=$1 policy=$2
  shift 2
  until [[ -f "$CK/$variant/lineage.json" ]]; do sleep 20; done
  timed "eval_$variant" "${VB[@]}" run --policy "$policy" "$@" --suite libero_object --tasks 0 \
    --episodes-per-task 5 --protocol distill_64 --max-steps 150 --workers 2 --label "$variant" --quiet \
    --out "$OUT/ablation/$variant/libero_object" --resume
}

evaluations() {
  evaluate teacher teacher --policy-arg "checkpoint=$CK/teacher" --policy-arg ensemble=0.01
  for variant in two_stage only_ft freeze_vlm no_state_encoder no_action_token; do
    evaluate "$variant" vita_vla --policy-arg "checkpoint=$CK/$variant"
  done
}

evaluations &
evals=$!
train=(--steps "$FINETUNE_STEPS" --batch-size 8 --lr "$LR" --seed 0 --checkpoint-every 100)
align=(--steps "$ALIGN_STEPS" --batch-size 8 --lr "$LR" --seed 0 --checkpoint-every 100)
stage teacher "${VB[@]}" train teacher "${data_args[@]}" --preset tiny --history "$HISTORY" \
  --steps "$TEACHER_STEPS" --batch-size 16 --lr "$LR" --seed 0 --checkpoint-every 200
stage align "${VB[@]}" distill --stage align --teacher "$CK/teacher" --backbone tiny "${data_args[@]}" "${align[@]}"
stage two_stage "${VB[@]}" distill --stage finetune --from "$CK/align" "${data_args[@]}" "${train[@]}"
stage only_ft "${VB[@]}" distill --stage finetune --teacher "$CK/teacher" --backbone tiny "${data_args[@]}" "${train[@]}"
stage freeze_vlm "${VB[@]}" distill --stage finetune --from "$CK/align" --freeze-vlm "${data_args[@]}" "${train[@]}"
stage align_no_state "${VB[@]}" distill --stage align --no-state-encoder --teacher "$CK/teacher" --backbone tiny "${data_args[@]}" "${align[@]}"
stage no_state_encoder "${VB[@]}" distill --stage finetune --no-state-encoder --from "$CK/align_no_state" "${data_args[@]}" "${train[@]}"
stage align_no_token "${VB[@]}" distill --stage align --no-action-token --teacher "$CK/teacher" --backbone tiny "${data_args[@]}" "${align[@]}"
stage no_action_token "${VB[@]}" distill --stage finetune --no-action-token --from "$CK/align_no_token" "${data_args[@]}" "${train[@]}"
wait $evals

"${VB[@]}" ablate "$SPEC" --out "$OUT/ablation" | tee "$OUT/ablation_table.txt"
"${VB[@]}" ablate "$SPEC" --out "$OUT/ablation" --format md > "$OUT/ablation_table.md"
