#!/usr/bin/env bash
# Install vitabench with its test extras into .venv and run the whole test suite.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=$(command -v python3.11 || command -v python3)
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv || exit 1
.venv/bin/python -m pip install -q -e ".[test]" || exit 1
# The real CLIP BPE vocabulary ships in open-clip-torch; its dependencies (torchvision) have no
# CPU build matching torch 2.13.0, and vitabench never imports open_clip itself.
.venv/bin/python -m pip install -q --no-deps open-clip-torch==3.3.0 || exit 1
command -v chromium >/dev/null || bash .ci/setup-chromium.sh || exit 1
bash .ci/setup-franky-sim.sh || exit 1  # franky-sim in its own venv (it pins a newer MuJoCo)
export MUJOCO_GL="${MUJOCO_GL:-egl}"
# Two pytest processes, one per core, each taking whole files (module-scoped envs stay shared):
# most tests wait on an env worker or a server process, so one core alone sits half idle.
.venv/bin/python -m pytest -n 2 --dist loadfile "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: treating as a failure of the test setup" >&2
  exit 1
fi
exit "$rc"
