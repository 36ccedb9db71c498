"""Episode recordings of real-robot runs, written as LIBERO-format HDF5.

One file per task (``RUN_DIR/recordings/tNNN_<task>.hdf5``), one ``data/demo_i`` group per
episode, in the layout LIBERO's demonstration files use, so recordings can train a policy or be
replayed (``--policy replay``)::

    data                       attrs: problem_info (JSON with language_instruction), env_name, robot
    data/demo_i/actions        [T, 7]  the executed actions (after safety clipping), policy space
    data/demo_i/policy_actions [T, 7]  the actions the policy emitted
    data/demo_i/timestamps     [T]     seconds since the episode started, when each command went out
    data/demo_i/dones          [T]     1 at the last step
    data/demo_i/rewards        [T]     1 at the last step of a success
    data/demo_i/obs/agentview_rgb, eye_in_hand_rgb   [T, H, W, 3] uint8 (the cameras configured)
    data/demo_i/obs/ee_pos [T, 3], ee_ori [T, 3] (axis-angle), ee_states [T, 6],
                    gripper_states [T, 2] (finger positions), joint_states [T, dof]
    attrs of demo_i: num_samples, episode (seed, init state), outcome, label_source, control_hz
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from vitabench.geometry import quat_to_axis_angle
from vitabench.robots.driver import RobotState

#: camera name -> LIBERO observation key.
LIBERO_IMAGE_KEYS = {"agentview": "agentview_rgb", "robot0_eye_in_hand": "eye_in_hand_rgb"}


def image_key(camera: str) -> str:
    return LIBERO_IMAGE_KEYS.get(camera, f"{camera}_rgb")


def recording_path(run_dir: str | Path, task_id: int, task_name: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_]+", "_", task_name).strip("_")[:60]
    return Path(run_dir) / "recordings" / f"t{task_id:03d}_{slug}.hdf5"


@dataclass
class EpisodeRecording:
    """The frames, states and actions of one episode, kept in memory until it ends."""

    path: Path
    instruction: str
    robot: str
    meta: Mapping[str, Any]
    images: dict[str, list[np.ndarray]] = field(default_factory=dict)
    states: list[RobotState] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    policy_actions: list[np.ndarray] = field(default_factory=list)
    timestamps: list[float] = field(default_factory=list)

    def add(self, images: Mapping[str, np.ndarray], state: RobotState, policy_action: np.ndarray, action: np.ndarray, t: float) -> None:
        """One step: the observation the action was chosen from, and the action."""
        for camera, frame in images.items():
            self.images.setdefault(camera, []).append(frame)
        self.states.append(state)
        self.policy_actions.append(np.asarray(policy_action, dtype=np.float32))
        self.actions.append(np.asarray(action, dtype=np.float32))
        self.timestamps.append(t)

    def save(self, outcome: str, attrs: Mapping[str, Any]) -> str | None:
        """Append as the next ``demo_i`` of the task's file; returns ``"FILE#demo_i"`` (None if empty)."""
        import h5py

        if not self.actions:
            return None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        n = len(self.actions)
        with h5py.File(self.path, "a") as f:
            data = f.require_group("data")
            data.attrs["problem_info"] = json.dumps({"language_instruction": self.instruction, "problem_name": self.meta.get("task", "")})
            data.attrs["env_name"] = "vitabench-real"
            data.attrs["robot"] = self.robot
            index = sum(1 for k in data if k.startswith("demo_"))
            demo = data.create_group(f"demo_{index}")
            demo.create_dataset("actions", data=np.stack(self.actions))
            demo.create_dataset("policy_actions", data=np.stack(self.policy_actions))
            demo.create_dataset("timestamps", data=np.asarray(self.timestamps, dtype=np.float64))
            dones = np.zeros(n, dtype=np.uint8)
            dones[-1] = 1
            demo.create_dataset("dones", data=dones)
            demo.create_dataset("rewards", data=dones * (outcome == "success"))
            obs = demo.create_group("obs")
            for camera, frames in self.images.items():
                obs.create_dataset(image_key(camera), data=np.stack(frames), compression="gzip", compression_opts=4)
            ee_pos = np.stack([s.ee_pos for s in self.states]).astype(np.float32)
            ee_ori = quat_to_axis_angle(np.stack([s.ee_quat for s in self.states])).astype(np.float32)
            obs.create_dataset("ee_pos", data=ee_pos)
            obs.create_dataset("ee_ori", data=ee_ori)
            obs.create_dataset("ee_states", data=np.concatenate([ee_pos, ee_ori], axis=1))
            half = np.asarray([s.gripper_width / 2 for s in self.states], dtype=np.float32)
            obs.create_dataset("gripper_states", data=np.stack([half, -half], axis=1))
            obs.create_dataset("joint_states", data=np.stack([s.joint_pos for s in self.states]).astype(np.float32))
            demo.attrs["num_samples"] = n
            demo.attrs["outcome"] = outcome
            for key, value in {**self.meta, **attrs}.items():
                demo.attrs[key] = value if isinstance(value, (int, float, str, bool)) else json.dumps(value)
        return f"{self.path}#demo_{index}"
