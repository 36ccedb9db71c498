#!/usr/bin/env bash
# The recorded distillation run: a teacher and the five VITA-VLA student variants trained on
# scripted demos, each evaluated as soon as it exists (one evaluation at a time, beside the
# training), then the ablation table of reports/ablations/vita_vla_variants.toml.
#   DATA="runs/distill/demos_a.hdf5 runs/distill/demos_b.hdf5" scripts/distill_variants.sh
# Wall times go to $OUT/wall_times.tsv, logs to $OUT/logs/.
set -euo pipefail
OUT=${OUT:-runs/distill}
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

timed() {  # timed NAME COMMAND...: run, log, append the wall time
  local name=$1 start
  shift
  start=$(date +%s)
  "$@" > "$OUT/logs/$name.log" 2>&1
  printf '%s\t%s\n' "$name" "$(( $(date +%s) - start ))" >> "$OUT/wall_times.tsv"
}

evaluate() {  # evaluate VARIANT POLICY ARGS...: the run `vitabench ablate` reuses
  local variant=$1 policy=$2
  shift 2
  timed "eval_$variant" "${VB[@]}" run --policy "$policy" "$@" --suite libero_object --tasks 0 \
    --episodes-per-task 10 --protocol distill_64 --max-steps 180 --workers 2 --label "$variant" --quiet \
    --out "$OUT/ablation/$variant/libero_object"
}

train=(--steps "$FINETUNE_STEPS" --batch-size 8 --lr "$LR" --seed 0 --checkpoint-every 100)
align=(--steps "$ALIGN_STEPS" --batch-size 8 --lr "$LR" --seed 0 --checkpoint-every 100)

timed teacher "${VB[@]}" train teacher "${data_args[@]}" --preset tiny --history "$HISTORY" --out "$CK/teacher" \
  --steps "$TEACHER_STEPS" --batch-size 16 --lr "$LR" --seed 0 --checkpoint-every 200
evaluate teacher teacher --policy-arg "checkpoint=$CK/teacher" --policy-arg ensemble=0.01 &
evals=$!

timed align "${VB[@]}" distill --stage align --teacher "$CK/teacher" --backbone tiny "${data_args[@]}" --out "$CK/align" "${align[@]}"
timed two_stage "${VB[@]}" distill --stage finetune --from "$CK/align" "${data_args[@]}" --out "$CK/two_stage" "${train[@]}"
wait $evals; evaluate two_stage vita_vla --policy-arg "checkpoint=$CK/two_stage" & evals=$!
timed only_ft "${VB[@]}" distill --stage finetune --teacher "$CK/teacher" --backbone tiny "${data_args[@]}" --out "$CK/only_ft" "${train[@]}"
wait $evals; evaluate only_ft vita_vla --policy-arg "checkpoint=$CK/only_ft" & evals=$!
timed freeze_vlm "${VB[@]}" distill --stage finetune --from "$CK/align" --freeze-vlm "${data_args[@]}" --out "$CK/freeze_vlm" "${train[@]}"
wait $evals; evaluate freeze_vlm vita_vla --policy-arg "checkpoint=$CK/freeze_vlm" & evals=$!
timed align_no_state "${VB[@]}" distill --stage align --no-state-encoder --teacher "$CK/teacher" --backbone tiny "${data_args[@]}" --out "$CK/align_no_state" "${align[@]}"
timed no_state_encoder "${VB[@]}" distill --stage finetune --no-state-encoder --from "$CK/align_no_state" "${data_args[@]}" --out "$CK/no_state_encoder" "${train[@]}"
wait $evals; evaluate no_state_encoder vita_vla --policy-arg "checkpoint=$CK/no_state_encoder" & evals=$!
timed align_no_token "${VB[@]}" distill --stage align --no-action-token --teacher "$CK/teacher" --backbone tiny "${data_args[@]}" --out "$CK/align_no_token" "${align[@]}"
timed no_action_token "${VB[@]}" distill --stage finetune --no-action-token --from "$CK/align_no_token" "${data_args[@]}" --out "$CK/no_action_token" "${train[@]}"
wait $evals; evaluate no_action_token vita_vla --policy-arg "checkpoint=$CK/no_action_token"

"${VB[@]}" ablate "$SPEC" --out "$OUT/ablation" | tee "$OUT/ablation_table.txt"
"${VB[@]}" ablate "$SPEC" --out "$OUT/ablation" --format md > "$OUT/ablation_table.md"
