"""Wrappers that compose around any policy and shape what the runner executes.

The runner executes every action of the chunk a policy returns for a slot before it asks that
slot again, and batches all slots that need actions at the same step into one ``act`` call.
So a wrapper decides execution by the chunk it returns:

* :class:`ChunkExecution` (receding horizon): return the first ``k`` of the ``n`` predicted
  steps, then the runner re-plans;
* :class:`TemporalEnsemble`: ask the inner policy every step and return ONE action, the
  weighted average of every prediction made so far for the current step;
* :class:`History`: give the inner policy the last ``h`` observations of its slot.

Wrappers stack, e.g. ``TemporalEnsemble(History(model, 7))`` as VITA-VLA runs on LIBERO. Every
wrapper forwards the inner policy's ``provenance`` (its checkpoint and trained protocol), so the
runner and the server check and record a wrapped checkpoint as they do a bare one.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from typing import Any, Sequence

import numpy as np

from vitabench.api.errors import VitabenchError
from vitabench.api.policy import BasePolicy, Observation, Policy, Provenance, batch_slots, check_actions, policy_provenance, release_slot
from vitabench.api.suite import Task


class PolicyWrapper(BasePolicy):
    """A policy around ``inner``: forwards ``provenance``, ``reset`` (after clearing its own slot
    state) and ``close``."""

    def __init__(self, inner: Policy) -> None:
        self.inner = inner
        self.spec = inner.spec

    @property
    def provenance(self) -> Provenance:
        return policy_provenance(self.inner)

    def reset(self, task: Task, slot: int = 0, seed: int | None = None) -> None:
        self.clear_slot(slot)
        self.inner.reset(task, slot=slot, seed=seed)

    def clear_slot(self, slot: int) -> None:
        """Forget what this wrapper kept for ``slot``."""

    def release(self, slot: int) -> None:
        """Forget ``slot`` here and in the inner policy."""
        self.clear_slot(slot)
        release_slot(self.inner, slot)

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()


class ChunkExecution(PolicyWrapper):
    """Receding horizon: execute the first ``k`` of the ``n`` predicted steps, then re-plan."""

    def __init__(self, inner: Policy, k: int) -> None:
        if int(k) < 1:
            raise VitabenchError(f"chunk execution k={k}: accepted: an integer >= 1")
        super().__init__(inner)
        self.k = int(k)
        self.spec = dataclasses.replace(inner.spec, chunk=min(self.k, inner.spec.chunk))

    def act(self, observations: Sequence[Observation], slots: Sequence[int] | None = None) -> np.ndarray:
        actions = check_actions(self.inner.act(observations, slots), len(observations))
        return actions[:, : self.k]


def ensemble_weights(n: int, m: float) -> np.ndarray:
    """Normalised weights ``exp(-m*i)`` for ``n`` predictions, ``i = 0`` the OLDEST one.

    This is ACT's convention (``exp(-k * arange(len(actions_for_curr_step)))`` over predictions
    in the order they were made), used by VITA-VLA on LIBERO with ``m = 0.01``: with ``m > 0``
    older predictions weigh slightly more, which smooths the executed trajectory.
    """
    weights = np.exp(-float(m) * np.arange(n, dtype=np.float64))
    return weights / weights.sum()


class TemporalEnsemble(PolicyWrapper):
    """Temporal ensembling of overlapping chunks (ACT / VITA-VLA).

    Every step the inner policy predicts a chunk of ``n`` actions for steps ``t .. t+n-1``. The
    wrapper keeps, per slot, every prediction still covering a future step and returns ONE action:
    the average of all predictions for step ``t`` weighted by :func:`ensemble_weights` (oldest
    first). Gripper (last dimension): averaged like the others, then, when the inner policy's
    gripper is binary (``binary_gripper=True``, or ``None`` = every gripper value it predicted for
    this step is exactly -1 or +1), re-thresholded to its sign; an exact tie (average 0) keeps the
    newest prediction.
    """

    def __init__(self, inner: Policy, m: float = 0.01, binary_gripper: bool | None = None) -> None:
        m = float(m)
        if not np.isfinite(m):
            raise VitabenchError(f"temporal ensemble m={m}: accepted: a finite number (0.01 by default)")
        super().__init__(inner)
        self.m = m
        self.binary_gripper = binary_gripper
        self.spec = dataclasses.replace(inner.spec, chunk=1)
        # slot -> predictions made so far, oldest first; each entry is the chunk's remaining steps
        self._pending: dict[int, deque[np.ndarray]] = {}

    def clear_slot(self, slot: int) -> None:
        self._pending.pop(slot, None)

    def act(self, observations: Sequence[Observation], slots: Sequence[int] | None = None) -> np.ndarray:
        slot_ids = batch_slots(observations, slots)
        chunks = check_actions(self.inner.act(observations, slots), len(observations))
        out = np.empty((len(slot_ids), 1, chunks.shape[-1]), dtype=np.float32)
        for row, slot in enumerate(slot_ids):
            pending = self._pending.setdefault(slot, deque())
            pending.append(chunks[row])
            predictions = np.stack([chunk[0] for chunk in pending])  # [N, 7], oldest first
            out[row, 0] = self._combine(predictions)
            # advance one step: drop what was used, forget chunks that cover no future step
            advanced = [chunk[1:] for chunk in pending if len(chunk) > 1]
            pending.clear()
            pending.extend(advanced)
        return out

    def _combine(self, predictions: np.ndarray) -> np.ndarray:
        weights = ensemble_weights(len(predictions), self.m)
        action = (weights[:, None] * predictions.astype(np.float64)).sum(axis=0)
        gripper = predictions[:, -1]
        binary = self.binary_gripper
        if binary is None:
            binary = bool(np.all(np.abs(gripper) == 1.0))
        if binary:
            action[-1] = np.sign(action[-1]) if action[-1] != 0 else gripper[-1]
        return action.astype(np.float32)


class History(PolicyWrapper):
    """Observation history of length ``h`` per slot.

    The inner policy receives each observation with an added ``"history"`` list of the last ``h``
    observations of its slot, oldest first, the current one last; at the start of an episode the
    list is padded by repeating the first observation. History entries carry no ``"history"``.
    """

    def __init__(self, inner: Policy, h: int) -> None:
        if int(h) < 1:
            raise VitabenchError(f"history h={h}: accepted: an integer >= 1")
        super().__init__(inner)
        self.h = int(h)
        self.spec = dataclasses.replace(inner.spec, history=self.h)
        self._frames: dict[int, deque[Observation]] = {}

    def clear_slot(self, slot: int) -> None:
        self._frames.pop(slot, None)

    def act(self, observations: Sequence[Observation], slots: Sequence[int] | None = None) -> np.ndarray:
        slot_ids = batch_slots(observations, slots)
        with_history: list[dict[str, Any]] = []
        for slot, observation in zip(slot_ids, observations):
            frame = {k: v for k, v in observation.items() if k != "history"}
            frames = self._frames.get(slot)
            if frames is None:
                frames = self._frames[slot] = deque([frame] * self.h, maxlen=self.h)
            else:
                frames.append(frame)
            with_history.append({**frame, "history": list(frames)})
        return self.inner.act(with_history, slots)


def wrap_policy(
    policy: Policy,
    *,
    history: int | None = None,
    execute: int | None = None,
    ensemble: float | None = None,
) -> Policy:
    """The standard stack: ``History`` innermost, then ``ChunkExecution`` or ``TemporalEnsemble``."""
    if execute is not None and ensemble is not None:
        raise VitabenchError("choose chunk execution (execute=k) or temporal ensembling (ensemble=m), not both")
    if history is not None and history > 1:
        policy = History(policy, history)
    if execute is not None:
        policy = ChunkExecution(policy, execute)
    if ensemble is not None:
        policy = TemporalEnsemble(policy, ensemble)
    return policy
