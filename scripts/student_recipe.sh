#!/usr/bin/env bash
# The recorded student run (reports/student/README.md): the shipped teacher (teacher_libero_object)
# distilled into a `cpu`-backbone VITA-VLA student on the teacher's data (libero_object tasks 0-4;
# scripts/teacher_recipe.sh makes it): stage 1 (alignment into the teacher's action space) on its
# DART demos (init states 0-29), stage 2 (fine-tuning) on them, then stage 2 continued on the
# DART demos and the DAgger round's data at half the learning rate; evaluated on the teacher's
# held-out episodes (init states 30-49, 20 per task, vita_vla_128) after shipping it in fp16
# (checkpoints/vita_vla_libero_object: the evaluation measures the shipped weights); then the
# other four variants, trained and continued alike and evaluated as trained, for
# reports/ablations/student_variants.toml.
#   bash scripts/student_recipe.sh            # every stage not yet finished (re-runnable)
#   STAGES=two_stage bash scripts/student_recipe.sh   # only the shipped student and its evaluation
# Stages skip when their output exists; wall times go to $OUT/wall_times.tsv, logs to $OUT/logs/.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/student}
DATA_DIR=${DATA_DIR:-runs/teacher/data}
PROTOCOL=vita_vla_128
TEACHER=${TEACHER:-teacher_libero_object}
ALIGN_STEPS=${ALIGN_STEPS:-700}
FINETUNE_STEPS=${FINETUNE_STEPS:-2500}
CONTINUE_STEPS=${CONTINUE_STEPS:-2400}
SHIPPED=vita_vla_libero_object
STAGES=${STAGES:-all}
VB=.venv/bin/vitabench
export MUJOCO_GL=${MUJOCO_GL:-egl}
mkdir -p "$OUT/ckpt" "$OUT/eval" "$OUT/logs"

source scripts/timed.sh  # timed NAME COMMAND... (the repository root is the working directory)

dart=()
for file in "$DATA_DIR"/dart_*.hdf5; do dart+=(--data "$file"); done
all=("${dart[@]}")
for file in "$DATA_DIR"/dagger*.hdf5; do all+=(--data "$file"); done
settings=(--train-vision --windows-per-segment 4 --batch-size 32 --warmup 0.05 --device cpu
  --checkpoint-every 100 --resume)

distill() {  # distill NAME ARGS...: a checkpoint in $OUT/ckpt/NAME unless it exists
  local name=$1
  shift
  [[ -f "$OUT/ckpt/$name/lineage.json" ]] || timed "distill_$name" $VB distill --out "$OUT/ckpt/$name" "${settings[@]}" "$@"
}

continued() {  # continued NAME [ARGS...]: stage 2 of $OUT/ckpt/NAME continued into $OUT/ckpt/NAME_long
  local name=$1
  shift
  distill "${name}_long" --stage finetune --from "$OUT/ckpt/$name" "${all[@]}" --lr 5e-4 --seed 1 \
    --steps "$CONTINUE_STEPS" "$@"
}

evaluate() {  # evaluate NAME [CHECKPOINT]: $OUT/ckpt/NAME (or CHECKPOINT) on the teacher's 100 held-out episodes
  local name=$1 checkpoint=${2:-$OUT/ckpt/$1}
  LP_NUM_THREADS=1 timed "eval_$name" $VB run --policy vita_vla --policy-arg "checkpoint=$checkpoint" \
    --policy-arg ensemble=0.01 --suite libero_object --tasks 0-4 --protocol $PROTOCOL --workers 2 \
    --label "$name" --quiet --out "$OUT/eval/$name" --resume
}

align=(--stage align --teacher "$TEACHER" --backbone cpu --steps "$ALIGN_STEPS" "${dart[@]}" --lr 1e-3 --seed 0)
finetune=(--stage finetune --steps "$FINETUNE_STEPS" "${dart[@]}" --lr 1e-3 --seed 0)
distill align "${align[@]}"
distill two_stage "${finetune[@]}" --from "$OUT/ckpt/align"
continued two_stage
[[ -f checkpoints/$SHIPPED/lineage.json ]] || .venv/bin/python scripts/ship_checkpoint.py weights "$OUT/ckpt/two_stage_long" $SHIPPED
evaluate two_stage_long $SHIPPED
[[ $STAGES == two_stage ]] && exit 0
distill only_ft "${finetune[@]}" --teacher "$TEACHER" --backbone cpu
continued only_ft
distill freeze_vlm "${finetune[@]}" --from "$OUT/ckpt/align" --freeze-vlm
continued freeze_vlm --freeze-vlm
distill align_no_state "${align[@]}" --no-state-encoder
distill no_state_encoder "${finetune[@]}" --no-state-encoder --from "$OUT/ckpt/align_no_state"
continued no_state_encoder --no-state-encoder
distill align_no_token "${align[@]}" --no-action-token
distill no_action_token "${finetune[@]}" --no-action-token --from "$OUT/ckpt/align_no_token"
continued no_action_token --no-action-token
for variant in only_ft freeze_vlm no_state_encoder no_action_token; do evaluate "${variant}_long"; done
