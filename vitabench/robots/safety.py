"""Safety checks applied to every command before it reaches the robot.

* A policy action that is not 7 finite values in ``[-1, 1]`` stops the episode
  (:class:`SafetyStop`, recorded as the episode's error) after the arm is stopped.
* End-effector twists are limited in speed, then clipped so that the end effector stays inside
  the workspace box ``LOOKAHEAD_PERIODS`` control periods ahead (a command may still act one
  period after the next is sent, so one period ahead overshoots on a late loop); a twist that
  would leave the box keeps only its components that stay inside (or move back inside). Every
  clip is a :class:`SafetyEvent`.
* Joint targets are clipped to the joint limits and to a maximum change per control period.
* A robot state with NaN or inf values stops the episode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vitabench.api.errors import VitabenchError
from vitabench.api.policy import ACTION_DIM


class SafetyStop(VitabenchError):
    """The arm was stopped because a command or a reading was unsafe."""


@dataclass(frozen=True)
class SafetyEvent:
    """One clipped command: which limit, by how much, at which step."""

    step: int
    kind: str  # "workspace" | "speed" | "joint_limit" | "joint_step"
    detail: str

    def __str__(self) -> str:
        return f"step {self.step}: {self.kind} {self.detail}"


@dataclass(frozen=True)
class SafetyLimits:
    """The box the end effector must stay in (base frame, m) and the speed limits."""

    workspace_min: tuple[float, float, float] = (0.25, -0.4, 0.05)
    workspace_max: tuple[float, float, float] = (0.8, 0.4, 0.7)
    max_linear_speed: float = 0.25  # m/s
    max_angular_speed: float = 1.0  # rad/s
    max_joint_step: float = 0.05  # rad per control period (joint-target actions)

    def __post_init__(self) -> None:
        low, high = np.asarray(self.workspace_min), np.asarray(self.workspace_max)
        if low.shape != (3,) or high.shape != (3,) or not (low < high).all():
            raise VitabenchError(
                f"workspace_min={self.workspace_min} / workspace_max={self.workspace_max}: "
                "accepted: three numbers each, every min below its max"
            )
        for name in ("max_linear_speed", "max_angular_speed", "max_joint_step"):
            if not getattr(self, name) > 0:
                raise VitabenchError(f"{name}={getattr(self, name)}: accepted: a number > 0")


def check_action(action: np.ndarray) -> np.ndarray:
    """The action as float64 ``[7]``; :class:`SafetyStop` if it is not 7 finite values in [-1, 1]."""
    array = np.asarray(action, dtype=np.float64).reshape(-1)
    if array.shape != (ACTION_DIM,):
        raise SafetyStop(f"action has shape {array.shape}; accepted: {ACTION_DIM} values; the arm was stopped")
    if not np.isfinite(array).all():
        bad = int(np.argwhere(~np.isfinite(array))[0][0])
        raise SafetyStop(f"action[{bad}]={array[bad]} is not finite; the arm was stopped")
    outside = np.abs(array) > 1.0 + 1e-6
    if outside.any():
        bad = int(np.argmax(outside))
        raise SafetyStop(f"action[{bad}]={array[bad]:.4g} is outside [-1, 1]; the arm was stopped")
    return array


def check_state_finite(finite: bool, step: int) -> None:
    if not finite:
        raise SafetyStop(f"the robot reported a NaN/inf state at step {step}; the arm was stopped")


#: How many control periods ahead the workspace box must still hold.
LOOKAHEAD_PERIODS = 2


def limit_twist(
    limits: SafetyLimits, ee_pos: np.ndarray, linear: np.ndarray, angular: np.ndarray, period_s: float, step: int
) -> tuple[np.ndarray, np.ndarray, list[SafetyEvent]]:
    """The twist actually sent and the clips applied to it."""
    events: list[SafetyEvent] = []
    linear = np.asarray(linear, dtype=np.float64).copy()
    angular = np.asarray(angular, dtype=np.float64).copy()
    speed = float(np.linalg.norm(linear))
    if speed > limits.max_linear_speed:
        linear *= limits.max_linear_speed / speed
        events.append(SafetyEvent(step, "speed", f"linear {speed:.3f} m/s > {limits.max_linear_speed:g}"))
    turn = float(np.linalg.norm(angular))
    if turn > limits.max_angular_speed:
        angular *= limits.max_angular_speed / turn
        events.append(SafetyEvent(step, "speed", f"angular {turn:.3f} rad/s > {limits.max_angular_speed:g}"))
    low, high = np.asarray(limits.workspace_min), np.asarray(limits.workspace_max)
    horizon_s = LOOKAHEAD_PERIODS * period_s
    ahead = ee_pos + linear * horizon_s
    for axis, name in enumerate("xyz"):
        if ahead[axis] > high[axis] and linear[axis] > 0:
            allowed = max(0.0, (high[axis] - ee_pos[axis]) / horizon_s)
            events.append(SafetyEvent(step, "workspace", f"{name} {ahead[axis]:.3f} > max {high[axis]:g}, v{name} {linear[axis]:.3f} -> {allowed:.3f}"))
            linear[axis] = allowed
        elif ahead[axis] < low[axis] and linear[axis] < 0:
            allowed = min(0.0, (low[axis] - ee_pos[axis]) / horizon_s)
            events.append(SafetyEvent(step, "workspace", f"{name} {ahead[axis]:.3f} < min {low[axis]:g}, v{name} {linear[axis]:.3f} -> {allowed:.3f}"))
            linear[axis] = allowed
    return linear, angular, events


def limit_joint_targets(
    limits: SafetyLimits,
    current: np.ndarray,
    target: np.ndarray,
    joint_min: np.ndarray,
    joint_max: np.ndarray,
    step: int,
) -> tuple[np.ndarray, list[SafetyEvent]]:
    """Joint targets clipped to the joint limits and to ``max_joint_step`` from ``current``."""
    events: list[SafetyEvent] = []
    clipped = np.clip(target, joint_min, joint_max)
    for j in np.flatnonzero(clipped != target):
        events.append(SafetyEvent(step, "joint_limit", f"joint {j + 1} target {target[j]:.3f} -> {clipped[j]:.3f}"))
    stepped = np.clip(clipped, current - limits.max_joint_step, current + limits.max_joint_step)
    for j in np.flatnonzero(np.abs(stepped - clipped) > 1e-12):
        events.append(SafetyEvent(step, "joint_step", f"joint {j + 1} change {clipped[j] - current[j]:.3f} rad > {limits.max_joint_step:g}"))
    return stepped, events
