#!/usr/bin/env bash
# Install vitabench into .venv, run a short real benchmark (the shipped VITA-VLA student and its teacher
# beside the scripted expert and the zero policy on LIBERO-Object) and write its report to
# runs/demo/report.html and the terminal.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=$(command -v python3.11 || command -v python3)
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q -e .
.venv/bin/python -m pip install -q --no-deps open-clip-torch==3.3.0  # the CLIP BPE vocabulary
export MUJOCO_GL="${MUJOCO_GL:-egl}"
VB=.venv/bin/vitabench
$VB doctor --skip-init-states
# The shipped student and teacher beside the scripted expert and the zero baseline, on held-out
# init states under the protocol both were trained and measured under (vita_vla_128).
declare -A ARGS=([vita_vla]="--policy-arg checkpoint=vita_vla_libero_object --policy-arg ensemble=0.01"
  [teacher]="--policy-arg checkpoint=teacher_libero_object --policy-arg ensemble=0.01" [scripted]="" [zero]="")
for policy in vita_vla teacher scripted zero; do
  # shellcheck disable=SC2086
  $VB run --policy "$policy" ${ARGS[$policy]} --suite libero_object --tasks 0,1 --episodes-per-task 3 \
    --protocol vita_vla_128 --workers 2 --out "runs/demo/$policy" --resume --quiet
done
RUNS=(runs/demo/vita_vla runs/demo/teacher runs/demo/scripted runs/demo/zero)
$VB report "${RUNS[@]}" --with-published
$VB report "${RUNS[@]}" --format html --out runs/demo/report.html
echo "report: runs/demo/report.html"
