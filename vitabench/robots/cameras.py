"""Cameras for real robots: one interface, OpenCV and RealSense backends, and a rendered stand-in.

A camera is named by a spec string given with ``--robot-arg camera.NAME=SPEC``, where NAME is the
camera name the policy asks for (``agentview``, ``robot0_eye_in_hand``) and SPEC one of:

* ``opencv:INDEX_OR_PATH``: a V4L2/USB camera (or a video file) through OpenCV;
* ``realsense:SERIAL``: an Intel RealSense colour stream (needs ``pyrealsense2``);
* ``render:agentview`` / ``render:wrist``: a STAND-IN, not a camera: robosuite's MuJoCo model of
  the Panda arm rendered at the joint positions the robot reports, from a fixed third-person
  view or from the hand. It exists for tests and dry runs on machines with no physical camera
  (no scene objects are seen), so the frames follow the real arm's measured state.

Every backend returns RGB ``uint8[resolution, resolution, 3]``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Protocol

import numpy as np

from vitabench.api.errors import VitabenchError

BACKENDS = ("opencv", "realsense", "render")


class Camera(Protocol):
    def read(self, joint_pos: np.ndarray) -> np.ndarray:
        """The latest RGB frame (``joint_pos`` is used only by the rendered stand-in)."""

    def close(self) -> None: ...


def _square(frame: np.ndarray, resolution: int) -> np.ndarray:
    """Centre-crop to a square and resize to ``resolution``."""
    import cv2

    height, width = frame.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    crop = frame[top : top + side, left : left + side]
    return np.ascontiguousarray(cv2.resize(crop, (resolution, resolution), interpolation=cv2.INTER_AREA))


class OpenCVCamera:
    def __init__(self, device: str, resolution: int) -> None:
        import cv2

        self._cv2 = cv2
        self.resolution = resolution
        self._capture = cv2.VideoCapture(int(device) if device.isdigit() else device)
        if not self._capture.isOpened():
            raise VitabenchError(f"camera opencv:{device} cannot be opened; accepted: a camera index or a video path")

    def read(self, joint_pos: np.ndarray) -> np.ndarray:
        ok, frame = self._capture.read()
        if not ok:
            raise VitabenchError("an OpenCV camera returned no frame (unplugged or end of file)")
        return _square(self._cv2.cvtColor(frame, self._cv2.COLOR_BGR2RGB), self.resolution)

    def close(self) -> None:
        self._capture.release()


class RealSenseCamera:
    def __init__(self, serial: str, resolution: int) -> None:
        try:
            import pyrealsense2 as rs
        except ImportError:
            raise VitabenchError("camera realsense:... needs pyrealsense2 (pip install pyrealsense2)") from None
        self.resolution = resolution
        self._pipeline = rs.pipeline()
        config = rs.config()
        if serial:
            config.enable_device(serial)
        config.enable_stream(rs.stream.color, 640, 480, rs.format.rgb8, 30)
        self._pipeline.start(config)

    def read(self, joint_pos: np.ndarray) -> np.ndarray:
        frames = self._pipeline.wait_for_frames()
        return _square(np.asanyarray(frames.get_color_frame().get_data()), self.resolution)

    def close(self) -> None:
        self._pipeline.stop()


class RenderedArmCamera:
    """STAND-IN camera: robosuite's Panda MJCF rendered at the reported joint positions."""

    VIEWS = ("agentview", "wrist")

    def __init__(self, view: str, resolution: int) -> None:
        if view not in self.VIEWS:
            raise VitabenchError(f"camera render:{view}; accepted views: {', '.join(self.VIEWS)}")
        from vitabench.envs.rendering import ensure_gl_backend

        ensure_gl_backend()
        import mujoco
        import robosuite

        self._mujoco = mujoco
        xml = Path(robosuite.__file__).parent / "models/assets/robots/panda/robot.xml"
        self.model = mujoco.MjModel.from_xml_path(str(xml))
        self.model.vis.headlight.ambient[:] = 0.5
        self.data = mujoco.MjData(self.model)
        self.view = view
        self._renderer = mujoco.Renderer(self.model, resolution, resolution)
        self._camera = mujoco.MjvCamera()
        self._hand = self.model.body("right_hand").id
        self._camera.lookat[:] = (0.45, 0.0, 0.35)
        self._camera.distance, self._camera.azimuth, self._camera.elevation = 1.5, 180.0, -25.0

    def read(self, joint_pos: np.ndarray) -> np.ndarray:
        n = min(len(joint_pos), self.model.nq)
        self.data.qpos[:n] = joint_pos[:n]
        self._mujoco.mj_kinematics(self.model, self.data)
        if self.view == "wrist":
            position = self.data.xpos[self._hand]
            forward = self.data.xmat[self._hand].reshape(3, 3)[:, 2]  # the hand's approach axis
            self._camera.distance = 0.3
            self._camera.lookat[:] = position + forward * 0.3
            self._camera.azimuth = math.degrees(math.atan2(forward[1], forward[0]))
            self._camera.elevation = math.degrees(math.atan2(forward[2], math.hypot(forward[0], forward[1])))
        self._renderer.update_scene(self.data, camera=self._camera)
        return np.ascontiguousarray(self._renderer.render())

    def close(self) -> None:
        self._renderer = None


def open_camera(spec: str, resolution: int) -> Camera:
    """A camera from ``BACKEND:DEVICE`` (see the module docstring)."""
    backend, sep, device = spec.partition(":")
    if not sep or backend not in BACKENDS:
        raise VitabenchError(f"camera spec {spec!r}; accepted: opencv:INDEX, realsense:SERIAL, render:agentview|wrist")
    if backend == "opencv":
        return OpenCVCamera(device, resolution)
    if backend == "realsense":
        return RealSenseCamera(device, resolution)
    return RenderedArmCamera(device, resolution)
