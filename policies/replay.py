"""``replay``: execute the recorded actions of a LIBERO-format HDF5 demonstration.

``--policy replay --policy-arg path=FILE.hdf5 [--policy-arg demo=N]`` plays
``data/demo_N/actions`` (``[T, 7]``) open loop from the episode's first step, ``chunk`` actions per
``act``. The policy protocol does not tell a policy which init state an episode starts from, so
the demo is chosen by ``demo`` (0 by default), the same for every episode: replaying demo N from
its own initial state means running it from the init state recorded with it (LIBERO's
``data/demo_N/states[0]``), e.g. a suite whose init states are the demos'. After the last recorded
action the policy holds still: zero motion, the last recorded gripper command.

When the file names its task (LIBERO's ``data`` attribute ``problem_info`` JSON with
``language_instruction``), ``reset`` refuses an episode of another task.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from vitabench.api.errors import VitabenchError
from vitabench.api.policy import ACTION_DIM, BasePolicy, Observation, PolicySpec, batch_slots
from vitabench.api.suite import Task


class ReplayPolicy(BasePolicy):
    """Plays one recorded demo per episode, independently in every slot."""

    def __init__(self, path: str, demo: int = 0, chunk: int = 10) -> None:
        if isinstance(demo, bool) or not isinstance(demo, int) or demo < 0:
            raise VitabenchError(f"replay demo={demo!r}: accepted: an integer >= 0")
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise VitabenchError(f"replay chunk={chunk!r}: accepted: an integer >= 1")
        self.path = Path(path)
        self.demo = demo
        from vitabench.training.data import load_demo_actions

        self.actions, self.instruction = load_demo_actions(self.path, demo)
        self.spec = PolicySpec(state_keys=(), chunk=chunk)
        hold = np.zeros(ACTION_DIM, dtype=np.float32)
        hold[-1] = self.actions[-1, -1]
        # the recorded actions, then enough hold actions to fill any chunk
        self._padded = np.concatenate([self.actions, np.repeat(hold[None], chunk, axis=0)])
        self._positions: dict[int, int] = {}

    def reset(self, task: Task, slot: int = 0, seed: int | None = None) -> None:
        if self.instruction is not None and task.instruction != self.instruction:
            raise VitabenchError(
                f"replay file {self.path} records task {self.instruction!r}; this episode's task is "
                f"{task.instruction!r}; run replay on that task only"
            )
        self._positions[slot] = 0

    def release(self, slot: int) -> None:
        self._positions.pop(slot, None)

    def act(self, observations: Sequence[Observation], slots: Sequence[int] | None = None) -> np.ndarray:
        chunk = self.spec.chunk
        out = np.empty((len(observations), chunk, ACTION_DIM), dtype=np.float32)
        for row, slot in enumerate(batch_slots(observations, slots)):
            start = min(self._positions.get(slot, 0), len(self.actions))
            out[row] = self._padded[start : start + chunk]
            self._positions[slot] = start + chunk
        return out
