"""The scripted expert: goal parsing, privileged state, and real LIBERO episodes end to end."""

from __future__ import annotations

import numpy as np
import pytest

from vitabench.api.errors import VitabenchError
from vitabench.api.policy import check_actions
from vitabench.api.protocol import load_protocol
from vitabench.envs.libero_env import LiberoEnv
from vitabench.geometry import matrix_to_rotation_vector, yaw_matrix
from vitabench.expert import Goal, gripper_yaw, make_skills, parse_goal, wrap_half_turn
from vitabench.plugins import get_suite, make_policy

PROTOCOL = load_protocol("standard")


def _run_lockstep(policy, envs, task, init_states: list[int]) -> tuple[list[bool], np.ndarray]:
    """Episodes in several envs driven by one batched ``act`` per step; (successes, all actions)."""
    observations = []
    for slot, (env, index) in enumerate(zip(envs, init_states)):
        observation, _ = env.reset(options={"init_state": index})
        policy.reset(task, slot=slot, seed=index)
        observations.append(observation)
    running = list(range(len(envs)))
    successes = [False] * len(envs)
    actions_seen = []
    while running:
        actions = check_actions(policy.act([observations[s] for s in running], running), len(running))
        actions_seen.append(actions[:, 0])
        for row, slot in enumerate(list(running)):
            observations[slot], _, terminated, truncated, info = envs[slot].step(actions[row, 0])
            if terminated or truncated:
                successes[slot] = bool(info["success"])
                running.remove(slot)
    return successes, np.concatenate(actions_seen)


def _assert_learnable_actions(actions: np.ndarray) -> None:
    assert actions.shape[1] == 7 and np.isfinite(actions).all()
    assert actions.min() >= -1.0 and actions.max() <= 1.0
    assert set(np.unique(actions[:, 6])) <= {-1.0, 1.0}  # gripper: open or close, nothing else
    assert (actions[:, 6] == 1.0).any() and (actions[:, 6] == -1.0).any()


def test_goal_of_a_bddl_file_is_parsed():
    task = get_suite("libero_object").task(0)
    assert parse_goal(task.source["bddl_file"]) == (Goal("in", ("alphabet_soup_1", "basket_1_contain_region")),)
    long_task = get_suite("libero_10").task(0)
    assert [g.args[0] for g in parse_goal(long_task.source["bddl_file"])] == ["alphabet_soup_1", "tomato_sauce_1"]


def test_an_unsupported_goal_is_refused_at_reset_naming_the_predicate():
    policy = make_policy("scripted")
    task = get_suite("libero_10").task(9)  # ... (Close microwave_1): a door, not a drawer
    with pytest.raises(VitabenchError, match=r"\(close microwave_1\); accepted: \(in OBJECT"):
        policy.reset(task, slot=0)
    with pytest.raises(VitabenchError, match="before reset"):
        policy.act([{"state": {}}], [0])
    with pytest.raises(VitabenchError, match=r"\(stack a_1 b_1\)"):
        make_skills([Goal("stack", ("a_1", "b_1"))])


def test_skills_are_ordered_open_first_then_place_then_close_and_turn_on():
    goals = [
        Goal("turnon", ("flat_stove_1",)),
        Goal("close", ("white_cabinet_1_bottom_region",)),
        Goal("in", ("akita_black_bowl_1", "wooden_cabinet_1_top_region")),
    ]
    skills = make_skills(goals)
    assert [type(skill).__name__ for skill in skills] == ["Slide", "PickPlace", "TurnOn", "Slide"]
    assert skills[0].opening and skills[0].region == "wooden_cabinet_1_top_region"


def test_rotation_helpers_agree_with_each_other():
    """The expert's gripper yaw reads the geometry module's frames; its commands are the module's rotation vectors."""
    for yaw in (-1.2, 0.0, 0.4, 2.5):
        down = yaw_matrix(yaw) @ np.diag([1.0, -1.0, -1.0])
        assert gripper_yaw(down) == pytest.approx(yaw)
        np.testing.assert_allclose(matrix_to_rotation_vector(yaw_matrix(yaw)), [0.0, 0.0, yaw], atol=1e-9)
    from scipy.spatial.transform import Rotation

    for vector in ([np.pi, 0.0, 0.0], [0.0, 3.1415, 0.0], [0.3, -2.0, 2.2], [1e-3, 0.0, 0.0]):
        rotated = Rotation.from_rotvec(vector).as_matrix()
        np.testing.assert_allclose(Rotation.from_rotvec(matrix_to_rotation_vector(rotated)).as_matrix(), rotated, atol=1e-6)
    assert wrap_half_turn(np.pi - 0.1) == pytest.approx(-0.1)


@pytest.mark.sim
def test_privileged_state_describes_the_scene_and_the_expert_needs_it():
    task = get_suite("libero_object").task(0)
    env = LiberoEnv(task, PROTOCOL, privileged=True)
    try:
        observation, _ = env.reset(options={"init_state": 0})
        privileged = observation["privileged"]
        assert env.observation_space.contains(observation)
        soup = privileged["objects"]["alphabet_soup_1"][:3]
        box = privileged["bboxes"]["alphabet_soup_1"]
        assert np.all(box[:3] <= soup) and np.all(soup <= box[3:])
        assert 0.05 < box[5] - box[2] < 0.12  # a soup can, standing on the floor
        assert privileged["geom_boxes"]["alphabet_soup_1"].shape[1] == 6
        assert "basket_1_contain_region" in privileged["sites"]
        np.testing.assert_allclose(privileged["robot_base"], env.sim_env.env.robots[0].base_pos, atol=1e-5)

        policy = make_policy("scripted")
        policy.reset(task, slot=0)
        del observation["privileged"]
        with pytest.raises(VitabenchError, match="privileged=True"):
            policy.act([observation], [0])
    finally:
        env.close()


@pytest.mark.sim
def test_expert_solves_libero_object_init_states():
    task = get_suite("libero_object").task(0)
    env = LiberoEnv(task, PROTOCOL, privileged=True)
    policy = make_policy("scripted")
    try:
        results = [_run_lockstep(policy, [env], task, [index]) for index in (0, 1)]
    finally:
        env.close()
    assert [success[0] for success, _ in results] == [True, True]
    _assert_learnable_actions(np.concatenate([actions for _, actions in results]))


@pytest.mark.sim
def test_expert_solves_libero_spatial_init_states_batched():
    task = get_suite("libero_spatial").task(0)
    envs = [LiberoEnv(task, PROTOCOL, privileged=True) for _ in range(2)]
    policy = make_policy("scripted")
    try:
        successes, actions = _run_lockstep(policy, envs, task, [0, 1])
    finally:
        for env in envs:
            env.close()
    assert successes == [True, True]
    _assert_learnable_actions(actions)
