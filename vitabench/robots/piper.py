"""AgileX PiPer (6 joints + parallel gripper) through piper-sdk's CAN protocol.

``--robot piper --robot-arg can=can0`` (``interface=socketcan``, the default; python-can's
``virtual`` reaches an emulator in the same process). The SDK encodes the commands:
enable (0x471), mode (0x151: CAN control, MOVE P / MOVE J, speed %), end pose (0x152-0x154),
joints (0x155-0x157), gripper (0x159), emergency stop / resume (0x150); the arm answers with
status (0x2A1), end pose (0x2A2-0x2A4), joints (0x2A5-0x2A7), gripper (0x2A8), motor speeds
(0x251-0x256) and driver status (0x261-0x266, whose bit 6 says a motor is enabled).

End-effector twists become end-pose targets (MOVE P) one control period ahead of the previous
target, so the pose the arm is sent advances at the commanded speed; rotations are added to the
SDK's fixed-axis X-Y-Z Euler angles (a small-angle step per period). The e-stop is PiPer's quick
emergency stop (the arm halts and holds); the next ``move_home`` resumes and re-enables it.
"""

from __future__ import annotations

import math
import time
from typing import Sequence

import numpy as np

from vitabench.geometry import euler_xyz_to_quat
from vitabench.robots.driver import RobotError, RobotState

#: Joint limits (rad) from AgileX's PiPer manual.
JOINT_MIN = np.radians([-150.0, 0.0, -170.0, -100.0, -70.0, -120.0])
JOINT_MAX = np.radians([150.0, 180.0, 0.0, 100.0, 70.0, 120.0])
HOME = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
MILLI = 1000.0
MOVE_P, MOVE_J = 0x00, 0x01
CAN_CONTROL = 0x01
GRIPPER_ENABLE = 0x01
ESTOP, RESUME = 0x01, 0x02
FEEDBACK_TIMEOUT_S = 1.0


def _deg_milli(rad: float) -> int:
    return int(round(math.degrees(rad) * MILLI))


class PiperDriver:
    """A PiPer arm on CAN channel ``can``."""

    name = "piper"
    dof = 6
    joint_min = JOINT_MIN
    joint_max = JOINT_MAX
    max_gripper_width = 0.07

    def __init__(
        self,
        can: str = "can0",
        interface: str = "socketcan",
        speed: int = 50,
        enable_timeout: float = 5.0,
        home_timeout: float = 15.0,
        gripper_effort: float = 1.0,
        home: Sequence[float] = HOME,
    ) -> None:
        if not 1 <= int(speed) <= 100:
            raise RobotError(f"piper speed={speed}: accepted: a percentage 1-100")
        if len(home) != self.dof:
            raise RobotError(f"piper home={list(home)}: accepted: {self.dof} joint positions (rad)")
        self.can = str(can)
        self.interface = str(interface)
        self.speed = int(speed)
        self.enable_timeout = float(enable_timeout)
        self.home_timeout = float(home_timeout)
        self.gripper_effort = int(round(float(gripper_effort) * MILLI))  # 0.001 N·m
        self.home = np.asarray(home, dtype=np.float64)
        self._arm = None
        self._target: np.ndarray | None = None  # x, y, z (m), rx, ry, rz (rad)
        self._gripper_closed: bool | None = None
        self._estopped = False

    # -- connection ---------------------------------------------------------------------------
    def connect(self) -> None:
        from piper_sdk import C_PiperInterface_V2

        arm = C_PiperInterface_V2(self.can, judge_flag=False, can_auto_init=False)
        try:
            arm.CreateCanBus(self.can, bustype=self.interface, judge_flag=False)
        except ConnectionError:
            raise RobotError(f"piper CAN channel can={self.can} (interface={self.interface}) cannot be opened; accepted: an UP CAN interface") from None
        arm.ConnectPort(can_init=True)
        self._arm = arm
        self._wait_feedback()
        self.enable()

    @property
    def arm(self):
        if self._arm is None:
            raise RobotError("piper driver used before connect()")
        return self._arm

    def _wait_feedback(self) -> None:
        deadline = time.monotonic() + self.enable_timeout
        while self.arm.GetArmJointMsgs().time_stamp == 0:
            if time.monotonic() > deadline:
                raise RobotError(f"no PiPer feedback on can={self.can} within {self.enable_timeout:g} s; is the arm powered and on this bus?")
            time.sleep(0.01)

    def enable(self) -> None:
        """Enable every motor and the gripper; waits until the drivers report enabled."""
        deadline = time.monotonic() + self.enable_timeout
        while not self.arm.EnablePiper():
            if time.monotonic() > deadline:
                raise RobotError(f"piper on can={self.can} did not enable its motors within {self.enable_timeout:g} s: {self.arm.GetArmEnableStatus()}")
            time.sleep(0.02)
        self.arm.GripperCtrl(0, self.gripper_effort, GRIPPER_ENABLE, 0)

    # -- state --------------------------------------------------------------------------------
    def status(self) -> dict[str, int]:
        """The arm's status frame (0x2A1): control mode, arm status (1 = emergency stop), motion status."""
        status = self.arm.GetArmStatus().arm_status
        return {"ctrl_mode": int(status.ctrl_mode), "arm_status": int(status.arm_status), "motion_status": int(status.motion_status)}

    def read_state(self) -> RobotState:
        arm = self.arm
        joints_msg = arm.GetArmJointMsgs()
        if time.time() - joints_msg.time_stamp > FEEDBACK_TIMEOUT_S:
            raise RobotError(f"piper on can={self.can}: no joint feedback for {time.time() - joints_msg.time_stamp:.1f} s")
        js = joints_msg.joint_state
        joints = np.radians([js.joint_1, js.joint_2, js.joint_3, js.joint_4, js.joint_5, js.joint_6]) / MILLI
        pose = arm.GetArmEndPoseMsgs().end_pose
        position = np.array([pose.X_axis, pose.Y_axis, pose.Z_axis], dtype=np.float64) / MILLI / 1000.0
        angles = np.radians([pose.RX_axis, pose.RY_axis, pose.RZ_axis]) / MILLI
        high = arm.GetArmHighSpdInfoMsgs()
        speeds = np.array([getattr(high, f"motor_{i}").motor_speed for i in range(1, 7)], dtype=np.float64) / MILLI
        gripper = arm.GetArmGripperMsgs().gripper_state.grippers_angle / MILLI / 1000.0
        return RobotState(
            joint_pos=joints,
            joint_vel=speeds,
            ee_pos=position,
            ee_quat=euler_xyz_to_quat(angles),
            gripper_width=float(gripper),
            stamp=time.monotonic(),
        )

    def _pose(self) -> np.ndarray:
        pose = self.arm.GetArmEndPoseMsgs().end_pose
        return np.concatenate(
            [np.array([pose.X_axis, pose.Y_axis, pose.Z_axis]) / MILLI / 1000.0, np.radians([pose.RX_axis, pose.RY_axis, pose.RZ_axis]) / MILLI]
        )

    # -- commands -----------------------------------------------------------------------------
    def move_home(self) -> None:
        if self._estopped:
            self.arm.EmergencyStop(RESUME)
            self._estopped = False
            self.enable()
        self.send_joint_targets(self.home)
        deadline = time.monotonic() + self.home_timeout
        while np.abs(self.read_state().joint_pos - self.home).max() > math.radians(0.5):
            if time.monotonic() > deadline:
                raise RobotError(f"piper did not reach its home pose within {self.home_timeout:g} s")
            time.sleep(0.01)
        self.send_gripper(False)
        self._target = None

    def send_ee_twist(self, linear: np.ndarray, angular: np.ndarray, period_s: float) -> None:
        if self._target is None:
            self._target = self._pose()
        self._target = self._target + np.concatenate([linear, angular]) * period_s
        x, y, z = (int(round(v * 1000.0 * MILLI)) for v in self._target[:3])
        rx, ry, rz = (_deg_milli(v) for v in self._target[3:])
        self.arm.MotionCtrl_2(CAN_CONTROL, MOVE_P, self.speed, 0x00)
        self.arm.EndPoseCtrl(x, y, z, rx, ry, rz)

    def send_joint_targets(self, joints: np.ndarray) -> None:
        self.arm.MotionCtrl_2(CAN_CONTROL, MOVE_J, self.speed, 0x00)
        self.arm.JointCtrl(*(_deg_milli(q) for q in joints))
        self._target = None

    def send_gripper(self, closed: bool) -> None:
        if closed == self._gripper_closed:
            return
        width = 0 if closed else int(round(self.max_gripper_width * 1000.0 * MILLI))
        self.arm.GripperCtrl(width, self.gripper_effort, GRIPPER_ENABLE, 0)
        self._gripper_closed = closed

    def estop(self) -> None:
        self.arm.EmergencyStop(ESTOP)
        self._estopped = True
        self._target = None

    def close(self) -> None:
        if self._arm is not None:
            self._arm.DisconnectPort()
        self._arm = None
