"""The Franka driver (franky-control, libfranka protocol) against franky-sim, a separate process.

franky-sim runs from its own virtualenv (``bash .ci/setup-franky-sim.sh``); without it these tests
fail with a message naming the script. franky-sim's MuJoCo runs slower than real time on a loaded
machine, so motions are checked by direction and against the robot's own clock, not wall time.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

from vitabench.api.protocol import load_protocol
from vitabench.plugins import get_suite
from vitabench.robots.env import RobotEnv
from vitabench.robots.franka import FrankaDriver
from vitabench.robots.operator import Operator

pytestmark = pytest.mark.sim


@pytest.fixture
def driver(sim_host):
    driver = FrankaDriver(host=sim_host, dynamics=0.5)
    driver.connect()
    yield driver
    driver.close()


def robot_time_s(driver: FrankaDriver) -> float:
    return driver.robot.state.time.to_sec()


def test_twist_moves_the_arm_as_commanded_then_estop_holds(driver):
    import time

    driver.move_home()
    start, clock = driver.read_state(), robot_time_s(driver)
    velocity = np.array([0.0, 0.05, -0.03])
    for _ in range(30):
        driver.send_ee_twist(velocity, np.zeros(3), 0.05)
        time.sleep(0.05)
    moved = driver.read_state().ee_pos - start.ee_pos
    elapsed = robot_time_s(driver) - clock
    assert moved[1] > 0.01 and moved[2] < -0.005, moved  # +y and -z as commanded
    assert abs(moved[0]) < 0.2 * np.linalg.norm(moved), moved
    cosine = moved @ velocity / (np.linalg.norm(moved) * np.linalg.norm(velocity))
    assert cosine > 0.97, (moved, cosine)
    assert np.linalg.norm(moved) <= np.linalg.norm(velocity) * elapsed + 1e-3  # never faster than commanded
    driver.estop()
    held = driver.read_state()
    time.sleep(0.3)
    after = driver.read_state()
    assert np.linalg.norm(after.ee_pos - held.ee_pos) < 1e-3  # holds after the stop
    assert np.abs(after.joint_vel[:6]).max() < 0.05


def test_unreachable_host_is_one_clear_line():
    from vitabench.robots.driver import RobotError

    driver = FrankaDriver(host="127.0.0.254")
    with pytest.raises(RobotError, match=r"franka at host=127\.0\.0\.254 cannot be reached"):
        driver.connect()


def _clip_episode(sim_host: str, run_dir: str) -> tuple:
    """One scripted-operator episode pushing up into the workspace ceiling (run in a fresh process)."""
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"y\ns\n")
    os.close(write_fd)
    task = get_suite("real_five").task(0)
    env = RobotEnv(
        task, load_protocol("real_robot"), cameras=("agentview",), resolution=32, max_steps=12, robot="franka",
        robot_args={"host": sim_host, "dynamics": 0.5, "camera.agentview": "render:agentview", "workspace_max": "0.8,0.4,0.49"},
        run_dir=run_dir, operator=Operator(read_fd, source="script"),
    )
    try:
        first, _ = env.reset()
        for _ in range(12):
            obs, _, terminated, truncated, info = env.step(np.array([0, 0, 1.0, 0, 0, 0, -1]))
    finally:
        env.close()
    return first, obs, truncated, info


def test_env_clips_workspace_and_records_timing(sim_host, tmp_path):
    # A fresh process, as the runner's env workers are: MuJoCo's EGL renderer of the stand-in
    # camera cannot be created in a process where robosuite's EGL contexts were made and freed.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        first, obs, truncated, info = pool.submit(_clip_episode, sim_host, str(tmp_path)).result(timeout=300)
    assert first["images"]["agentview"].shape == (32, 32, 3) and first["images"]["agentview"].std() > 0
    assert first["state"]["ee_pos"][2] < 0.49
    assert truncated and info["success"] and info["extra.label_source"] == "operator:script"
    assert info["extra.safety_clips"] > 0 and "workspace z" in info["extra.safety_events"]
    assert obs["state"]["ee_pos"][2] <= 0.49 + 2e-3  # the box held
    assert info["extra.control_hz"] == 20 and info["extra.achieved_hz"] <= 21  # the loop never outruns its rate
    assert info["extra.achieved_hz"] > 15 or info["extra.overruns"] > 0  # and a slower loop says so
    import h5py

    with h5py.File(tmp_path / "recordings" / "t000_close_drawer.hdf5") as f:
        demo = f["data/demo_0"]
        assert demo["obs/agentview_rgb"].shape == (12, 32, 32, 3)
        executed, asked = demo["actions"][:], demo["policy_actions"][:]
        assert (executed[:, 2] < asked[:, 2]).any()  # the clipped actions are what was executed


class PlannerFailingRobot:
    """Stands in for franky.Robot where franky-sim cannot be made to fail: its trajectory generator
    (Ruckig) finding no trajectory, which a loaded CI machine met once in a full run. ``failures``
    moves raise franky's RuntimeError before they succeed."""

    has_errors = False

    def __init__(self, failures: int, message: str = "Motion planner failed with error code -110") -> None:
        self.failures, self.message, self.moves = failures, message, []

    def move(self, motion, asynchronous: bool) -> None:  # noqa: ANN001 - a franky motion
        if self.failures:
            self.failures -= 1
            raise RuntimeError(self.message)
        self.moves.append((motion, asynchronous))


def test_a_planner_failure_is_sent_again_once_then_is_the_episodes_error(capsys):
    import franky

    from vitabench.robots.driver import RobotError

    driver = FrankaDriver(host="sim")
    driver._franky = franky
    driver._robot = PlannerFailingRobot(failures=1)
    driver._move("twist", asynchronous=True)
    assert driver._robot.moves == [("twist", True)]
    assert capsys.readouterr().err == "franka at sim: Motion planner failed with error code -110; the motion is sent again\n"
    driver._robot = PlannerFailingRobot(failures=2)
    with pytest.raises(RobotError, match=r"^franka at sim: Motion planner failed with error code -110, twice in a row$"):
        driver._move("twist", asynchronous=True)
    driver._robot = PlannerFailingRobot(failures=1, message="something else")
    with pytest.raises(RuntimeError, match="^something else$"):  # not the planner's: unchanged
        driver._move("twist", asynchronous=True)
    assert driver._robot.moves == []
