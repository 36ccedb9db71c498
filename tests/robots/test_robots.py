"""Robot adapter pieces that need no robot: safety limits, the operator protocol, real suites, recordings."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from vitabench.api.errors import VitabenchError
from vitabench.api.protocol import load_protocol
from vitabench.plugins import get_suite
from vitabench.robots.driver import RobotState, make_driver
from vitabench.robots.operator import Operator, OperatorError
from vitabench.robots.recording import EpisodeRecording
from vitabench.robots.safety import SafetyLimits, SafetyStop, check_action, limit_joint_targets, limit_twist
from vitabench.suites.real import load_user_tasks


def pipe_operator(text: str, close: bool = True) -> tuple[Operator, int]:
    read_fd, write_fd = os.pipe()
    os.write(write_fd, text.encode())
    if close:
        os.close(write_fd)
    return Operator(read_fd, source="test"), write_fd


# -- safety ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "action, message",
    [
        ([0, 0, float("nan"), 0, 0, 0, 0], r"action\[2\]=nan is not finite"),
        ([0, 0, 0, float("inf"), 0, 0, 0], r"action\[3\]=inf is not finite"),
        ([0, -1.2, 0, 0, 0, 0, 0], r"action\[1\]=-1.2 is outside \[-1, 1\]"),
        ([0, 0, 0], r"action has shape \(3,\)"),
    ],
)
def test_unsafe_actions_stop(action, message):
    with pytest.raises(SafetyStop, match=message):
        check_action(np.array(action))


def test_workspace_clip_keeps_the_box_two_periods_ahead():
    limits = SafetyLimits(workspace_min=(0.3, -0.3, 0.1), workspace_max=(0.7, 0.3, 0.5), max_linear_speed=1.0)
    position = np.array([0.69, 0.0, 0.2])
    linear, angular, events = limit_twist(limits, position, np.array([0.5, 0.1, 0.0]), np.zeros(3), 0.05, step=7)
    np.testing.assert_allclose(linear, [0.1, 0.1, 0.0])  # x can advance only 1 cm in 2 x 50 ms
    assert [e.kind for e in events] == ["workspace"] and events[0].step == 7 and "x" in events[0].detail
    # outside the box already: moving further out is stopped, moving back in is allowed
    outside = np.array([0.75, 0.0, 0.2])
    linear, _, _ = limit_twist(limits, outside, np.array([0.1, 0, 0]), np.zeros(3), 0.05, 0)
    assert linear[0] == 0.0
    linear, _, events = limit_twist(limits, outside, np.array([-0.1, 0, 0]), np.zeros(3), 0.05, 0)
    assert linear[0] == -0.1 and not events


def test_speed_limits_scale_the_twist_keeping_its_direction():
    limits = SafetyLimits(max_linear_speed=0.1, max_angular_speed=0.5)
    linear, angular, events = limit_twist(limits, np.array([0.5, 0, 0.3]), np.array([0.0, 0.3, -0.4]), np.array([0, 0, 2.0]), 0.01, 0)
    np.testing.assert_allclose(linear, [0.0, 0.06, -0.08])
    np.testing.assert_allclose(angular, [0, 0, 0.5])
    assert sorted(e.kind for e in events) == ["speed", "speed"]


def test_joint_targets_clip_to_limits_and_step():
    limits = SafetyLimits(max_joint_step=0.1)
    low, high = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    target, events = limit_joint_targets(limits, np.array([0.95, 0.0]), np.array([1.5, 0.05]), low, high, 3)
    np.testing.assert_allclose(target, [1.0, 0.05])
    assert [e.kind for e in events] == ["joint_limit"]
    target, events = limit_joint_targets(limits, np.array([0.0, 0.0]), np.array([0.5, -0.05]), low, high, 4)
    np.testing.assert_allclose(target, [0.1, -0.05])
    assert [e.kind for e in events] == ["joint_step"]


def test_bad_workspace_is_rejected():
    with pytest.raises(VitabenchError, match="every min below its max"):
        SafetyLimits(workspace_min=(0.5, 0, 0), workspace_max=(0.4, 1, 1))


# -- the operator --------------------------------------------------------------------------------
def test_operator_confirm_label_and_invalid():
    operator, _ = pipe_operator("what\ny\nmaybe\ns\n\ni cup fell over\nq\n")
    assert operator.confirm_reset("t", "reset") >= 0
    label = operator.label("over")
    assert (label.outcome, label.reason, label.source) == ("success", None, "operator:test")
    operator.confirm_reset("t", "reset")  # an empty line (Enter) confirms
    label = operator.label("over")
    assert (label.outcome, label.reason) == ("invalid", "cup fell over")
    with pytest.raises(OperatorError, match="aborted the episode before it started"):
        operator.confirm_reset("t", "reset")
    with pytest.raises(OperatorError, match="ended while waiting for the reset confirmation"):
        operator.confirm_reset("t", "reset")


def test_operator_estop_acts_on_the_reader_thread_and_keeps_other_lines():
    operator, write_fd = pipe_operator("", close=False)
    stops: list[float] = []
    operator.arm(lambda: stops.append(time.monotonic()))
    os.write(write_fd, b"f\n")  # typed early: kept for the label prompt
    sent = time.monotonic()
    os.write(write_fd, b"e\n")
    deadline = time.monotonic() + 2
    while not stops and time.monotonic() < deadline:
        time.sleep(0.005)
    assert stops and stops[0] - sent < 0.5 and operator.estopped.is_set()
    operator.disarm()
    assert operator.label("over").outcome == "failure"
    os.close(write_fd)


# -- suites and protocol -------------------------------------------------------------------------
def test_real_five_tasks_and_protocol():
    suite = get_suite("real_five")
    assert [t.name for t in suite.tasks] == ["close_drawer", "stack_cups", "stack_blocks", "pick_place_sponge", "pick_place_block"]
    assert [t.instruction for t in suite.tasks] == [  # the paper's, verbatim
        "Close the drawer",
        "Stack the orange cup on top of the green cup",
        "Stack the red block on top of the yellow block",
        "Pick up the sponge and put it into the basket",
        "Pick up the red block and put it into the basket",
    ]
    for task, objects in zip(suite.tasks, (["drawer"], ["orange cup", "green cup"], ["red block", "yellow block"], ["sponge", "basket"], ["red block", "basket"])):
        assert all(o in task.source["reset_instructions"] and o in task.source["success_criterion"] for o in objects), task.name
    assert all(t.source["reset_instructions"] and t.source["success_criterion"] and t.source["max_steps"] > 0 for t in suite.tasks)
    protocol = load_protocol("real_robot")
    assert protocol.episodes_per_task == 40 and protocol.steps_for(suite.steps_key) >= max(t.source["max_steps"] for t in suite.tasks)


def test_user_tasks_from_toml(tmp_path):
    path = tmp_path / "tasks.toml"
    path.write_text('[[task]]\nname = "wipe"\ninstruction = "wipe the table"\nmax_steps = 50\ncontrol_hz = 10\n')
    suite = load_user_tasks(path)
    assert suite.tasks[0].instruction == "wipe the table" and suite.tasks[0].source == {"max_steps": 50, "control_hz": 10}
    path.write_text('[[task]]\nname = "wipe"\ninstruction = "wipe"\nmax_step = 50\n')
    with pytest.raises(VitabenchError, match="unknown field\\(s\\) max_step"):
        load_user_tasks(path)
    path.write_text('[[task]]\nname = "wipe"\ninstruction = "wipe"\n')
    with pytest.raises(VitabenchError, match="lacks max_steps"):
        load_user_tasks(path)
    assert [t.name for t in get_suite("real_user").tasks] == ["wipe_table", "open_drawer"]  # the shipped example


def test_unknown_robot_and_robot_args_are_named():
    with pytest.raises(VitabenchError, match="unknown robot 'ur5'; accepted: franka, piper"):
        make_driver("ur5", {})
    with pytest.raises(VitabenchError, match="--robot-arg hots is not an argument of robot 'franka'; accepted: host,"):
        make_driver("franka", {"hots": "1.2.3.4"})


# -- recordings ------------------------------------------------------------------------------------
def test_recording_is_libero_format_and_replayable(tmp_path):
    import h5py

    from vitabench.policies.replay import ReplayPolicy

    recording = EpisodeRecording(tmp_path / "rec.hdf5", "Close the drawer", "franka", {"task": "close_drawer"})
    for k in range(4):
        state = RobotState(np.full(7, 0.1 * k), np.zeros(7), np.array([0.5, 0, 0.3 + k / 100]), np.array([1.0, 0, 0, 0]), 0.08, 0.0)
        action = np.array([0.1 * k, 0, 0, 0, 0, 0, -1])
        recording.add({"agentview": np.full((8, 8, 3), k, np.uint8)}, state, action, action, k / 20)
    assert recording.save("success", {"label_source": "operator:test"}).endswith("rec.hdf5#demo_0")
    with h5py.File(tmp_path / "rec.hdf5") as f:
        obs = f["data/demo_0/obs"]
        assert {k: obs[k].shape for k in obs} == {
            "agentview_rgb": (4, 8, 8, 3), "ee_ori": (4, 3), "ee_pos": (4, 3), "ee_states": (4, 6),
            "gripper_states": (4, 2), "joint_states": (4, 7),
        }
        np.testing.assert_allclose(obs["ee_ori"][0], [np.pi, 0, 0], atol=1e-6)  # xyzw (1,0,0,0): pi about x
        np.testing.assert_allclose(obs["gripper_states"][0], [0.04, -0.04])
        assert list(f["data/demo_0/rewards"]) == [0, 0, 0, 1]
    replay = ReplayPolicy(str(tmp_path / "rec.hdf5"), demo=0, chunk=4)  # real demos play back through `replay`
    assert replay.instruction == "Close the drawer"
    replay.reset(get_suite("real_five").task(0))
    np.testing.assert_allclose(replay.act([{}])[0], np.stack([[0.1 * k, 0, 0, 0, 0, 0, -1] for k in range(4)]), atol=1e-6)


# -- cameras and env arguments -------------------------------------------------------------------
def test_opencv_camera_reads_a_video_file_as_square_rgb(tmp_path):
    import imageio.v2 as imageio

    from vitabench.robots.cameras import open_camera

    path = tmp_path / "clip.mp4"
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[:, :, 0] = 200  # red
    imageio.mimwrite(path, [frame] * 3, fps=10)
    camera = open_camera(f"opencv:{path}", 16)
    image = camera.read(np.zeros(7))
    camera.close()
    assert image.shape == (16, 16, 3) and image[..., 0].mean() > 150 and image[..., 2].mean() < 50  # RGB, not BGR
    with pytest.raises(VitabenchError, match="camera spec 'usb0'; accepted: opencv:INDEX"):
        open_camera("usb0", 16)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"robot": None}, r"suite 'real_five' runs on a real robot; accepted: --robot franka\|piper"),
        ({"robot": "franka", "cameras": ("agentview",)}, r"camera\(s\) agentview but the robot has none by that name; accepted: --robot-arg camera.agentview="),
        ({"robot": "franka", "privileged": True}, "a real robot has no privileged state"),
        ({"robot": "franka", "robot_args": {"action_mode": "joint"}}, "action_mode=joint needs 6 joints"),
        ({"robot": "franka", "robot_args": {"workspace_min": "0,1"}}, r"--robot-arg workspace_min='0,1'; accepted: three numbers"),
    ],
)
def test_robot_env_rejects_bad_setups_before_connecting(kwargs, message):
    from vitabench.robots.env import RobotEnv

    with pytest.raises(VitabenchError, match=message):
        RobotEnv(get_suite("real_five").task(0), load_protocol("real_robot"), **kwargs)
