"""The anchors' LIBERO loops, written from LIBERO's own API, and vitabench's first observations
to compare with them (``test_fixtures*.py``).

LIBERO places fixtures (stove, cabinets, racks: bodies without a joint, so not in an init state)
from numpy's global RNG at every reset. For one task of every suite, an independent loop written
here from LIBERO's own API, as openpi's ``examples/libero/main.py`` runs it (one
``OffScreenRenderEnv`` at 256 px, ``env.seed(7)`` once, then per episode ``env.reset()`` (a hard
reset), ``set_init_state(init_states[k])`` and 10 steps of ``[0,0,0,0,0,0,-1]``), gives the
observation the policy first sees in episodes 0, 1 and 49; vitabench's runner under ``standard``
gives the same bytes with 1 worker (episodes in order) and with 2 (episode 49 first on a fresh
worker, episode 0 after a later one). LIBERO appends the open/close and on/off samplers again at
every model load, so the anchor's k-th hard reset draws them k + 1 times: a replay of soft resets
must draw as often (libero_spatial task 4 has such a sampler). VITA-VLA's loop (a new env per
episode, reset, then ``env.seed(42)``) is checked the same way for ``vita_vla_paper``.

The anchor settles (10 steps, two cameras) only the episodes it compares. The 47 hard resets
between them run LIBERO's reset and ``set_init_state`` too, with two shortcuts that draw nothing
(see :func:`between_compared_episodes`): robosuite's own camera switches are off, and MuJoCo's
compile of the unchanged MJCF is done once and copied. A step draws nothing from the RNG either
(asserted on every settle step the loop runs).
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from vitabench.envs.rendering import ensure_gl_backend

ensure_gl_backend()  # before mujoco is imported: the loops below build LIBERO's envs themselves

from vitabench.api.episode import Episode, build_manifest
from vitabench.api.policy import BasePolicy, PolicySpec
from vitabench.api.protocol import load_protocol
from vitabench.api.suite import Task
from vitabench.geometry import quat_to_axis_angle
from vitabench.plugins import get_suite
from vitabench.runner.executor import LocalExecutor, RunPlan

#: One task per suite: fixtures placed from the RNG in all but libero_object (its scenes have only
#: the floor); libero_spatial 4 and libero_90 35 also place objects on a fixture's site.
TASKS = {"libero_spatial": 4, "libero_object": 0, "libero_goal": 5, "libero_long": 3, "libero_90": 35}
#: Suites compared in ``test_fixtures_long_90.py`` (a file of its own, so that the two pytest
#: processes share the cost); every other suite of ``TASKS`` in ``test_fixtures.py``.
LONG_SUITES = ("libero_long", "libero_90")
#: Episodes compared in every suite: the first two and the last of a 50-episode task.
EPISODES = (0, 1, 49)
STATE_KEYS = ("ee_pos", "ee_axis_angle", "ee_quat", "gripper_qpos", "joint_pos")
CAMERAS = {"agentview": "agentview_image", "robot0_eye_in_hand": "robot0_eye_in_hand_image"}


def libero_task(suite: str, task_id: int) -> tuple[Any, np.ndarray, str]:
    """LIBERO's own task object, its init states and BDDL path, as openpi's loop gets them."""
    from libero.libero import benchmark, get_libero_path

    task_suite = benchmark.get_benchmark_dict()[get_suite(suite).tasks[task_id].source["libero_suite"]]()
    task = task_suite.get_task(task_id)
    bddl = str(Path(get_libero_path("bddl_files")) / task.problem_folder / task.bddl_file)
    return task, task_suite.get_task_init_states(task_id), bddl


def as_seen(raw: dict[str, np.ndarray], rotate: bool) -> dict[str, Any]:
    """A raw LIBERO observation as a vitabench policy gets it (images turned when ``rotate``)."""
    quat = raw["robot0_eef_quat"]
    state = {
        "ee_pos": raw["robot0_eef_pos"], "ee_axis_angle": quat_to_axis_angle(quat), "ee_quat": quat,
        "gripper_qpos": raw["robot0_gripper_qpos"], "joint_pos": raw["robot0_joint_pos"],
    }
    images = {camera: np.ascontiguousarray(raw[key][::-1, ::-1] if rotate else raw[key]) for camera, key in CAMERAS.items()}
    return {"images": images, "state": {k: np.asarray(v, dtype=np.float32) for k, v in state.items()}}


def settle(env: Any, action: Sequence[float], steps: int) -> dict[str, np.ndarray]:
    raw: dict[str, np.ndarray] = {}
    for _ in range(steps):
        before = np.random.get_state()[1].copy()
        raw, _, _, _ = env.step(list(action))
        assert np.array_equal(np.random.get_state()[1], before), "a LIBERO step drew from numpy's RNG"
    return raw


def fixture_poses(env: Any) -> np.ndarray:
    inner = env.env
    ids = [inner.sim.model.body_name2id(f.root_body) for f in inner.fixtures_dict.values()]
    return np.concatenate([inner.sim.model.body_pos[ids], inner.sim.model.body_quat[ids]], axis=1).copy()


#: MuJoCo models compiled by :func:`between_compared_episodes`, by MJCF text.
COMPILED: dict[str, Any] = {}


@contextlib.contextmanager
def between_compared_episodes(env: Any) -> Iterator[None]:
    """The anchor's hard resets between compared episodes, at 0.2 s instead of 3-4 s: robosuite's
    own switches for the offscreen renderer and camera observations (read at every reset) are off,
    and ``MjSim.from_xml_string`` compiles an MJCF text once and hands out copies (the same text
    gives the same model). Neither draws from numpy's RNG: LIBERO's model load, samplers and
    placement run as they do with cameras; the compared episodes run the unchanged path."""
    import mujoco
    from robosuite.utils import binding_utils

    inner = env.env
    cameras = [name for name, observable in inner._observables.items() if observable.modality == "image"]
    compile_every_time = binding_utils.MjSim.__dict__["from_xml_string"]

    def compile_once(cls: type, xml: str) -> Any:
        if xml not in COMPILED:
            COMPILED[xml] = mujoco.MjModel.from_xml_string(xml)
        return cls(copy.deepcopy(COMPILED[xml]))

    def switch_cameras(on: bool) -> None:
        inner.has_offscreen_renderer = inner.use_camera_obs = on
        for name in cameras:
            inner.modify_observable(name, "enabled", on)

    binding_utils.MjSim.from_xml_string = classmethod(compile_once)
    switch_cameras(False)
    try:
        yield
    finally:
        binding_utils.MjSim.from_xml_string = compile_every_time
        switch_cameras(True)


def openpi_loop(suite: str, task_id: int, episodes: Sequence[int]) -> tuple[dict[int, dict], list[np.ndarray]]:
    """openpi's LIBERO loop for one task: the first observation of ``episodes`` and every
    episode's fixture poses (episodes 0 .. max(episodes))."""
    from libero.libero.envs import OffScreenRenderEnv

    _, init_states, bddl = libero_task(suite, task_id)
    env = OffScreenRenderEnv(bddl_file_name=bddl, camera_heights=256, camera_widths=256)
    env.seed(7)
    first, poses = {}, []
    try:
        for k in range(max(episodes) + 1):
            with contextlib.nullcontext() if k in episodes else between_compared_episodes(env):
                env.reset()
                env.set_init_state(init_states[k])
            poses.append(fixture_poses(env))
            if k in episodes:
                first[k] = as_seen(settle(env, [0.0] * 6 + [-1.0], 10), rotate=True)
    finally:
        env.close()
    return first, poses


class FirstObservations(BasePolicy):
    """Keeps the first observation of each episode, in the order the runner starts them
    (``reset`` calls come in episode order), and holds still."""

    def __init__(self, resolution: int) -> None:
        self.spec = PolicySpec(cameras=tuple(CAMERAS), resolution=resolution, state_keys=STATE_KEYS)
        self.started: list[int] = []  # slot of each reset, in episode order
        self.current: dict[int, int] = {}
        self.first: dict[int, dict] = {}

    def reset(self, task: Task, slot: int = 0, seed: int | None = None) -> None:
        self.current[slot] = len(self.started)
        self.started.append(slot)

    def act(self, observations, slots=None):
        for slot, observation in zip(slots, observations):
            self.first.setdefault(self.current[slot], observation)
        return np.zeros((len(observations), 1, 7), np.float32)


def vitabench_first_observations(suite_name: str, task_id: int, protocol: Any, order: Sequence[int], workers: int) -> dict[int, dict]:
    """The first observation of episodes ``order`` (started in that order) through the runner's
    executor and worker processes."""
    suite = get_suite(suite_name)
    short = protocol.with_max_steps(1)  # one step after the first observation; placement as in ``protocol``
    by_index = {e.index: e for e in build_manifest(suite, short, [task_id], max(order) + 1).episodes}
    episodes: list[Episode] = [by_index[k] for k in order]
    policy = FirstObservations(protocol.resolution)
    results = []
    LocalExecutor(workers).run(RunPlan(suite, short, policy.spec), policy, episodes, results.append, None)
    assert [r.status for r in results] == ["ok"] * len(order), [r.error for r in results]
    assert len({r.worker["slot"] for r in results}) == workers
    return {episodes[i].index: observation for i, observation in policy.first.items()}


def assert_same(seen: dict, expected: dict, what: str) -> None:
    for camera in CAMERAS:
        np.testing.assert_array_equal(seen["images"][camera], expected["images"][camera], err_msg=f"{what}: {camera}")
    for key in STATE_KEYS:
        np.testing.assert_array_equal(seen["state"][key], expected["state"][key], err_msg=f"{what}: {key}")


def check_standard_gives_openpis_first_observations(suite: str) -> None:
    """Episodes 0, 1 and 49 of the suite's task: the anchor's first observations, with 1 worker
    (in order) and with 2 (episode 49 first, on a fresh worker)."""
    task_id = TASKS[suite]
    anchor, poses = openpi_loop(suite, task_id, EPISODES)
    if suite == "libero_object":
        assert poses[0].size == 0  # no fixture besides the floor: the rule cannot move an outcome
    else:  # the anchor's fixtures move between episodes: a rule giving every episode one draw would fail below
        assert not np.array_equal(poses[0], poses[1]) and not np.array_equal(poses[1], poses[EPISODES[-1]])
    standard = load_protocol("standard")
    for workers, order in ((1, EPISODES), (2, EPISODES[::-1])):
        seen = vitabench_first_observations(suite, task_id, standard, order, workers)
        for k in EPISODES:
            assert_same(seen[k], anchor[k], f"{suite} task {task_id} episode {k}, {workers} worker(s)")
