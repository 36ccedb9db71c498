"""The scene as the expert sees it: one privileged observation, with lookups by name."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vitabench.api.errors import VitabenchError
from vitabench.api.policy import Observation
from vitabench.geometry import quat_to_matrix


@dataclass(frozen=True)
class Scene:
    """One privileged observation, with lookups by name."""

    ee_pos: np.ndarray
    ee_rotation: np.ndarray
    gripper_opening: float
    objects: dict[str, np.ndarray]
    bboxes: dict[str, np.ndarray]
    extents: dict[str, np.ndarray]
    geom_boxes: dict[str, np.ndarray]
    sites: dict[str, np.ndarray]
    joint_frames: dict[str, np.ndarray]
    joint_geoms: dict[str, np.ndarray]
    robot_base: np.ndarray

    @classmethod
    def from_observation(cls, observation: Observation) -> "Scene":
        privileged = observation.get("privileged")
        if privileged is None or "bboxes" not in privileged:
            raise VitabenchError("scripted policy needs privileged observations; build the env with privileged=True")
        state = observation["state"]
        gripper = np.asarray(state["gripper_qpos"], dtype=np.float64)
        return cls(
            ee_pos=np.asarray(state["ee_pos"], dtype=np.float64),
            ee_rotation=quat_to_matrix(state["ee_quat"]),
            gripper_opening=float(gripper[0] - gripper[1]),
            objects={k: np.asarray(v, dtype=np.float64) for k, v in privileged["objects"].items()},
            bboxes={k: np.asarray(v, dtype=np.float64) for k, v in privileged["bboxes"].items()},
            extents={k: np.asarray(v, dtype=np.float64) for k, v in privileged["extents"].items()},
            geom_boxes={k: np.asarray(v, dtype=np.float64) for k, v in privileged["geom_boxes"].items()},
            sites={k: np.asarray(v, dtype=np.float64) for k, v in privileged["sites"].items()},
            joint_frames={k: np.asarray(v, dtype=np.float64) for k, v in privileged["joint_frames"].items()},
            joint_geoms={k: np.asarray(v, dtype=np.float64) for k, v in privileged["joint_geoms"].items()},
            robot_base=np.asarray(privileged["robot_base"], dtype=np.float64),
        )

    def clearance(self, point_xy: np.ndarray, z: float, exclude: str) -> float:
        """Horizontal distance from a point to the nearest geom (of another object) spanning
        heights ``z - 0.025`` to ``z + 0.12`` (where fingers and hand go), at most 0.15 m."""
        nearest = 0.15
        for name, boxes in self.geom_boxes.items():
            if name == exclude:
                continue
            near = boxes[(boxes[:, 5] > z - 0.025) & (boxes[:, 2] < z + 0.12)]
            if len(near) == 0:
                continue
            dx = np.maximum.reduce([near[:, 0] - point_xy[0], np.zeros(len(near)), point_xy[0] - near[:, 3]])
            dy = np.maximum.reduce([near[:, 1] - point_xy[1], np.zeros(len(near)), point_xy[1] - near[:, 4]])
            nearest = min(nearest, float(np.hypot(dx, dy).min()))
        return nearest

    def site_half_size(self, name: str) -> np.ndarray:
        """World half-extents of a region site (its size turned by its orientation, as LIBERO does)."""
        site = self.sites[name]
        return np.abs(quat_to_matrix(site[3:7]) @ site[7:10])

    def joint_key(self, name: str) -> str:
        """The joint that articulates ``name`` (a region site, or an object: its first joint)."""
        if name in self.joint_frames:
            return name
        keys = [k for k in self.joint_frames if k.startswith(name + "/")]
        if not keys:
            raise VitabenchError(f"scripted policy found no joint for {name!r}; accepted: {sorted(self.joint_frames)}")
        return keys[0]

    def bottom(self, name: str) -> float:
        return float(self.bboxes[name][2])

    def top(self, name: str) -> float:
        return float(self.bboxes[name][5])

    def center(self, name: str) -> np.ndarray:
        box = self.bboxes[name]
        return (box[:3] + box[3:]) / 2.0

