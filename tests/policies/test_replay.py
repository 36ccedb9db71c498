"""`replay` on a real LIBERO task: a demo recorded here, written as LIBERO-format HDF5, replayed."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from vitabench.api.errors import VitabenchError
from vitabench.api.protocol import load_protocol
from vitabench.api.suite import Task
from vitabench.plugins import get_suite, make_policy

pytestmark = pytest.mark.sim

STEPS = 30


def demo_actions(steps: int) -> np.ndarray:
    t = np.arange(steps)[:, None]
    actions = np.zeros((steps, 7), np.float32)
    actions[:, :3] = 0.6 * np.sin(t / 5.0 + np.array([0.0, 1.0, 2.0]))
    actions[:, -1] = np.where(t[:, 0] < steps // 2, -1.0, 1.0)
    return actions


def write_libero_hdf5(path: Path, instruction: str, demos: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    """The layout of LIBERO's datasets: data/demo_N/{actions, states, obs/ee_pos}, problem_info."""
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["problem_info"] = json.dumps({"language_instruction": instruction, "problem_name": "unit"})
        data.attrs["env_args"] = json.dumps({"type": 1, "env_name": "unit"})
        for index, (actions, states, ee_pos) in demos.items():
            demo = data.create_group(f"demo_{index}")
            demo.create_dataset("actions", data=actions)
            demo.create_dataset("states", data=states)
            demo.create_dataset("obs/ee_pos", data=ee_pos)
            demo.attrs["num_samples"] = len(actions)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A LIBERO env and a demo recorded in it from init state 0 (states, ee positions, actions)."""
    from vitabench.envs.libero_env import LiberoEnv

    task = get_suite("libero_object").task(0)
    env = LiberoEnv(task, load_protocol("standard"), state_keys=("ee_pos",))
    actions = demo_actions(STEPS)
    obs, _ = env.reset(options={"init_state": 0})
    states, ee_pos = [], []
    for action in actions:
        states.append(env.sim_env.sim.get_state().flatten())
        ee_pos.append(obs["state"]["ee_pos"])
        obs, *_ = env.step(action)
    path = tmp_path_factory.mktemp("demos") / "demo.hdf5"
    other = demo_actions(5)[::-1].copy()
    write_libero_hdf5(path, task.instruction, {0: (actions, np.stack(states), np.stack(ee_pos)),
                                              3: (other, np.stack(states[:5]), np.stack(ee_pos[:5]))})
    yield env, task, path, np.stack(ee_pos), obs["state"]["ee_pos"]
    env.close()


def test_replay_reproduces_the_recorded_trajectory(recorded):
    env, task, path, ee_pos, final_ee = recorded
    policy = make_policy("replay", path=str(path), chunk=4)
    assert policy.spec.cameras == () and policy.spec.chunk == 4
    obs, _ = env.reset(options={"init_state": 0})
    policy.reset(task, slot=0, seed=7)
    replayed = []
    while len(replayed) < STEPS:
        for action in policy.act([obs], [0])[0][: STEPS - len(replayed)]:
            replayed.append(obs["state"]["ee_pos"])
            obs, *_ = env.step(action)
    np.testing.assert_allclose(np.stack(replayed), ee_pos, atol=1e-6)
    np.testing.assert_allclose(obs["state"]["ee_pos"], final_ee, atol=1e-6)
    assert np.linalg.norm(final_ee - ee_pos[0]) > 0.01  # the demo did move the arm


def test_replay_chunks_slots_and_hold_after_the_end(recorded):
    _, task, path, _, _ = recorded
    policy = make_policy("replay", path=str(path), demo=3, chunk=3)
    expected = demo_actions(5)[::-1]
    policy.reset(task, slot=0)
    policy.reset(task, slot=1)
    first = policy.act([{}, {}], [0, 1])
    np.testing.assert_array_equal(first[0], expected[:3])
    np.testing.assert_array_equal(first[1], expected[:3])
    second = policy.act([{}], [0])[0]
    np.testing.assert_array_equal(second[:2], expected[3:])
    hold = np.zeros(7, np.float32)
    hold[-1] = expected[-1, -1]
    np.testing.assert_array_equal(second[2], hold)
    np.testing.assert_array_equal(policy.act([{}], [0])[0], np.stack([hold] * 3))
    policy.reset(task, slot=0)  # a new episode starts the demo again
    np.testing.assert_array_equal(policy.act([{}], [0])[0], expected[:3])


def test_replay_errors_name_the_problem(recorded, tmp_path):
    _, task, path, _, _ = recorded
    with pytest.raises(VitabenchError, match=r"demo=5 is not in .*; accepted: 0, 3"):
        make_policy("replay", path=str(path), demo=5)
    with pytest.raises(VitabenchError, match="no such file"):
        make_policy("replay", path=str(tmp_path / "missing.hdf5"))
    (tmp_path / "junk.hdf5").write_text("not hdf5")
    with pytest.raises(VitabenchError, match="cannot be read as HDF5"):
        make_policy("replay", path=str(tmp_path / "junk.hdf5"))
    policy = make_policy("replay", path=str(path))
    other_task = Task(suite="libero_object", task_id=1, name="x", instruction="something else", n_init_states=50)
    with pytest.raises(VitabenchError, match="records task .*; this episode's task is 'something else'"):
        policy.reset(other_task)
