"""The floor of every table: ``zero`` and ``random``.

Both need no camera and no state, so the environment renders nothing for them.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from vitabench.api.errors import VitabenchError
from vitabench.api.policy import ACTION_DIM, BasePolicy, Observation, PolicySpec, batch_slots
from vitabench.api.suite import Task


def _chunk_length(chunk: int) -> int:
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
        raise VitabenchError(f"chunk={chunk!r}: accepted: an integer >= 1")
    return chunk


class ZeroPolicy(BasePolicy):
    """All-zero actions, gripper included: no motion, and the gripper command 0 (half-way
    between open -1 and closed +1). ``chunk`` sets how many steps each ``act`` returns."""

    def __init__(self, chunk: int = 1) -> None:
        self.spec = PolicySpec(state_keys=(), chunk=_chunk_length(chunk))

    def act(self, observations: Sequence[Observation], slots: Sequence[int] | None = None) -> np.ndarray:
        batch_slots(observations, slots)
        return np.zeros((len(observations), self.spec.chunk, ACTION_DIM), dtype=np.float32)


class RandomPolicy(BasePolicy):
    """Actions uniform in ``[-1, 1]`` on all 7 dimensions.

    Each slot has its own ``numpy.random.Generator`` seeded from the ``seed`` given to ``reset``
    (0 when ``None``, and for a slot used without a reset), so an episode's actions depend only on
    its seed, never on batching, slot or worker count.
    """

    def __init__(self, chunk: int = 1) -> None:
        self.spec = PolicySpec(state_keys=(), chunk=_chunk_length(chunk))
        self._rngs: dict[int, np.random.Generator] = {}

    def reset(self, task: Task, slot: int = 0, seed: int | None = None) -> None:
        self._rngs[slot] = np.random.default_rng(0 if seed is None else seed)

    def release(self, slot: int) -> None:
        self._rngs.pop(slot, None)

    def act(self, observations: Sequence[Observation], slots: Sequence[int] | None = None) -> np.ndarray:
        shape = (self.spec.chunk, ACTION_DIM)
        actions = [self._rng(slot).uniform(-1.0, 1.0, size=shape) for slot in batch_slots(observations, slots)]
        return np.asarray(actions, dtype=np.float32).reshape(len(actions), *shape)

    def _rng(self, slot: int) -> np.random.Generator:
        """The slot's generator; one seeded with 0 for a slot used without a reset (built only then)."""
        rng = self._rngs.get(slot)
        if rng is None:
            rng = self._rngs[slot] = np.random.default_rng(0)
        return rng
