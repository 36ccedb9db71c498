"""Lazy rendering: observations are rendered only when they are used, and nothing else changes.

Three levels:

* the worker protocol (no simulator): a ``chunk`` command gives what the same actions sent as
  ``step`` commands give (digest, steps, flags, ``extra.*`` info, observation, video frames),
  for an environment with ``step_unobserved`` and for one without it;
* ``LiberoEnv``: a reset renders one frame per camera and matches robosuite's own reset and
  settle steps rendering every frame; ``step_unobserved`` renders only the cameras it is given
  and leaves the MuJoCo state (qpos, qvel, act, time) of every step bit for bit as ``step`` does;
* ``vitabench run`` on LIBERO (two cameras, the ``standard`` protocol's 10 settle steps): chunks
  of 1, 3 and 8, a video episode and one without, the local executor, temporal ensembling (the
  Ray executor: ``test_runner_ray.py`` compares its lazy chunk-8 run with the same eager run,
  so that Ray starts once there for all its tests). The probe policy plays a fixed action
  sequence whatever its chunk size, so every run must reproduce the trajectory (``state_digest``)
  of the eager chunk-1 run, which observes every step; the policy hashes every observation it is
  shown, and each must equal the eager run's observation of that step. The local runs share one
  worker process, kept from run to run, so its environment is built once (the runner reuses an
  env across the episodes of a run the same way; Ray actors start with fresh envs and must agree).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest

from vitabench.api import BasePolicy, PolicySpec, Suite, Task
from vitabench.api.protocol import load_protocol
from vitabench.plugins import POLICIES, SUITES
from vitabench.runner import LocalExecutor, run_evaluation
from vitabench.runner.executor import LockstepLoop
from vitabench.runner.store import RunStore
from vitabench.runner.worker import EnvConfig, EnvHost, WorkerProcess
from vitabench.policy_wrappers import TemporalEnsemble

os.environ.setdefault("MUJOCO_GL", "egl")

CAMERAS = ("agentview", "robot0_eye_in_hand")
RESOLUTION = 64  # a frame costs about the same at any resolution here; small frames keep videos small
MAX_STEPS = 12
EPISODES = 2  # with video="sample:1": the first episode records a video, the second does not


# -- the worker protocol, on toy environments -----------------------------------------------------


class ToyEnv:
    """An env without ``step_unobserved``: success at step 5 from init state 1; counts full observations."""

    def __init__(self, task: Task, protocol: Any, *, cameras=(), resolution=None, state_keys=(), privileged=False, max_steps=None) -> None:
        self.cameras, self.max_steps = tuple(cameras), max_steps or 10
        self.init_state, self.steps, self.position = 0, 0, np.zeros(3, dtype=np.float32)
        self.full_observations = 0

    def _images(self, cameras: Sequence[str]) -> dict[str, np.ndarray]:
        return {c: np.full((4, 4, 3), (7 * self.steps + len(c)) % 255, np.uint8) for c in cameras}

    def _obs(self) -> dict[str, Any]:
        self.full_observations += 1
        return {"state": {"ee_pos": self.position.copy()}, "instruction": "toy", "images": self._images(self.cameras)}

    def _advance(self, action: np.ndarray) -> tuple[float, bool, bool, dict[str, Any]]:
        self.steps += 1
        self.position = self.position + np.asarray(action, dtype=np.float32)[:3]
        success = self.init_state == 1 and self.steps == 5
        info = {"success": success, "steps": self.steps, f"extra.at_{self.steps % 3}": self.steps}
        return float(success), success, not success and self.steps >= self.max_steps, info

    def reset(self, seed=None, options=None):
        self.init_state, self.steps, self.position = int((options or {}).get("init_state", 0)), 0, np.zeros(3, np.float32)
        return self._obs(), {"success": False, "steps": 0}

    def step(self, action):
        reward, terminated, truncated, info = self._advance(action)
        return self._obs(), reward, terminated, truncated, info

    def close(self) -> None:
        pass


class LazyToyEnv(ToyEnv):
    """The same env, opting in with ``step_unobserved``."""

    def step_unobserved(self, action, cameras=()):
        reward, terminated, truncated, info = self._advance(action)
        return {"state": {"ee_pos": self.position.copy()}, "images": self._images(cameras)}, reward, terminated, truncated, info


def toy_config(entry_point: str) -> EnvConfig:
    task = Task("toy", 0, "toy", "toy", n_init_states=2)
    return EnvConfig(entry_point, task, load_protocol("standard"), ("a", "b"), 4, ("ee_pos",), False, 10)


@pytest.mark.parametrize("env_class", ["ToyEnv", "LazyToyEnv"])
@pytest.mark.parametrize("init_state", [0, 1])
def test_a_chunk_gives_what_its_steps_give(env_class: str, init_state: int) -> None:
    actions = np.random.default_rng(init_state).uniform(-1, 1, (10, 7)).astype(np.float32)
    config = toy_config(f"{__name__}:{env_class}")
    eager, lazy = EnvHost(), EnvHost()
    try:
        eager_reset = eager.handle(("reset", config, 0, init_state))
        lazy_reset = lazy.handle(("reset", config, 0, init_state))
        assert eager_reset[4] == lazy_reset[4]  # the digest of the reset observation
        steps = []
        for action in actions:
            steps.append(eager.handle(("step", action)))
            if steps[-1][3] or steps[-1][4]:
                break
        taken, observed = 0, 0
        for size in (3, 4, 3):
            reply = lazy.handle(("chunk", actions[taken : taken + size], True, ("a",)))
            kind, obs, count, terminated, truncated, info, frames, digest = reply
            assert kind == "chunk" and 1 <= count <= size
            observed += count == size  # the last action of a chunk that ran in full was observed
            extra: dict[str, Any] = {}
            for offset in range(count):
                step = steps[taken + offset]
                np.testing.assert_array_equal(frames[offset]["a"], step[1]["images"]["a"])
                assert set(frames[offset]) == {"a"}
                extra.update(step[5])
            taken += count
            last = steps[taken - 1]
            assert (terminated, truncated, digest) == (last[3], last[4], last[6])
            assert info == extra  # the last step's info with every earlier step's extra.* keys
            if terminated or truncated:
                assert obs is None
                break
            np.testing.assert_array_equal(obs["state"]["ee_pos"], last[1]["state"]["ee_pos"])
            assert set(obs["images"]) == {"a", "b"}
        assert taken == len(steps) == (5 if init_state == 1 else 10)
        full = lazy.env.full_observations  # one at the reset, one after each observed chunk
        assert full == (1 + taken if env_class == "ToyEnv" else 1 + observed)
    finally:
        eager.close()
        lazy.close()


def test_an_unobserved_chunk_ending_at_the_step_limit_has_no_observation() -> None:
    host = EnvHost()
    try:
        host.handle(("reset", toy_config(f"{__name__}:LazyToyEnv"), 0, 0))
        reply = host.handle(("chunk", np.zeros((10, 7), np.float32), False, ()))
        assert reply[1:4] == (None, 10, False) and reply[4] is True and reply[6] == []
        assert host.env.full_observations == 1
    finally:
        host.close()


def toy_suite(name: str) -> Suite:
    env = "LazyToyEnv" if name.startswith("lazy") else "ToyEnv"
    tasks = (Task(name, 0, "toy", "do the toy task", n_init_states=2),)
    return Suite(name=name, steps_key="libero_object", tasks=tasks, env_entry_point=f"{__name__}:{env}")


@pytest.mark.parametrize("suite", ["toy", "lazy_toy"])
def test_runs_on_envs_with_and_without_step_unobserved_match_eager_runs(tmp_path: Path, suite: str) -> None:
    import imageio.v3 as iio

    SUITES.register(suite, f"{__name__}:toy_suite")
    results = {}
    for lazy in (False, True):
        out = run_evaluation(
            "random", {"chunk": 3}, suite, tasks=[0], episodes_per_task=2, max_steps=10, video="all",
            out=tmp_path / f"lazy_{lazy}", executor=LocalExecutor(1, lazy_rendering=lazy),
        ).run_dir
        records = {r.episode_id: r for r in RunStore(out).records()}
        frames = {e: iio.imread(out / r.video) for e, r in records.items()}
        extras = {e: {k: v for k, v in r.extra.items() if k != "env_build_s"} for e, r in records.items()}  # a time
        results[lazy] = ({e: (r.status, r.success, r.steps, extras[e]) for e, r in records.items()}, frames)
    outcomes, frames = results[True]
    assert outcomes == results[False][0]
    assert sorted((steps, success) for _, success, steps, _ in outcomes.values()) == [(5, True), (10, False)]
    assert all(extra["state_digest"] and extra["at_1"] for *_, extra in outcomes.values())
    for episode, video in frames.items():  # reset + every step, both protocol cameras
        assert len(video) == 1 + outcomes[episode][2]
        np.testing.assert_array_equal(video, results[False][1][episode])


# -- LiberoEnv ---------------------------------------------------------------------------------------


def mujoco_digest(env: Any) -> str:
    """The simulator's full dynamic state: positions, velocities, actuator activations and time."""
    data = env.sim_env.sim.data
    digest = hashlib.blake2b(digest_size=16)
    for array in (data.qpos, data.qvel, data.act, np.array([data.time])):
        digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def camera_env() -> Iterator[Any]:
    from vitabench.envs.libero_env import LiberoEnv
    from vitabench.plugins import get_suite

    env = LiberoEnv(get_suite("libero_object").task(0), load_protocol("standard"), cameras=CAMERAS, resolution=RESOLUTION, max_steps=50)
    yield env
    env.close()


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every camera MuJoCo renders, in order."""
    from robosuite.utils.binding_utils import MjSim

    rendered: list[str] = []
    original = MjSim.render

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        rendered.append(kwargs["camera_name"])  # robosuite's camera sensors name the camera
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MjSim, "render", counting)
    return rendered


@pytest.mark.sim
@pytest.mark.parametrize("settle_steps", [10, 0])
def test_a_reset_renders_one_frame_per_camera_and_matches_an_eager_reset(camera_env: Any, renders: list[str], settle_steps: int) -> None:
    from vitabench.envs.libero_env import orient

    protocol = load_protocol("standard")
    camera_env.protocol = dataclasses.replace(protocol, settle_steps=settle_steps)
    try:
        # robosuite's own path, every frame rendered: reset, init state, settle steps
        raw = camera_env.restore_init_state(3, seed=7)
        for _ in range(settle_steps):
            raw, _, _, _ = camera_env.sim_env.step(np.asarray(protocol.settle_action, dtype=np.float64))
        eager_renders, eager_state = len(renders), mujoco_digest(camera_env)
        expected = {cam: orient(raw[f"{cam}_image"], protocol.image_orientation) for cam in CAMERAS}
        renders.clear()
        obs, _ = camera_env.reset(seed=7, options={"init_state": 3})
    finally:
        camera_env.protocol = protocol
    assert sorted(renders) == sorted(CAMERAS) and eager_renders == len(CAMERAS) * (settle_steps + 1)
    assert mujoco_digest(camera_env) == eager_state
    for cam in CAMERAS:
        np.testing.assert_array_equal(obs["images"][cam], expected[cam])
    np.testing.assert_array_equal(obs["state"]["ee_pos"], np.asarray(raw["robot0_eef_pos"], dtype=np.float32))


@pytest.mark.sim
def test_unobserved_steps_render_only_what_is_asked_and_change_no_physics(camera_env: Any, renders: list[str]) -> None:
    actions = np.random.default_rng(1).uniform(-1, 1, (9, 7)).astype(np.float32)
    observed_at, video_at = {2, 5, 8}, 6  # steps (0-based) stepped with step(); one with the video camera only

    camera_env.reset(seed=7, options={"init_state": 4})
    eager, eager_states = [], [mujoco_digest(camera_env)]
    for action in actions:
        eager.append(camera_env.step(action))
        eager_states.append(mujoco_digest(camera_env))

    camera_env.reset(seed=7, options={"init_state": 4})
    renders.clear()
    lazy_states = [mujoco_digest(camera_env)]
    for t, action in enumerate(actions):
        if t in observed_at:
            obs, reward, terminated, truncated, info = camera_env.step(action)
            for cam in CAMERAS:
                np.testing.assert_array_equal(obs["images"][cam], eager[t][0]["images"][cam])
        else:
            cameras = ("agentview",) if t == video_at else ()
            obs, reward, terminated, truncated, info = camera_env.step_unobserved(action, cameras)
            assert set(obs) == ({"state", "images"} if cameras else {"state"})
            if cameras:
                assert set(obs["images"]) == {"agentview"}
                np.testing.assert_array_equal(obs["images"]["agentview"], eager[t][0]["images"]["agentview"])
        lazy_states.append(mujoco_digest(camera_env))
        assert (reward, terminated, truncated, info) == tuple(eager[t][1:])
        for key, value in eager[t][0]["state"].items():
            np.testing.assert_array_equal(obs["state"][key], value)
    assert lazy_states == eager_states and len(set(eager_states)) == len(actions) + 1
    assert len(renders) == len(CAMERAS) * len(observed_at) + 1  # eager: 2 per step, 18 here


@pytest.mark.sim
def test_step_unobserved_names_a_camera_the_env_does_not_render(camera_env: Any) -> None:
    from vitabench.api.errors import VitabenchError

    camera_env.reset(options={"init_state": 0})
    with pytest.raises(VitabenchError, match="cameras frontview are not rendered by this env; accepted: agentview, robot0_eye_in_hand"):
        camera_env.step_unobserved(np.zeros(7), ("frontview",))


# -- vitabench run on LIBERO ---------------------------------------------------------------------------

#: label -> the episodes a probe policy played: {step index: hash of the observation it was shown}
SEEN: dict[str, list[dict[int, str]]] = {}


class ProbePolicy(BasePolicy):
    """Plays one fixed action sequence per episode (seeded, so the same for every chunk size):
    each ``act`` returns the next ``chunk`` actions and moves on by ``advance`` (by default the
    chunk; 1 under temporal ensembling). Records a hash of every observation it is shown."""

    def __init__(self, chunk: int, label: str, advance: int | None = None) -> None:
        self.spec = PolicySpec(cameras=CAMERAS, resolution=RESOLUTION, state_keys=("ee_pos", "joint_pos"), chunk=chunk)
        self.label = label
        self.advance = advance or chunk
        self._actions: dict[int, np.ndarray] = {}
        self._cursor: dict[int, int] = {}
        self._seen: dict[int, dict[int, str]] = {}

    def reset(self, task: Task, slot: int = 0, seed: int | None = None) -> None:
        self._actions[slot] = np.random.default_rng(seed).uniform(-1, 1, (MAX_STEPS + 16, 7)).astype(np.float32)
        self._cursor[slot] = 0
        self._seen[slot] = {}
        SEEN.setdefault(self.label, []).append(self._seen[slot])

    def act(self, observations: Sequence[Any], slots: Sequence[int] | None = None) -> np.ndarray:
        chunks = []
        for obs, slot in zip(observations, slots or range(len(observations))):
            digest = hashlib.blake2b(digest_size=8)
            for name in sorted(obs["images"]):
                digest.update(obs["images"][name].tobytes())
            for key in sorted(obs["state"]):
                digest.update(obs["state"][key].tobytes())
            start = self._cursor[slot]
            self._seen[slot][start] = digest.hexdigest()
            chunks.append(self._actions[slot][start : start + self.spec.chunk])
            self._cursor[slot] = start + self.advance
        return np.stack(chunks)


def probe_policy(chunk: int = 1, label: str = "probe", ensemble: float | None = None) -> Any:
    """The probe, or (``ensemble=m``) the probe inside temporal ensembling, asked at every step."""
    if ensemble is None:
        return ProbePolicy(chunk, label)
    return TemporalEnsemble(ProbePolicy(chunk, label, advance=1), m=ensemble)


def register_probe() -> None:
    POLICIES.register("lazy_probe", f"{__name__}:probe_policy")


@pytest.fixture(scope="module", autouse=True)
def _registered() -> None:
    register_probe()


class KeptWorker(WorkerProcess):
    """A local worker process that outlives a run: the runner's ``close`` at the end of a run
    leaves it (and its environment) for the next run; ``kill`` (a failed run) still replaces it."""

    def close(self, timeout: float = 10.0) -> None:
        pass

    def shutdown(self) -> None:
        super().close()


class KeptWorkerExecutor(LocalExecutor):
    """:class:`LocalExecutor` with one :class:`KeptWorker` (its ``run`` with that worker)."""

    def __init__(self, worker: KeptWorker, *, lazy_rendering: bool) -> None:
        super().__init__(1, lazy_rendering=lazy_rendering)
        self.worker = worker

    def run(self, plan: Any, policy: Any, episodes: Sequence[Any], sink: Any, video: Any) -> None:
        LockstepLoop(plan, policy, sink, video, [self.worker], lazy_rendering=self.lazy_rendering).run(deque(episodes))


@pytest.fixture(scope="module")
def local() -> Iterator[Any]:
    """``local(lazy)``: the executor of this module's LIBERO runs, all on one kept worker."""
    worker = KeptWorker(0)
    try:
        yield lambda lazy: KeptWorkerExecutor(worker, lazy_rendering=lazy)
    finally:
        worker.shutdown()


def run(tmp: Path, label: str, *, lazy: bool = True, executor: Any = None, **args: Any) -> dict[str, Any]:
    out = run_evaluation(
        "lazy_probe", {"label": label, **args}, "libero_object", tasks=[0], episodes_per_task=EPISODES, max_steps=MAX_STEPS,
        out=tmp / label, video="sample:1", executor=executor or LocalExecutor(1, lazy_rendering=lazy),
    ).run_dir
    records = {r.episode_id: r for r in RunStore(out).records()}
    assert all(r.status == "ok" for r in records.values()), [r.error for r in records.values()]
    return {"dir": out, "records": records, "seen": {episode[0]: episode for episode in SEEN[label]}}


def outcomes(result: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    return {e: (r.success, r.steps, r.extra["state_digest"]) for e, r in result["records"].items()}


def video_frames(result: dict[str, Any]) -> np.ndarray:
    import imageio.v3 as iio

    (record,) = [r for r in result["records"].values() if r.video]
    return iio.imread(result["dir"] / record.video)


#: The eager reference run, made once per session (``test_runner_ray.py`` compares its Ray run with it too).
_EAGER: dict[str, Any] = {}


def eager_reference_run(tmp_path_factory: pytest.TempPathFactory, executor: Any = None) -> dict[str, Any]:
    """Lazy rendering off, chunks of 1: every step stepped with a full observation (on ``executor``,
    an eager one; default: a fresh ``LocalExecutor``)."""
    if not _EAGER:
        register_probe()
        reference = run(tmp_path_factory.mktemp("eager"), "eager", lazy=False, executor=executor)
        assert all(len(seen) == MAX_STEPS for seen in reference["seen"].values())
        _EAGER.update(reference)
    return _EAGER


@pytest.fixture(scope="module")
def eager_reference(tmp_path_factory: pytest.TempPathFactory, local: Any) -> dict[str, Any]:
    """The eager reference run (on this module's kept worker, unless another module made it first)."""
    return eager_reference_run(tmp_path_factory, local(False))


def check_against(reference: dict[str, Any], result: dict[str, Any], chunk: int) -> None:
    assert outcomes(result) == outcomes(reference)
    assert len({digest for _, _, digest in outcomes(result).values()}) == EPISODES
    assert set(result["seen"]) == set(reference["seen"])  # keyed by the reset observation's hash
    for first, seen in result["seen"].items():
        assert sorted(seen) == list(range(0, MAX_STEPS, chunk))  # asked only at chunk starts
        assert seen == {t: reference["seen"][first][t] for t in seen}
    frames = video_frames(result)
    assert frames.shape == (MAX_STEPS + 1, RESOLUTION, 2 * RESOLUTION, 3)  # reset + every step, both cameras
    np.testing.assert_array_equal(frames, video_frames(reference))


@pytest.mark.sim
@pytest.mark.parametrize("chunk", [1, 3, 8])
def test_lazy_runs_match_the_eager_run(eager_reference: dict[str, Any], local: Any, tmp_path: Path, chunk: int) -> None:
    check_against(eager_reference, run(tmp_path, f"lazy{chunk}", chunk=chunk, executor=local(True)), chunk)


@pytest.mark.sim
def test_temporal_ensembling_is_observed_at_every_step(local: Any, tmp_path: Path) -> None:
    eager = run(tmp_path, "ensemble_eager", chunk=4, ensemble=0.01, executor=local(False))
    lazy = run(tmp_path, "ensemble_lazy", chunk=4, ensemble=0.01, executor=local(True))
    assert outcomes(lazy) == outcomes(eager)
    assert lazy["seen"] == eager["seen"] and all(len(seen) == MAX_STEPS for seen in lazy["seen"].values())
    np.testing.assert_array_equal(video_frames(lazy), video_frames(eager))
