"""The real-robot control loop against franky-sim: achieved vs commanded rate at 20, 50 and 100 Hz.

Each case runs one ``RobotEnv`` episode (libfranka protocol through franky, no cameras, scripted
operator) of ``SECONDS`` of Cartesian velocity commands with the policy step taking no time, and
reports in ``extra_info``: the achieved command rate and its ratio to the commanded one, the
period jitter (std) and worst period, overruns (ticks more than half a period late), and the mean
and worst time to issue one command. franky-sim runs in its own process (its MuJoCo is often
slower than real time on a loaded machine; the rate measured is the adapter's command rate,
which is what a policy sees). Target: the achieved rate within 5% of the commanded one.

Run: ``pytest benchmarks/test_bench_robot_rate.py --benchmark-enable -s`` (needs
``bash .ci/setup-franky-sim.sh``).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from vitabench.api.protocol import load_protocol
from vitabench.api.suite import Task
from vitabench.robots.env import RobotEnv
from vitabench.robots.franky_sim import FrankySim
from vitabench.robots.operator import Operator

SECONDS = 2.0
RATES = (20, 50, 100)


@pytest.fixture(scope="module")
def sim_host():
    with FrankySim() as host:
        yield host


def rate_task(hz: int) -> Task:
    return Task("real_five", 0, f"rate_{hz}hz", "hold still", 1, {"max_steps": int(SECONDS * hz), "control_hz": hz})


def run_episode(host: str, hz: int) -> dict:
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"y\ns\n")
    os.close(write_fd)
    env = RobotEnv(
        rate_task(hz), load_protocol("real_robot"), state_keys=("ee_pos",), robot="franka",
        robot_args={"host": host, "move_home": False, "record": False}, operator=Operator(read_fd, source="bench"),
    )
    try:
        env.reset()
        steps = int(SECONDS * hz)
        for k in range(steps):
            sign = 1.0 if (k // (hz // 4 or 1)) % 2 == 0 else -1.0  # a 2 Hz back-and-forth, 1 cm/s
            _, _, terminated, truncated, info = env.step(np.array([0.1 * sign, 0, 0, 0, 0, 0, -1.0]))
            if terminated or truncated:
                break
    finally:
        env.close()
    return {k.removeprefix("extra."): v for k, v in info.items() if k.startswith("extra.")}


@pytest.mark.parametrize("hz", RATES)
def test_control_rate(benchmark, sim_host, hz):
    result = benchmark.pedantic(run_episode, args=(sim_host, hz), rounds=1, iterations=1)
    ratio = result["achieved_hz"] / hz
    benchmark.extra_info.update(
        {
            "commanded_hz": hz,
            "achieved_hz": result["achieved_hz"],
            "achieved_over_commanded": round(ratio, 4),
            "period_jitter_ms": result["period_jitter_ms"],
            "period_max_ms": result["period_max_ms"],
            "overruns": result["overruns"],
            "command_ms_mean": result["command_ms_mean"],
            "command_ms_max": result["command_ms_max"],
            "state_ms_mean": result["state_ms_mean"],
        }
    )
    print(f"\n{hz} Hz commanded: {benchmark.extra_info}")
    assert ratio > 0.95, benchmark.extra_info
