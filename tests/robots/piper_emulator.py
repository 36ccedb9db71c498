"""An arm-side PiPer emulator on python-can's virtual bus (test support, not shipped).

It decodes the command frames piper-sdk sends with its own struct code (big-endian fields as in
AgileX's CAN protocol, not the SDK's parser, so a wrong encoding on either side shows up) and
publishes the feedback frames a PiPer sends, at ``rate_hz``. It is a protocol emulator, not a
kinematic model: joints move towards joint targets (MOVE J) and the end pose towards end-pose
targets (MOVE P), each at a fixed speed; an emergency stop zeroes every speed and holds until
a resume. Every decoded command is kept in ``commands`` for tests.
"""

from __future__ import annotations

import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import can
import numpy as np

MILLI = 1000.0


@dataclass
class ArmModel:
    enabled: list[bool] = field(default_factory=lambda: [False] * 6)
    estopped: bool = False
    ctrl_mode: int = 0
    move_mode: int = 0
    speed_pct: int = 0
    joints: np.ndarray = field(default_factory=lambda: np.zeros(6))  # rad
    joint_target: np.ndarray = field(default_factory=lambda: np.zeros(6))
    joint_speed: np.ndarray = field(default_factory=lambda: np.zeros(6))  # rad/s, last tick
    pose: np.ndarray = field(default_factory=lambda: np.array([0.2, 0.0, 0.3, np.pi, 0.0, 0.0]))  # m, rad
    pose_target: np.ndarray = field(default_factory=lambda: np.array([0.2, 0.0, 0.3, np.pi, 0.0, 0.0]))
    gripper: float = 0.0  # m
    gripper_target: float = 0.0
    gripper_enabled: bool = False


class PiperEmulator:
    """Run with ``with PiperEmulator("vcan-test") as arm: ...``."""

    def __init__(self, channel: str, rate_hz: float = 200.0, joint_speed: float = 1.0, linear_speed: float = 0.2, gripper_speed: float = 0.1) -> None:
        self.channel = channel
        self.period = 1.0 / rate_hz
        self.joint_speed, self.linear_speed, self.gripper_speed = joint_speed, linear_speed, gripper_speed
        self.model = ArmModel()
        self.commands: list[tuple[int, dict[str, Any]]] = []
        self.lock = threading.Lock()
        self._pending: dict[int, bytes] = {}
        self._stop = threading.Event()
        self._bus = can.Bus(interface="virtual", channel=channel)
        self._thread = threading.Thread(target=self._run, name="piper-emulator", daemon=True)

    def __enter__(self) -> "PiperEmulator":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
        self._bus.shutdown()

    def commands_with(self, can_id: int) -> list[dict[str, Any]]:
        with self.lock:
            return [c for i, c in self.commands if i == can_id]

    # -- decoding -------------------------------------------------------------------------------
    def _decode(self, frame: can.Message) -> None:
        can_id, data = frame.arbitration_id, bytes(frame.data)
        m = self.model
        decoded: dict[str, Any]
        if can_id == 0x150:
            decoded = {"emergency_stop": data[0]}
            if data[0] == 0x01:
                m.estopped = True
                m.joint_target, m.pose_target, m.gripper_target = m.joints.copy(), m.pose.copy(), m.gripper
            elif data[0] == 0x02:
                m.estopped = False
        elif can_id == 0x151:
            decoded = {"ctrl_mode": data[0], "move_mode": data[1], "speed_pct": data[2], "mit_mode": data[3]}
            m.ctrl_mode, m.move_mode, m.speed_pct = data[0], data[1], data[2]
        elif can_id in (0x152, 0x153, 0x154, 0x155, 0x156, 0x157):
            first, second = struct.unpack(">ii", data)
            decoded = {"values": (first, second)}
            self._pending[can_id] = data
            if can_id == 0x154 and all(k in self._pending for k in (0x152, 0x153)):
                x, y, z, rx, ry, rz = (v for k in (0x152, 0x153, 0x154) for v in struct.unpack(">ii", self._pending.pop(k)))
                decoded = {"pose": (x, y, z, rx, ry, rz)}
                if not m.estopped and m.move_mode == 0x00 and all(m.enabled):
                    m.pose_target = np.concatenate([np.array([x, y, z]) / MILLI / 1000.0, np.radians([rx, ry, rz]) / MILLI])
            if can_id == 0x157 and all(k in self._pending for k in (0x155, 0x156)):
                joints = [v for k in (0x155, 0x156, 0x157) for v in struct.unpack(">ii", self._pending.pop(k))]
                decoded = {"joints": tuple(joints)}
                if not m.estopped and m.move_mode == 0x01 and all(m.enabled):
                    m.joint_target = np.radians(joints) / MILLI
        elif can_id == 0x159:
            angle, effort, code, set_zero = struct.unpack(">iHBB", data)
            decoded = {"angle": angle, "effort": effort, "code": code, "set_zero": set_zero}
            m.gripper_enabled = code in (0x01, 0x03)
            if m.gripper_enabled and not m.estopped:
                m.gripper_target = abs(angle) / MILLI / 1000.0
        elif can_id == 0x471:
            motor, flag = data[0], data[1]
            decoded = {"motor": motor, "enable_flag": flag}
            motors = range(6) if motor in (7, 0xFF) else [motor - 1]
            for i in motors:
                if 0 <= i < 6:
                    m.enabled[i] = flag == 0x02
        else:
            decoded = {"raw": data.hex()}
        with self.lock:
            self.commands.append((can_id, decoded))

    # -- the arm ------------------------------------------------------------------------------
    def _tick(self, dt: float) -> None:
        m = self.model
        if m.estopped or not all(m.enabled):
            m.joint_speed = np.zeros(6)
            return
        step = np.clip(m.joint_target - m.joints, -self.joint_speed * dt, self.joint_speed * dt)
        m.joints = m.joints + step
        m.joint_speed = step / dt
        delta = m.pose_target - m.pose
        m.pose = m.pose + np.clip(delta, -self.linear_speed * dt, self.linear_speed * dt)
        m.gripper += float(np.clip(m.gripper_target - m.gripper, -self.gripper_speed * dt, self.gripper_speed * dt))

    def _send(self, can_id: int, data: bytes) -> None:
        self._bus.send(can.Message(arbitration_id=can_id, data=data, is_extended_id=False))

    def _publish(self) -> None:
        m = self.model
        moving = bool(np.abs(m.joint_target - m.joints).max() > 1e-6 or np.abs(m.pose_target - m.pose).max() > 1e-7)
        self._send(0x2A1, struct.pack(">BBBBBBh", m.ctrl_mode, 0x01 if m.estopped else 0x00, m.move_mode, 0, int(moving), 0, 0))
        pose = [int(round(v * 1000.0 * MILLI)) for v in m.pose[:3]] + [int(round(np.degrees(v) * MILLI)) for v in m.pose[3:]]
        for can_id, pair in zip((0x2A2, 0x2A3, 0x2A4), (pose[0:2], pose[2:4], pose[4:6])):
            self._send(can_id, struct.pack(">ii", *pair))
        joints = [int(round(np.degrees(q) * MILLI)) for q in m.joints]
        for can_id, pair in zip((0x2A5, 0x2A6, 0x2A7), (joints[0:2], joints[2:4], joints[4:6])):
            self._send(can_id, struct.pack(">ii", *pair))
        self._send(0x2A8, struct.pack(">ihBB", int(round(m.gripper * 1000.0 * MILLI)), 0, 0x40 if m.gripper_enabled else 0, 0))
        for i in range(6):
            speed = int(np.clip(round(m.joint_speed[i] * MILLI), -32768, 32767))
            self._send(0x251 + i, struct.pack(">hHi", speed, 0, 0))
            self._send(0x261 + i, struct.pack(">HhbBH", 240, 30, 30, 0x40 if m.enabled[i] else 0, 0))

    def _run(self) -> None:
        next_tick = time.monotonic()
        while not self._stop.is_set():
            timeout = max(0.0, next_tick - time.monotonic())
            frame = self._bus.recv(timeout)
            if frame is not None:
                self._decode(frame)
                continue
            with self.lock:
                self._tick(self.period)
            self._publish()
            next_tick += self.period
