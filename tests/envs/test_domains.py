"""Visual domains on real LIBERO renders: what changes, what does not, bit-for-bit repeats, hashes."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

from vitabench.api.protocol import Protocol, load_protocol
from vitabench.envs.domains import Domain, DomainError, all_domains, canonical_domain, resolve_domain, resolve_domains
from vitabench.envs.libero_env import LiberoEnv
from vitabench.plugins import get_suite

TASK = get_suite("libero_object").task(0)
CAMERAS = ("agentview", "robot0_eye_in_hand")
PROTOCOL = load_protocol("vita_vla_paper")


@pytest.fixture(scope="module")
def env() -> Iterator[LiberoEnv]:
    env = LiberoEnv(TASK, PROTOCOL, cameras=CAMERAS, resolution=64, privileged=True, max_steps=5)
    yield env
    env.close()


def _render(env: LiberoEnv, domain: Domain | None, *, seed: int = 3, init_state: int = 0) -> tuple[dict, np.ndarray]:
    """Observation and full physics state of ``init_state`` reset under ``domain``."""
    env.set_domain(domain)
    obs, _ = env.reset(seed=seed, options={"init_state": init_state})
    return obs, env.sim_env.env.sim.get_state().flatten()


def _flat(value: object) -> object:
    """Nested dicts of arrays as plain lists (exact comparison)."""
    if isinstance(value, dict):
        return {k: _flat(v) for k, v in value.items()}
    return np.asarray(value).tolist()


def _max_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


@pytest.mark.sim
def test_lighting_and_surfaces_change_pixels_not_poses(env: LiberoEnv) -> None:
    base_obs, base_state = _render(env, None)
    for name in ("dim", "dusk", "green_room", "object_colors"):
        obs, state = _render(env, resolve_domain(name))
        np.testing.assert_array_equal(state, base_state, err_msg=f"{name} moved the physics")
        assert _flat(obs["privileged"]) == _flat(base_obs["privileged"]), f"{name} moved an object"
        assert _max_diff(obs["images"]["agentview"], base_obs["images"]["agentview"]) > 30, name


@pytest.mark.sim
def test_camera_shift_moves_only_its_camera(env: LiberoEnv) -> None:
    base_obs, base_state = _render(env, None)
    obs, state = _render(env, resolve_domain("unseen/camera_shift"))
    np.testing.assert_array_equal(state, base_state)
    assert _max_diff(obs["images"]["agentview"], base_obs["images"]["agentview"]) > 30
    np.testing.assert_array_equal(obs["images"]["robot0_eye_in_hand"], base_obs["images"]["robot0_eye_in_hand"])


@pytest.mark.sim
def test_sensor_noise_is_small_reproducible_and_per_step(env: LiberoEnv) -> None:
    base_obs, _ = _render(env, None)
    grainy = resolve_domain("seen/grainy")
    first, _ = _render(env, grainy)
    again, _ = _render(env, grainy)
    for camera in CAMERAS:
        np.testing.assert_array_equal(first["images"][camera], again["images"][camera])
        difference = first["images"][camera].astype(np.float32) - base_obs["images"][camera]
        assert 5.0 < difference.std() < 15.0  # noise_std = 10, clipped at 0 and 255
    other_seed, _ = _render(env, grainy, seed=4)
    assert not np.array_equal(other_seed["images"]["agentview"], first["images"]["agentview"])
    zero = np.zeros(7)
    _render(env, grainy)
    step_a = env.step(zero)[0]["images"]["agentview"]
    _render(env, grainy)
    np.testing.assert_array_equal(env.step(zero)[0]["images"]["agentview"], step_a)
    assert not np.array_equal(step_a, first["images"]["agentview"])


NOISY_COLORS = dataclasses.replace(resolve_domain("object_colors"), name="object_colors_noisy", noise_std=4.0)


@pytest.fixture(scope="module")
def domain_env() -> Iterator[LiberoEnv]:
    """An env built from a protocol with a domain (kept open: closing a second EGL context in a
    process disturbs the first one's renders, a robosuite matter the runner avoids with one env
    per worker process)."""
    env = LiberoEnv(TASK, PROTOCOL.with_domain(NOISY_COLORS), cameras=CAMERAS, resolution=64, max_steps=5)
    yield env
    env.close()


@pytest.mark.sim
def test_a_domain_is_reproducible_bit_for_bit_across_envs(env: LiberoEnv, domain_env: LiberoEnv) -> None:
    reference, _ = _render(env, NOISY_COLORS, init_state=1)
    assert domain_env.domain == NOISY_COLORS
    obs, _ = domain_env.reset(seed=3, options={"init_state": 1})
    for camera in CAMERAS:
        np.testing.assert_array_equal(obs["images"][camera], reference["images"][camera])


@pytest.mark.sim
def test_setting_no_domain_restores_the_scene_as_built(env: LiberoEnv) -> None:
    base_obs, _ = _render(env, None)
    _render(env, resolve_domain("green_room"))
    restored, _ = _render(env, None)
    for camera in CAMERAS:
        np.testing.assert_array_equal(restored["images"][camera], base_obs["images"][camera])


def test_protocol_hash_covers_the_domain_parameters() -> None:
    dusk = resolve_domain("dusk")
    derived = PROTOCOL.with_domain(dusk)
    assert derived.domain_ref == "unseen/dusk@1" and "+domain=unseen/dusk@1" in derived.name
    assert derived.hash != PROTOCOL.hash
    assert derived.hash != PROTOCOL.with_domain(resolve_domain("dim")).hash
    tweaked = dataclasses.replace(dusk, light_scale=dusk.light_scale + 0.01)  # same name and version
    assert PROTOCOL.with_domain(tweaked).hash != derived.hash
    assert Protocol.from_dict(json.loads(json.dumps(derived.to_dict()))).hash == derived.hash
    assert "domain" not in PROTOCOL.to_dict() and PROTOCOL.domain_ref is None


def test_domain_table_and_resolution() -> None:
    domains = all_domains()
    sets = {d.set for d in domains.values()}
    assert sets == {"canonical", "seen", "unseen"}
    assert canonical_domain().name == "canonical"
    assert [d.name for d in resolve_domains("seen")] == [d.name for d in domains.values() if d.set == "seen"]
    assert resolve_domain("unseen/dusk") is not None and resolve_domain("dusk").set == "unseen"
    with pytest.raises(DomainError, match="unknown domain 'seen/dusk'; accepted: canonical, seen, unseen"):
        resolve_domains("seen/dusk")
    with pytest.raises(DomainError, match="names a set"):
        resolve_domain("unseen")
    with pytest.raises(DomainError, match="surfaces ceiling"):
        Domain(name="x", set="seen", version="1", description="x", surfaces={"ceiling": (1.0, 1.0, 1.0, 1.0)})


def test_list_domains_json() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "vitabench", "list", "domains", "--json"], capture_output=True, text=True, check=True
    )
    listed = {d["ref"]: d["set"] for d in json.loads(out.stdout)}
    assert listed["unseen/dusk@1"] == "unseen" and listed["canonical/canonical@1"] == "canonical"
    assert len(listed) == len(all_domains())
