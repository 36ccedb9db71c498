"""Franka (Panda / FR3) through franky-control, i.e. the libfranka protocol.

``--robot franka --robot-arg host=172.16.0.2``. End-effector twists run as franky
``CartesianVelocityMotion`` s lasting two control periods, each new one preempting the last, so an
arm whose commands stop coming decelerates to rest by itself. The e-stop preempts the running
motion with ``CartesianVelocityStopMotion`` (zero velocity within the arm's limits), after which no
motion runs and the robot holds its position. ``realtime=false`` (the default) passes
``RealtimeConfig.Ignore`` for kernels without realtime scheduling; use ``realtime=true`` on a
PREEMPT_RT machine. Tested against franky-sim (``.ci/setup-franky-sim.sh``).
"""

from __future__ import annotations

import math
import sys
import time
from typing import Sequence

import numpy as np

from vitabench.robots.driver import RobotError, RobotState

#: A common ready pose (rad): elbow up, hand pointing down.
HOME = (0.0, -math.pi / 4, 0.0, -3 * math.pi / 4, 0.0, math.pi / 2, math.pi / 4)
JOINT_MIN = np.array([-2.7437, -1.7837, -2.9007, -3.0421, -2.8065, 0.5445, -3.0159])
JOINT_MAX = np.array([2.7437, 1.7837, 2.9007, -0.1518, 2.8065, 4.5169, 3.0159])
#: How franky's RuntimeError starts when its trajectory generator finds no trajectory.
PLANNER_FAILURE = "Motion planner failed"


class FrankaDriver:
    """A Franka arm and its gripper at ``host`` (the FCI address)."""

    name = "franka"
    dof = 7
    joint_min = JOINT_MIN
    joint_max = JOINT_MAX

    def __init__(
        self,
        host: str = "172.16.0.2",
        realtime: bool = False,
        dynamics: float = 0.2,
        gripper: bool = True,
        gripper_speed: float = 0.05,
        grasp_force: float = 20.0,
        home: Sequence[float] = HOME,
    ) -> None:
        if not 0 < float(dynamics) <= 1:
            raise RobotError(f"franka dynamics={dynamics}: accepted: a relative dynamics factor in (0, 1]")
        if len(home) != self.dof:
            raise RobotError(f"franka home={list(home)}: accepted: {self.dof} joint positions (rad)")
        self.host = str(host)
        self.realtime = bool(realtime)
        self.dynamics = float(dynamics)
        self.use_gripper = bool(gripper)
        self.gripper_speed = float(gripper_speed)
        self.grasp_force = float(grasp_force)
        self.home = np.asarray(home, dtype=np.float64)
        self.max_gripper_width = 0.08
        self._robot = None
        self._gripper = None
        self._gripper_closed: bool | None = None
        self._gripper_width = self.max_gripper_width

    def connect(self) -> None:
        import franky

        self._franky = franky
        config = franky.RealtimeConfig.Enforce if self.realtime else franky.RealtimeConfig.Ignore
        try:
            self._robot = franky.Robot(self.host, realtime_config=config)
            self._robot.relative_dynamics_factor = self.dynamics
            if self._robot.has_errors:
                self._robot.recover_from_errors()
            if self.use_gripper:
                self._gripper = franky.Gripper(self.host)
                self.max_gripper_width = float(self._gripper.max_width)
                self._gripper_width = float(self._gripper.width)
        except Exception as exc:  # franky raises its own network/incompatibility exceptions
            raise RobotError(
                f"franka at host={self.host} cannot be reached ({type(exc).__name__}: {exc}); "
                "accepted: the FCI address of a running robot (or of franky-sim --hostname HOST)"
            ) from None

    @property
    def robot(self):
        if self._robot is None:
            raise RobotError("franka driver used before connect()")
        return self._robot

    def read_state(self) -> RobotState:
        state = self.robot.state
        pose = state.O_T_EE
        if self._gripper is not None and self._gripper_closed is not None:
            self._gripper_width = float(self._gripper.width)
        return RobotState(
            joint_pos=np.asarray(state.q, dtype=np.float64),
            joint_vel=np.asarray(state.dq, dtype=np.float64),
            ee_pos=np.asarray(pose.translation, dtype=np.float64),
            ee_quat=np.asarray(pose.quaternion, dtype=np.float64),  # Eigen order: x, y, z, w
            gripper_width=self._gripper_width,
            stamp=time.monotonic(),
        )

    def _move(self, motion, asynchronous: bool) -> None:
        """Send ``motion``; a control error of the robot is the episode's error.

        When franky's trajectory generator finds no trajectory from the measured state ("Motion
        planner failed with error code -110", Ruckig's; raised by the command after an asynchronous
        motion aborted, with the arm holding), the motion is sent once more from the state now
        measured, with a line on stderr; a second failure in a row is the episode's error.
        """
        for attempt in (1, 2):
            try:
                self.robot.move(motion, asynchronous=asynchronous)
                return
            except self._franky.ControlException as exc:
                if self.robot.has_errors:
                    raise RobotError(f"franka at {self.host} reported a control error: {exc}") from None
                return
            except RuntimeError as exc:
                if not str(exc).startswith(PLANNER_FAILURE):
                    raise
                if attempt == 2:
                    raise RobotError(f"franka at {self.host}: {exc}, twice in a row") from None
                print(f"franka at {self.host}: {exc}; the motion is sent again", file=sys.stderr, flush=True)

    def move_home(self) -> None:
        self._move(self._franky.JointMotion(self.home.tolist()), asynchronous=False)
        if self._gripper is not None:
            self._gripper.move(self.max_gripper_width, self.gripper_speed)
            self._gripper_closed = False
            self._gripper_width = float(self._gripper.width)

    def send_ee_twist(self, linear: np.ndarray, angular: np.ndarray, period_s: float) -> None:
        franky = self._franky
        hold_ms = max(2, int(round(2000 * period_s)))
        twist = franky.Twist(np.asarray(linear, dtype=np.float64), np.asarray(angular, dtype=np.float64))
        self._move(franky.CartesianVelocityMotion(twist, duration=franky.Duration(hold_ms)), asynchronous=True)

    def send_joint_targets(self, joints: np.ndarray) -> None:
        self._move(self._franky.JointMotion(np.asarray(joints, dtype=np.float64).tolist()), asynchronous=True)

    def send_gripper(self, closed: bool) -> None:
        if self._gripper is None or closed == self._gripper_closed:
            return
        if closed:
            self._gripper.grasp_async(0.0, self.gripper_speed, self.grasp_force, epsilon_inner=0.08, epsilon_outer=0.08)
        else:
            self._gripper.move_async(self.max_gripper_width, self.gripper_speed)
        self._gripper_closed = closed

    def estop(self) -> None:
        robot = self.robot
        try:
            robot.move(self._franky.CartesianVelocityStopMotion(relative_dynamics_factor=1.0), asynchronous=False)
        except Exception:  # noqa: BLE001 - another motion type was running: stop it outright
            robot.stop()
            try:
                robot.join_motion(1.0)
            except self._franky.ControlException:
                pass
        if robot.has_errors:
            robot.recover_from_errors()

    def close(self) -> None:
        if self._robot is not None:
            try:
                self._robot.stop()
                self._robot.join_motion(1.0)
            except Exception:  # noqa: BLE001 - preempting our own motion raises; nothing is left running
                pass
        self._robot, self._gripper = None, None
