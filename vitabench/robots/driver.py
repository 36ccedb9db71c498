"""The robot driver interface: what :class:`~vitabench.robots.env.RobotEnv` needs from an arm.

A driver speaks one robot's real protocol (libfranka through franky, PiPer's CAN frames through
piper-sdk). Units are SI everywhere: metres, radians, seconds; orientations are quaternions in
``xyzw`` order, converted only with :mod:`vitabench.geometry` (the convention the LIBERO env, the
datasets and the models share). Drivers are built by name with :func:`make_driver`.
"""

from __future__ import annotations

import importlib
import inspect
import math
from dataclasses import dataclass
from typing import Any, Mapping, Protocol

import numpy as np

from vitabench.api.config import parse_key_values
from vitabench.api.errors import VitabenchError

#: robot name -> lazy ``module:Class`` of its driver.
ROBOT_DRIVERS: dict[str, str] = {
    "franka": "vitabench.robots.franka:FrankaDriver",
    "piper": "vitabench.robots.piper:PiperDriver",
}


class RobotError(VitabenchError):
    """A robot that cannot be reached, refuses a command, or reports an error."""


@dataclass(frozen=True)
class RobotState:
    """One reading of the arm: joints, end effector in the base frame, gripper opening."""

    joint_pos: np.ndarray  # [dof] rad
    joint_vel: np.ndarray  # [dof] rad/s (zeros where the robot reports none)
    ee_pos: np.ndarray  # [3] m
    ee_quat: np.ndarray  # [4] xyzw
    gripper_width: float  # m, distance between the fingers
    stamp: float  # time.monotonic() of the reading

    def is_finite(self) -> bool:
        return all(np.isfinite(v).all() for v in (self.joint_pos, self.joint_vel, self.ee_pos, self.ee_quat)) and math.isfinite(
            self.gripper_width
        )


class RobotDriver(Protocol):
    """One arm and its gripper over the robot's own protocol."""

    name: str
    dof: int
    max_gripper_width: float
    joint_min: np.ndarray  # [dof] rad
    joint_max: np.ndarray  # [dof] rad

    def connect(self) -> None:
        """Open the connection (nothing moves)."""

    def read_state(self) -> RobotState:
        """A fresh state reading."""

    def move_home(self) -> None:
        """Move to the home joint configuration and open the gripper (blocking)."""

    def send_ee_twist(self, linear: np.ndarray, angular: np.ndarray, period_s: float) -> None:
        """Move the end effector at this twist (m/s, rad/s, base frame) for about one period.

        If no further command arrives the arm comes to rest on its own (a dead man's switch).
        """

    def send_joint_targets(self, joints: np.ndarray) -> None:
        """Move towards these joint positions (rad)."""

    def send_gripper(self, closed: bool) -> None:
        """Close or open the gripper (non-blocking)."""

    def estop(self) -> None:
        """Stop at once: bring the arm to zero velocity, then hold position."""

    def close(self) -> None:
        """Release the robot (no motion is left running)."""


def driver_parameters(robot: str) -> list[str]:
    """The keyword arguments the driver of ``robot`` accepts."""
    cls = _driver_class(robot)
    return [p for p in inspect.signature(cls).parameters if p != "self"]


def _driver_class(robot: str) -> type:
    if robot not in ROBOT_DRIVERS:
        raise VitabenchError(f"unknown robot {robot!r}; accepted: {', '.join(sorted(ROBOT_DRIVERS))}")
    module_name, _, attr = ROBOT_DRIVERS[robot].partition(":")
    return getattr(importlib.import_module(module_name), attr)


def make_driver(robot: str, args: Mapping[str, Any]) -> RobotDriver:
    """The driver of ``robot`` built with ``args`` (``--robot-arg`` values); bad keys are named."""
    cls = _driver_class(robot)
    accepted = driver_parameters(robot)
    unknown = sorted(set(args) - set(accepted))
    if unknown:
        raise VitabenchError(
            f"--robot-arg {', '.join(unknown)} is not an argument of robot {robot!r}; accepted: {', '.join(accepted)}"
        )
    return cls(**args)


def parse_robot_args(pairs: list[str]) -> dict[str, Any]:
    """``--robot-arg KEY=VALUE`` pairs (:func:`~vitabench.api.config.parse_key_values`); keys are
    identifiers, or dotted like ``camera.agentview``."""
    return parse_key_values(
        pairs, "--robot-arg", dotted=True, accepted="KEY=VALUE, e.g. host=172.16.0.2 or camera.agentview=opencv:0"
    )
