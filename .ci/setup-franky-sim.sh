#!/usr/bin/env bash
# franky-sim (the libfranka-protocol simulator used by tests/robots/test_robots_franka.py and
# benchmarks/test_bench_robot_rate.py) pins a newer MuJoCo than LIBERO's 2.3.7, so it lives in its
# own virtualenv, .venv-franky-sim/, and runs as a separate process.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv-franky-sim/bin/franky-sim ]; then
    exit 0
fi
python3 -m venv .venv-franky-sim
.venv-franky-sim/bin/pip install -q "franky-sim==1.0.4"
