"""Rotations, in one convention for the whole project (simulator, robots, datasets, models).

Quaternions are ``(x, y, z, w)``, as robosuite and LIBERO report ``robot0_eef_quat``; ``q`` and
``-q`` are the same rotation and no function here flips a sign to pick one. Axis-angle vectors
follow robosuite's ``quat2axisangle`` (what LIBERO's datasets store as ``ee_ori`` and what
openpi's LIBERO client sends): angle ``2·acos(w)`` in ``[0, 2π]``, so a quaternion with
``w < 0`` gives a vector longer than π, and :func:`axis_angle_to_quat` inverts it exactly.
Every function takes arrays with any leading shape (``[..., 4]``, ``[..., 3]``, ``[..., 3, 3]``).
"""

from __future__ import annotations

import numpy as np


def _as_float(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def quat_to_matrix(quat: np.ndarray) -> np.ndarray:
    """Rotation matrices ``[..., 3, 3]`` of quaternions ``[..., 4]`` (normalised first)."""
    q = _as_float(quat)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = np.moveaxis(q, -1, 0)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    return np.stack([np.stack(row, axis=-1) for row in rows], axis=-2)


def quat_wxyz_to_xyzw(quat: np.ndarray) -> np.ndarray:
    """MuJoCo's ``(w, x, y, z)`` order to this module's ``(x, y, z, w)``."""
    return np.roll(_as_float(quat), -1, axis=-1)


def matrix_to_quat(matrix: np.ndarray) -> np.ndarray:
    """Quaternions ``[..., 4]`` of rotation matrices (Shepperd's method; ``w >= 0``)."""
    m = _as_float(matrix)
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    candidates = np.stack(
        [
            np.stack([m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1], 1 + trace], -1),
            np.stack([1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2], m[..., 0, 1] + m[..., 1, 0],
                      m[..., 0, 2] + m[..., 2, 0], m[..., 2, 1] - m[..., 1, 2]], -1),
            np.stack([m[..., 0, 1] + m[..., 1, 0], 1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2],
                      m[..., 1, 2] + m[..., 2, 1], m[..., 0, 2] - m[..., 2, 0]], -1),
            np.stack([m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1],
                      1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2], m[..., 1, 0] - m[..., 0, 1]], -1),
        ],
        axis=-2,
    )  # [..., 4 candidates, 4]; the one with the largest norm is the best conditioned
    norms = np.linalg.norm(candidates, axis=-1)
    best = np.take_along_axis(candidates, np.argmax(norms, axis=-1)[..., None, None], axis=-2)[..., 0, :]
    quat = best / np.linalg.norm(best, axis=-1, keepdims=True)
    return np.where(quat[..., 3:] < 0, -quat, quat)


def quat_to_axis_angle(quat: np.ndarray) -> np.ndarray:
    """Rotation vectors ``[..., 3]`` as robosuite's ``quat2axisangle`` computes them (no sign flip)."""
    q = _as_float(quat)
    w = np.clip(q[..., 3], -1.0, 1.0)
    sin_half = np.sqrt(np.maximum(1.0 - w * w, 0.0))
    small = sin_half < 1e-8
    scale = np.where(small, 0.0, 2.0 * np.arccos(w) / np.where(small, 1.0, sin_half))
    return q[..., :3] * scale[..., None]


def axis_angle_to_quat(vector: np.ndarray) -> np.ndarray:
    """Quaternions ``[..., 4]`` of rotation vectors; the inverse of :func:`quat_to_axis_angle`."""
    v = _as_float(vector)
    angle = np.linalg.norm(v, axis=-1, keepdims=True)
    small = angle < 1e-12
    axis = np.where(small, 0.0, v / np.where(small, 1.0, angle))
    return np.concatenate([axis * np.sin(angle / 2.0), np.cos(angle / 2.0)], axis=-1)


def matrix_to_rotation_vector(matrix: np.ndarray) -> np.ndarray:
    """The shortest rotation vector (angle in ``[0, π]``) of rotation matrices, stable near π."""
    quat = matrix_to_quat(matrix)  # w >= 0, so the angle 2·acos(w) is at most π
    return quat_to_axis_angle(quat)


def quat_to_euler_xyz(quat: np.ndarray) -> np.ndarray:
    """Roll, pitch, yaw ``[..., 3]`` (extrinsic x-y-z, scipy's ``as_euler("xyz")``).

    Roll jumps between +π and -π when the gripper points down (LIBERO's working pose): use
    :func:`quat_to_rot6d` where a learned model reads the orientation.
    """
    x, y, z, w = np.moveaxis(_as_float(quat), -1, 0)
    roll = np.arctan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = np.arcsin(np.clip(2 * (w * y - z * x), -1.0, 1.0))
    yaw = np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return np.stack([roll, pitch, yaw], axis=-1)


def euler_xyz_to_quat(euler: np.ndarray) -> np.ndarray:
    """Quaternions ``[..., 4]`` of roll, pitch, yaw ``[..., 3]`` (extrinsic x-y-z, ``R = Rz Ry Rx``,
    scipy's ``from_euler("xyz")`` up to the sign of ``q``); the inverse of :func:`quat_to_euler_xyz`."""
    half = _as_float(euler) / 2.0
    (cx, cy, cz), (sx, sy, sz) = np.moveaxis(np.cos(half), -1, 0), np.moveaxis(np.sin(half), -1, 0)
    return np.stack(
        [
            sx * cy * cz - cx * sy * sz,
            cx * sy * cz + sx * cy * sz,
            cx * cy * sz - sx * sy * cz,
            cx * cy * cz + sx * sy * sz,
        ],
        axis=-1,
    )


def quat_to_rot6d(quat: np.ndarray) -> np.ndarray:
    """The first two columns of the rotation matrix, ``[..., 6]``: continuous in the rotation
    (Zhou et al., CVPR 2019) and the same for ``q`` and ``-q``."""
    matrix = quat_to_matrix(quat)
    return np.concatenate([matrix[..., :, 0], matrix[..., :, 1]], axis=-1)


def yaw_matrix(yaw: float) -> np.ndarray:
    """Rotation about world z by ``yaw`` radians."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
