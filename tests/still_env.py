"""Stand-ins for LIBERO's env where no simulator is needed (what is tested happens before or
around the rollout): nothing moves, the task's instruction is observed, an episode ends at its
step limit. ``StillEnv`` observes no camera; ``CameraEnv`` renders the cameras asked for, frames
that brighten per step, for model policies. Referenced by entry point (``still_env:StillEnv``)
so spawned env workers import them; the module imports only numpy, so a worker starts quickly."""

from __future__ import annotations

from typing import Any

import numpy as np


class StillEnv:
    def __init__(self, task: Any, protocol: Any, *, cameras=(), resolution=None, state_keys=(), privileged=False, max_steps=None) -> None:
        self.instruction = task.instruction
        self.max_steps, self.steps = max_steps or 1, 0

    def _obs(self) -> dict:
        return {"state": {"ee_pos": np.zeros(3, np.float32), "gripper_qpos": np.zeros(2, np.float32)}, "instruction": self.instruction}

    def reset(self, seed=None, options=None):
        self.steps = 0
        return self._obs(), {"success": False}

    def step(self, action):
        self.steps += 1
        return self._obs(), 0.0, False, self.steps >= self.max_steps, {"success": False}

    def close(self) -> None:
        pass


class CameraEnv:
    """Constant frames that brighten per step and the state keys asked for; never succeeds."""

    def __init__(self, task: Any, protocol: Any, *, cameras=(), resolution=None, state_keys=(), privileged=False, max_steps=None) -> None:
        self.task, self.cameras, self.state_keys = task, tuple(cameras), tuple(state_keys)
        self.resolution, self.max_steps, self.steps = resolution or protocol.resolution, max_steps or 2, 0

    def _obs(self) -> dict[str, Any]:
        full = {
            "ee_pos": np.full(3, 0.01 * self.steps, np.float32), "ee_quat": np.array([1.0, 0, 0, 0], np.float32),
            "ee_axis_angle": np.array([np.pi, 0, 0], np.float32), "gripper_qpos": np.array([0.04, -0.04], np.float32),
            "joint_pos": np.zeros(7, np.float32),
        }
        frame = np.full((self.resolution, self.resolution, 3), 10 * self.steps, np.uint8)
        return {"images": {c: frame for c in self.cameras}, "state": {k: full[k] for k in self.state_keys}, "instruction": self.task.instruction}

    def reset(self, seed=None, options=None):
        self.steps = 0
        return self._obs(), {"success": False, "steps": 0}

    def step(self, action):
        self.steps += 1
        return self._obs(), 0.0, False, self.steps >= self.max_steps, {"success": False, "steps": self.steps}

    def close(self) -> None:
        pass


def libero_object_suite(name: str) -> Any:
    """libero_object as the runner sees it (name, tasks, init states, step key), on ``StillEnv``."""
    import dataclasses

    from vitabench.plugins import get_suite

    return dataclasses.replace(get_suite("libero_object"), env_entry_point="still_env:StillEnv")
