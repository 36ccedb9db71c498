"""Wrappers: chunk execution, temporal ensembling weights, history, checked by hand."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pytest

from vitabench.api.errors import VitabenchError
from vitabench.api.policy import NO_PROVENANCE, BasePolicy, PolicySpec, Provenance, policy_provenance
from vitabench.api.suite import Task
from vitabench.policy_wrappers import ChunkExecution, History, TemporalEnsemble, ensemble_weights, wrap_policy

TASK = Task(suite="unit", task_id=0, name="t", instruction="do it", n_init_states=1)


class CountingPolicy(BasePolicy):
    """Call ``c`` of a slot predicts value ``100*c + j`` (all 7 dims) for chunk offset ``j``;
    with ``gripper`` set, the gripper of call ``c`` is ``gripper[c]``. Records every call."""

    def __init__(self, chunk: int, gripper: Sequence[float] | None = None) -> None:
        self.spec = PolicySpec(chunk=chunk, cameras=("agentview",))
        self.gripper = gripper
        self.calls: dict[int, int] = {}
        self.seen: list[list[dict]] = []
        self.resets: list[tuple[int, int | None]] = []

    def reset(self, task: Task, slot: int = 0, seed: int | None = None) -> None:
        self.calls[slot] = 0
        self.resets.append((slot, seed))

    def release(self, slot: int) -> None:
        self.calls.pop(slot, None)

    def act(self, observations, slots=None):
        slots = list(range(len(observations))) if slots is None else list(slots)
        self.seen.append([dict(o) for o in observations])
        out = np.zeros((len(slots), self.spec.chunk, 7), dtype=np.float32)
        for row, slot in enumerate(slots):
            c = self.calls.get(slot, 0)
            out[row] = (100 * c + np.arange(self.spec.chunk))[:, None]
            if self.gripper is not None:
                out[row, :, -1] = self.gripper[c]
            self.calls[slot] = c + 1
        return out


def run_steps(policy, steps: int, slot: int = 0) -> np.ndarray:
    """Drive ``policy`` like the runner: execute every returned action before asking again."""
    executed: list[np.ndarray] = []
    while len(executed) < steps:
        chunk = policy.act([{"t": len(executed)}], [slot])[0]
        executed.extend(chunk[: steps - len(executed)])
    return np.stack(executed)


def test_chunk_execution_executes_k_of_n_then_replans():
    inner = CountingPolicy(chunk=5)
    policy = ChunkExecution(inner, 2)
    assert policy.spec.chunk == 2 and policy.spec.cameras == ("agentview",)
    policy.reset(TASK, slot=0, seed=3)
    executed = run_steps(policy, 7)
    # calls at steps 0, 2, 4, 6: each contributes its first two predictions
    assert executed[:, 0].tolist() == [0, 1, 100, 101, 200, 201, 300]
    assert inner.calls[0] == 4
    assert inner.resets == [(0, 3)]


def test_chunk_execution_k_larger_than_chunk_keeps_the_chunk():
    policy = ChunkExecution(CountingPolicy(chunk=3), 8)
    assert policy.spec.chunk == 3
    assert policy.act([{}])[0].shape == (3, 7)


@pytest.mark.parametrize("bad", [0, -1])
def test_wrapper_arguments_are_checked(bad):
    with pytest.raises(VitabenchError, match="accepted"):
        ChunkExecution(CountingPolicy(chunk=3), bad)
    with pytest.raises(VitabenchError, match="accepted"):
        History(CountingPolicy(chunk=3), bad)


def test_ensemble_weights_oldest_first():
    w = ensemble_weights(3, 0.5)
    total = 1 + math.exp(-0.5) + math.exp(-1.0)
    np.testing.assert_allclose(w, [1 / total, math.exp(-0.5) / total, math.exp(-1.0) / total])
    assert w[0] > w[1] > w[2]
    np.testing.assert_allclose(ensemble_weights(4, 0.0), [0.25] * 4)


def test_temporal_ensemble_matches_hand_computed_values():
    inner = CountingPolicy(chunk=3)
    policy = TemporalEnsemble(inner, m=0.5)
    assert policy.spec.chunk == 1
    policy.reset(TASK)
    executed = run_steps(policy, 4)[:, 0]
    e1, e2 = math.exp(-0.5), math.exp(-1.0)
    # step t sees, oldest first, the predictions of calls t-2, t-1, t (value 100*c + (t-c))
    expected = [
        0.0,
        (1 * 1 + 100 * e1) / (1 + e1),
        (2 * 1 + 101 * e1 + 200 * e2) / (1 + e1 + e2),
        (102 * 1 + 201 * e1 + 300 * e2) / (1 + e1 + e2),
    ]
    np.testing.assert_allclose(executed, expected, rtol=1e-6)
    assert inner.calls[0] == 4  # the inner policy is asked every step


def test_temporal_ensemble_default_m_is_vita_vla():
    policy = TemporalEnsemble(CountingPolicy(chunk=2))
    assert policy.m == 0.01
    policy.reset(TASK)
    executed = run_steps(policy, 2)[:, 0]
    w_old, w_new = 1.0, math.exp(-0.01)
    assert executed[1] == pytest.approx((1 * w_old + 100 * w_new) / (w_old + w_new), rel=1e-6)


def test_temporal_ensemble_rethresholds_a_binary_gripper():
    policy = TemporalEnsemble(CountingPolicy(chunk=3, gripper=[1, -1, -1, 1]), m=0.0)
    policy.reset(TASK)
    gripper = run_steps(policy, 3)[:, -1]
    # t=0: [+1] -> +1; t=1: [+1, -1] averages to 0, a tie, keeps the newest (-1);
    # t=2: [+1, -1, -1] averages to -1/3 -> -1
    assert gripper.tolist() == [1.0, -1.0, -1.0]


def test_temporal_ensemble_keeps_a_continuous_gripper_averaged():
    policy = TemporalEnsemble(CountingPolicy(chunk=3, gripper=[0.5, -0.25, 1.0]), m=0.0)
    policy.reset(TASK)
    gripper = run_steps(policy, 3)[:, -1]
    np.testing.assert_allclose(gripper, [0.5, 0.125, (0.5 - 0.25 + 1.0) / 3], rtol=1e-6)


def test_temporal_ensemble_slots_are_independent_of_batching():
    batched = TemporalEnsemble(CountingPolicy(chunk=3), m=0.3)
    single = TemporalEnsemble(CountingPolicy(chunk=3), m=0.3)
    for slot in (4, 9):
        batched.reset(TASK, slot=slot)
        single.reset(TASK, slot=slot)
    out_batched, out_single = [], []
    for _ in range(4):
        out_batched.append(batched.act([{}, {}], [4, 9])[:, 0, 0])
        out_single.append([single.act([{}], [4])[0, 0, 0], single.act([{}], [9])[0, 0, 0]])
    np.testing.assert_allclose(out_batched, out_single)


def test_temporal_ensemble_reset_clears_the_slot():
    policy = TemporalEnsemble(CountingPolicy(chunk=3), m=0.0)
    policy.reset(TASK)
    run_steps(policy, 2)
    policy.reset(TASK)
    # after reset only the new episode's first prediction counts (the inner policy restarts at 0)
    assert policy.act([{}])[0, 0, 0] == 0.0


def test_history_pads_with_the_first_frame_and_slides():
    inner = CountingPolicy(chunk=1)
    policy = History(inner, 3)
    assert policy.spec.history == 3
    policy.reset(TASK, slot=0)
    for t in range(4):
        policy.act([{"t": t}], [0])
    histories = [[frame["t"] for frame in call[0]["history"]] for call in inner.seen]
    assert histories == [[0, 0, 0], [0, 0, 1], [0, 1, 2], [1, 2, 3]]
    assert all("history" not in frame for call in inner.seen for frame in call[0]["history"])
    assert inner.seen[-1][0]["t"] == 3


def test_history_is_per_slot_and_cleared_by_reset():
    inner = CountingPolicy(chunk=1)
    policy = History(inner, 2)
    policy.act([{"t": 0}, {"t": 10}], [0, 1])
    policy.act([{"t": 1}, {"t": 11}], [0, 1])
    assert [f["t"] for f in inner.seen[-1][0]["history"]] == [0, 1]
    assert [f["t"] for f in inner.seen[-1][1]["history"]] == [10, 11]
    policy.reset(TASK, slot=1)
    policy.act([{"t": 20}], [1])
    assert [f["t"] for f in inner.seen[-1][0]["history"]] == [20, 20]


def test_wrap_policy_stacks_history_inside_ensembling():
    inner = CountingPolicy(chunk=3)
    policy = wrap_policy(inner, history=2, ensemble=0.01)
    assert isinstance(policy, TemporalEnsemble) and isinstance(policy.inner, History)
    assert policy.spec.history == 2 and policy.spec.chunk == 1
    policy.reset(TASK)
    assert policy([{"t": 0}][0]).shape == (7,)  # a plain gym loop: one observation, one action
    with pytest.raises(VitabenchError, match="not both"):
        wrap_policy(inner, execute=2, ensemble=0.01)


def test_every_wrapper_forwards_the_inner_provenance():
    inner = CountingPolicy(chunk=4)
    assert policy_provenance(inner) is NO_PROVENANCE and policy_provenance(object()) is NO_PROVENANCE
    inner.provenance = Provenance("abc", {"name": "distill_64", "version": "1", "hash": "h", "ref": "distill_64@1#h"}, {"variant": "x"})
    for wrapped in (ChunkExecution(inner, 2), TemporalEnsemble(inner), History(inner, 3), wrap_policy(inner, history=2, ensemble=0.01)):
        assert policy_provenance(wrapped) is inner.provenance and wrapped.checkpoint_hash == "abc"
    inner.provenance = {"checkpoint_hash": "abc"}
    with pytest.raises(TypeError, match="CountingPolicy.provenance is a dict; accepted: a vitabench.api.Provenance"):
        policy_provenance(History(inner, 2))


def test_release_forgets_a_slot_in_every_layer():
    """``release(slot)`` (the server's call for a closed connection) drops the slot's state in each
    wrapper and in the inner policy; other slots keep theirs."""
    inner = CountingPolicy(chunk=3)
    policy = wrap_policy(inner, history=2, ensemble=0.01)
    for slot in (0, 1):
        policy.reset(TASK, slot=slot)
        run_steps(policy, 2, slot=slot)
    policy.release(0)
    assert set(inner.calls) == {1}
    assert set(policy._pending) == {1} and set(policy.inner._frames) == {1}

