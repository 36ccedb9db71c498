#!/usr/bin/env bash
# How much the fixture rule moves a success rate: the scripted expert (privileged, no camera) on
# libero_goal and libero_spatial, 50 episodes per task, under standard@1 (every episode the first
# fixture draw: vitabench until now) and standard@2 (openpi's loop: episode k the (k+1)-th draw).
# Everything else is equal (same init states, seed, steps, settle), so episodes pair by id; the
# table (per task and per suite, exact two-sided McNemar) goes to reports/fixture_rule/results.md.
#   scripts/fixture_rule_sweep.sh            # WORKERS=2 by default; re-running resumes
# Cost: 2 suites x 10 tasks x 50 episodes x 2 rules = 2,000 camera-free episodes of up to 300 steps
# (~10-20 ms a step plus the expert): 55 min wall, 77 CPU-minutes on 2 cores (2026-12-03).
set -euo pipefail
OUT=${OUT:-runs/fixture_rule}
WORKERS=${WORKERS:-2}
VB=(nice -n 5 .venv/bin/vitabench)
export OMP_NUM_THREADS=1 MUJOCO_GL=${MUJOCO_GL:-egl}
mkdir -p "$OUT"
for suite in libero_goal libero_spatial; do
  for protocol in standard@1 standard@2; do
    dir="$OUT/$suite-${protocol/@/-v}"
    resume=(); [[ -f $dir/run.json ]] && resume=(--resume)
    status=0
    "${VB[@]}" run --policy scripted --suite "$suite" --protocol "$protocol" --workers "$WORKERS" \
      --out "$dir" --label "scripted $protocol" --quiet "${resume[@]}" || status=$?
    [[ $status == 0 || $status == 3 ]] || exit "$status"  # 3: finished with errored episodes (reported)
  done
done
.venv/bin/python scripts/fixture_rule_table.py "$OUT" > reports/fixture_rule/results.md
cat reports/fixture_rule/results.md
