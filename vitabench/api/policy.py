"""The policy protocol every policy speaks, in process or over the network.

Observations are dicts produced by a suite's environment::

    {"images": {camera: uint8[H, W, 3]},  # absent when the policy asks for no camera
     "state": {key: float32[...]}, "instruction": str,
     "privileged": {...}}                  # only when the spec asks for it

``act`` takes a batch of observations (one per environment slot) and returns a float32
array ``[B, chunk, 7]`` of actions in ``[-1, 1]`` (delta end-effector pose + gripper).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from vitabench.api.suite import Task

Observation = Mapping[str, Any]

#: Proprioceptive keys every environment can provide.
STATE_KEYS: tuple[str, ...] = (
    "ee_pos",
    "ee_axis_angle",
    "ee_quat",
    "gripper_qpos",
    "joint_pos",
)

ACTION_DIM = 7


@dataclass(frozen=True)
class PolicySpec:
    """What a policy needs from the environment; the environment renders only this.

    ``resolution=None`` takes the protocol's. ``history`` and ``chunk`` describe the
    policy's own model; the runner executes chunks through the chunking wrappers.
    """

    cameras: tuple[str, ...] = ()
    resolution: int | None = None
    state_keys: tuple[str, ...] = ("ee_pos", "ee_axis_angle", "gripper_qpos")
    privileged: bool = False
    history: int = 1
    chunk: int = 1

    def __post_init__(self) -> None:
        unknown = sorted(set(self.state_keys) - set(STATE_KEYS))
        if unknown:
            raise ValueError(
                f"unknown state key(s) {', '.join(unknown)}; accepted: {', '.join(STATE_KEYS)}"
            )
        if self.history < 1 or self.chunk < 1:
            raise ValueError(f"history={self.history} and chunk={self.chunk} must be >= 1")


@runtime_checkable
class Policy(Protocol):
    """A batched policy. ``slots`` name the environment slots of a batch (default 0..B-1)."""

    spec: PolicySpec

    def reset(self, task: Task, slot: int = 0, seed: int | None = None) -> None:
        """Begin an episode of ``task`` in ``slot``."""

    def act(self, observations: Sequence[Observation], slots: Sequence[int] | None = None) -> np.ndarray:
        """Actions ``[B, chunk, 7]`` for a batch of observations."""


@dataclass
class PolicyInfo:
    """How a policy instance is described on every record."""

    name: str
    args: Mapping[str, Any] = field(default_factory=dict)
    checkpoint_hash: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "args": dict(self.args), "checkpoint_hash": self.checkpoint_hash}


class BasePolicy:
    """Convenience base: stateless reset, and a single-observation call for plain gym loops."""

    spec: PolicySpec = PolicySpec()

    def reset(self, task: Task, slot: int = 0, seed: int | None = None) -> None:
        del task, slot, seed

    def act(self, observations: Sequence[Observation], slots: Sequence[int] | None = None) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, observation: Observation) -> np.ndarray:
        """The first action of the chunk for one observation: ``action = policy(obs)``."""
        return self.act([observation], [0])[0, 0]


def check_actions(actions: Any, batch: int) -> np.ndarray:
    """Validate a policy's output: shape ``[B, T, 7]``, finite. Raises naming what is wrong."""
    array = np.asarray(actions, dtype=np.float32)
    if array.ndim == 2 and array.shape[-1] == ACTION_DIM:
        array = array[:, None, :]
    if array.ndim != 3 or array.shape[0] != batch or array.shape[-1] != ACTION_DIM:
        raise ValueError(
            f"policy returned actions of shape {tuple(array.shape)}; "
            f"accepted: ({batch}, chunk, {ACTION_DIM}) or ({batch}, {ACTION_DIM})"
        )
    if array.shape[1] < 1:
        raise ValueError("policy returned an empty action chunk")
    if not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array))[0].tolist()
        raise ValueError(f"policy returned a non-finite action (NaN/inf) at index {bad}")
    return array
