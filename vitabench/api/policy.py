"""The policy protocol every policy speaks, in process or over the network.

Observations are dicts produced by a suite's environment::

    {"images": {camera: uint8[H, W, 3]},  # absent when the policy asks for no camera
     "state": {key: float32[...]}, "instruction": str,
     "privileged": {...}}                  # only when the spec asks for it

``act`` takes a batch of observations (one per environment slot) and returns a float32
array ``[B, chunk, 7]`` of actions in ``[-1, 1]`` (delta end-effector pose + gripper).

A policy with trained weights says where they come from in ``provenance`` (a
:class:`Provenance`: checkpoint hash, the protocol it was trained under, lineage); every wrapper
forwards its inner policy's. The runner checks the trained protocol against the run's and stamps
the provenance on every record; a policy without ``provenance`` has none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from vitabench.api.errors import VitabenchError
from vitabench.api.suite import Task

Observation = Mapping[str, Any]

#: Proprioceptive keys every environment can provide, and the size of each (``joint_pos``: a
#: 7-DoF arm's; a robot env reports its own arm's).
STATE_SIZES: dict[str, int] = {"ee_pos": 3, "ee_axis_angle": 3, "ee_quat": 4, "gripper_qpos": 2, "joint_pos": 7}
STATE_KEYS: tuple[str, ...] = tuple(STATE_SIZES)

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


@dataclass(frozen=True)
class Provenance:
    """Where a policy's weights come from; empty for a policy without trained weights.

    ``trained_protocol``: ``{name, version, hash, ref}`` of the protocol the checkpoint's data was
    collected under (plus ``fields``, its full :meth:`Protocol.to_dict`, when recorded).
    ``lineage``: the training stages that made the weights (see :func:`lineage_summary`).
    """

    checkpoint_hash: str | None = None
    trained_protocol: Mapping[str, Any] | None = None
    lineage: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint_hash": self.checkpoint_hash,
            "trained_protocol": None if self.trained_protocol is None else dict(self.trained_protocol),
            "lineage": None if self.lineage is None else dict(self.lineage),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Provenance:
        """The inverse of :meth:`to_dict` (e.g. from a policy server's metadata)."""
        return cls(data.get("checkpoint_hash"), data.get("trained_protocol"), data.get("lineage"))


NO_PROVENANCE = Provenance()


def policy_provenance(policy: Any) -> Provenance:
    """``policy.provenance``, or :data:`NO_PROVENANCE` for a policy that declares none."""
    provenance = getattr(policy, "provenance", None)
    if provenance is None:
        return NO_PROVENANCE
    if not isinstance(provenance, Provenance):
        raise TypeError(f"{type(policy).__name__}.provenance is a {type(provenance).__name__}; accepted: a vitabench.api.Provenance")
    return provenance


def lineage_summary(lineage: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a checkpoint's ``lineage.json`` a record carries: kind, variant, and per stage
    its name, weights hash and data files' sha256; the teacher's and backbone's identity."""
    teacher = lineage.get("teacher")
    return {
        "kind": lineage.get("kind"),
        "variant": lineage.get("variant"),
        "stages": [
            {
                "stage": stage.get("stage"),
                "weights_hash": stage.get("weights_hash"),
                "data": [info.get("sha256") for info in stage.get("data", [])],
            }
            for stage in lineage.get("stages", [])
        ],
        "teacher": None if teacher is None else teacher.get("weights_hash"),
        "backbone": lineage.get("backbone"),
    }


@runtime_checkable
class Policy(Protocol):
    """A batched policy. ``slots`` name the environment slots of a batch (default 0..B-1).

    Optional: ``provenance`` (:class:`Provenance`), ``close()``, and ``release(slot)``, which
    forgets what is kept for a slot whose episode will not continue (the policy server calls it
    for the slots of a closed connection; see :func:`release_slot`).
    """

    spec: PolicySpec

    def reset(self, task: Task, slot: int = 0, seed: int | None = None) -> None:
        """Begin an episode of ``task`` in ``slot``."""

    def act(self, observations: Sequence[Observation], slots: Sequence[int] | None = None) -> np.ndarray:
        """Actions ``[B, chunk, 7]`` for a batch of observations."""


@dataclass(frozen=True)
class PolicyInfo:
    """How a policy instance is described on every record: its registered name and arguments,
    and its provenance (``checkpoint_hash``, ``trained_protocol``, ``lineage``, flattened)."""

    name: str
    args: Mapping[str, Any] = field(default_factory=dict)
    provenance: Provenance = NO_PROVENANCE

    def to_dict(self) -> dict[str, Any]:
        """The record's ``policy``; the trained protocol by identity only (``name``, ``version``, ``hash``, ``ref``)."""
        provenance = self.provenance.to_dict()
        trained = provenance["trained_protocol"]
        if trained is not None:
            provenance["trained_protocol"] = {k: trained[k] for k in ("name", "version", "hash", "ref") if k in trained}
        return {"name": self.name, "args": dict(self.args), **provenance}


def batch_slots(observations: Sequence[Observation], slots: Sequence[int] | None) -> list[int]:
    """The slot of each observation: ``slots`` as given, else ``0..B-1``; lengths must agree."""
    if slots is None:
        return list(range(len(observations)))
    slots = [int(s) for s in slots]
    if len(slots) != len(observations):
        raise VitabenchError(
            f"act got {len(observations)} observations but {len(slots)} slots; they must match"
        )
    return slots


def release_slot(policy: Any, slot: int) -> None:
    """Call ``policy.release(slot)`` when the policy has one (it is optional)."""
    release = getattr(policy, "release", None)
    if release is not None:
        release(slot)


class BasePolicy:
    """Convenience base: stateless reset, no provenance, and a single-observation call for plain gym loops."""

    spec: PolicySpec = PolicySpec()
    provenance: Provenance = NO_PROVENANCE

    @property
    def checkpoint_hash(self) -> str | None:
        """Shorthand for ``provenance.checkpoint_hash``."""
        return self.provenance.checkpoint_hash

    def reset(self, task: Task, slot: int = 0, seed: int | None = None) -> None:
        del task, slot, seed

    def release(self, slot: int) -> None:
        """Forget what is kept for ``slot``; a policy with per-slot state overrides this."""
        del slot

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
