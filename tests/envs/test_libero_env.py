"""The LIBERO Gymnasium environment under both presets, on real simulator steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest
from cli_in_process import vitabench_in_process
from gymnasium.utils.env_checker import check_env
from robosuite.utils.binding_utils import MjSim

from vitabench.api.errors import VitabenchError
from vitabench.api.protocol import Protocol, load_protocol
from vitabench.envs.libero_env import LiberoEnv
from vitabench.geometry import quat_to_axis_angle
from vitabench.plugins import get_suite

TASK = get_suite("libero_object").task(0)


@pytest.fixture(scope="module", params=["standard", "vita_vla_paper"])
def camera_env(request: pytest.FixtureRequest) -> Iterator[LiberoEnv]:
    protocol = load_protocol(request.param)
    env = LiberoEnv(TASK, protocol, cameras=protocol.cameras, max_steps=3)
    yield env
    env.close()


@pytest.fixture(scope="module")
def blind_env() -> Iterator[LiberoEnv]:
    env = LiberoEnv(TASK, load_protocol("standard"), privileged=True, max_steps=4)
    yield env
    env.close()


@pytest.mark.sim
def test_observations_follow_the_protocol(camera_env: LiberoEnv) -> None:
    protocol = camera_env.protocol
    obs, info = camera_env.reset(seed=0, options={"init_state": 2})
    assert info == {"success": False, "steps": 0, "init_state": 2}
    assert set(obs["images"]) == set(protocol.cameras)
    for image in obs["images"].values():
        assert image.shape == (protocol.resolution, protocol.resolution, 3) and image.dtype == np.uint8
        assert image.std() > 5  # a real scene, not a blank frame
    assert obs["instruction"] == TASK.instruction
    state = obs["state"]
    assert {k: v.shape for k, v in state.items()} == {
        "ee_pos": (3,), "ee_axis_angle": (3,), "ee_quat": (4,), "gripper_qpos": (2,), "joint_pos": (7,)
    }
    np.testing.assert_allclose(state["ee_axis_angle"], quat_to_axis_angle(state["ee_quat"]), atol=1e-6)
    assert camera_env.observation_space.contains(obs)


@pytest.mark.sim
def test_orientation_is_applied_exactly_once(camera_env: LiberoEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    sim_env = camera_env.sim_env
    raws: list[dict] = []
    original = sim_env.step
    monkeypatch.setattr(sim_env, "step", lambda action: raws.append(original(action)[0]) or (raws[-1], 0.0, False, {}))
    camera_env.reset(options={"init_state": 0})
    obs, *_ = camera_env.step(np.zeros(7))
    raw = raws[-1]
    for cam in camera_env.cameras:
        expected = raw[f"{cam}_image"]
        if camera_env.protocol.image_orientation == "rot180":
            expected = expected[::-1, ::-1]
            assert not np.array_equal(obs["images"][cam], raw[f"{cam}_image"])
        np.testing.assert_array_equal(obs["images"][cam], expected)


@pytest.mark.sim
def test_settle_steps_run_on_reset_and_do_not_count(camera_env: LiberoEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    sim_env = camera_env.sim_env
    calls: list[np.ndarray] = []
    original = sim_env.step
    monkeypatch.setattr(sim_env, "step", lambda action: calls.append(np.array(action)) or original(action))
    camera_env.reset(options={"init_state": 1})
    protocol = camera_env.protocol
    assert len(calls) == protocol.settle_steps
    assert all(np.array_equal(a, protocol.settle_action) for a in calls)
    outcomes = [camera_env.step(np.zeros(7, dtype=np.float32))[2:4] for _ in range(camera_env.max_steps)]
    assert outcomes == [(False, False)] * (camera_env.max_steps - 1) + [(False, True)]
    assert len(calls) == protocol.settle_steps + camera_env.max_steps


@pytest.mark.sim
def test_an_env_without_cameras_never_renders(blind_env: LiberoEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    renders = []
    monkeypatch.setattr(MjSim, "render", lambda self, *a, **k: renders.append(a))
    obs, _ = blind_env.reset(options={"init_state": 0})
    for _ in range(3):
        obs, *_ = blind_env.step(blind_env.action_space.sample())
    assert renders == [] and "images" not in obs
    assert blind_env.sim_env.env.has_offscreen_renderer is False
    assert set(obs["privileged"]["objects"]) >= {"alphabet_soup_1", "basket_1"}


@pytest.mark.sim
def test_reused_env_matches_a_fresh_one(blind_env: LiberoEnv) -> None:
    """No fixture drift: an episode after another is identical to one on a new env."""
    actions = np.random.default_rng(0).uniform(-1, 1, (30, 7)).astype(np.float32)

    def rollout(env: LiberoEnv, init_state: int) -> np.ndarray:
        obs, _ = env.reset(seed=7, options={"init_state": init_state})
        states = [obs["state"]["joint_pos"]]
        env.max_steps = 100
        for action in actions:
            obs, *_ = env.step(action)
            states.append(np.concatenate([obs["state"]["joint_pos"], obs["state"]["gripper_qpos"]]))
        return np.concatenate(states)

    rollout(blind_env, 5)  # leaves the gripper and objects elsewhere
    reused = rollout(blind_env, 3)
    fresh_env = LiberoEnv(TASK, load_protocol("standard"))
    try:
        fresh = rollout(fresh_env, 3)
    finally:
        fresh_env.close()
    np.testing.assert_array_equal(reused, fresh)
    blind_env.max_steps = 4


@pytest.mark.sim
def test_observables_no_observation_reads_are_off_and_change_nothing(blind_env: LiberoEnv) -> None:
    """robosuite computes only the observables an observation reads (the state keys' here);
    the states returned are bit for bit those of the env with every observable on, as LIBERO builds it."""
    observables = blind_env.sim_env.env._observables
    on = {name for name, observable in observables.items() if observable.is_enabled()}
    assert on == {"robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "robot0_joint_pos"}
    assert {"alphabet_soup_1_pos", "robot0_joint_vel", "world_pose_in_gripper"} <= set(observables) - on
    actions = np.random.default_rng(1).uniform(-1, 1, (25, 7)).astype(np.float32)

    def rollout() -> list[dict[str, np.ndarray]]:
        obs, _ = blind_env.reset(seed=7, options={"init_state": 1})
        states = [obs["state"]]
        blind_env.max_steps = 100
        for action in actions:
            states.append(blind_env.step(action)[0]["state"])
        blind_env.max_steps = 4
        return states

    needed_only = rollout()
    for observable in observables.values():
        observable.set_enabled(True)
    try:
        every = rollout()
    finally:
        for name, observable in observables.items():
            observable.set_enabled(name in on)
    for step, (ours, full) in enumerate(zip(needed_only, every, strict=True)):
        for key in full:
            np.testing.assert_array_equal(ours[key], full[key], err_msg=f"step {step}: {key}")


@pytest.mark.sim
def test_check_env_passes() -> None:
    protocol = load_protocol("vita_vla_paper")
    for kwargs in ({}, {"cameras": ("agentview",), "resolution": 32, "render_mode": "rgb_array"}):
        env = LiberoEnv(TASK, protocol, max_steps=5, **kwargs)
        try:
            check_env(env, skip_render_check=not kwargs)
        finally:
            env.close()


@pytest.mark.sim
def test_bad_inputs_name_what_is_accepted(blind_env: LiberoEnv) -> None:
    with pytest.raises(VitabenchError, match="init_state=50 .* accepted: 0-49"):
        blind_env.reset(options={"init_state": 50})
    blind_env.reset(options={"init_state": 0})
    with pytest.raises(VitabenchError, match="finite"):
        blind_env.step(np.array([np.nan] * 7))
    with pytest.raises(VitabenchError, match="unknown camera"):
        LiberoEnv(TASK, load_protocol("standard"), cameras=("topview",))


@pytest.mark.sim
def test_success_at_end_rule_never_terminates_early() -> None:
    import dataclasses

    protocol: Protocol = dataclasses.replace(load_protocol("standard"), success_rule="success_at_end")
    env = LiberoEnv(TASK, protocol, max_steps=2)
    try:
        env.reset(options={"init_state": 0})
        results = [env.step(np.zeros(7))[2:4] for _ in range(2)]
    finally:
        env.close()
    assert results == [(False, False), (False, True)]


def test_list_suites_json() -> None:
    out = vitabench_in_process("list", "suites", "--json")
    assert out.returncode == 0, out.stderr
    suites = {s["name"]: (s["n_tasks"], s["init_states_per_task"]) for s in json.loads(out.stdout) if s["name"].startswith("libero")}
    assert suites == {
        "libero_spatial": (10, 50), "libero_object": (10, 50), "libero_goal": (10, 50),
        "libero_long": (10, 50), "libero_90": (90, 50),
    }
    alias = vitabench_in_process("list", "tasks", "libero_10", "--json")
    assert alias.returncode == 0 and len(json.loads(alias.stdout)) == 10
    # a real process: the exit code, and nothing else on stderr
    bad = subprocess.run([sys.executable, "-m", "vitabench", "list", "tasks", "libero_100"], capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert bad.stderr.startswith("error: unknown suite 'libero_100'; known: libero_90, libero_goal, libero_long, libero_object, libero_spatial")


@pytest.mark.sim
def test_rendering_failure_names_mujoco_gl() -> None:
    env = {**os.environ, "MUJOCO_GL": "nonexistent-backend"}
    proc = subprocess.run(
        [sys.executable, "-m", "vitabench", "doctor", "--skip-init-states"], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 1
    assert "FAIL  rendering: rendering failed with MUJOCO_GL=nonexistent-backend" in proc.stdout.replace("\n", " ")


@pytest.mark.sim
def test_doctor_profile_measures_every_part_of_a_step(tmp_path) -> None:
    out = tmp_path / "doctor.json"
    proc = subprocess.run(
        [sys.executable, "-m", "vitabench", "doctor", "--profile", "--protocol", "vita_vla_128", "--profile-policy", "zero",
         "--json", str(out)], capture_output=True, text=True, env={**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "episodes per hour per core, 2 x 128 px: chunk 1:" in proc.stdout and "init-state check" not in proc.stdout
    profile = json.loads(out.read_text())["profile"]
    assert set(profile["render_ms"]) == {f"{camera}@{res}" for camera in ("agentview", "robot0_eye_in_hand") for res in (128, 256)}
    assert profile["max_steps"] == 280 and profile["physics_ms"] > 0 and profile["policy_ms"] > 0
    assert set(profile["messaging_ms"]) == {"state", "2 x 128 px", "2 x 256 px"}


@pytest.mark.sim
def test_gymnasium_make_builds_the_env_by_name() -> None:
    import gymnasium as gym

    env = gym.make("vitabench.envs:vitabench/Libero-v0", suite="libero_10", task_id=2, protocol="vita_vla_paper")
    try:
        obs, info = env.reset(seed=1, options={"init_state": 4})
        assert env.unwrapped.task.suite == "libero_long" and obs["instruction"] == get_suite("libero_long").task(2).instruction
        assert env.unwrapped.max_steps == 600 and info["init_state"] == 4
        assert env.spec is not None and env.spec.id == "vitabench/Libero-v0"
    finally:
        env.close()
