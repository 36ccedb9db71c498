"""A stand-in for LIBERO's env where no simulator is needed (what is tested happens before or
around the rollout): nothing moves, the task's instruction is observed, an episode ends at its
step limit. Referenced by entry point (``still_env:StillEnv``) so spawned env workers import it."""

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


def libero_object_suite(name: str) -> Any:
    """libero_object as the runner sees it (name, tasks, init states, step key), on ``StillEnv``."""
    import dataclasses

    from vitabench.plugins import get_suite

    return dataclasses.replace(get_suite("libero_object"), env_entry_point="still_env:StillEnv")
