"""A suite whose environment fails on purpose, and a policy that does: the fakes of
``test_runner.py``. Spawned env workers import this module by entry point
(``faults:FaultyEnv``) and ``vitabench`` subprocesses register its suite and policy, so it
imports only numpy and vitabench's api: a worker starts without importing the test module
and everything it imports."""

from __future__ import annotations

import os
import signal
import time
from typing import Any, Sequence

import numpy as np

from vitabench.api import BasePolicy, PolicySpec, Suite, Task

# -- a suite whose environment fails on purpose ------------------------------------------------

#: task id -> (fault, init state that triggers it, step at which it triggers)
FAULTS: dict[int, tuple[str, int, int]] = {
    0: ("none", -1, 0),
    1: ("raise", 1, 2),
    2: ("hang", 0, 2),
    3: ("exit", 1, 2),
    4: ("slow", -1, 0),  # 50 ms per step, every episode (FAULTY_SLOW_STEP_S in the worker's environment: another delay)
}


class FaultyEnv:
    """Deterministic toy env: success at step 3 from even init states; faults per ``FAULTS``."""

    def __init__(self, task: Task, protocol: Any, *, cameras=(), resolution=None, state_keys=(), privileged=False, max_steps=None) -> None:
        self.task, self.cameras, self.resolution = task, tuple(cameras), resolution or 16
        self.max_steps = max_steps or 10
        self.init_state, self.steps, self.position = 0, 0, 0.0

    def _obs(self) -> dict[str, Any]:
        obs: dict[str, Any] = {
            "state": {"ee_pos": np.array([self.init_state, self.steps, self.position], dtype=np.float32)},
            "instruction": self.task.instruction,
        }
        if self.cameras:
            shade = np.uint8(20 * self.steps % 255)
            obs["images"] = {c: np.full((self.resolution, self.resolution, 3), shade, np.uint8) for c in self.cameras}
        return obs

    def reset(self, seed=None, options=None):
        self.init_state, self.steps, self.position = int((options or {}).get("init_state", 0)), 0, 0.0
        return self._obs(), {"success": False, "steps": 0}

    def step(self, action):
        fault, init_state, at_step = FAULTS[self.task.task_id]
        if fault == "slow":
            time.sleep(float(os.environ.get("FAULTY_SLOW_STEP_S", "0.05")))
        self.steps += 1
        self.position += float(np.asarray(action).sum())
        if self.init_state == init_state and self.steps == at_step:
            if fault == "raise":
                raise RuntimeError("simulated simulator failure")
            if fault == "hang":
                time.sleep(3600)
            if fault == "exit":
                os.kill(os.getpid(), signal.SIGKILL)
        success = self.init_state % 2 == 0 and self.steps == 3
        return self._obs(), float(success), success, self.steps >= self.max_steps, {"success": success, "steps": self.steps}

    def close(self) -> None:
        pass


def load_faulty_suite(name: str) -> Suite:
    tasks = tuple(Task(name, i, f"task_{i}_{FAULTS[i][0]}", f"do task {i}", n_init_states=4) for i in FAULTS)
    return Suite(name=name, steps_key="libero_object", tasks=tasks, env_entry_point="faults:FaultyEnv")


# -- a policy that fails on purpose ------------------------------------------------------------


class NanPolicy(BasePolicy):
    """NaN actions for every slot: the runner must record errors, not crash."""

    spec = PolicySpec(state_keys=("ee_pos",))

    def act(self, observations: Sequence[Any], slots: Sequence[int] | None = None) -> np.ndarray:
        return np.full((len(observations), 1, 7), np.nan, dtype=np.float32)
