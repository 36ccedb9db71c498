"""Fixture placement reproduces the anchors' LIBERO loops frame for frame: which scenes place
fixtures at all; episodes 0, 1 and 49 of one task of every LIBERO suite but ``LONG_SUITES`` under
``standard`` against openpi's loop (those in ``test_fixtures_long_90.py``, a file of its own so that
the two pytest processes share the cost); ``vita_vla_paper`` against VITA-VLA's loop. The loops
and how they are made cheap: ``anchor_loops.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from anchor_loops import (
    CAMERAS, LONG_SUITES, STATE_KEYS, TASKS, assert_same, as_seen, check_standard_gives_openpis_first_observations, libero_task, settle,
)

from vitabench.api.protocol import load_protocol
from vitabench.plugins import get_suite
from vitabench.suites.libero import LIBERO_NAMES


def test_every_libero_suite_is_compared_with_the_anchor() -> None:
    """A LIBERO suite vitabench ships has a task in TASKS, so one of the two files below compares it."""
    assert sorted(TASKS) == sorted(LIBERO_NAMES) and set(LONG_SUITES) <= set(TASKS)


def test_every_suite_but_libero_object_places_fixtures_from_the_rng() -> None:
    """Which scenes the rule can change at all, from the BDDL files: a fixture (not the table or the
    floor under the scene) placed in a region, which LIBERO samples at every reset."""
    import contextlib
    import io

    from libero.libero.envs.bddl_utils import robosuite_parse_problem

    workspaces = {"table", "floor", "coffee_table", "kitchen_table", "living_room_table", "study_table"}
    placed = {}
    for suite in TASKS:
        placed[suite] = []
        for task in get_suite(suite).tasks:
            with contextlib.redirect_stdout(io.StringIO()):
                problem = robosuite_parse_problem(task.source["bddl_file"])
            fixtures = {name for kind, names in problem["fixtures"].items() if kind not in workspaces for name in names}
            placed[suite].append(any(state[0] == "on" and state[1] in fixtures for state in problem["initial_state"]))
        assert placed[suite][TASKS[suite]] == (suite != "libero_object")  # the tasks compared below
    assert not any(placed["libero_object"]) and all(any(tasks) for suite, tasks in placed.items() if suite != "libero_object")


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("suite", [suite for suite in TASKS if suite not in LONG_SUITES])
def test_standard_gives_openpis_first_observations_with_any_worker_count(suite: str) -> None:
    check_standard_gives_openpis_first_observations(suite)


@pytest.mark.sim
@pytest.mark.slow
def test_vita_vla_paper_gives_vita_vlas_loop() -> None:
    """VITA-VLA's loop: per episode a new 128 px env, env.reset(), env.seed(42), set_init_state, 5
    zero steps; the RNG it starts from is the one the previous episode's seed(42) left."""
    from libero.libero.envs import OffScreenRenderEnv

    from vitabench.envs.libero_env import LiberoEnv

    suite, task_id, k = "libero_spatial", TASKS["libero_spatial"], 3  # with an open/close sampler (anchor_loops)
    _, init_states, bddl = libero_task(suite, task_id)
    np.random.seed(42)  # what the previous episode's env.seed(42) left
    env = OffScreenRenderEnv(bddl_file_name=bddl, camera_heights=128, camera_widths=128)
    try:
        env.reset()
        env.seed(42)
        env.set_init_state(init_states[k])
        anchor = as_seen(settle(env, [0.0] * 7, 5), rotate=False)
    finally:
        env.close()
    paper = load_protocol("vita_vla_paper")
    ours = LiberoEnv(get_suite(suite).task(task_id), paper, cameras=tuple(CAMERAS), state_keys=STATE_KEYS)
    try:
        for episode in (0, k):  # the second draw for every episode, after any other
            observation, _ = ours.reset(seed=paper.seed, options={"init_state": k, "episode": episode})
            assert_same(observation, anchor, f"vita_vla_paper episode {episode}")
    finally:
        ours.close()
