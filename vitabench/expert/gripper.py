"""The gripper as the expert commands it: open/close commands, its downward frame, the OSC_POSE
scales, and yaw angles of its fingers (rotations in general: :mod:`vitabench.geometry`)."""

from __future__ import annotations

import numpy as np

#: Gripper commands.
OPEN, CLOSE = -1.0, 1.0
#: The gripper points down with its fingers along world -y at yaw 0 (LIBERO's home pose).
DOWN = np.diag([1.0, -1.0, -1.0])
#: OSC_POSE scales: an action of 1 asks for 5 cm and 0.5 rad.
POS_SCALE, ROT_SCALE = 0.05, 0.5


def gripper_yaw(ee_rotation: np.ndarray) -> float:
    """Yaw of the finger axis (the gripper frame's y axis), 0 at LIBERO's home pose."""
    fingers = ee_rotation[:, 1]
    return float(np.arctan2(fingers[0], -fingers[1]))


def wrap_half_turn(angle: float) -> float:
    """An angle modulo pi in ``[-pi/2, pi/2)``: the parallel gripper is symmetric under a half turn."""
    return float((angle + np.pi / 2) % np.pi - np.pi / 2)


def wrap_full_turn(angle: float) -> float:
    """An angle modulo 2 pi in ``[-pi, pi)``."""
    return float((angle + np.pi) % (2 * np.pi) - np.pi)


def finger_yaw_for(direction_xy: np.ndarray) -> float:
    """Gripper yaw that puts the finger axis along a horizontal direction."""
    return float(np.arctan2(direction_xy[0], -direction_xy[1]))

