"""The PiPer driver (piper-sdk over python-can) against the arm-side emulator on a virtual CAN bus."""

from __future__ import annotations

import itertools
import math
import os
import time

import numpy as np
import pytest

from piper_emulator import PiperEmulator
from vitabench.api.protocol import load_protocol
from vitabench.plugins import get_suite
from vitabench.robots.driver import RobotError
from vitabench.robots.env import RobotEnv
from vitabench.robots.operator import Operator
from vitabench.robots.piper import PiperDriver
from vitabench.robots.safety import SafetyStop

HOME = (0.1, 0.5, -0.5, 0.0, 0.2, 0.0)
_channels = itertools.count()


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def last_command(emulator: PiperEmulator, can_id: int, settle_s: float = 0.05) -> dict:
    """The latest decoded command with ``can_id`` once the bus has been quiet for ``settle_s`` (frames arrive on another thread)."""
    wait_for(lambda: emulator.commands_with(can_id))
    count = -1
    while count != len(emulator.commands):
        count = len(emulator.commands)
        time.sleep(settle_s)
    return emulator.commands_with(can_id)[-1]


@pytest.fixture
def arm():
    """An emulated arm and a connected driver on a fresh virtual channel (the SDK keeps one instance per name)."""
    channel = f"vitabench-piper-{os.getpid()}-{next(_channels)}"
    with PiperEmulator(channel) as emulator:
        driver = PiperDriver(can=channel, interface="virtual", home=HOME, enable_timeout=3.0)
        driver.connect()
        yield emulator, driver
        driver.close()


def test_enable_and_feedback_decoding(arm):
    emulator, driver = arm
    assert emulator.model.enabled == [True] * 6
    assert last_command(emulator, 0x471) == {"motor": 7, "enable_flag": 0x02}
    # feedback with negative values and rotations decodes to the emulator's state
    with emulator.lock:
        emulator.model.joints = emulator.model.joint_target = np.array([-0.5, 1.2, -2.0, 0.3, -0.7, 1.9])
        emulator.model.pose = emulator.model.pose_target = np.array([0.25, -0.13, 0.41, math.pi / 2, -0.2, 0.3])
    wait_for(lambda: abs(driver.read_state().joint_pos[0] + 0.5) < 1e-5)
    state = driver.read_state()
    np.testing.assert_allclose(state.joint_pos, [-0.5, 1.2, -2.0, 0.3, -0.7, 1.9], atol=1e-5)
    np.testing.assert_allclose(state.ee_pos, [0.25, -0.13, 0.41], atol=1e-6)
    # RX = 90 degrees alone would be (sin 45, 0, 0, cos 45); check the full rotation round-trips
    rx, ry, rz = math.pi / 2, -0.2, 0.3
    rotation = _rz(rz) @ _ry(ry) @ _rx(rx)
    np.testing.assert_allclose(_quat_matrix(state.ee_quat), rotation, atol=1e-5)


def test_joint_and_gripper_commands(arm):
    emulator, driver = arm
    driver.move_home()
    mode = last_command(emulator, 0x151)
    assert mode["move_mode"] == 0x01 and mode["ctrl_mode"] == 0x01
    assert last_command(emulator, 0x157)["joints"] == tuple(round(math.degrees(q) * 1000) for q in HOME)
    np.testing.assert_allclose(driver.read_state().joint_pos, HOME, atol=math.radians(0.5))
    driver.send_gripper(True)
    assert last_command(emulator, 0x159) == {"angle": 0, "effort": 1000, "code": 0x01, "set_zero": 0}
    wait_for(lambda: driver.read_state().gripper_width < 1e-4)
    driver.send_gripper(False)
    assert last_command(emulator, 0x159)["angle"] == 70_000  # 70 mm in 0.001 mm
    wait_for(lambda: abs(driver.read_state().gripper_width - 0.07) < 1e-5)


def test_end_pose_twist(arm):
    emulator, driver = arm
    start = driver.read_state().ee_pos
    for _ in range(10):
        driver.send_ee_twist(np.array([0.0, 0.04, -0.02]), np.zeros(3), 0.05)
    assert last_command(emulator, 0x151)["move_mode"] == 0x00  # MOVE P
    x, y, z, *_ = last_command(emulator, 0x154)["pose"]
    np.testing.assert_allclose(np.array([x, y, z]) / 1e6, start + [0.0, 0.02, -0.01], atol=1e-6)
    wait_for(lambda: abs(driver.read_state().ee_pos[1] - start[1] - 0.02) < 1e-5)
    np.testing.assert_allclose(driver.read_state().ee_pos, start + [0.0, 0.02, -0.01], atol=1e-5)


def test_estop_zero_velocity_then_hold_then_resume(arm):
    emulator, driver = arm
    driver.send_joint_targets(np.array([1.5, 1.0, -1.0, 0.5, 0.5, 0.5]))
    wait_for(lambda: np.abs(driver.read_state().joint_vel).max() > 0.5)
    driver.estop()
    assert last_command(emulator, 0x150) == {"emergency_stop": 0x01}
    # status and joint feedback come in separate frames: a state read just after the status
    # changed may still be the last one from before the stop
    wait_for(lambda: driver.status()["arm_status"] == 0x01 and np.abs(driver.read_state().joint_vel).max() == 0.0)
    held = driver.read_state()
    driver.send_joint_targets(np.array([-1.0, 0.2, -0.2, 0.0, 0.0, 0.0]))  # refused while stopped
    time.sleep(0.2)
    after = driver.read_state()
    np.testing.assert_allclose(after.joint_pos, held.joint_pos, atol=1e-9)
    driver.move_home()  # resumes (0x150 = 2), re-enables, moves
    assert last_command(emulator, 0x150) == {"emergency_stop": 0x02}
    np.testing.assert_allclose(driver.read_state().joint_pos, HOME, atol=math.radians(0.5))


def test_no_arm_on_the_bus_is_a_clear_error():
    driver = PiperDriver(can=f"vitabench-piper-empty-{os.getpid()}", interface="virtual", enable_timeout=0.3)
    with pytest.raises(RobotError, match="no PiPer feedback on can=vitabench-piper-empty"):
        driver.connect()
    driver.close()


def _scripted_operator(text: str) -> Operator:
    read_fd, write_fd = os.pipe()
    os.write(write_fd, text.encode())
    os.close(write_fd)
    return Operator(read_fd, source="script")


def test_env_joint_actions_and_unsafe_action_stop(arm, tmp_path):
    """RobotEnv over the PiPer driver: joint-target actions, recorded episode, then an out-of-range action."""
    emulator, driver = arm
    task = get_suite("real_five").task(4)
    env = RobotEnv(
        task, load_protocol("real_robot"), state_keys=("joint_pos", "gripper_qpos"), max_steps=6,
        robot_args={"action_mode": "joint", "max_joint_step": 0.02}, driver=driver, run_dir=str(tmp_path),
        operator=_scripted_operator("y\nf\ny\n"),
    )
    obs, _ = env.reset()
    np.testing.assert_allclose(obs["state"]["joint_pos"], HOME, atol=math.radians(0.5))
    target = np.array([0.3, 0.8, -0.8, 0.1, 0.3, 0.1])
    action = np.append(2 * (target - driver.joint_min) / (driver.joint_max - driver.joint_min) - 1, 1.0)
    for _ in range(6):
        obs, _, terminated, truncated, info = env.step(action)
    assert truncated and not terminated and info["success"] is False and info["extra.label"] == "failure"
    # every joint command moved at most max_joint_step from the state it was computed from
    last_command(emulator, 0x157)
    sent = np.radians(np.array([c["joints"] for c in emulator.commands_with(0x157)[-6:]]) / 1000)
    assert np.abs(sent[0] - np.asarray(HOME)).max() <= 0.02 + math.radians(0.5)  # home is reached within 0.5 degree
    assert np.abs(np.diff(sent, axis=0)).max() <= 0.02 + 1e-3
    assert sent[-1][0] < target[0] - 0.05  # far from the target: the steps were clipped
    assert info["extra.safety_clips"] > 0 and "joint_step" in info["extra.safety_events"]
    assert last_command(emulator, 0x159)["angle"] == 0  # gripper closed on action[-1] > 0
    env.reset()
    with pytest.raises(SafetyStop, match=r"action\[2\]=1.5 is outside \[-1, 1\]"):
        env.step(np.array([0, 0, 1.5, 0, 0, 0, 0]))
    assert last_command(emulator, 0x150) == {"emergency_stop": 0x01}
    import h5py

    with h5py.File(tmp_path / "recordings" / "t004_pick_place_block.hdf5") as f:
        assert f["data/demo_0"].attrs["outcome"] == "failure" and f["data/demo_0/obs/joint_states"].shape == (6, 6)
        assert "demo_1" not in f["data"]  # stopped before its first command: nothing to record


def _rx(a: float) -> np.ndarray:
    return np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])


def _ry(a: float) -> np.ndarray:
    return np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])


def _rz(a: float) -> np.ndarray:
    return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])


def _quat_matrix(q: np.ndarray) -> np.ndarray:
    x, y, z, w = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def test_nothing_moves_before_the_operator_confirms(arm):
    import threading

    emulator, driver = arm
    read_fd, write_fd = os.pipe()
    env = RobotEnv(get_suite("real_five").task(0), load_protocol("real_robot"), driver=driver, operator=Operator(read_fd, source="script"))
    motion_ids = {0x151, 0x152, 0x153, 0x154, 0x155, 0x156, 0x157, 0x159}
    last_command(emulator, 0x159)  # the gripper enable sent at connect has arrived
    before = len([1 for can_id, _ in emulator.commands if can_id in motion_ids])
    resetting = threading.Thread(target=env.reset)
    resetting.start()
    time.sleep(0.3)
    assert resetting.is_alive()  # waiting for the operator
    assert len([1 for can_id, _ in emulator.commands if can_id in motion_ids]) == before
    os.write(write_fd, b"y\n")
    resetting.join(10)
    assert not resetting.is_alive()
    assert last_command(emulator, 0x157)["joints"] == tuple(round(math.degrees(q) * 1000) for q in HOME)  # then it homes
    os.close(write_fd)
