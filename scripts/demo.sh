#!/usr/bin/env bash
# Install vitabench into .venv, run a short real benchmark (scripted expert vs zero policy on
# LIBERO-Object) and write its report to runs/demo/report.html and the terminal.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=$(command -v python3.11 || command -v python3)
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q -e .
.venv/bin/python -m pip install -q --no-deps open-clip-torch==3.3.0  # the CLIP BPE vocabulary
export MUJOCO_GL="${MUJOCO_GL:-egl}"
VB=.venv/bin/vitabench
$VB doctor --skip-init-states
for policy in scripted zero; do
  $VB run --policy "$policy" --suite libero_object --tasks 0,1 --episodes-per-task 3 \
    --workers 2 --out "runs/demo/$policy" --resume --quiet
done
$VB report runs/demo/scripted runs/demo/zero --with-published
$VB report runs/demo/scripted runs/demo/zero --format html --out runs/demo/report.html
echo "report: runs/demo/report.html"
