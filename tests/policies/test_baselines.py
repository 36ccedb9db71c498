"""The zero and random baselines, through the registry as a user names them."""

from __future__ import annotations

import numpy as np
import pytest

from vitabench.api.errors import VitabenchError
from vitabench.api.policy import Policy, check_actions
from vitabench.api.suite import Task
from vitabench.plugins import make_policy

TASK = Task(suite="unit", task_id=0, name="t", instruction="do it", n_init_states=1)


def test_zero_is_all_zeros_and_needs_no_rendering():
    policy = make_policy("zero", chunk=4)
    assert isinstance(policy, Policy)
    assert policy.spec.cameras == () and policy.spec.state_keys == () and policy.spec.chunk == 4
    actions = check_actions(policy.act([{}, {}, {}], [0, 5, 7]), 3)
    assert actions.shape == (3, 4, 7) and actions.dtype == np.float32
    assert not actions.any()


def test_random_is_uniform_in_range_and_seeded_per_slot():
    policy = make_policy("random", chunk=2)
    policy.reset(TASK, slot=0, seed=11)
    policy.reset(TASK, slot=1, seed=12)
    first = np.concatenate([policy.act([{}, {}], [0, 1]) for _ in range(50)], axis=1)
    assert first.shape == (2, 100, 7)
    assert first.min() >= -1 and first.max() <= 1 and first.min() < -0.9 and first.max() > 0.9
    assert not np.allclose(first[0], first[1])

    # the same seeds in other slots, other batch shapes, another instance: the same actions
    other = make_policy("random", chunk=2)
    other.reset(TASK, slot=7, seed=12)
    other.reset(TASK, slot=3, seed=11)
    alone = np.concatenate([other.act([{}], [7]) for _ in range(50)], axis=1)[0]
    np.testing.assert_array_equal(alone, first[1])
    again = np.concatenate([other.act([{}], [3]) for _ in range(50)], axis=1)[0]
    np.testing.assert_array_equal(again, first[0])


def test_random_reset_restarts_the_sequence():
    policy = make_policy("random")
    policy.reset(TASK, seed=5)
    a = policy.act([{}])
    policy.act([{}])
    policy.reset(TASK, seed=5)
    np.testing.assert_array_equal(policy.act([{}]), a)


@pytest.mark.parametrize("name", ["zero", "random"])
def test_bad_chunk_is_a_one_line_error(name):
    with pytest.raises(VitabenchError, match="chunk=0: accepted: an integer >= 1"):
        make_policy(name, chunk=0)


def test_slots_must_match_observations():
    with pytest.raises(VitabenchError, match="2 observations but 1 slots"):
        make_policy("zero").act([{}, {}], [0])


@pytest.mark.sim
def test_baselines_drive_a_plain_gymnasium_loop():
    """One observation in, one action out: ``policy(obs)`` in a plain loop over the LIBERO env."""
    from vitabench.api.protocol import load_protocol
    from vitabench.envs.libero_env import LiberoEnv
    from vitabench.plugins import get_suite

    task = get_suite("libero_spatial").task(0)
    policy = make_policy("random")
    env = LiberoEnv(task, load_protocol("standard"), cameras=policy.spec.cameras, state_keys=("ee_pos",))
    try:
        obs, _ = env.reset(options={"init_state": 0})
        policy.reset(task, seed=3)
        start = obs["state"]["ee_pos"].copy()
        for _ in range(5):
            action = policy(obs)
            assert action.shape == (7,) and env.action_space.contains(action)
            obs, _, terminated, truncated, _ = env.step(action)
            assert not (terminated or truncated)
        assert np.linalg.norm(obs["state"]["ee_pos"] - start) > 1e-4
    finally:
        env.close()
