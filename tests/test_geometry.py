"""The one rotation convention (vitabench.geometry) against robosuite's own transforms and scipy,
on random rotations and on the poses LIBERO really visits: the gripper pointing down, where the
quaternion's w crosses 0 and the Euler roll jumps between +pi and -pi."""

from __future__ import annotations

import numpy as np
import pytest
import robosuite.utils.transform_utils as robosuite_transforms
from scipy.spatial.transform import Rotation

from vitabench import geometry


def random_quats(n: int, seed: int) -> np.ndarray:
    quats = Rotation.random(n, random_state=seed).as_quat()
    quats[::2] *= -1  # both signs of w
    return quats


def downward_quats() -> np.ndarray:
    """The gripper pointing down (LIBERO's working pose), rolled a little either way of pi and
    yawed: w and x cross zero, roll wraps."""
    rolls = np.pi + np.linspace(-0.2, 0.2, 21)
    return np.concatenate([Rotation.from_euler("xyz", [[roll, 0.05, yaw] for roll in rolls]).as_quat() for yaw in (-0.6, 0.0, 0.9)])


def test_matrices_and_euler_match_scipy() -> None:
    quats = random_quats(500, 0)
    np.testing.assert_allclose(geometry.quat_to_matrix(quats), Rotation.from_quat(quats).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(geometry.quat_to_euler_xyz(quats), Rotation.from_quat(quats).as_euler("xyz"), atol=1e-9)
    back = geometry.matrix_to_quat(Rotation.from_quat(quats).as_matrix())
    np.testing.assert_allclose(np.abs(np.sum(back * quats, axis=-1)), 1.0, atol=1e-12)  # q or -q
    assert (back[:, 3] >= 0).all()


def test_axis_angle_is_robosuites_and_round_trips() -> None:
    """No sign flip: w < 0 gives a vector longer than pi, exactly as LIBERO's datasets store it."""
    quats = np.concatenate([random_quats(300, 1), downward_quats()])
    vectors = geometry.quat_to_axis_angle(quats)
    expected = np.stack([robosuite_transforms.quat2axisangle(q) for q in quats])
    np.testing.assert_allclose(vectors, expected, atol=1e-9)
    assert (np.linalg.norm(vectors[quats[:, 3] < -1e-3], axis=-1) > np.pi).all()
    np.testing.assert_allclose(geometry.axis_angle_to_quat(vectors), quats, atol=1e-9)
    np.testing.assert_allclose(geometry.axis_angle_to_quat(np.zeros(3)), [0, 0, 0, 1])


def test_shortest_rotation_vector_is_stable_near_a_half_turn() -> None:
    angles = np.array([0.0, 1e-7, 1.0, np.pi - 1e-6, np.pi])
    axis = np.array([0.6, -0.48, 0.64])
    matrices = Rotation.from_rotvec(angles[:, None] * axis).as_matrix()
    vectors = geometry.matrix_to_rotation_vector(matrices)
    np.testing.assert_allclose(Rotation.from_rotvec(vectors).as_matrix(), matrices, atol=1e-6)
    assert (np.linalg.norm(vectors, axis=-1) <= np.pi + 1e-9).all()


def test_rot6d_is_continuous_where_euler_roll_jumps() -> None:
    """Along a smooth roll through pi (gripper down), Euler roll jumps by ~2 pi; rot6d moves by
    as little as the rotation does, and is the same for q and -q."""
    quats = downward_quats()[:21]
    roll = geometry.quat_to_euler_xyz(quats)[:, 0]
    assert np.abs(np.diff(roll)).max() > 6.0
    rot6d = geometry.quat_to_rot6d(quats)
    assert np.linalg.norm(np.diff(rot6d, axis=0), axis=-1).max() < 0.05
    np.testing.assert_allclose(geometry.quat_to_rot6d(-quats), rot6d, atol=1e-12)


@pytest.mark.parametrize("yaw", [0.0, 0.7, -2.5])
def test_yaw_matrix_is_a_rotation_about_z(yaw: float) -> None:
    np.testing.assert_allclose(geometry.yaw_matrix(yaw), Rotation.from_euler("z", yaw).as_matrix(), atol=1e-12)


def test_euler_to_quat_is_scipys_and_inverts_quat_to_euler() -> None:
    euler = np.random.default_rng(2).uniform(-np.pi, np.pi, (300, 3))
    quats = geometry.euler_xyz_to_quat(euler)
    np.testing.assert_allclose(np.abs(np.sum(quats * Rotation.from_euler("xyz", euler).as_quat(), axis=-1)), 1.0, atol=1e-12)
    back = geometry.euler_xyz_to_quat(geometry.quat_to_euler_xyz(quats))
    np.testing.assert_allclose(np.abs(np.sum(back * quats, axis=-1)), 1.0, atol=1e-12)  # q or -q


@pytest.mark.sim
def test_the_simulator_and_a_robot_report_one_vector_for_one_pose() -> None:
    """The same end-effector pose read by the LIBERO env and by a real robot's env gives the same
    axis-angle (robosuite's, no sign flip) and quaternion, on the poses where conventions part:
    w < 0 (the gripper pointing down) and angles near pi."""
    from types import SimpleNamespace

    from vitabench.api.policy import STATE_KEYS
    from vitabench.api.protocol import load_protocol
    from vitabench.envs.libero_env import LiberoEnv
    from vitabench.plugins import get_suite
    from vitabench.robots.driver import RobotState
    from vitabench.robots.env import RobotEnv

    near_half_turn = Rotation.from_rotvec(np.outer([np.pi - 1e-4, np.pi - 1e-7], [0.6, -0.48, 0.64])).as_quat()
    quats = np.concatenate([downward_quats(), near_half_turn, -near_half_turn, random_quats(20, 3)])
    assert (quats[:, 3] < 0).any() and (quats[:, 3] > 0).any()

    class StillArm:
        name, dof, max_gripper_width = "still", 7, 0.08
        joint_min, joint_max = -np.ones(7), np.ones(7)

        def connect(self) -> None: ...

        def close(self) -> None: ...

    robot = RobotEnv(get_suite("real_five").task(0), load_protocol("real_robot"), state_keys=STATE_KEYS, driver=StillArm())
    simulator = SimpleNamespace(state_keys=STATE_KEYS)
    for quat in quats:
        raw = {"robot0_eef_pos": np.array([0.1, 0.2, 0.3]), "robot0_eef_quat": quat, "robot0_gripper_qpos": np.array([0.04, -0.04]),
               "robot0_joint_pos": np.zeros(7)}
        sim_state = LiberoEnv._state(simulator, raw)
        robot_state = robot._observation(RobotState(np.zeros(7), np.zeros(7), raw["robot0_eef_pos"], quat, 0.08, 0.0), {})["state"]
        for key in ("ee_pos", "ee_axis_angle", "ee_quat", "gripper_qpos"):
            np.testing.assert_array_equal(sim_state[key], robot_state[key], err_msg=key)
        np.testing.assert_allclose(sim_state["ee_axis_angle"], robosuite_transforms.quat2axisangle(quat.copy()), atol=1e-6)
